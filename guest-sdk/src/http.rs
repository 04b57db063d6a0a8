//! Outbound HTTP requests (`wasi:http/outgoing-handler`), and the `http` crate's
//! types, re-exported so a function needs no dependency of its own on `http`.
//!
//! The host sends a request only if it matches one of the function's
//! `allowed_outbound_hosts` in the manifest (`"https://api.example.com"`,
//! `"http://127.0.0.1:*"`); anything else fails with the standard wasi:http
//! error code `HttpRequestDenied`, as [`Error::Code`]. Each request is capped by
//! the function's `limits.outbound_timeout`. To call another function of the
//! same app, use [`service`](crate::service).
//!
//! Requests and responses are whole: the body is sent in one piece and the
//! response body is read completely before [`send`] returns.
//!
//! ```no_run
//! use nimbus_sdk::http::{self, ResponseExt};
//!
//! let response = http::get("https://api.example.com/rates?base=EUR")?;
//! if response.status().is_success() {
//!     let rates: serde_json::Value = response.json()?;
//! }
//!
//! let request = http::Request::builder()
//!     .method("POST")
//!     .uri("https://api.example.com/orders")
//!     .header("content-type", "application/json")
//!     .body(r#"{"item": "tea"}"#)?;
//! let created = http::send(request)?;
//! # Ok::<(), nimbus_sdk::Error>(())
//! ```

use std::fmt;

use ::http::uri::Scheme as UriScheme;
use nimbus_protocol::ErrorBody;
use serde::de::DeserializeOwned;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{ErrorCode, OutgoingRequest, Scheme};

use crate::runtime::{
    ReadError, header_map, read_body, to_fields_strict, to_wasi_method, write_body,
};

pub use ::http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, header,
    request, response,
};

/// Why an outbound request failed.
///
/// Converts into [`crate::Error`] for `?` in handlers: `InvalidRequest` is a
/// `500 internal` (the function built a bad request), the others a
/// `502 bad_gateway`. Every message includes the wasi:http error code's name,
/// so a denied request reads `outbound request failed: HttpRequestDenied`.
///
/// ```
/// use nimbus_sdk::http::Error;
///
/// let error = Error::Code("HttpRequestDenied".into());
/// assert_eq!(error.code(), Some("HttpRequestDenied"));
/// assert_eq!(error.to_string(), "outbound request failed: HttpRequestDenied");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The request cannot be sent as built: a URL without a scheme or host, a
    /// header that wasi:http does not let guests set (`host`, `connection`, ...).
    InvalidRequest(String),
    /// The host or the network failed the request; holds the wasi:http
    /// `error-code` as its Rust `Debug` name, e.g. `HttpRequestDenied` (not
    /// allowed by the manifest), `ConnectionRefused`, `LoopDetected` (a service
    /// call cycle), or `DnsError(DnsErrorPayload { .. })`.
    Code(String),
    /// The response arrived but could not be read, e.g. its body broke off.
    Response(String),
}

impl Error {
    /// The wasi:http error code's name, for [`Error::Code`].
    ///
    /// ```
    /// use nimbus_sdk::http::Error;
    ///
    /// assert_eq!(Error::Code("ConnectionRefused".into()).code(), Some("ConnectionRefused"));
    /// assert_eq!(Error::InvalidRequest("no host".into()).code(), None);
    /// ```
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Code(code) => Some(code),
            _ => None,
        }
    }

    fn from_code(code: &ErrorCode) -> Error {
        let debug = format!("{code:?}");
        let name = debug.strip_prefix("ErrorCode::").unwrap_or(&debug);
        Error::Code(name.to_owned())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidRequest(message) => write!(f, "invalid outbound request: {message}"),
            Error::Code(code) => write!(f, "outbound request failed: {code}"),
            Error::Response(message) => write!(f, "cannot read the response: {message}"),
        }
    }
}

impl std::error::Error for Error {}

