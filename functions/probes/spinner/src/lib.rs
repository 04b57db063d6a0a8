//! `spinner`: a handler that never answers and burns CPU forever.
//!
//! Tests use it to check that the host's execution deadline stops a guest that never
//! yields, and that it does not starve other requests meanwhile.

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{IncomingRequest, ResponseOutparam};

struct Spinner;

wasip2::http::proxy::export!(Spinner);

impl Guest for Spinner {
    // The request and outparam are bound to named variables (not `_`) so they stay alive:
    // dropping the outparam early would tell the host there will be no response.
    fn handle(_request: IncomingRequest, _response_out: ResponseOutparam) {
        let mut counter: u64 = 0;
        loop {
            // `black_box` keeps the optimizer from proving the loop useless.
            counter = std::hint::black_box(counter.wrapping_add(1));
        }
    }
}
