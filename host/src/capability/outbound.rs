//! Outbound HTTP from guests (`wasi:http/outgoing-handler`).
//!
//! - `http://<function-id>.internal/...` is a service call: dispatched
//!   in-process to that function through its own routes and limits, if the
//!   caller lists it in `services`. The request id propagates; a cycle or a
//!   chain deeper than [`MAX_CALL_DEPTH`] is refused with `LoopDetected`.
//! - Anything else goes out over the network only if it matches one of the
//!   function's `allowed_outbound_hosts`, with the function's
//!   `outbound_timeout` as a cap on each phase of the request.
//! - Everything else gets the standard `HttpRequestDenied` error code.

use crate::app::App;
use crate::executor::CallCtx;
use http::HeaderValue;
use std::sync::Arc;
use std::time::Duration;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// The host suffix that marks a service call.
pub const SERVICE_SUFFIX: &str = ".internal";

/// The longest chain of service calls (caller included): deep enough for
/// gateway -> service -> service -> store patterns, shallow enough to stop a
/// runaway recursion long before it exhausts the instance pool.
pub const MAX_CALL_DEPTH: usize = 8;

/// A boxed future of the kind `WasiHttpHooks::send_request` returns.
type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

/// Per-invocation outbound policy: who is calling, within which request.
pub struct OutboundCtx {
    /// `None` while a reused instance waits idle between invocations.
    app: Option<Arc<App>>,
    function: usize,
    call: CallCtx,
}

impl OutboundCtx {
    /// The policy of `app.functions[function]` during `call`.
    pub fn new(app: Arc<App>, function: usize, call: CallCtx) -> OutboundCtx {
        OutboundCtx {
            app: Some(app),
            function,
            call,
        }
    }

    /// Drops the app, for an instance that waits idle until its next
    /// invocation (which brings a new policy): the app owns the idle pool.
    pub fn release(&mut self) {
        self.app = None;
    }

    fn deny(&self, app: &App, uri: &http::Uri, why: &str) -> SendFuture {
        tracing::info!(
            function = %app.functions[self.function].id,
            request_id = &*self.call.request_id,
            %uri,
            "outbound request denied: {why}"
        );
        Box::new(async { Err(HttpError::HttpRequestDenied) })
    }

    fn service_call(
        &self,
        app: &Arc<App>,
        service: &str,
        mut request: http::Request<WasiBody>,
    ) -> SendFuture {
        let caller = &app.functions[self.function];
        let Some(callee) = caller
            .services
            .iter()
            .copied()
            .find(|&i| app.functions[i].id.as_str() == service)
        else {
            return self.deny(
                app,
                request.uri(),
                &format!("`{service}` is not in this function's `services`"),
            );
        };
        if self.call.chain.contains(&callee) || self.call.chain.len() >= MAX_CALL_DEPTH {
            let chain: Vec<&str> = self
                .call
                .chain
                .iter()
                .map(|&i| app.functions[i].id.as_str())
                .collect();
            tracing::warn!(
                request_id = &*self.call.request_id,
                chain = chain.join(" -> "),
                callee = service,
                "service call refused: a cycle or a chain deeper than {MAX_CALL_DEPTH}"
            );
            return Box::new(async { Err(HttpError::LoopDetected) });
        }
        let headers = request.headers_mut();
        if let Ok(id) = HeaderValue::from_str(&self.call.request_id) {
            headers.insert(crate::trigger::http::REQUEST_ID, id);
        }
        if let Some(tp) = &self.call.traceparent
            && !headers.contains_key(crate::trigger::http::TRACEPARENT)
        {
            headers.insert(crate::trigger::http::TRACEPARENT, tp.clone());
        }
        let app = app.clone();
        let call = self.call.calling(callee);
        let caller = caller.id.clone();
        Box::new(async move {
            let response =
                crate::trigger::http::call_service(&app, callee, request, &caller, call).await;
            let done: Box<dyn Future<Output = Result<(), HttpError>> + Send> =
                Box::new(async { Ok(()) });
            Ok((response, done))
        })
    }
}

impl WasiHttpHooks for OutboundCtx {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        // Only an idle instance has no app, and an idle instance runs no code.
        let Some(app) = self.app.clone() else {
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        };
        let uri = request.uri().clone();
        let Some(host) = uri.host() else {
            return Box::new(async { Err(HttpError::HttpRequestUriInvalid) });
        };
        if let Some(service) = host.strip_suffix(SERVICE_SUFFIX) {
            let service = service.to_owned();
            return self.service_call(&app, &service, request);
        }
        let scheme = uri.scheme_str().unwrap_or("https");
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "http" { 80 } else { 443 });
        let function = &app.functions[self.function];
        if !function
            .outbound
            .iter()
            .any(|p| p.allows(scheme, host, port))
        {
            return self.deny(&app, &uri, "no `allowed_outbound_hosts` entry matches");
        }
        let options = cap_timeouts(options, function.limits.outbound_timeout);
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) =
                wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
            let io: Box<dyn Future<Output = Result<(), HttpError>> + Send> = Box::new(io);
            Ok((response.map(BodyExt::boxed_unsync), io))
        })
    }
}

/// The guest's own timeouts, none longer than the function's limit.
fn cap_timeouts(options: Option<RequestOptions>, limit: Duration) -> RequestOptions {
    let cap = |t: Option<Duration>| Some(t.map_or(limit, |t| t.min(limit)));
    let o = options.unwrap_or_default();
    RequestOptions {
        connect_timeout: cap(o.connect_timeout),
        first_byte_timeout: cap(o.first_byte_timeout),
        between_bytes_timeout: cap(o.between_bytes_timeout),
    }
}
