//! What one invocation belongs to: the request it serves and the chain of
//! service calls that led to it. Made by a trigger, carried by the store's
//! capabilities (logs, service calls), never seen by the guest directly.

use crate::gateway::Claims;
use crate::telemetry::otlp::SpanNotes;
use http::HeaderValue;
use std::sync::Arc;

/// The context of one invocation.
#[derive(Debug, Clone)]
pub struct CallCtx {
    /// The request id, shared by every call the request causes.
    pub request_id: Arc<str>,
    /// The W3C `traceparent` this invocation runs under, passed on to the
    /// service calls it makes.
    pub traceparent: Option<HeaderValue>,
    /// Indices of the functions in the call chain, outermost first, this one last.
    pub chain: Arc<[usize]>,
    /// The outside caller's claims, verified by the gateway; service calls
    /// pass them on.
    pub claims: Option<Arc<Claims>>,
    /// Where the invocation's span notes its version and the guest's log
    /// records, when traces are exported; each invocation has its own.
    pub span: Option<Arc<SpanNotes>>,
}

impl CallCtx {
    /// The context of a request from outside that `function` serves.
    pub fn new(
        request_id: impl Into<Arc<str>>,
        traceparent: Option<&str>,
        function: usize,
    ) -> CallCtx {
        CallCtx {
            request_id: request_id.into(),
            traceparent: traceparent.and_then(|t| HeaderValue::from_str(t).ok()),
            chain: Arc::new([function]),
            claims: None,
            span: None,
        }
    }

    /// The context of a service call from this invocation to `callee`.
    pub fn calling(&self, callee: usize) -> CallCtx {
        let mut chain = self.chain.to_vec();
        chain.push(callee);
        CallCtx {
            request_id: self.request_id.clone(),
            traceparent: self.traceparent.clone(),
            chain: chain.into(),
            claims: self.claims.clone(),
            span: None,
        }
    }

    /// The function this invocation runs.
    pub fn function(&self) -> usize {
        *self
            .chain
            .last()
            .expect("a chain holds at least the callee")
    }
}

/// The requests one shared instance is running at once (instance reuse
/// with `concurrent` above 1). What the guest does on their behalf (a log
/// line, a service call) carries no mark of which request it belongs to,
/// so it is matched to one: by the `x-request-id` a service call carries,
/// or to the one request in flight.
#[derive(Debug, Default)]
pub struct SharedCalls(std::sync::Mutex<Vec<CallCtx>>);

impl SharedCalls {
    fn calls(&self) -> std::sync::MutexGuard<'_, Vec<CallCtx>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A request starts in the instance.
    pub fn start(&self, call: CallCtx) {
        self.calls().push(call);
    }

    /// The request `request_id` has ended (answered, failed or expired).
    pub fn end(&self, request_id: &str) {
        let mut calls = self.calls();
        if let Some(i) = calls.iter().position(|c| &*c.request_id == request_id) {
            calls.swap_remove(i);
        }
    }

    /// The request in flight with id `request_id`, else the only request in
    /// flight, else none.
    pub fn find(&self, request_id: Option<&str>) -> Option<CallCtx> {
        let calls = self.calls();
        let named = request_id.and_then(|id| calls.iter().find(|c| &*c.request_id == id));
        match (named, calls.as_slice()) {
            (Some(call), _) => Some(call.clone()),
            (None, [only]) => Some(only.clone()),
            (None, _) => None,
        }
    }

    /// The request id the instance's output is tagged with: that of the one
    /// request in flight, or `-` while there are several (or none).
    pub fn log_id(&self) -> Arc<str> {
        match self.calls().as_slice() {
            [only] => only.request_id.clone(),
            _ => Arc::from("-"),
        }
    }
}
