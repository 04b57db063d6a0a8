//! The glue the attribute macros expand to. `#[http_handler]`: a wasi:http
//! request in, the handler, a wasi:http response out; and the conversions the
//! outbound client shares. `#[queue_handler]`: a wasi:messaging message in, the
//! handler, its outcome out.
//!
//! wasi:http resources are parents of the resources made from them (a request of
//! its body, a body of its stream), and the host refuses to drop a parent before
//! its children, so every function here drops children first, explicitly.

use std::cell::RefCell;
use std::future::Future;
use std::io::Write as _;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use ::http::header::{CONTENT_LENGTH, HeaderName, HeaderValue};
use ::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use wasip2::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wasip2::io::streams::{OutputStream, StreamError};

use crate::bindings::wasi::messaging::types::{
    Error as WasiMessagingError, Message as WasiMessage,
};
use crate::info::HEADER_REQUEST_ID;
use crate::queue::{Message, Outcome};
use crate::{Error, IntoResponse, Request, Response};

/// How many bytes one blocking read asks for. Bodies are capped by the host
/// (`max_body`, 1 MiB by default), so this reads a default-sized body in 16 calls
/// without asking the host for buffers much larger than it is likely to have.
const READ_CHUNK: u64 = 64 * 1024;

thread_local! {
    /// The id of the request being handled, for [`Error`] bodies. A component
    /// instance handles one request and wasm has one thread, so this is per request.
    static REQUEST_ID: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The id of the request being handled, if a handler is running.
pub(crate) fn current_request_id() -> Option<String> {
    REQUEST_ID.with_borrow(Clone::clone)
}

/// Sets the current request id for as long as it lives.
struct RequestIdGuard;

impl RequestIdGuard {
    fn set(id: Option<String>) -> RequestIdGuard {
        REQUEST_ID.set(id);
        RequestIdGuard
    }
}

impl Drop for RequestIdGuard {
    fn drop(&mut self) {
        REQUEST_ID.set(None);
    }
}

/// Handles one wasi:http request: reads it whole, runs `handler`, writes the response.
///
/// A request that cannot be read (a body stream that fails, an unparsable method
/// or URI) is answered with a `400` [`Error`] without running the handler.
pub fn serve(
    request: IncomingRequest,
    response_out: ResponseOutparam,
    handler: impl FnOnce(Request) -> Response,
) {
    let headers = header_map(&request.headers());
    let request_id = headers
        .get(HEADER_REQUEST_ID)
        .and_then(|id| id.to_str().ok())
        .map(str::to_owned);
    let _request_id = RequestIdGuard::set(request_id);

    let response = match read_request(request, headers) {
        Ok(request) => handler(request),
        Err(error) => error.into_response(),
    };
    write_response(response_out, response);
}

/// The rest of the request, after its headers.
fn read_request(incoming: IncomingRequest, headers: HeaderMap) -> Result<Request, Error> {
    let method = from_wasi_method(incoming.method())?;
    let uri = incoming.path_with_query().unwrap_or_else(|| "/".to_owned());
    let body = match incoming.consume() {
        Ok(body) => read_body(body)
            .map_err(|err| Error::bad_request(format!("cannot read the request body: {err}")))?,
        Err(()) => Vec::new(),
    };
    drop(incoming);

    let mut request = ::http::Request::builder()
        .method(method)
        .uri(uri.as_str())
        .body(Bytes::from(body))
        .map_err(|err| Error::bad_request(format!("invalid request URI `{uri}`: {err}")))?;
    *request.headers_mut() = headers;
    Ok(request)
}

/// Sends `response` through `response_out`. Failures after the status and headers
/// are sent (the caller went away) cannot be reported to anyone, so they end the
/// body early; the host logs them.
fn write_response(response_out: ResponseOutparam, mut response: Response) {
    let status = response.status();
    if has_body(status) && !response.headers().contains_key(CONTENT_LENGTH) {
        let length = HeaderValue::from(response.body().len());
        response.headers_mut().insert(CONTENT_LENGTH, length);
    }
    let outgoing = OutgoingResponse::new(to_fields(response.headers()));
    // Every `StatusCode` is 100..=999, which wasi:http accepts.
    let _ = outgoing.set_status_code(status.as_u16());
    let Ok(body) = outgoing.body() else {
        return;
    };
    ResponseOutparam::set(response_out, Ok(outgoing));
    let _ = write_body(body, response.body());
}

/// Whether a response with this status may carry a body (and so a length).
fn has_body(status: StatusCode) -> bool {
    !(status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED)
}

/// Writes `bytes` to an outgoing body and finishes it.
pub(crate) fn write_body(body: OutgoingBody, bytes: &[u8]) -> Result<(), String> {
    let mut stream = body
        .write()
        .map_err(|()| "the body's stream was already taken".to_owned())?;
    let written = write_all(&mut stream, bytes);
    drop(stream);
    written?;
    OutgoingBody::finish(body, None).map_err(|code| format!("{code:?}"))
}

fn write_all(stream: &mut OutputStream, bytes: &[u8]) -> Result<(), String> {
    stream
        .write_all(bytes)
        .and_then(|()| stream.flush())
        .map_err(|err| err.to_string())
}

/// Why a body could not be read.
pub(crate) enum ReadError {
    /// The body's stream had already been taken.
    Taken,
    /// The stream failed; the error may carry a wasi:http error code.
    Stream(wasip2::io::error::Error),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Taken => f.write_str("the body's stream was already taken"),
            ReadError::Stream(err) => f.write_str(&err.to_debug_string()),
        }
    }
}