/// Sends `request` and returns the whole response.
///
/// The URI must be absolute (`https://host/path`). Any status is a successful
/// send: check [`Response::status`] (or use [`ResponseExt::error_for_status`]).
///
/// ```no_run
/// use nimbus_sdk::http;
///
/// let request = http::Request::builder()
///     .method("PUT")
///     .uri("https://storage.example.com/files/a.txt")
///     .body(b"contents".to_vec())?;
/// let response = http::send(request)?;
/// println!("{}", response.status());
/// # Ok::<(), nimbus_sdk::Error>(())
/// ```
pub fn send<B: Into<Vec<u8>>>(request: Request<B>) -> Result<crate::Response, Error> {
    let (parts, body) = request.into_parts();
    let body: Vec<u8> = body.into();
    let uri = &parts.uri;

    let scheme = match uri.scheme() {
        Some(scheme) if *scheme == UriScheme::HTTP => Scheme::Http,
        Some(scheme) if *scheme == UriScheme::HTTPS => Scheme::Https,
        Some(other) => Scheme::Other(other.as_str().to_owned()),
        None => {
            return Err(Error::InvalidRequest(format!(
                "`{uri}` is not an absolute URL such as `https://example.com/`"
            )));
        }
    };
    let Some(authority) = uri.authority() else {
        return Err(Error::InvalidRequest(format!("`{uri}` has no host")));
    };
    let path_with_query = uri.path_and_query().map_or("/", |p| p.as_str());

    let headers = to_fields_strict(&parts.headers).map_err(Error::InvalidRequest)?;
    let outgoing = OutgoingRequest::new(headers);
    let invalid = |what: &str| Error::InvalidRequest(format!("wasi:http refused the {what}"));
    outgoing
        .set_method(&to_wasi_method(&parts.method))
        .map_err(|()| invalid("method"))?;
    outgoing
        .set_scheme(Some(&scheme))
        .map_err(|()| invalid("scheme"))?;
    outgoing
        .set_authority(Some(authority.as_str()))
        .map_err(|()| invalid("host"))?;
    outgoing
        .set_path_with_query(Some(path_with_query))
        .map_err(|()| invalid("path"))?;
    let outgoing_body = outgoing
        .body()
        .map_err(|()| Error::InvalidRequest("the request body was already taken".into()))?;

    let future =
        outgoing_handler::handle(outgoing, None).map_err(|code| Error::from_code(&code))?;
    // The body is written after `handle`, while the host consumes it. A refused
    // request closes the body's stream, and a server may answer (a 413, say)
    // without reading the whole body: either way the response, or its error
    // code, says more than the failed write, so the write's error is dropped.
    let _ = write_body(outgoing_body, &body);

    future.subscribe().block();
    let incoming = match future.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(Error::from_code(&code)),
        Some(Err(())) => return Err(Error::Response("the response was already taken".into())),
        None => return Err(Error::Response("the response is not ready".into())),
    };

    let status = incoming.status();
    let headers = header_map(&incoming.headers());
    let body = incoming
        .consume()
        .map_err(|()| Error::Response("the response body was already taken".into()))
        .and_then(|body| read_body(body).map_err(response_body_error));
    drop(incoming);
    drop(future);

    let mut response = crate::Response::new(body?.into());
    *response.status_mut() = StatusCode::from_u16(status)
        .map_err(|_| Error::Response(format!("invalid status code {status}")))?;
    *response.headers_mut() = headers;
    Ok(response)
}

fn response_body_error(err: ReadError) -> Error {
    if let ReadError::Stream(io) = &err
        && let Some(code) = wasip2::http::types::http_error_code(io)
    {
        return Error::from_code(&code);
    }
    Error::Response(format!("cannot read the response body: {err}"))
}

/// Sends `GET url` and returns the whole response.
///
/// ```no_run
/// let page = nimbus_sdk::http::get("https://example.com/")?;
/// println!("{} bytes", page.body().len());
/// # Ok::<(), nimbus_sdk::http::Error>(())
/// ```
pub fn get(url: &str) -> Result<crate::Response, Error> {
    let request = Request::get(url)
        .body(Vec::new())
        .map_err(|err| Error::InvalidRequest(format!("`{url}` is not a valid URL: {err}")))?;
    send(request)
}

