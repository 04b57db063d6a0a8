// The dashboard's browser test, run by tests/cli/dashboard.rs against a
// running `nimbus up` of the shop app (admin token required):
//
//   NIMBUS_ADMIN=http://127.0.0.1:PORT NIMBUS_PUBLIC=http://127.0.0.1:PORT \
//   NIMBUS_TOKEN=... CANARY_WASM=hello.wasm CHROMIUM=/usr/bin/chromium \
//   SCREENSHOTS=dir node tests/browser/dashboard.mjs
//
// Each step prints a line; a failed check throws, takes a screenshot and
// exits with status 1. What the page claims is checked through the admin
// API, which the test calls itself.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const ADMIN = env("NIMBUS_ADMIN");
const PUBLIC = env("NIMBUS_PUBLIC");
const TOKEN = env("NIMBUS_TOKEN");
const CANARY_WASM = env("CANARY_WASM");
const SCREENSHOTS = env("SCREENSHOTS");
mkdirSync(SCREENSHOTS, { recursive: true });

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The admin API's JSON answer to `path`, with the token. */
async function admin(path, options = {}) {
  const response = await fetch(ADMIN + path, {
    ...options,
    headers: { authorization: `Bearer ${TOKEN}`, ...options.headers },
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${options.method || "GET"} ${path}: ${response.status} ${text}`);
  return path === "/metrics" ? text : JSON.parse(text);
}

/** Polls `check` until it returns a truthy value, for at most `ms`. */
async function eventually(what, ms, check) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms${last ? ` (${last.message})` : ""}`);
    await sleep(100);
  }
}

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

/** A counter's value in the Prometheus text, 0 when absent. */
function counter(metrics, name, labels) {
  const line = metrics.split("\n").find((l) => l.startsWith(`${name}{${labels}}`));
  return line ? Number(line.split(" ").pop()) : 0;
}

