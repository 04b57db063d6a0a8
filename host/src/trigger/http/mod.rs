//! The HTTP trigger: from a hyper request to a function's response.
//!
//! Per request, in order: request id; built-in endpoints under
//! `/.well-known/nimbus/` (health, OpenAPI, docs); CORS preflights,
//! answered by the gateway; routing (404, 405); the route's gateway policy
//! (rate limit 429, JWT 401/403); body cap (413); the guest's `x-nimbus-*`
//! headers, with the verified claims; the invocation; CORS and
//! `x-request-id` headers on the response; one access-log line.

pub mod error;
pub mod router;
mod server;

pub use error::HttpError;
pub use server::{DEFAULT_GRACE, DEFAULT_MAX_CONNECTIONS, ServeOptions, serve};

use crate::app::{App, LiveApp};
use crate::executor::{self, CallCtx};
use crate::gateway::{Cors, Preflight, Rejection, TokenError};
use crate::manifest::FunctionId;
use bytes::Bytes;
use error::full;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, ORIGIN};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use router::Match;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// Prefix of the built-in endpoints; routes may not use it.
pub const WELL_KNOWN_PREFIX: &str = "/.well-known/nimbus/";

/// The request id header, kept from the caller when valid.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Headers starting with this are set by Nimbus only; the caller's are dropped.
pub const NIMBUS_HEADER_PREFIX: &str = "x-nimbus-";
/// The function's id.
pub const HEADER_FUNCTION: HeaderName = HeaderName::from_static("x-nimbus-function");
/// The matched route's path as written in the manifest.
pub const HEADER_ROUTE: HeaderName = HeaderName::from_static("x-nimbus-route");
/// For a `/...` route, the part of the path the wildcard matched.
pub const HEADER_PATH_INFO: HeaderName = HeaderName::from_static("x-nimbus-path-info");
/// For a service call, the calling function's id.
pub const HEADER_CALLER: HeaderName = HeaderName::from_static("x-nimbus-caller");
/// The caller's `ip:port`.
pub const HEADER_CLIENT_ADDR: HeaderName = HeaderName::from_static("x-nimbus-client-addr");
/// Followed by a parameter name: that parameter's value, as in the URL.
pub const HEADER_PARAM_PREFIX: &str = "x-nimbus-param-";

/// The W3C trace context header, passed along service calls.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// Longest caller-supplied request id we keep; longer ones are replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// Serves requests for one app.
pub struct HttpTrigger {
    app: LiveApp,
}

/// What the server knows about a connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The caller's address.
    pub client: SocketAddr,
    /// Our address on this connection.
    pub local: SocketAddr,
    /// `client` as the guest's `x-nimbus-client-addr` header, made once per
    /// connection rather than per request.
    client_header: Option<HeaderValue>,
}

impl ConnInfo {
    /// A connection from `client` to our `local` address.
    pub fn new(client: SocketAddr, local: SocketAddr) -> ConnInfo {
        ConnInfo {
            client,
            local,
            client_header: HeaderValue::from_str(&client.to_string()).ok(),
        }
    }
}

impl HttpTrigger {
    /// A trigger serving `app` (an `Arc<App>`, or a [`LiveApp`] that deploys change).
    pub fn new(app: impl Into<LiveApp>) -> HttpTrigger {
        HttpTrigger { app: app.into() }
    }