/// Reading a response from [`send`], [`get`] or a [service call](crate::service).
///
/// Failures are [`crate::Error`]s that blame the upstream (`502 bad_gateway`), so
/// `?` in a handler tells the caller that a dependency misbehaved.
///
/// ```
/// use nimbus_sdk::http::{self, ResponseExt};
///
/// let response: nimbus_sdk::Response = http::Response::new(r#"{"id": 7}"#.into());
/// let product: serde_json::Value = response.json().unwrap();
/// assert_eq!(product["id"], 7);
/// ```
pub trait ResponseExt: Sized {
    /// The body parsed as JSON; a body that does not parse is a `502`.
    ///
    /// ```
    /// use nimbus_sdk::http::{self, ResponseExt};
    ///
    /// let response: nimbus_sdk::Response = http::Response::new("not json".into());
    /// assert_eq!(response.json::<u32>().unwrap_err().status(), 502);
    /// ```
    fn json<T: DeserializeOwned>(&self) -> Result<T, crate::Error>;

    /// The body as UTF-8 text; a body that is not UTF-8 is a `502`.
    ///
    /// ```
    /// use nimbus_sdk::http::{self, ResponseExt};
    ///
    /// let response: nimbus_sdk::Response = http::Response::new("hello".into());
    /// assert_eq!(response.text().unwrap(), "hello");
    /// ```
    fn text(&self) -> Result<String, crate::Error>;

    /// The response itself if its status is not an error (below 400); otherwise
    /// an [`crate::Error`] with the same status, whose code and message come from
    /// the body when it is a Nimbus error (`{"error": .., "message": ..}`) and
    /// from the body's text otherwise. Returned with `?` from a handler, it
    /// passes a service's `404` on as a `404`.
    ///
    /// ```
    /// use nimbus_sdk::http::{self, ResponseExt, StatusCode};
    ///
    /// let mut response: nimbus_sdk::Response =
    ///     http::Response::new(r#"{"status": 404, "error": "not_found", "message": "no product 9"}"#.into());
    /// *response.status_mut() = StatusCode::NOT_FOUND;
    /// let error = response.error_for_status().unwrap_err();
    /// assert_eq!((error.status().as_u16(), error.code()), (404, "not_found"));
    /// assert_eq!(error.message(), "no product 9");
    /// ```
    fn error_for_status(self) -> Result<Self, crate::Error>;
}

impl<B: AsRef<[u8]>> ResponseExt for Response<B> {
    fn json<T: DeserializeOwned>(&self) -> Result<T, crate::Error> {
        serde_json::from_slice(self.body().as_ref()).map_err(|err| {
            crate::Error::bad_gateway(format!(
                "the upstream response is not the JSON expected: {err}"
            ))
        })
    }

    fn text(&self) -> Result<String, crate::Error> {
        String::from_utf8(self.body().as_ref().to_vec()).map_err(|err| {
            crate::Error::bad_gateway(format!("the upstream response is not UTF-8: {err}"))
        })
    }

    fn error_for_status(self) -> Result<Self, crate::Error> {
        let status = self.status();
        if !status.is_client_error() && !status.is_server_error() {
            return Ok(self);
        }
        let body = self.body().as_ref();
        Err(match serde_json::from_slice::<ErrorBody>(body) {
            Ok(nimbus) => {
                crate::Error::new(status, nimbus.message).with_code(nimbus.error.into_owned())
            }
            Err(_) => crate::Error::new(status, String::from_utf8_lossy(body).trim_end()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(status: u16, body: &str) -> crate::Error {
        let mut response: crate::Response = ::http::Response::new(body.to_owned().into());
        *response.status_mut() = ::http::StatusCode::from_u16(status).unwrap();
        response.error_for_status().unwrap_err()
    }

    #[test]
    fn error_for_status_reads_nimbus_and_other_bodies() {
        let host = failed(
            404,
            r#"{"error":"not_found","message":"no route","request_id":"r","status":404}"#,
        );
        assert_eq!((host.code(), host.message()), ("not_found", "no route"));
        // Another server's error in a similar shape: the code and message
        // still come from it, whatever else it holds.
        let other = failed(400, r#"{"error":"invalid_grant","message":"expired"}"#);
        assert_eq!(
            (other.code(), other.message()),
            ("invalid_grant", "expired")
        );
        let odd = failed(
            400,
            r#"{"error":"e","message":"m","status":"400","request_id":7}"#,
        );
        assert_eq!(
            (odd.status().as_u16(), odd.code(), odd.message()),
            (400, "e", "m")
        );
        let text = failed(503, "down for maintenance\n");
        assert_eq!(
            (text.code(), text.message()),
            ("service_unavailable", "down for maintenance")
        );
    }
}
