// `{{name}}`: an HTTP function, made by `nimbus new http-js`.
//
// `GET /hello/:name` greets `name` with the configured greeting and counts
// its visits in the key-value store `{{name}}` (granted by
// `kv = ["{{name}}"]` in nimbus.toml).

import { config, serve, Store } from "./nimbus.js";

// The key-value store the manifest grants this function.
const STORE = "{{name}}";

serve(async (request, { params }) => {
  const name = params.name ?? "world";
  const greeting = config("greeting") ?? "Hello";
  const visits = Store.open(STORE).increment(`visits/${name}`);
  return new Response(`${greeting}, ${name}! (visit ${visits})\n`);
});
