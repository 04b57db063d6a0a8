//! `queue-worker`: a queue handler and an HTTP handler in one component, for
//! the queue trigger's tests. Both keep what they see in the key-value store
//! `deliveries` or, for a function whose manifest grants `audit` instead (a
//! second subscriber with a ledger of its own), in `audit`.
//!
//! # The queue handler
//!
//! For every delivery of a message, first:
//!
//! 1. `increment("count/{id}", 1)`, `id` being the message id;
//! 2. `set("seen/{topic}/{id}/{attempt}", payload)`;
//!
//! then, by the payload:
//!
//! | payload starts with | outcome |
//! |---|---|
//! | `fail` | the error `asked to fail` (retried) |
//! | `trap` | `panic!("asked to trap")` (a trap, retried) |
//! | `spin` | loops forever, until the host's timeout stops it (retried) |
//! | `until-fixed` | the error `not fixed yet` unless the key `fixed` exists, then success |
//! | `forward:<topic>:<rest>` | publishes `<rest>` to `<topic>` (no headers); a failure is the handler's error, e.g. `permission denied: ...` |
//! | anything else | success |
//!
//! # The HTTP handler
//!
//! Paths are read from the request's path, after `/worker`; segments are
//! percent-decoded.
//!
//! | request | response |
//! |---|---|
//! | `GET /worker/count/{id}` | `200` the number of deliveries of message `id`, as text (`0` if none) |
//! | `GET /worker/seen?prefix=p` | `200` JSON array, sorted, of the `seen/...` keys starting with `seen/` + `p` (every one without `prefix`) |
//! | `PUT /worker/fixed` | `204`; sets `fixed`, so `until-fixed` messages succeed from then on |
//! | `POST /worker/publish/{topic}` with a body | publishes the body to `topic` with the header `x-test: 1`: `202 {"published": true}`; the SDK's error otherwise (`403 permission_denied` for a topic the manifest's `publish` does not match) |
//!
//! `HEAD` is answered as `GET`; other paths are `404`, other methods `405`.

use std::hint::black_box;

use nimbus_sdk::{
    Error, IntoResponse, Json, Request, RequestExt, Response, StatusCode, http_handler, kv, queue,
    queue_handler,
};

/// The stores the handlers use, in order of preference: the first the
/// manifest grants.
const STORES: [&str; 2] = ["deliveries", "audit"];
/// The key `PUT /worker/fixed` sets.
const FIXED: &str = "fixed";
/// The prefix of payloads that are forwarded: `forward:<topic>:<rest>`.
const FORWARD: &str = "forward:";

#[queue_handler]
fn deliver(message: queue::Message) -> Result<(), Box<dyn std::error::Error>> {
    let store = store()?;
    store.increment(&format!("count/{}", message.id()), 1)?;
    let seen = format!(
        "seen/{}/{}/{}",
        message.topic(),
        message.id(),
        message.attempt()
    );
    store.set(&seen, message.payload())?;

    let payload = message.payload();
    if payload.starts_with(b"fail") {
        return Err("asked to fail".into());
    }
    if payload.starts_with(b"trap") {
        panic!("asked to trap");
    }
    if payload.starts_with(b"spin") {
        spin();
    }
    if payload.starts_with(b"until-fixed") && !store.exists(FIXED)? {
        return Err("not fixed yet".into());
    }
    if let Some(rest) = payload.strip_prefix(FORWARD.as_bytes()) {
        let Some(colon) = rest.iter().position(|&b| b == b':') else {
            return Err("a forward payload is `forward:<topic>:<rest>`".into());
        };
        let topic = std::str::from_utf8(&rest[..colon])?;
        queue::publish(topic, &rest[colon + 1..], &[])?;
    }
    Ok(())
}

/// The first of [`STORES`] this function may open.
fn store() -> Result<kv::Store, kv::Error> {
    let mut denied = kv::Error::AccessDenied;
    for name in STORES {
        match kv::Store::open(name) {
            Ok(store) => return Ok(store),
            Err(err @ (kv::Error::AccessDenied | kv::Error::NoSuchStore)) => denied = err,
            Err(err) => return Err(err),
        }
    }
    Err(denied)
}

/// Never returns: the host's timeout has to stop it.
fn spin() -> ! {
    let mut turns = 0u64;
    loop {
        turns = black_box(turns.wrapping_add(1));
    }
}

#[http_handler]
fn handle(req: Request) -> Result<Response, Error> {
    let segments = req.path_segments();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let segments = match segments.as_slice() {
        ["worker", rest @ ..] => rest,
        all => all,
    };
    match (req.dispatch_method(), segments) {
        ("GET", ["count", id]) => {
            let count = store()?
                .get(&format!("count/{id}"))?
                .map(|count| String::from_utf8_lossy(&count).into_owned())
                .unwrap_or_else(|| "0".to_owned());
            Ok(count.into_response())
        }
        ("GET", ["seen"]) => {
            let prefix = format!("seen/{}", req.query("prefix").unwrap_or_default());
            let mut keys = store()?.keys_with_prefix(&prefix)?;
            keys.sort();
            Ok(Json(keys).into_response())
        }
        ("PUT", ["fixed"]) => {
            store()?.set(FIXED, "1")?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        ("POST", ["publish", topic]) => {
            queue::publish(topic, req.body(), &[("x-test", "1")])?;
            let published = serde_json::json!({"published": true});
            Ok((StatusCode::ACCEPTED, Json(published)).into_response())
        }
        (_, ["count", _] | ["seen"]) => Err(Error::method_not_allowed("GET")),
        (_, ["fixed"]) => Err(Error::method_not_allowed("PUT")),
        (_, ["publish", _]) => Err(Error::method_not_allowed("POST")),
        _ => Err(Error::not_found(format!(
            "no worker endpoint at `{}`",
            req.uri().path()
        ))),
    }
}
