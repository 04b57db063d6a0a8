//! Calls to other functions of the same app ("services").
//!
//! A service call is an ordinary HTTP request to `http://{service}.internal{path}`,
//! sent through [`http::send`](crate::http::send). The host never puts it on the
//! network: it dispatches it in-process to the function whose id is `service`,
//! through that function's routes and limits, and only if the calling function
//! lists it in the manifest's `services` (`services = ["catalog"]`); any other is
//! refused with `HttpRequestDenied`. A cycle, or a chain of calls deeper than
//! the host allows, fails with `LoopDetected`.
//!
//! The callee sees the caller's id in `x-nimbus-caller`
//! ([`RequestInfo::caller`](crate::RequestInfo::caller)). The host sets its
//! `x-request-id` to the original request's id and passes the incoming
//! `traceparent` on unless the call sets one. A [`Client::from_request`] copies
//! `x-request-id`, `traceparent` and `tracestate` onto each call itself, so a
//! distributed trace (including vendor `tracestate`) follows the call on any
//! host.
//!
//! ```no_run
//! use nimbus_sdk::http::ResponseExt;
//! use nimbus_sdk::{Error, Json, Request, http_handler, service};
//!
//! #[http_handler]
//! fn product_page(req: Request) -> Result<Json<serde_json::Value>, Error> {
//!     let catalog = service::Client::from_request(&req);
//!     // A 404 from the catalog becomes this function's 404.
//!     let product = catalog.get("catalog", "/products/1")?.error_for_status()?;
//!     Ok(Json(product.json()?))
//! }
//! # fn main() {}
//! ```

use ::http::HeaderMap;
use ::http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use serde::Serialize;

use crate::Response;
use crate::http::{Error, Request, send};
use crate::info::HEADER_REQUEST_ID;

/// The W3C trace context header that carries the trace and parent span ids.
///
/// ```
/// assert_eq!(nimbus_sdk::service::HEADER_TRACEPARENT, "traceparent");
/// ```
pub const HEADER_TRACEPARENT: &str = nimbus_protocol::header::TRACEPARENT;
/// The W3C trace context header that carries vendor-specific trace state.
///
/// ```
/// assert_eq!(nimbus_sdk::service::HEADER_TRACESTATE, "tracestate");
/// ```
pub const HEADER_TRACESTATE: &str = nimbus_protocol::header::TRACESTATE;
/// The host name suffix that marks a service call.
///
/// ```
/// assert_eq!(nimbus_sdk::service::SERVICE_SUFFIX, ".internal");
/// ```
pub const SERVICE_SUFFIX: &str = ".internal";

/// The headers a [`Client::from_request`] copies from the incoming request.
const PROPAGATED: [&str; 3] = [HEADER_REQUEST_ID, HEADER_TRACEPARENT, HEADER_TRACESTATE];

/// Sends `request` to the function `service` and returns its whole response.
///
/// `request`'s URI gives the path and query (`/products/1?full=1`); a scheme or
/// host in it is replaced by `http://{service}.internal`. Nothing is copied from
/// the incoming request: use a [`Client::from_request`] for that.
///
/// ```no_run
/// use nimbus_sdk::{http, service};
///
/// let request = http::Request::builder()
///     .method("POST")
///     .uri("/orders")
///     .header("content-type", "application/json")
///     .body(r#"{"item": "tea"}"#)?;
/// let response = service::call("orders", request)?;
/// # Ok::<(), nimbus_sdk::Error>(())
/// ```
pub fn call<B: Into<Vec<u8>>>(service: &str, request: Request<B>) -> Result<Response, Error> {
    Client::new().call(service, request)
}

/// Sends `GET {path}` to the function `service`.
///
/// ```no_run
/// let product = nimbus_sdk::service::get("catalog", "/products/1")?;
/// # Ok::<(), nimbus_sdk::http::Error>(())
/// ```
pub fn get(service: &str, path: &str) -> Result<Response, Error> {
    Client::new().get(service, path)
}

/// The URL of `path_and_query` on the function `service`:
/// `http://{service}.internal{path_and_query}`.
///
/// A service is named by its function id: lowercase ASCII letters, digits and
/// `-`; anything else is an [`Error::InvalidRequest`].
///
/// ```
/// use nimbus_sdk::service;
///
/// let url = service::url("catalog", "/products/1?full=1").unwrap();
/// assert_eq!(url.to_string(), "http://catalog.internal/products/1?full=1");
/// assert!(service::url("Not A Service", "/").is_err());
/// ```
pub fn url(service: &str, path_and_query: &str) -> Result<crate::http::Uri, Error> {
    let valid = !service.is_empty()
        && service
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        return Err(Error::InvalidRequest(format!(
            "`{service}` is not a service name: use a function id (lowercase letters, digits, `-`)"
        )));
    }
    let path_and_query = if path_and_query.starts_with('/') {
        path_and_query.to_owned()
    } else {
        format!("/{path_and_query}")
    };
    format!("http://{service}{SERVICE_SUFFIX}{path_and_query}")
        .parse()
        .map_err(|err| {
            Error::InvalidRequest(format!("`{path_and_query}` is not a valid path: {err}"))
        })
}

/// Calls services with headers carried over from the request being handled.
///
/// ```no_run
/// use nimbus_sdk::{Request, service};
///
/// fn handle(req: Request) -> Result<nimbus_sdk::Response, nimbus_sdk::Error> {
///     let client = service::Client::from_request(&req);
///     // The callee sees req's x-request-id and traceparent.
///     Ok(client.get("catalog", "/products/1")?)
/// }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Client {
    propagate: HeaderMap,
}