/// Reads a whole incoming body, then finishes it (trailers are ignored).
pub(crate) fn read_body(body: IncomingBody) -> Result<Vec<u8>, ReadError> {
    let stream = body.stream().map_err(|()| ReadError::Taken)?;
    let mut bytes = Vec::new();
    let result = loop {
        match stream.blocking_read(READ_CHUNK) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break Ok(bytes),
            Err(StreamError::LastOperationFailed(err)) => break Err(ReadError::Stream(err)),
        }
    };
    drop(stream);
    drop(IncomingBody::finish(body));
    result
}

/// A wasi:http field list as a `HeaderMap`; names or values `http` rejects (the
/// host has already validated them, so there should be none) are skipped.
pub(crate) fn header_map(fields: &Fields) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in fields.entries() {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(&value),
        ) {
            headers.append(name, value);
        }
    }
    headers
}

/// A `HeaderMap` as a wasi:http field list. Headers wasi:http forbids guests to
/// set (hop-by-hop ones such as `connection` or `transfer-encoding`, which the
/// host manages) are left out.
fn to_fields(headers: &HeaderMap) -> Fields {
    let fields = Fields::new();
    for (name, value) in headers {
        let _ = fields.append(name.as_str(), value.as_bytes());
    }
    fields
}

/// A `HeaderMap` as a wasi:http field list, failing on the first header
/// wasi:http refuses, for outbound requests where a dropped header would be a
/// silent surprise.
pub(crate) fn to_fields_strict(headers: &HeaderMap) -> Result<Fields, String> {
    let fields = Fields::new();
    for (name, value) in headers {
        fields
            .append(name.as_str(), value.as_bytes())
            .map_err(|err| format!("header `{name}` cannot be sent: {err:?}"))?;
    }
    Ok(fields)
}

fn from_wasi_method(method: Method) -> Result<::http::Method, Error> {
    Ok(match method {
        Method::Get => ::http::Method::GET,
        Method::Head => ::http::Method::HEAD,
        Method::Post => ::http::Method::POST,
        Method::Put => ::http::Method::PUT,
        Method::Delete => ::http::Method::DELETE,
        Method::Connect => ::http::Method::CONNECT,
        Method::Options => ::http::Method::OPTIONS,
        Method::Trace => ::http::Method::TRACE,
        Method::Patch => ::http::Method::PATCH,
        Method::Other(other) => ::http::Method::from_bytes(other.as_bytes())
            .map_err(|_| Error::bad_request(format!("invalid method `{other}`")))?,
    })
}

