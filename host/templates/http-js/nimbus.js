// Requests, responses, key-value and config for a Nimbus function in
// JavaScript.
//
// Requests and responses are the web's own `Request` and `Response`: the
// component's JavaScript engine (StarlingMonkey, through componentize-js)
// serves the `wasi:http` incoming handler as a `fetch` event. This module
// adds the route's parameters and the standard `wasi:keyvalue` and
// `wasi:config` interfaces of `wit/`.

import { get as configGet } from "wasi:config/store@0.2.0-rc.1";
import { increment } from "wasi:keyvalue/atomics@0.2.0-draft2";
import { open } from "wasi:keyvalue/store@0.2.0-draft2";

// Nimbus passes each route parameter in a header with this prefix.
const PARAM_PREFIX = "x-nimbus-param-";

/**
 * Serves every request with `handler(request, { params })`, which returns a
 * `Response` (or a promise of one). `params` holds the route's parameters:
 * `:name` in `GET /hello/:name`. An exception answers 500 and goes to the
 * function's log.
 */
export function serve(handler) {
  addEventListener("fetch", (event) =>
    event.respondWith(
      (async () => {
        try {
          return await handler(event.request, { params: params(event.request) });
        } catch (error) {
          console.error(error?.stack ?? String(error));
          return new Response("internal error\n", { status: 500 });
        }
      })(),
    ),
  );
}

function params(request) {
  const found = {};
  for (const [name, value] of request.headers) {
    if (name.startsWith(PARAM_PREFIX)) {
      found[name.slice(PARAM_PREFIX.length)] = decodeURIComponent(value);
    }
  }
  return found;
}

/** The value of `key` in the function's `[functions.<id>.config]`, or null. */
export function config(key) {
  return configGet(key) ?? null;
}

/** A key-value store the manifest grants with `kv = ["name"]`. */
export class Store {
  #bucket;

  constructor(bucket) {
    this.#bucket = bucket;
  }

  static open(name) {
    return new Store(open(name));
  }

  /** The value at `key` as bytes, or null. */
  get(key) {
    return this.#bucket.get(key) ?? null;
  }

  /** The value at `key` as text, or null. */
  getText(key) {
    const value = this.get(key);
    return value === null ? null : new TextDecoder().decode(value);
  }

  set(key, value) {
    const bytes = typeof value === "string" ? new TextEncoder().encode(value) : value;
    this.#bucket.set(key, bytes);
  }

  delete(key) {
    this.#bucket.delete(key);
  }

  exists(key) {
    return this.#bucket.exists(key);
  }

  /** Adds `delta` to the counter at `key` in one atomic step; returns the new value. */
  increment(key, delta = 1) {
    return Number(increment(this.#bucket, key, BigInt(delta)));
  }
}
