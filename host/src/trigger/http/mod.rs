//! The HTTP trigger: from a hyper request to a function's response.
//!
//! The pipeline, per request: a request id; the [`gate`] (built-in
//! endpoints, CORS preflights, routing, rate limits, authentication); then
//! [`dispatch`] into the function (the guest's headers, the body cap, the
//! executor); then CORS and `x-request-id` on the response, the metrics and
//! one access-log line. Every failure becomes an [`HttpError`] response.
//!
//! The trigger also carries the app's service calls ([`Services`]): a call
//! to `http://<id>.internal/` re-enters [`dispatch`] in-process.

mod dispatch;
pub mod error;
mod gate;
mod server;

pub use dispatch::Origin;
pub use error::HttpError;
pub use server::{DEFAULT_GRACE, DEFAULT_MAX_CONNECTIONS, ServeOptions, serve, serve_with};

use crate::app::LiveApp;
use crate::call::CallCtx;
use crate::capability::outbound::Services;
use crate::executor::{Executor, InvocationError};
use crate::wire::{Body, REQUEST_ID};
use gate::{Gated, Seen};
use http::header::ORIGIN;
use http::{HeaderMap, HeaderValue, Request, Response};
use hyper::body::Incoming;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;
use wasmtime_wasi_http::WasiBody;

/// Prefix of the built-in endpoints; routes may not use it.
pub const WELL_KNOWN_PREFIX: &str = "/.well-known/nimbus/";

/// Longest caller-supplied request id we keep; longer ones are replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// Serves requests for one app.
pub struct HttpTrigger {
    app: LiveApp,
    executor: Arc<Executor>,
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
    pub(crate) client_header: Option<HeaderValue>,
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
    /// A trigger serving `app` (an `Arc<App>`, or a [`LiveApp`] that deploys
    /// change), running its functions on `executor`.
    pub fn new(app: impl Into<LiveApp>, executor: Arc<Executor>) -> HttpTrigger {
        HttpTrigger {
            app: app.into(),
            executor,
        }
    }

    /// Handles one request; never fails: errors become error responses.
    pub async fn handle(
        self: &Arc<Self>,
        req: Request<Incoming>,
        conn: &ConnInfo,
    ) -> Response<Body> {
        let started = Instant::now();
        // One snapshot of the app for the whole request.
        let app = self.app.current();
        let (request_id, request_id_header) = request_id(req.headers());
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let origin = req.headers().get(ORIGIN).cloned();
        let mut seen = Seen::default();
        let result = match gate::check(&app, &req, conn, &request_id, &path, &mut seen).await {
            Ok(Gated::Answered(response)) => Ok(response),
            Ok(Gated::Pass { routed, call }) => {
                let index = routed.target.function;
                dispatch::invoke(self, &app, index, routed, req, Origin::Client(conn), call).await
            }
            Err(e) => Err(e),
        };
        let Seen {
            function,
            route,
            cors,
        } = seen;
        let function = function.map(|i| &app.functions[i]);
        let function_id = function.map(|f| f.id.as_str());
        let mut response = match result {
            Ok(response) => response,
            Err(e) => refusal(e, &request_id, function_id),
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
            function.metrics.answered(elapsed, status);
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
}

impl Services for HttpTrigger {
    fn call(
        self: Arc<Self>,
        callee: usize,
        request: Request<WasiBody>,
        caller: Arc<str>,
        call: CallCtx,
    ) -> Pin<Box<dyn Future<Output = Response<WasiBody>> + Send>> {
        Box::pin(async move { self.call_service(callee, request, &caller, call).await })
    }

    fn function_id(&self, index: usize) -> Option<Arc<str>> {
        self.app
            .current()
            .functions
            .get(index)
            .map(|f| f.id_str.clone())
    }
}

impl HttpTrigger {
    /// A service call from `caller` to function `callee`, in-process: the
    /// callee's own routes pick the handler, its limits apply, and any
    /// failure becomes the same error response a network caller would get.
    async fn call_service(
        self: &Arc<Self>,
        callee: usize,
        request: Request<WasiBody>,
        caller: &str,
        call: CallCtx,
    ) -> Response<Body> {
        let app = self.app.current();
        let function = &app.functions[callee];
        let path = request.uri().path().to_owned();
        let request_id = call.request_id.clone();
        let result = match gate::route(&function.routes, request.method(), &path) {
            Ok(routed) => {
                let origin = Origin::Service(caller);
                dispatch::invoke(self, &app, callee, routed, request, origin, call).await
            }
            Err(e) => Err(e),
        };
        let mut response = match result {
            Ok(response) => response,
            Err(e) => {
                if let HttpError::Invocation { function, error } = &e {
                    log_invocation_error(function, &request_id, error);
                }
                e.into_response(&request_id)
            }
        };
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert(REQUEST_ID, v);
        }
        response
    }
}

/// The response for a request that ended in `e`, after logging or
/// counting it: guest failures and gateway faults go to the log, refusals
/// of a matched function to its rejection counter.
fn refusal(e: HttpError, request_id: &str, function: Option<&str>) -> Response<Body> {
    match &e {
        HttpError::Invocation { function, error } => {
            log_invocation_error(function, request_id, error)
        }
        HttpError::Internal(detail) => {
            tracing::error!(request_id, detail, "gateway fault")
        }
        rejected if rejected.status().is_client_error() => {
            if let Some(function) = function {
                crate::telemetry::metrics()
                    .rejections
                    .get_or_create(&crate::telemetry::outcome(function, rejected.code()))
                    .inc();
            }
        }
        _ => {}
    }
    e.into_response(request_id)
}

/// Failures of the guest are the operator's business: they go to the log with
/// the details the caller does not see. Overload is expected under load and
/// would flood the log, so it is logged at debug level.
fn log_invocation_error(function: &str, request_id: &str, error: &InvocationError) {
    use InvocationError as E;
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
