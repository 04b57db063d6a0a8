//! `panicker`: a handler that panics.
//!
//! On wasm32-wasip2 a panic aborts, which the host sees as a trap. Tests use it to check
//! that a trapping guest becomes a `500` for the caller and does not take the server down.

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{IncomingRequest, ResponseOutparam};

struct Panicker;

wasip2::http::proxy::export!(Panicker);

impl Guest for Panicker {
    fn handle(_request: IncomingRequest, _response_out: ResponseOutparam) {
        panic!("panicker: deliberate panic");
    }
}