let shot = 0;
async function screenshot(page, name) {
  shot += 1;
  const path = join(SCREENSHOTS, `${String(shot).padStart(2, "0")}-${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

const browser = await chromium.launch({
  executablePath: env("CHROMIUM"),
  headless: true,
  // Debian's Chromium as root, on a machine without outside network.
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const context = await browser.newContext({ viewport: { width: 1500, height: 1000 } });
const page = await context.newPage();
const dialogs = [];
page.on("dialog", async (dialog) => {
  dialogs.push(dialog.message());
  await dialog.accept();
});
const row = (attr, name) => page.locator(`tr[data-${attr}="${name}"]`);
let step = "start";
const begin = (name) => {
  step = name;
  console.log(`dashboard: ${name}`);
};

try {
  begin("without a token the page shows the sign-in form and no data");
  await page.goto(`${ADMIN}/ui`);
  await page.locator("#login").waitFor({ state: "visible", timeout: 10_000 });
  assert(await page.locator("#main").isHidden(), "the data is hidden");
  const signedOut = await page.locator("body").innerText();
  assert(!signedOut.includes("catalog"), "no function name is on the page before signing in");
  await screenshot(page, "sign-in");

  begin("a wrong token is refused with an error, and still no data");
  await page.fill("#token", "not-the-token");
  await page.click("#login-form button[type=submit]");
  await page.locator("#login-error").filter({ hasText: "refused" }).waitFor({ timeout: 10_000 });
  assert(await page.locator("#main").isHidden(), "no data after a wrong token");
  assert(!(await page.locator("body").innerText()).includes("catalog"), "no function name after a wrong token");
  assert((await page.evaluate(() => sessionStorage.getItem("nimbus.adminToken"))) === null, "a refused token is not kept");
  await screenshot(page, "wrong-token");

  begin("the right token shows the shop's functions");
  await page.fill("#token", TOKEN);
  await page.click("#login-form button[type=submit]");
  for (const f of ["users", "catalog", "orders", "inventory", "notifier"]) {
    await row("function", f).waitFor({ timeout: 10_000 });
  }
  const cookies = await context.cookies();
  assert(cookies.length === 0, `no cookie holds the token: ${JSON.stringify(cookies)}`);
  assert(!page.url().includes(TOKEN), "the token is not in the URL");
  assert((await page.evaluate(() => sessionStorage.getItem("nimbus.adminToken"))) === TOKEN, "the token is in session storage");
  await screenshot(page, "functions");

  begin("traffic sent now appears without a reload");
  const url = page.url();
  const sent = 200;
  for (let i = 0; i < sent; i++) {
    const response = await fetch(`${PUBLIC}/products`);
    assert(response.status === 200, `GET /products answered ${response.status}`);
    await response.arrayBuffer();
  }
  await eventually("catalog's rate on the page", 10_000, async () => {
    const rate = Number(await row("function", "catalog").locator("td.rate").innerText());
    return rate > 0 && rate;
  });
  assert(page.url() === url, "the page was not reloaded");
  const stats = await admin("/v1/stats?window=60");
  const catalog = stats.functions.find((f) => f.function === "catalog");
  assert(catalog.count >= sent, `the stats count the ${sent} requests: ${catalog.count}`);
  await screenshot(page, "traffic");

  begin("a canary set in the page shows in GET /v1/functions");
  await row("function", "catalog").getByRole("button", { name: "Canary…" }).click();
  await page.setInputFiles("#change-file", CANARY_WASM);
  await page.fill("#change-percent", "25");
  await page.click("#change-submit");
  const canary = await eventually("the canary in the API", 10_000, async () => (await admin("/v1/functions/catalog")).canary);
  assert(canary.percent === 25, `the canary takes 25%: ${JSON.stringify(canary)}`);
  assert(dialogs.some((d) => d.includes("25%")), `the page asked before starting it: ${dialogs}`);
  await row("function", "catalog").locator("td.canary").filter({ hasText: "25%" }).waitFor({ timeout: 10_000 });
  await screenshot(page, "canary");

  begin("the canary aborted in the page is gone from GET /v1/functions");
  const asked = dialogs.length;
  await row("function", "catalog").getByRole("button", { name: "Abort" }).click();
  await eventually("no canary in the API", 10_000, async () => (await admin("/v1/functions/catalog")).canary === null);
  assert(dialogs.length === asked + 1 && dialogs.at(-1).includes("abort"), `the page asked before aborting: ${dialogs}`);
  await row("function", "catalog").locator("td.canary").filter({ hasText: "none" }).waitFor({ timeout: 10_000 });
  await screenshot(page, "canary-aborted");

  begin("a dead letter is replayed from the page");
  // `inventory` cannot read this order event: five attempts (0.2 s backoff,
  // doubling), then the message is in its dead letters.
  await admin("/v1/topics/orders.created/messages", { method: "POST", body: "not an order", headers: { "content-type": "text/plain" } });
  await eventually("inventory's dead letter", 30_000, async () => (await admin("/v1/queues/inventory/dead-letters")).length === 1);
  await row("queue", "inventory").locator("td.dead").filter({ hasText: "1" }).waitFor({ timeout: 10_000 });
  await row("queue", "inventory").getByRole("button", { name: "Dead letters" }).click();
  const letter = page.locator("#dead-letters tr[data-message]");
  await letter.waitFor({ timeout: 10_000 });
  assert((await letter.innerText()).includes("not an order"), "the payload is shown");
  await screenshot(page, "dead-letter");
  const labels = 'function="inventory",kind="retried"';
  const retried = counter(await admin("/metrics"), "nimbus_queue_deliveries_total", labels);
  await letter.getByRole("button", { name: "Replay" }).click();
  await page.locator("#notice").filter({ hasText: "1 replayed" }).waitFor({ timeout: 10_000 });
  assert(dialogs.at(-1).includes("replay"), `the page asked before replaying: ${dialogs}`);
  // Back in the queue, the message is delivered again (and fails again).
  await eventually("a new delivery of the replayed message", 10_000, async () =>
    counter(await admin("/metrics"), "nimbus_queue_deliveries_total", labels) > retried);
  await screenshot(page, "replayed");

  begin("signing out removes the data and the token");
  await page.click("#signout");
  await page.locator("#login").waitFor({ state: "visible" });
  assert(!(await page.locator("body").innerText()).includes("catalog"), "no data after signing out");
  assert((await page.evaluate(() => sessionStorage.getItem("nimbus.adminToken"))) === null, "the token is gone");
  console.log("dashboard: all steps passed");
} catch (e) {
  const path = await screenshot(page, "failed").catch(() => "(no screenshot)");
  console.error(`dashboard: step "${step}" failed: ${e.stack || e}\nscreenshot: ${path}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