impl Client {
    /// A client that adds no headers of its own.
    ///
    /// ```
    /// let client = nimbus_sdk::service::Client::new();
    /// assert!(client.propagated_headers().is_empty());
    /// ```
    pub fn new() -> Client {
        Client::default()
    }

    /// A client that copies `x-request-id`, `traceparent` and `tracestate` from
    /// `request` (those it has) onto every call, unless the call sets them itself.
    ///
    /// ```
    /// use nimbus_sdk::{Request, service::Client};
    ///
    /// let incoming: Request = nimbus_sdk::http::Request::builder()
    ///     .header("x-request-id", "req-1")
    ///     .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    ///     .header("cookie", "secret")
    ///     .body(Default::default())
    ///     .unwrap();
    /// let client = Client::from_request(&incoming);
    /// let headers = client.propagated_headers();
    /// assert_eq!(headers["x-request-id"], "req-1");
    /// assert!(headers.contains_key("traceparent"));
    /// assert!(!headers.contains_key("cookie"));
    /// ```
    pub fn from_request<B>(request: &::http::Request<B>) -> Client {
        let mut propagate = HeaderMap::new();
        for name in PROPAGATED {
            if let Some(value) = request.headers().get(name) {
                propagate.insert(HeaderName::from_static(name), value.clone());
            }
        }
        Client { propagate }
    }

    /// The headers this client adds to each call.
    ///
    /// ```
    /// assert!(nimbus_sdk::service::Client::new().propagated_headers().is_empty());
    /// ```
    pub fn propagated_headers(&self) -> &HeaderMap {
        &self.propagate
    }

    /// Sends `request` to the function `service`, as the function [`call`]
    /// does, with this client's headers added.
    ///
    /// ```no_run
    /// use nimbus_sdk::{Request, http, service::Client};
    ///
    /// fn forward(req: Request) -> Result<nimbus_sdk::Response, http::Error> {
    ///     let client = Client::from_request(&req);
    ///     let (parts, body) = req.into_parts();
    ///     let mut call = http::Request::new(body.to_vec());
    ///     *call.method_mut() = parts.method;
    ///     *call.uri_mut() = "/inventory".parse().unwrap();
    ///     client.call("inventory", call)
    /// }
    /// ```
    pub fn call<B: Into<Vec<u8>>>(
        &self,
        service: &str,
        request: Request<B>,
    ) -> Result<Response, Error> {
        let (mut parts, body) = request.into_parts();
        let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        parts.uri = url(service, path_and_query)?;
        for (name, value) in &self.propagate {
            if !parts.headers.contains_key(name) {
                parts.headers.insert(name, value.clone());
            }
        }
        send(Request::from_parts(parts, body))
    }

    /// Sends `GET {path}` to the function `service`.
    ///
    /// ```no_run
    /// let client = nimbus_sdk::service::Client::new();
    /// let product = client.get("catalog", "/products/1")?;
    /// # Ok::<(), nimbus_sdk::http::Error>(())
    /// ```
    pub fn get(&self, service: &str, path: &str) -> Result<Response, Error> {
        let request = Request::get(path)
            .body(Vec::new())
            .map_err(|err| Error::InvalidRequest(format!("`{path}` is not a valid path: {err}")))?;
        self.call(service, request)
    }

    /// Sends `POST {path}` to the function `service` with `body` as JSON.
    ///
    /// ```no_run
    /// let client = nimbus_sdk::service::Client::new();
    /// let order = serde_json::json!({"item": "tea", "quantity": 2});
    /// let created = client.post_json("orders", "/orders", &order)?;
    /// # Ok::<(), nimbus_sdk::http::Error>(())
    /// ```
    pub fn post_json<T: Serialize + ?Sized>(
        &self,
        service: &str,
        path: &str,
        body: &T,
    ) -> Result<Response, Error> {
        let body = serde_json::to_vec(body)
            .map_err(|err| Error::InvalidRequest(format!("the body cannot be JSON: {err}")))?;
        let mut request = Request::post(path)
            .body(body)
            .map_err(|err| Error::InvalidRequest(format!("`{path}` is not a valid path: {err}")))?;
        request.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static(crate::response::JSON),
        );
        self.call(service, request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_the_service_and_keep_the_query() {
        assert_eq!(
            url("users", "/a/b?c=d%20e").unwrap().to_string(),
            "http://users.internal/a/b?c=d%20e"
        );
        assert_eq!(
            url("users", "x").unwrap().to_string(),
            "http://users.internal/x"
        );
        assert_eq!(
            url("v2-api", "").unwrap().to_string(),
            "http://v2-api.internal/"
        );
        for bad in ["", "Users", "a.b", "a/b", "evil.com#"] {
            assert!(url(bad, "/").is_err(), "{bad}");
        }
    }

    #[test]
    fn client_copies_only_trace_headers() {
        let incoming = ::http::Request::builder()
            .header("x-request-id", "r")
            .header("tracestate", "k=v")
            .header("authorization", "Bearer x")
            .body(())
            .unwrap();
        let client = Client::from_request(&incoming);
        let names: Vec<_> = client
            .propagated_headers()
            .keys()
            .map(|name| name.as_str())
            .collect();
        assert_eq!(names, ["x-request-id", "tracestate"]);
    }
}