    /// Handles one request; never fails: errors become error responses.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        conn: &ConnInfo,
    ) -> Response<HyperOutgoingBody> {
        let started = Instant::now();
        // One snapshot of the app for the whole request.
        let app = self.app.current();
        let (request_id, request_id_header) = request_id(req.headers());
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let origin = req.headers().get(ORIGIN).cloned();
        let mut seen = Seen::default();
        let result = self
            .gate(&app, req, conn, &request_id, &path, &mut seen)
            .await;
        let Seen {
            function,
            route,
            cors,
        } = seen;
        let function = function.map(|i| &app.functions[i]);
        let function_id = function.map(|f| f.id.as_str());
        let mut response = match result {
            Ok(response) => response,
            Err(e) => {
                match &e {
                    HttpError::Invocation { function, error } => {
                        log_invocation_error(function, &request_id, error)
                    }
                    HttpError::Internal(detail) => {
                        tracing::error!(request_id = &*request_id, detail, "gateway fault")
                    }
                    rejected if rejected.status().is_client_error() => {
                        if let Some(function) = function_id {
                            crate::telemetry::metrics()
                                .rejections
                                .get_or_create(&crate::telemetry::outcome(
                                    function,
                                    rejected.code(),
                                ))
                                .inc();
                        }
                    }
                    _ => {}
                }
                e.into_response(&request_id)
            }
        };
        if let Some(cors) = cors {
            cors.decorate(origin.as_ref(), response.headers_mut());
        }
        response.headers_mut().insert(REQUEST_ID, request_id_header);
        let status = response.status().as_u16();
        let elapsed = started.elapsed();
        crate::telemetry::metrics()
            .requests
            .get_or_create(&crate::telemetry::RequestLabels::new(
                function.map(|f| &f.id_str),
                route,
                &method,
                status,
            ))
            .inc();
        if let Some(function) = function {
            function.instances.answered(elapsed);
        }
        tracing::info!(
            target: crate::log_format::ACCESS_TARGET,
            %method, path, route = route.map_or("-", |r| &**r), status,
            function = function_id.unwrap_or("-"),
            duration_us = elapsed.as_micros() as u64,
            request_id = &*request_id,
        );
        response
    }

    /// The gateway's checks, in order, then the function. `path` is the
    /// request's, copied out by the caller (the request itself moves on to
    /// the function). `out` collects what is known about the request as it
    /// goes, for the access log and the CORS headers of whatever response
    /// results.
    async fn gate<'a>(
        &self,
        app: &'a Arc<App>,
        req: Request<Incoming>,
        conn: &ConnInfo,
        request_id: &Arc<str>,
        path: &str,
        out: &mut Seen<'a>,
    ) -> Result<Response<HyperOutgoingBody>, HttpError> {
        if let Some(endpoint) = path.strip_prefix(WELL_KNOWN_PREFIX) {
            return self.well_known(app, req.method(), endpoint);
        }
        let gateway = &app.gateway;
        if let Some(preflight) = Preflight::of(req.method(), req.headers())
            && let Match::Found { target, .. } = app.router.route(&preflight.method, path)
            && let Some(cors) = gateway.cors(target.function)
        {
            // Answered here: the function never sees a preflight.
            out.function = Some(target.function);
            out.route = Some(&target.pattern);
            let headers = cors
                .preflight(&preflight, std::slice::from_ref(&preflight.method))
                .map_err(HttpError::CorsRejected)?;
            let mut response = Response::new(full(Bytes::new()));
            *response.status_mut() = StatusCode::NO_CONTENT;
            *response.headers_mut() = headers;
            return Ok(response);
        }
        let routed = route(&app.router, req.method(), path)?;
        let index = routed.target.function;
        out.function = Some(index);
        out.route = Some(&routed.target.pattern);
        out.cors = gateway.cors(index).map(|c| &**c);
        let mut call = CallCtx::new(request_id.clone(), None, index);
        let policy = gateway.policy(index, routed.target.route).ok_or_else(|| {
            // Policies are built for every route the router holds; a miss is
            // a bug, and serving the route unchecked could expose it.
            HttpError::Internal(format!(
                "no gateway policy for route `{}`",
                routed.target.pattern
            ))
        })?;
        let client = conn.client.ip();
        let realm = || gateway.realm().to_owned();
        let reject = |r: Rejection| match r {
            Rejection::Unauthorized(TokenError::KeysUnavailable) => HttpError::AuthUnavailable,
            Rejection::Unauthorized(reason) => HttpError::Unauthorized {
                reason,
                realm: realm(),
            },
            Rejection::Forbidden(missing) => HttpError::Forbidden {
                missing,
                realm: realm(),
                scopes: policy.required_scopes().to_vec(),
            },
            Rejection::RateLimited(limited) => HttpError::TooManyRequests {
                retry_after: limited.retry_after,
            },
        };
        policy
            .limit_before_auth(req.headers(), client)
            .map_err(reject)?;
        call.claims = match policy.authenticate(req.headers()).await {
            Ok(claims) => claims,
            Err(rejected) => {
                // A failed attempt still counts, against the address.
                policy.limit_failed_auth(client).map_err(reject)?;
                return Err(reject(rejected));
            }
        };
        policy
            .limit_subject(call.claims.as_deref(), client)
            .map_err(reject)?;
        invoke_routed(app, index, routed, req, Origin::Client(conn), call).await
    }

    fn well_known(
        &self,
        app: &App,
        method: &http::Method,
        endpoint: &str,
    ) -> Result<Response<HyperOutgoingBody>, HttpError> {
        let gateway = &app.gateway;
        let (body, content_type) = match endpoint {
            "health" => {
                let body = serde_json::json!({
                    "status": "ok",
                    "app": app.name,
                    "functions": app.functions.len(),
                });
                (Bytes::from(format!("{body}\n")), "application/json")
            }
            "openapi.json" => (gateway.openapi().clone(), "application/json"),
            "docs" => (gateway.docs().clone(), "text/html; charset=utf-8"),
            _ => {
                return Err(HttpError::NotFound {
                    method: method.clone(),
                    path: format!("{WELL_KNOWN_PREFIX}{endpoint}"),
                });
            }
        };
        if method != http::Method::GET && method != http::Method::HEAD {
            return Err(HttpError::MethodNotAllowed {
                method: method.clone(),
                allow: vec![http::Method::GET, http::Method::HEAD],
            });
        }
        let mut response = Response::new(full(body));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        Ok(response)
    }
}

