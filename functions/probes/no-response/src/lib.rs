//! `no-response`: a handler that returns without ever setting its response.
//!
//! The `response-outparam` is dropped unset, so the host never receives a response (nor
//! an error code) for the request. Tests use it to check that the host answers such a
//! request itself instead of hanging or dropping the connection.

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{IncomingRequest, ResponseOutparam};

struct NoResponse;

wasip2::http::proxy::export!(NoResponse);

impl Guest for NoResponse {
    fn handle(_request: IncomingRequest, response_out: ResponseOutparam) {
        drop(response_out);
    }
}