pub(crate) fn to_wasi_method(method: &::http::Method) -> Method {
    match *method {
        ::http::Method::GET => Method::Get,
        ::http::Method::HEAD => Method::Head,
        ::http::Method::POST => Method::Post,
        ::http::Method::PUT => Method::Put,
        ::http::Method::DELETE => Method::Delete,
        ::http::Method::CONNECT => Method::Connect,
        ::http::Method::OPTIONS => Method::Options,
        ::http::Method::TRACE => Method::Trace,
        ::http::Method::PATCH => Method::Patch,
        ref other => Method::Other(other.as_str().to_owned()),
    }
}

/// Runs a future to completion on the current thread, for `async` handlers.
///
/// Every SDK call is synchronous underneath (each blocks on its wasi pollable), so
/// a handler's future normally completes on the first poll. A future that waits
/// on something else is polled again in a busy loop, bounded by the function's
/// `timeout`: this is not a general-purpose executor.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::hint::spin_loop();
    }
}

/// Converts a handler's output; a function so the macro can put the span of the
/// handler's return type on the "does not implement `IntoResponse`" error.
pub fn into_response<R: IntoResponse>(output: R) -> Response {
    output.into_response()
}

/// Handles one delivered message: reads it whole, runs `handler`, and turns
/// its error text into `error::other`, which asks the host for a retry.
pub fn handle_message(
    message: WasiMessage,
    handler: impl FnOnce(Message) -> Result<(), String>,
) -> Result<(), WasiMessagingError> {
    handler(Message::from_wasi(message)).map_err(WasiMessagingError::Other)
}

/// Converts a queue handler's output; a function so the macro can put the span
/// of the handler's return type on the "does not implement `Outcome`" error.
pub fn into_outcome<O: Outcome>(output: O) -> Result<(), String> {
    output.into_result()
}

/// The argument types a `#[queue_handler]` may take. Sealed: only
/// [`Message`]; a trait rather than a plain type so a wrong argument type gets
/// an error that says what to take instead.
#[diagnostic::on_unimplemented(
    message = "a queue handler cannot take `{Self}` as its argument",
    label = "a queue handler takes a `nimbus_sdk::queue::Message`",
    note = "take `message: nimbus_sdk::queue::Message`, or no argument at all"
)]
pub trait QueueArgument: Sized {
    /// The argument, from the delivered message.
    fn from_message(message: Message) -> Self;
}

impl QueueArgument for Message {
    fn from_message(message: Message) -> Message {
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_on_runs_ready_and_nested_futures() {
        async fn double(x: u32) -> u32 {
            x * 2
        }
        assert_eq!(block_on(async { double(double(1).await).await }), 4);
    }

    #[test]
    fn block_on_repolls_pending_futures() {
        let mut polls = 0;
        let output = block_on(std::future::poll_fn(|_| {
            polls += 1;
            if polls < 3 {
                Poll::Pending
            } else {
                Poll::Ready(polls)
            }
        }));
        assert_eq!(output, 3);
    }

    #[test]
    fn request_id_is_scoped_to_the_guard() {
        assert_eq!(current_request_id(), None);
        {
            let _guard = RequestIdGuard::set(Some("r-1".into()));
            assert_eq!(current_request_id().as_deref(), Some("r-1"));
            let bytes = Error::not_found("x").into_response().into_body();
            let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(body["request_id"], "r-1");
            assert_eq!(
                bytes,
                r#"{"error":"not_found","message":"x","request_id":"r-1","status":404}"#.to_owned()
                    + "\n"
            );
        }
        assert_eq!(current_request_id(), None);
    }

    #[test]
    fn bodiless_statuses_get_no_length() {
        assert!(has_body(StatusCode::OK));
        assert!(!has_body(StatusCode::NO_CONTENT));
        assert!(!has_body(StatusCode::NOT_MODIFIED));
        assert!(!has_body(StatusCode::CONTINUE));
    }
}
