//! `kv-store`: the key-value stores over HTTP, written with `nimbus-sdk`.
//!
//! Mounted on a `/...` route (e.g. `/kv/...`), it reads the store and key from
//! the rest of the path (`x-nimbus-path-info`; without it, from the path after
//! `/kv`), each segment percent-decoded:
//!
//! | request | response |
//! |---|---|
//! | `GET /{store}` | `200` JSON array of every key, sorted; with `?prefix=p` only the keys starting with `p` |
//! | `GET /{store}/{key}` | `200` the raw value, or `404` JSON error |
//! | `PUT /{store}/{key}` with a body | `204`, the body is the value |
//! | `DELETE /{store}/{key}` | `204` |
//! | `POST /{store}/{key}/incr?by=N` | `200 {"value": n}`: atomic increment by `N` (default 1) |
//! | `POST /{store}/{key}/cas-incr` | `200 {"value": n, "attempts": k}`: increment by 1 with a compare-and-swap loop |
//!
//! `HEAD` is answered as `GET`. Key-value errors are the SDK's error responses
//! (`403 access_denied`, `404 no_such_store`, `500` with the host's message);
//! other paths are `404`, other methods `405` with `Allow`. Tests use it to check
//! grants, durability, limits and atomicity under concurrency.

use nimbus_sdk::{
    Error, IntoResponse, Json, Request, RequestExt, Response, StatusCode, http_handler, kv,
    percent_decode,
};

/// Compare-and-swap attempts before giving up with a `409`. Each failed attempt
/// means another request's swap succeeded, so this is only reached under
/// contention far beyond what a test makes (or if swaps never succeed).
const MAX_CAS_ATTEMPTS: u32 = 10_000;

#[http_handler]
fn handle(req: Request) -> Result<Response, Error> {
    let segments = segments(&req);
    // The host routes HEAD to GET routes and drops the body of the answer.
    let method = match req.method().as_str() {
        "HEAD" => "GET",
        method => method,
    };
    match (method, segments.as_slice()) {
        ("GET", [store]) => list(&req, store),
        ("GET", [store, key]) => get(store, key),
        ("PUT", [store, key]) => {
            kv::Store::open(store)?.set(key, req.body())?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        ("DELETE", [store, key]) => {
            kv::Store::open(store)?.delete(key)?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        ("POST", [store, key, action]) if action == "incr" => increment(&req, store, key),
        ("POST", [store, key, action]) if action == "cas-incr" => cas_increment(store, key),
        (_, [_]) => Err(Error::method_not_allowed("GET")),
        (_, [_, _]) => Err(Error::method_not_allowed("GET, PUT, DELETE")),
        (_, [_, _, action]) if action == "incr" || action == "cas-incr" => {
            Err(Error::method_not_allowed("POST"))
        }
        _ => Err(Error::not_found(format!(
            "no key-value operation at `{}`",
            req.uri().path()
        ))),
    }
}

/// The decoded segments after the mount point: `/data/a%2Fb` is `["data", "a/b"]`.
fn segments(req: &Request) -> Vec<String> {
    let path = req.uri().path();
    let rest = match req.path_info() {
        Some(info) => info,
        None => path
            .strip_prefix("/kv")
            .filter(|rest| rest.is_empty() || rest.starts_with('/'))
            .unwrap_or(path),
    };
    let rest = rest.trim_start_matches('/');
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Vec::new();
    }
    rest.split('/').map(percent_decode).collect()
}

fn list(req: &Request, store: &str) -> Result<Response, Error> {
    let store = kv::Store::open(store)?;
    let mut keys = match req.query("prefix") {
        Some(prefix) => store.keys_with_prefix(&prefix)?,
        None => store.keys()?,
    };
    keys.sort();
    Ok(Json(keys).into_response())
}

fn get(store: &str, key: &str) -> Result<Response, Error> {
    match kv::Store::open(store)?.get(key)? {
        Some(value) => Ok(value.into_response()),
        None => Err(Error::not_found(format!(
            "no key `{key}` in store `{store}`"
        ))),
    }
}

fn increment(req: &Request, store: &str, key: &str) -> Result<Response, Error> {
    let by = match req.query("by") {
        Some(by) => by
            .parse()
            .map_err(|_| Error::bad_request(format!("`by={by}` is not an integer")))?,
        None => 1,
    };
    let value = kv::Store::open(store)?.increment(key, by)?;
    Ok(Json(serde_json::json!({ "value": value })).into_response())
}

/// Adds 1 with read, compare-and-swap, retry: the way to update a value
/// atomically when the store has no operation for the update.
fn cas_increment(store: &str, key: &str) -> Result<Response, Error> {
    let store = kv::Store::open(store)?;
    for attempt in 1..=MAX_CAS_ATTEMPTS {
        let old = store.get(key)?;
        let current = match &old {
            None => 0,
            Some(bytes) => std::str::from_utf8(bytes)
                .ok()
                .and_then(|text| text.parse::<i64>().ok())
                .ok_or_else(|| {
                    Error::conflict(format!("the value of `{key}` is not a decimal integer"))
                })?,
        };
        let next = current
            .checked_add(1)
            .ok_or_else(|| Error::conflict(format!("the value of `{key}` would overflow")))?;
        if store.compare_and_swap(key, old.as_deref(), next.to_string())? {
            return Ok(
                Json(serde_json::json!({ "value": next, "attempts": attempt })).into_response(),
            );
        }
    }
    Err(Error::conflict(format!(
        "gave up on `{key}` after {MAX_CAS_ATTEMPTS} compare-and-swap attempts"
    )))
}
