//! `echo`: answers with the request it received, as JSON.
//!
//! The response is `200 application/json`:
//! `{"method": "GET", "path_with_query": "/x?y", "headers": {"name": "value", ...},
//! "body_len": N, "body": "<body as lossy UTF-8>"}`. Header names are lowercase and
//! repeated headers are joined with `", "`. Tests use it to check what the host passes
//! through to a guest: method, path, headers and a complete body.

use std::collections::BTreeMap;

use probe_util::{JSON, read_body, respond};
use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{Fields, IncomingRequest, Method, ResponseOutparam};

struct Echo;

wasip2::http::proxy::export!(Echo);

impl Guest for Echo {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let headers = joined_headers(&request.headers());
        let body = read_body(&request);
        let echoed = serde_json::json!({
            "method": method_name(&request.method()),
            "path_with_query": request.path_with_query(),
            "headers": headers,
            "body_len": body.len(),
            "body": String::from_utf8_lossy(&body),
        });
        let json = serde_json::to_vec(&echoed).expect("a JSON value always serializes");
        respond(response_out, 200, JSON, &json);
    }
}

/// Header names lowercased; the values of a repeated header joined with `", "` in the
/// order they arrived.
fn joined_headers(headers: &Fields) -> BTreeMap<String, String> {
    let mut joined = BTreeMap::<String, String>::new();
    for (name, value) in headers.entries() {
        let value = String::from_utf8_lossy(&value);
        joined
            .entry(name.to_ascii_lowercase())
            .and_modify(|existing| {
                existing.push_str(", ");
                existing.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    joined
}

fn method_name(method: &Method) -> &str {
    match method {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Connect => "CONNECT",
        Method::Options => "OPTIONS",
        Method::Trace => "TRACE",
        Method::Patch => "PATCH",
        Method::Other(other) => other,
    }
}
