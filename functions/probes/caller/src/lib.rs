//! `caller`: forwards a request to another function of the app as a service call,
//! written with `nimbus-sdk`.
//!
//! Mounted on a `/...` route (e.g. `/call/...`), a request for
//! `/{service}/{rest...}?{query}` under the mount point (from `x-nimbus-path-info`;
//! without it, the path after `/call`) is sent to `http://{service}.internal/{rest}?{query}`
//! with the same method, body and `content-type`, and with the incoming
//! `x-request-id`, `traceparent` and `tracestate` forwarded by
//! `service::Client::from_request`. The callee's status, `content-type` and body
//! come back unchanged. A failed call (an invalid service name included) is a
//! `502 bad_gateway` JSON error,
//! whose message names the wasi:http error code (`HttpRequestDenied` for a
//! service not in `services`, `LoopDetected` for a cycle). Tests use it to check
//! service calls.

use nimbus_sdk::http::{self, header};
use nimbus_sdk::service::Client;
use nimbus_sdk::{Error, Request, RequestExt, Response, http_handler};

#[http_handler]
fn handle(req: Request) -> Result<Response, Error> {
    let rest = match req.path_info() {
        Some(info) => info.to_owned(),
        None => {
            let path = req.uri().path();
            path.strip_prefix("/call").unwrap_or(path).to_owned()
        }
    };
    let rest = rest.trim_start_matches('/');
    let (service, path) = match rest.split_once('/') {
        Some((service, path)) => (service, format!("/{path}")),
        None => (rest, "/".to_owned()),
    };
    if service.is_empty() {
        return Err(Error::bad_request("call `/{service}/{path}`"));
    }
    let path_and_query = match req.uri().query() {
        Some(query) => format!("{path}?{query}"),
        None => path,
    };

    let client = Client::from_request(&req);
    let mut call = http::Request::builder()
        .method(req.method().clone())
        .uri(path_and_query);
    if let Some(content_type) = req.headers().get(header::CONTENT_TYPE) {
        call = call.header(header::CONTENT_TYPE, content_type.clone());
    }
    let call = call.body(req.body().to_vec())?;
    // Every failure, a bad service name included, is a 502 naming it.
    let answer = client
        .call(service, call)
        .map_err(|err| Error::bad_gateway(err.to_string()))?;

    // Only what the caller should see of the callee's response: the host sets
    // its own framing headers and the request id.
    let mut response = Response::new(answer.body().clone());
    *response.status_mut() = answer.status();
    if let Some(content_type) = answer.headers().get(header::CONTENT_TYPE) {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, content_type.clone());
    }
    Ok(response)
}
