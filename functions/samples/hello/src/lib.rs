//! `hello`: the hello-world function, written against the plain `wasip2` bindings.
//!
//! Answers every request with `200 {greeting}, {name}!\n`, where the greeting comes from
//! the `GREETING` environment variable (default `Hello`) and the name from the
//! `x-nimbus-param-name` request header (default `world`). Tests use it to check that
//! configured environment variables and request headers reach the guest.

use std::io::Write as _;

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

/// Used when the function's environment has no `GREETING`.
const DEFAULT_GREETING: &str = "Hello";
/// Used when the request has no `x-nimbus-param-name` header.
const DEFAULT_NAME: &str = "world";

struct Hello;

wasip2::http::proxy::export!(Hello);

impl Guest for Hello {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let greeting = std::env::var("GREETING").unwrap_or_else(|_| DEFAULT_GREETING.to_owned());
        let name = request
            .headers()
            .get("x-nimbus-param-name")
            .first()
            .map(|value| String::from_utf8_lossy(value).into_owned())
            .unwrap_or_else(|| DEFAULT_NAME.to_owned());
        respond(
            response_out,
            "text/plain; charset=utf-8",
            format!("{greeting}, {name}!\n").as_bytes(),
        );
    }
}

/// Sends a `200` response with the given content type and a complete body.
fn respond(response_out: ResponseOutparam, content_type: &str, body: &[u8]) {
    let headers = Fields::from_list(&[("content-type".to_owned(), content_type.into())])
        .expect("content-type is a valid header");
    let response = OutgoingResponse::new(headers);
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
