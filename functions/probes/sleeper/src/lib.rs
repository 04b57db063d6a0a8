//! `sleeper`: waits without burning CPU, then answers.
//!
//! It sleeps `?ms=N` milliseconds (default 1000) by blocking on a `wasi:clocks` monotonic
//! clock pollable, so the host's task yields instead of spinning, then answers
//! `200 slept N ms\n`. Tests use it for wall-clock timeouts, concurrency limits and
//! graceful shutdown. A non-numeric `ms` gets a `400`.

use probe_util::{TEXT, query_param, respond};
use wasip2::clocks::monotonic_clock;
use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{IncomingRequest, ResponseOutparam};

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
                let body = format!("bad `ms`: {err}\n");
                respond(response_out, 400, TEXT, body.as_bytes());
                return;
            }
        };
        monotonic_clock::subscribe_duration(ms.saturating_mul(NANOS_PER_MILLI)).block();
        let body = format!("slept {ms} ms\n");
        respond(response_out, 200, TEXT, body.as_bytes());
    }
}
