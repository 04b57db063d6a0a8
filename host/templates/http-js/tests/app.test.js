// The app served by `nimbus up --build` on a free port, with a fresh state
// folder, and real requests to it.
//
// Run with `npm test`. The server is the `nimbus` on PATH, or the one
// `NIMBUS=/path/to/nimbus` names; its log is kept to warnings unless
// NIMBUS_LOG says otherwise. Compiled components are kept where `nimbus up`
// keeps them (`.nimbus/cache`, or NIMBUS_CACHE_DIR), so an unchanged
// component starts at once.

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const APP = dirname(dirname(fileURLToPath(import.meta.url)));

/** `nimbus up --build` on this app, until `stop()`. */
async function up() {
  const state = mkdtempSync(join(tmpdir(), "nimbus-test-"));
  const nimbus = process.env.NIMBUS ?? "nimbus";
  const cache = process.env.NIMBUS_CACHE_DIR ?? join(APP, ".nimbus", "cache");
  const server = spawn(
    nimbus,
    [
      "up", APP, "--build", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
      "--state-dir", state, "--cache-dir", cache,
    ],
    {
      stdio: ["ignore", "pipe", "inherit"],
      env: { ...process.env, NIMBUS_LOG: process.env.NIMBUS_LOG ?? "warn" },
    },
  );
  const stop = () => {
    server.kill();
    rmSync(state, { recursive: true, force: true });
  };
  const lines = createInterface({ input: server.stdout });
  const first = await new Promise((resolve) => {
    lines.once("line", resolve);
    lines.once("close", () => resolve(""));
    server.once("error", () => resolve(""));
  });
  if (!first.startsWith("listening on ")) {
    stop();
    throw new Error(`\`${nimbus} up ${APP}\` did not start: its log above says why`);
  }
  // Keep reading, so the server never blocks writing to its stdout.
  lines.on("line", () => {});
  return { url: first.slice("listening on ".length).trim(), stop };
}

let app;
before(async () => {
  app = await up();
});
after(() => app?.stop());

async function get(path) {
  const reply = await fetch(app.url + path);
  return [reply.status, await reply.text()];
}

test("greets and counts visits", async () => {
  assert.deepEqual(await get("/hello/ada"), [200, "Hello, ada! (visit 1)\n"]);
  assert.deepEqual(await get("/hello/ada"), [200, "Hello, ada! (visit 2)\n"]);
  assert.deepEqual(await get("/hello/bob"), [200, "Hello, bob! (visit 1)\n"]);
});

test("an unknown path is 404", async () => {
  const [status] = await get("/nope");
  assert.equal(status, 404);
});
