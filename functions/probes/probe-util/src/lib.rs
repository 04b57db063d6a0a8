//! `probe-util`: the lines the probes written on the plain `wasip2` bindings would
//! otherwise each repeat: sending a complete response and reading a query parameter.
//!
//! A library, not a guest: it builds no component, so `tests/artifacts` leaves it out
//! of the guests. It stays on `wasip2` alone, like the probes that use it, so that those
//! test the host with no SDK in between.

#![deny(missing_docs)]

use std::io::{Read as _, Write as _};

use wasip2::http::types::{
    Fields, IncomingBody, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

/// The content type of a plain-text body.
pub const TEXT: &str = "text/plain; charset=utf-8";
/// The content type of a JSON body.
pub const JSON: &str = "application/json";

/// Sends a response with the given status, content type and complete body.
pub fn respond(response_out: ResponseOutparam, status: u16, content_type: &str, body: &[u8]) {
    let headers = Fields::from_list(&[("content-type".to_owned(), content_type.into())])
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

/// Returns the (undecoded) value of `key` in the query string of `path_with_query`; a
/// key without `=` has the empty value.
pub fn query_param<'a>(path_with_query: &'a str, key: &str) -> Option<&'a str> {
    let (_, query) = path_with_query.split_once('?')?;
    query.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (name == key).then_some(value)
    })
}

/// Reads the whole request body; trailers are ignored.
pub fn read_body(request: &IncomingRequest) -> Vec<u8> {
    let body = request.consume().expect("the body is consumed only once");
    let mut stream = body.stream().expect("the stream is taken only once");
    let mut bytes = Vec::new();
    stream
        .read_to_end(&mut bytes)
        .expect("read the request body");
    // The stream must be dropped before the body is finished.
    drop(stream);
    drop(IncomingBody::finish(body));
    bytes
}

#[cfg(test)]
mod tests {
    use super::query_param;

    #[test]
    fn query_param_finds_the_first_match() {
        let path = "/x?a=1&flag&b=2&a=3";
        assert_eq!(query_param(path, "a"), Some("1"));
        assert_eq!(query_param(path, "b"), Some("2"));
        assert_eq!(query_param(path, "flag"), Some(""));
        assert_eq!(query_param(path, "c"), None);
        assert_eq!(query_param("/x", "a"), None);
    }
}