/// What the gateway learned about a request, whatever its outcome.
#[derive(Default)]
struct Seen<'a> {
    /// The matched function's index.
    function: Option<usize>,
    /// The matched route's pattern.
    route: Option<&'a Arc<str>>,
    /// The function's CORS rules, applied to the response.
    cors: Option<&'a Cors>,
}

/// Where a request came from.
#[derive(Debug, Clone, Copy)]
pub enum Origin<'a> {
    /// A caller over the network.
    Client(&'a ConnInfo),
    /// Another function of the app, by id.
    Service(&'a str),
}

/// A request matched to a route.
struct Routed<'r, 'p> {
    target: &'r router::Target,
    params: Vec<(&'r str, &'p str)>,
    path_info: Option<String>,
}

/// Routes `path`, turning a miss into the gateway's error.
fn route<'r, 'p>(
    router: &'r router::Router,
    method: &http::Method,
    path: &'p str,
) -> Result<Routed<'r, 'p>, HttpError> {
    match router.route(method, path) {
        Match::Found {
            target,
            params,
            path_info,
        } => Ok(Routed {
            target,
            params,
            path_info,
        }),
        Match::MethodNotAllowed { allow } => Err(HttpError::MethodNotAllowed {
            method: method.clone(),
            allow,
        }),
        Match::NotFound => Err(HttpError::NotFound {
            method: method.clone(),
            path: path.to_owned(),
        }),
    }
}

/// A service call from `caller` to `app.functions[callee]`, in-process: the
/// callee's own routes pick the handler, its limits apply, and any failure
/// becomes the same error response a network caller would get.
pub async fn call_service(
    app: &Arc<App>,
    callee: usize,
    request: Request<wasmtime_wasi_http::WasiBody>,
    caller: &FunctionId,
    call: CallCtx,
) -> Response<HyperOutgoingBody> {
    let function = &app.functions[callee];
    let path = request.uri().path().to_owned();
    let result = match route(&function.routes, request.method(), &path) {
        Ok(routed) => {
            let origin = Origin::Service(caller.as_str());
            invoke_routed(app, callee, routed, request, origin, call.clone()).await
        }
        Err(e) => Err(e),
    };
    let mut response = match result {
        Ok(response) => response,
        Err(e) => {
            if let HttpError::Invocation { function, error } = &e {
                log_invocation_error(function, &call.request_id, error);
            }
            e.into_response(&call.request_id)
        }
    };
    if let Ok(v) = HeaderValue::from_str(&call.request_id) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    response
}

/// Runs a routed request through `app.functions[index]`: the guest's
/// `x-nimbus-*` headers, the body cap, then the executor.
async fn invoke_routed<B>(
    app: &Arc<App>,
    index: usize,
    routed: Routed<'_, '_>,
    req: Request<B>,
    origin: Origin<'_>,
    call: CallCtx,
) -> Result<Response<HyperOutgoingBody>, HttpError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let function = &app.functions[index];
    let max_body = function.limits.max_body;

    // Build the guest's header set: the caller's, minus anything that
    // pretends to come from Nimbus, plus what Nimbus knows.
    let Routed {
        target,
        params,
        path_info,
    } = routed;
    let mut guest_headers = HeaderMap::with_capacity(req.headers().len() + 4 + params.len());
    for (name, value) in req.headers() {
        if !name.as_str().starts_with(NIMBUS_HEADER_PREFIX) {
            guest_headers.append(name.clone(), value.clone());
        }
    }
    let bad =
        |what: &str| HttpError::BadRequest(format!("{what} cannot be passed to the function"));
    guest_headers.insert(
        HEADER_FUNCTION,
        function
            .id_header
            .clone()
            .ok_or_else(|| bad("function id"))?,
    );
    guest_headers.insert(
        HEADER_ROUTE,
        target.pattern_header.clone().ok_or_else(|| bad("route"))?,
    );
    match origin {
        Origin::Client(conn) => {
            guest_headers.insert(
                HEADER_CLIENT_ADDR,
                conn.client_header
                    .clone()
                    .ok_or_else(|| bad("client address"))?,
            );
            if req.uri().authority().is_none() && !guest_headers.contains_key(HOST) {
                // HTTP/1.0 callers may omit Host; wasi:http needs an authority.
                if let Ok(v) = HeaderValue::from_str(&conn.local.to_string()) {
                    guest_headers.insert(HOST, v);
                }
            }
        }
        Origin::Service(caller) => {
            guest_headers.insert(
                HEADER_CALLER,
                HeaderValue::from_str(caller).map_err(|_| bad("caller"))?,
            );
        }
    }
    for (name, value) in &params {
        let header = HeaderName::try_from(format!("{HEADER_PARAM_PREFIX}{name}"))
            .map_err(|_| bad("parameter name"))?;
        let value = HeaderValue::from_str(value).map_err(|_| bad("path parameter"))?;
        guest_headers.insert(header, value);
    }
    if let Some(info) = path_info {
        guest_headers.insert(
            HEADER_PATH_INFO,
            HeaderValue::from_str(&info).map_err(|_| bad("path"))?,
        );
    }
    if let Ok(v) = HeaderValue::from_str(&call.request_id) {
        guest_headers.insert(REQUEST_ID, v);
    }
    if let Some(claims) = &call.claims {
        crate::gateway::insert_claim_headers(&mut guest_headers, claims);
    }
    // The invocation is a span of the caller's trace, or starts one; the
    // guest sees its own span, and service calls it makes are its children.
    let incoming_trace = req.headers().get(TRACEPARENT).and_then(|v| v.to_str().ok());
    let traceparent = crate::telemetry::trace::child_of(incoming_trace);
    guest_headers.insert(TRACEPARENT, traceparent.clone());
    let mut call = call;
    call.traceparent = Some(traceparent);

    let declared_len = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared_len.is_some_and(|n| n > max_body) {
        return Err(HttpError::PayloadTooLarge { limit: max_body });
    }

    let (mut parts, body) = req.into_parts();
    parts.headers = guest_headers;
    let invocation_error = |error| HttpError::Invocation {
        function: function.id.to_string(),
        error,
    };
    if declared_len.is_some() {
        // The declared length was checked; the cap still guards the stream.
        let body = Limited::new(body, max_body as usize)
            .map_err(move |_| wasmtime_wasi_http::Error::HttpRequestBodySize(Some(max_body)));
        executor::invoke_http(app, index, Request::from_parts(parts, body), call)
            .await
            .map_err(invocation_error)
    } else {
        // No declared length (chunked): read up to the cap first, so an
        // oversized body is a clean 413 before any guest code runs.
        let body = match Limited::new(body, max_body as usize).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(HttpError::PayloadTooLarge { limit: max_body });
            }
            Err(e) => return Err(HttpError::BadRequest(format!("reading the body: {e}"))),
        };
        let body = http_body_util::Full::new(body)
            .map_err(|never| -> wasmtime_wasi_http::Error { match never {} });
        executor::invoke_http(app, index, Request::from_parts(parts, body), call)
            .await
            .map_err(invocation_error)
    }
}

