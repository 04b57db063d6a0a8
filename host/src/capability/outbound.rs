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
//!
//! The in-process dispatch of a service call is the HTTP trigger's work
//! (routing, headers, limits); this capability reaches it through the
//! [`Services`] trait object, which the trigger implements.

use crate::call::{CallCtx, SharedCalls};
use crate::manifest::HostPattern;
use crate::wire::{REQUEST_ID, TRACEPARENT};
use http::HeaderValue;
use std::borrow::Cow;
use std::pin::Pin;
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

/// The other functions of the app, as a guest's service calls reach them.
/// Implemented by the HTTP trigger.
pub trait Services: Send + Sync + 'static {
    /// Runs `request` in-process as a call from function `caller` to function
    /// `callee` during `call`: the callee's own routes pick the handler, its
    /// limits apply, and a failure is the error response a network caller
    /// would get.
    fn call(
        self: Arc<Self>,
        callee: usize,
        request: http::Request<WasiBody>,
        caller: Arc<str>,
        call: CallCtx,
    ) -> Pin<Box<dyn Future<Output = http::Response<WasiBody>> + Send>>;

    /// The id of function `index`, for log lines.
    fn function_id(&self, index: usize) -> Option<Arc<str>>;
}

/// What one function may reach, prepared when it loads.
#[derive(Debug)]
pub struct OutboundPolicy {
    /// The function's id.
    pub function: Arc<str>,
    /// The functions it may call, by id, with their indices in the app.
    pub services: Box<[(Arc<str>, usize)]>,
    /// Hosts it may reach over the network.
    pub hosts: Arc<[HostPattern]>,
    /// Cap on each phase of an outbound request.
    pub timeout: Duration,
}

/// Per-invocation outbound state: who is calling, within which request.
pub struct OutboundCtx {
    policy: Arc<OutboundPolicy>,
    /// `None` while a reused instance waits idle between invocations.
    services: Option<Arc<dyn Services>>,
    call: CallCtx,
    /// In an instance that runs several requests at once, those in flight:
    /// a call is made on behalf of the one it names (`x-request-id`), or of
    /// the only one.
    shared: Option<Arc<SharedCalls>>,
}

impl OutboundCtx {
    /// The outbound state of a function with `policy` during `call`.
    pub fn new(
        policy: Arc<OutboundPolicy>,
        services: Arc<dyn Services>,
        call: CallCtx,
    ) -> OutboundCtx {
        OutboundCtx {
            policy,
            services: Some(services),
            call,
            shared: None,
        }
    }

    /// Makes this the outbound state of an instance that runs the requests
    /// in `shared` at once.
    pub fn share(&mut self, shared: Arc<SharedCalls>) {
        self.shared = Some(shared);
    }

    /// The invocation an outbound request is made for: in a shared instance
    /// the one it names or the only one in flight, or else a request of its
    /// own (a new request id, the function alone in its chain).
    fn call_for(&self, request: &http::Request<WasiBody>) -> Cow<'_, CallCtx> {
        let Some(shared) = &self.shared else {
            return Cow::Borrowed(&self.call);
        };
        let named = request
            .headers()
            .get(REQUEST_ID)
            .and_then(|id| id.to_str().ok());
        Cow::Owned(shared.find(named).unwrap_or_else(|| {
            CallCtx::new(uuid::Uuid::new_v4().to_string(), None, self.call.function())
        }))
    }

    /// The `traceparent` of the invocation running now.
    pub fn traceparent(&self) -> Option<&HeaderValue> {
        self.call.traceparent.as_ref()
    }

    /// Starts the next invocation of a reused instance.
    pub fn begin(&mut self, services: Arc<dyn Services>, call: CallCtx) {
        self.services = Some(services);
        self.call = call;
    }

    /// Drops the services handle, for an instance that waits idle until its
    /// next invocation (which brings a new one): it reaches the app, which
    /// owns the executor's idle instances.
    pub fn release(&mut self) {
        self.services = None;
    }

    fn deny(&self, call: &CallCtx, uri: &http::Uri, why: &str) -> SendFuture {
        tracing::info!(
            function = &*self.policy.function,
            request_id = &*call.request_id,
            %uri,
            "outbound request denied: {why}"
        );
        Box::new(async { Err(HttpError::HttpRequestDenied) })
    }

    fn service_call(
        &self,
        call: &CallCtx,
        services: Arc<dyn Services>,
        service: &str,
        mut request: http::Request<WasiBody>,
    ) -> SendFuture {
        let Some(callee) = self
            .policy
            .services
            .iter()
            .find(|(id, _)| &**id == service)
            .map(|(_, index)| *index)
        else {
            return self.deny(
                call,
                request.uri(),
                &format!("`{service}` is not in this function's `services`"),
            );
        };
        if call.chain.contains(&callee) || call.chain.len() >= MAX_CALL_DEPTH {
            let chain: Vec<Arc<str>> = call
                .chain
                .iter()
                .filter_map(|&i| services.function_id(i))
                .collect();
            tracing::warn!(
                request_id = &*call.request_id,
                chain = chain.join(" -> "),
                callee = service,
                "service call refused: a cycle or a chain deeper than {MAX_CALL_DEPTH}"
            );
            return Box::new(async { Err(HttpError::LoopDetected) });
        }
        let headers = request.headers_mut();
        if let Ok(id) = HeaderValue::from_str(&call.request_id) {
            headers.insert(REQUEST_ID, id);
        }
        if let Some(tp) = &call.traceparent
            && !headers.contains_key(TRACEPARENT)
        {
            headers.insert(TRACEPARENT, tp.clone());
        }
        let call = call.calling(callee);
        let response = services.call(callee, request, self.policy.function.clone(), call);
        Box::new(async move {
            let done: Box<dyn Future<Output = Result<(), HttpError>> + Send> =
                Box::new(async { Ok(()) });
            Ok((response.await, done))
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
        // Only an idle instance has no services, and an idle instance runs no code.
        let Some(services) = self.services.clone() else {
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        };
        let uri = request.uri().clone();
        let Some(host) = uri.host() else {
            return Box::new(async { Err(HttpError::HttpRequestUriInvalid) });
        };
        let call = self.call_for(&request);
        if let Some(service) = host.strip_suffix(SERVICE_SUFFIX) {
            let service = service.to_owned();
            return self.service_call(&call, services, &service, request);
        }
        let scheme = uri.scheme_str().unwrap_or("https");
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "http" { 80 } else { 443 });
        if !self
            .policy
            .hosts
            .iter()
            .any(|p| p.allows(scheme, host, port))
        {
            return self.deny(&call, &uri, "no `allowed_outbound_hosts` entry matches");
        }
        let options = cap_timeouts(options, self.policy.timeout);
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
