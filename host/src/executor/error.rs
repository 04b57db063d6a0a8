//! Every way an invocation can fail, classified once, here.

use crate::manifest::format_bytes;
use crate::state::MemoryLimiter;
use std::time::Duration;
use wasmtime::{PoolConcurrencyLimitError, Trap};

/// Why an invocation produced no response of the guest's own.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InvocationError {
    /// Every instance slot of the function stayed busy for `queue_timeout`.
    #[error("all {concurrency} instances are busy (waited {waited:?})")]
    Overloaded {
        /// The function's concurrency limit.
        concurrency: u32,
        /// How long the request waited.
        waited: Duration,
    },
    /// The pooling allocator has no free instance slot.
    #[error("the instance pool is full")]
    PoolExhausted,
    /// The guest ran past its wall-clock limit and was stopped.
    #[error("timed out after {limit:?}")]
    Timeout {
        /// The function's timeout.
        limit: Duration,
    },
    /// The guest tried to grow memory past its cap and then failed.
    #[error("exceeded its memory limit of {}", format_bytes(*limit))]
    MemoryExceeded {
        /// The cap in bytes.
        limit: u64,
    },
    /// The guest trapped (a panic is an `unreachable` trap).
    #[error("trapped: {trap}")]
    Trap {
        /// The trap code.
        trap: Trap,
        /// The error chain with the guest backtrace, for the host log.
        detail: String,
    },
    /// The guest returned without setting a response.
    #[error("returned without sending a response")]
    NoResponse,
    /// The guest set an error code instead of a response.
    #[error("responded with an error: {0:?}")]
    GuestError(wasmtime_wasi_http::Error),
    /// A queue handler returned an error.
    #[error("returned an error: {0}")]
    Rejected(String),
    /// The function exports no HTTP handler (it only consumes a queue).
    #[error("has no HTTP handler")]
    NoHttpHandler,
    /// Anything else that went wrong running the guest.
    #[error("failed: {0}")]
    Failed(String),
}

impl InvocationError {
    /// A stable snake_case name for the failure, used in error bodies and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            InvocationError::Overloaded { .. } => "overloaded",
            InvocationError::PoolExhausted => "pool_exhausted",
            InvocationError::Timeout { .. } => "timeout",
            InvocationError::MemoryExceeded { .. } => "memory_limit_exceeded",
            InvocationError::Trap { .. } => "function_trapped",
            InvocationError::NoResponse => "no_response",
            InvocationError::GuestError(_) | InvocationError::Rejected(_) => "function_error",
            InvocationError::NoHttpHandler => "not_found",
            InvocationError::Failed(_) => "function_failed",
        }
    }
}

/// What a failed run of the guest was: the pool, the memory cap, a trap,
/// or something else.
pub(super) fn classify(e: wasmtime::Error, limiter: &MemoryLimiter) -> InvocationError {
    if e.is::<PoolConcurrencyLimitError>() {
        return InvocationError::PoolExhausted;
    }
    if limiter.exceeded() {
        return InvocationError::MemoryExceeded {
            limit: limiter.limit(),
        };
    }
    match e.downcast_ref::<Trap>() {
        Some(trap) => InvocationError::Trap {
            trap: *trap,
            detail: format!("{e:?}"),
        },
        None => InvocationError::Failed(format!("{e:#}")),
    }
}
