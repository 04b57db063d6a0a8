// Requests, responses, key-value and config for a Nimbus function in
// JavaScript.
//
// Requests and responses are the web's own `Request` and `Response`: the
// component's JavaScript engine (StarlingMonkey, through componentize-js)
// serves the `wasi:http` incoming handler as a `fetch` event. This module
// adds the route's parameters, the standard `wasi:keyvalue` and
// `wasi:config` interfaces of `wit/`, and SQLite and PostgreSQL through
// Spin's `spin:sqlite` and `spin:postgres` interfaces.

import { get as configGet } from "wasi:config/store@0.2.0-rc.1";
import { increment } from "wasi:keyvalue/atomics@0.2.0-draft2";
import { open } from "wasi:keyvalue/store@0.2.0-draft2";
import { Connection } from "spin:sqlite/sqlite@3.0.0";
import { Connection as PgConnection } from "spin:postgres/postgres@4.1.0";

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

/**
 * A SQLite database the manifest grants with `sqlite = ["name"]`. Its tables
 * come from the migrations under `[sqlite.<name>]`; a transaction still
 * open when the request ends is rolled back. A failure throws the host's
 * error, whose `payload.tag` says what it is (`access-denied`, `io`, ...).
 */
export class Database {
  #connection;

  constructor(connection) {
    this.#connection = connection;
  }

  static open(name) {
    return new Database(Connection.open(name));
  }

  /**
   * Runs one statement with `params` filling its `?` in order (null, a
   * number, a bigint, a boolean, a string or a Uint8Array; a whole number
   * is sent as an integer) and returns its rows, each an object from column
   * name to value (integers as numbers, or bigints past 2^53).
   */
  execute(statement, params = []) {
    const result = this.#connection.execute(statement, params.map(sqlValue));
    return result.rows.map((row) =>
      Object.fromEntries(result.columns.map((column, i) => [column, jsValue(row.values[i])])),
    );
  }

  /** The rowid of this connection's last successful INSERT. */
  lastInsertRowid() {
    return jsInteger(this.#connection.lastInsertRowid());
  }

  /** The rows changed by this connection's last INSERT, UPDATE or DELETE. */
  changes() {
    return jsInteger(this.#connection.changes());
  }
}

function sqlValue(value) {
  if (value === null || value === undefined) return { tag: "null" };
  if (typeof value === "bigint") return { tag: "integer", val: value };
  if (typeof value === "boolean") return { tag: "integer", val: value ? 1n : 0n };
  if (typeof value === "number") {
    return Number.isInteger(value) ? { tag: "integer", val: BigInt(value) } : { tag: "real", val: value };
  }
  if (typeof value === "string") return { tag: "text", val: value };
  if (value instanceof Uint8Array) return { tag: "blob", val: value };
  throw new TypeError(`a SQL parameter is null, a number, a bigint, a boolean, a string or a Uint8Array, not ${typeof value}`);
}

function jsValue(value) {
  switch (value.tag) {
    case "null":
      return null;
    case "integer":
      return jsInteger(value.val);
    default:
      return value.val;
  }
}

function jsInteger(value) {
  const number = Number(value);
  return Number.isSafeInteger(number) ? number : value;
}

/**
 * A PostgreSQL database the manifest grants with `postgres = { name = "URL" }`:
 * a connection from the grant's pool, the function's own until the request
 * ends (a transaction still open then is rolled back). A failure throws the
 * host's error, whose `payload.tag` says what it is (`connection-failed`,
 * `query-failed` with PostgreSQL's SQLSTATE in `payload.val.val.code`, ...).
 */
export class Postgres {
  #connection;

  constructor(connection) {
    this.#connection = connection;
  }

  static open(name) {
    return new Postgres(PgConnection.open(name));
  }

  /**
   * Runs one statement with `params` filling `$1`, `$2`, ... (null, a
   * number, a bigint, a boolean, a string, a Uint8Array, a Date, or an
   * object for jsonb; a whole number is sent as a bigint, which also goes
   * into a narrower integer column it fits) and returns its rows, each an
   * object from column name to value (numeric as a string, jsonb parsed,
   * timestamps as Dates).
   */
  query(statement, params = []) {
    const result = this.#connection.query(statement, params.map(pgValue));
    return result.rows.map((row) =>
      Object.fromEntries(result.columns.map((column, i) => [column.name, pgJs(row[i])])),
    );
  }

  /** Runs one statement and returns how many rows it changed. */
  execute(statement, params = []) {
    return jsInteger(this.#connection.execute(statement, params.map(pgValue)));
  }
}

function pgValue(value) {
  if (value === null || value === undefined) return { tag: "db-null" };
  if (typeof value === "bigint") return { tag: "int64", val: value };
  if (typeof value === "boolean") return { tag: "boolean", val: value };
  if (typeof value === "number") {
    return Number.isInteger(value) ? { tag: "int64", val: BigInt(value) } : { tag: "floating64", val: value };
  }
  if (typeof value === "string") return { tag: "str", val: value };
  if (value instanceof Uint8Array) return { tag: "binary", val: value };
  if (value instanceof Date) {
    const d = value;
    return {
      tag: "datetime",
      val: [d.getUTCFullYear(), d.getUTCMonth() + 1, d.getUTCDate(), d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds(), d.getUTCMilliseconds() * 1e6],
    };
  }
  return { tag: "jsonb", val: new TextEncoder().encode(JSON.stringify(value)) };
}

function pgJs(value) {
  switch (value.tag) {
    case "db-null":
      return null;
    case "int8":
    case "int16":
    case "int32":
    case "int64":
      return jsInteger(value.val);
    case "jsonb":
      return JSON.parse(new TextDecoder().decode(value.val));
    case "datetime": {
      const [y, mo, d, h, mi, s, ns] = value.val;
      return new Date(Date.UTC(y, mo - 1, d, h, mi, s, Math.floor(ns / 1e6)));
    }
    default:
      return value.val;
  }
}
