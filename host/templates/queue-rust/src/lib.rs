//! `{{name}}`: an HTTP route that queues events, and the queue handler that
//! counts them; made by `nimbus new queue-rust`.
//!
//! | trigger | what happens |
//! |---|---|
//! | `POST /events/:kind` | publishes the event kind to `{{name}}.events`; `202` |
//! | a message on `{{name}}.events` | adds one to the count of its kind, once per message |
//! | `GET /events/:kind` | how many events of that kind were counted |
//!
//! Messages are delivered at least once (a handler that fails, or runs out
//! of time, gets the message again), so the handler first claims the
//! message's id with compare-and-swap: a second delivery finds it claimed
//! and counts nothing.

use nimbus_sdk::{Error, Request, RequestExt, StatusCode, http_handler, kv, queue, queue_handler};

/// The key-value store the manifest grants this function.
const STORE: &str = "{{name}}";

/// The topic the route publishes to and the handler consumes.
const TOPIC: &str = "{{name}}.events";

#[http_handler]
fn events(req: Request) -> Result<(StatusCode, String), Error> {
    let kind = req
        .param("kind")
        .ok_or_else(|| Error::bad_request("no event kind in the path"))?;
    if req.dispatch_method() == "POST" {
        queue::publish(TOPIC, &kind, &[])?;
        return Ok((StatusCode::ACCEPTED, format!("queued one {kind} event\n")));
    }
    let counted = kv::Store::open(STORE)?
        .get(&count_key(&kind))?
        .map(|value| String::from_utf8_lossy(&value).into_owned())
        .unwrap_or_else(|| "0".to_owned());
    Ok((StatusCode::OK, format!("{kind}: {counted} counted\n")))
}

#[queue_handler]
fn count(message: queue::Message) -> Result<(), Error> {
    let kind = String::from_utf8_lossy(message.payload()).into_owned();
    let store = kv::Store::open(STORE)?;
    let claim = format!("seen/{}", message.id());
    if !store.compare_and_swap(&claim, None, "1")? {
        nimbus_sdk::info!("message {} was counted already", message.id());
        return Ok(());
    }
    if let Err(err) = store.increment(&count_key(&kind), 1) {
        // Release the claim, so that the retry counts the message.
        store.delete(&claim)?;
        return Err(err.into());
    }
    Ok(())
}

/// Where the count of `kind` is kept.
fn count_key(kind: &str) -> String {
    format!("count/{kind}")
}
