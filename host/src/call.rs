//! What one invocation belongs to: the request it serves and the chain of
//! service calls that led to it. Made by a trigger, carried by the store's
//! capabilities (logs, service calls), never seen by the guest directly.

use crate::gateway::Claims;
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
