//! `sleeper`: waits without burning CPU, then answers.
//!
//! It sleeps `?ms=N` milliseconds (default 1000) by blocking on a `wasi:clocks` monotonic
//! clock pollable, so the host's task yields instead of spinning, then answers
//! `200 slept N ms\n`. Tests use it for wall-clock timeouts, concurrency limits and
//! graceful shutdown. A non-numeric `ms` gets a `400`.

use std::io::Write as _;

use wasip2::clocks::monotonic_clock;
use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

/// How long to sleep when the request does not say.
const DEFAULT_SLEEP_MS: u64 = 1000;
const NANOS_PER_MILLI: u64 = 1_000_000;

struct Sleeper;

wasip2::http::proxy::export!(Sleeper);

impl Guest for Sleeper {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path_with_query = request.path_with_query().unwrap_or_default();
        let ms = match query_param(&path_with_query, "ms").map(str::parse::<u64>) {
            None => DEFAULT_SLEEP_MS,
            Some(Ok(ms)) => ms,
            Some(Err(err)) => {
                respond(response_out, 400, format!("bad `ms`: {err}\n").as_bytes());
                return;
            }
        };
        monotonic_clock::subscribe_duration(ms.saturating_mul(NANOS_PER_MILLI)).block();
        respond(response_out, 200, format!("slept {ms} ms\n").as_bytes());
    }
}

/// Returns the (undecoded) value of `key` in the query string of `path_with_query`.
fn query_param<'a>(path_with_query: &'a str, key: &str) -> Option<&'a str> {
    let (_, query) = path_with_query.split_once('?')?;
    query.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (name == key).then_some(value)
    })
}

/// Sends a plain-text response with the given status and a complete body.
fn respond(response_out: ResponseOutparam, status: u16, body: &[u8]) {
    let headers = Fields::from_list(&[(
        "content-type".to_owned(),
        b"text/plain; charset=utf-8".to_vec(),
    )])
    .expect("content-type is a valid header");
    let response = OutgoingResponse::new(headers);
    response
        .set_status_code(status)
        .expect("the status is a valid HTTP status");
    let outgoing_body = response.body().expect("the body is taken only once");
    ResponseOutparam::set(response_out, Ok(response));

    let mut stream = outgoing_body
        .write()
        .expect("the stream is taken only once");
    stream.write_all(body).expect("write the response body");
    stream.flush().expect("flush the response body");
    // The stream must be dropped before the body is finished.
    drop(stream);
    OutgoingBody::finish(outgoing_body, None).expect("finish the response body");
}