/// Failures of the guest are the operator's business: they go to the log with
/// the details the caller does not see. Overload is expected under load and
/// would flood the log, so it is logged at debug level.
fn log_invocation_error(function: &str, request_id: &str, error: &executor::InvocationError) {
    use executor::InvocationError as E;
    crate::telemetry::metrics()
        .failures
        .get_or_create(&crate::telemetry::outcome(function, error.kind()))
        .inc();
    match error {
        E::Overloaded { .. } | E::PoolExhausted => {
            tracing::debug!(function, request_id, %error, "request rejected")
        }
        E::Trap { detail, .. } => {
            tracing::warn!(function, request_id, %error, detail, "invocation failed")
        }
        _ => tracing::warn!(function, request_id, %error, "invocation failed"),
    }
}

/// The caller's `x-request-id` if it is short printable ASCII, else a new
/// UUID: as text for logs, and as the header for the response.
fn request_id(headers: &HeaderMap) -> (Arc<str>, HeaderValue) {
    let given = headers.get(REQUEST_ID).and_then(|v| {
        let text = v.to_str().ok()?;
        let valid = !text.is_empty()
            && text.len() <= MAX_REQUEST_ID_LEN
            && text.bytes().all(|b| b.is_ascii_graphic());
        valid.then(|| (Arc::from(text), v.clone()))
    });
    given.unwrap_or_else(|| {
        let mut buf = uuid::Uuid::encode_buffer();
        let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
        let header = HeaderValue::from_str(text).expect("a UUID is a valid header value");
        (Arc::from(&*text), header)
    })
}
