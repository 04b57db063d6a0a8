//! One invocation of an HTTP function: a fresh [`Store`] and instance, the
//! function's limits applied, and every failure classified once, here.
//!
//! Limits and how each is enforced:
//! - concurrency: a per-function semaphore, waited on for at most
//!   `queue_timeout`;
//! - wall-clock time: the guest yields at every epoch tick, and a tokio
//!   timeout around the task that owns the store drops the store (and so the
//!   instance) when time is up;
//! - memory: [`crate::state::MemoryLimiter`] refuses grows past the cap;
//! - pool slots: the pooling allocator refuses an instance past its size.

use crate::app::{App, Function};
use crate::manifest::format_bytes;
use crate::state::HostState;
use bytes::Bytes;
use http_body::Body;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use wasmtime::{PoolConcurrencyLimitError, Store, Trap};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

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
    /// The guest set an error instead of a response.
    #[error("responded with an error: {0:?}")]
    GuestError(ErrorCode),
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

/// Counts an instance as running while it lives.
struct InFlight(prometheus_client::metrics::gauge::Gauge);

impl InFlight {
    fn new(function: &str) -> InFlight {
        let gauge = crate::telemetry::metrics()
            .in_flight
            .get_or_create(&crate::telemetry::function(function))
            .clone();
        gauge.inc();
        InFlight(gauge)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn instantiated(function: &str, started: std::time::Instant) {
    crate::telemetry::metrics()
        .instantiate_seconds
        .get_or_create(&crate::telemetry::function(function))
        .observe(started.elapsed().as_secs_f64());
}

/// A fresh store for one invocation, with the function's limits applied.
fn new_store(app: &Arc<App>, index: usize, call: CallCtx) -> Store<HostState> {
    let mut store = Store::new(app.runtime().engine(), HostState::new(app, index, call));
    store.limiter(|state| &mut state.limiter);
    // Yield at every epoch tick, so the tokio timeout around the invocation
    // can stop a guest that never returns.
    store.set_epoch_deadline(1);
    store.epoch_deadline_async_yield_and_update(1);
    store
}

/// Runs one queue delivery through a fresh instance of `app.functions[index]`.
/// Concurrency is the queue trigger's business; the time and memory limits
/// are the function's.
pub async fn invoke_queue(
    app: &Arc<App>,
    index: usize,
    delivery: &crate::backend::Delivery,
    call: CallCtx,
) -> Result<(), InvocationError> {
    let function = &app.functions[index];
    let Some(pre) = function.version().and_then(|v| v.queue.clone()) else {
        return Err(InvocationError::Failed(
            "the function has no queue trigger".into(),
        ));
    };
    let mut store = new_store(app, index, call);
    let timeout = function.limits.timeout;
    let message = crate::capability::messaging::Message::delivered(delivery);
    let _in_flight = InFlight::new(function.id.as_str());
    let run = async {
        let message = store.data_mut().push_message(message)?;
        let started = std::time::Instant::now();
        let handler = pre.instantiate_async(&mut store).await?;
        instantiated(function.id.as_str(), started);
        handler
            .wasi_messaging_incoming_handler()
            .call_handle(&mut store, message)
            .await
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(e))) => Err(InvocationError::Rejected(messaging_error_text(&e))),
        Ok(Err(e)) => Err(classify(e, &store.data().limiter)),
        Err(_) => Err(InvocationError::Timeout { limit: timeout }),
    }
}

fn messaging_error_text(e: &crate::capability::bindings::wasi::messaging::types::Error) -> String {
    use crate::capability::bindings::wasi::messaging::types::Error as E;
    match e {
        E::Timeout => "timeout".into(),
        E::Connection(m) => format!("connection: {m}"),
        E::PermissionDenied(m) => format!("permission denied: {m}"),
        E::Other(m) => m.clone(),
    }
}

/// What an invocation belongs to: the request it serves and the chain of
/// service calls that led to it.
#[derive(Debug, Clone)]
pub struct CallCtx {
    /// The request id, shared by every call the request causes.
    pub request_id: Arc<str>,
    /// The W3C `traceparent` of the incoming request, if it had one.
    pub traceparent: Option<Arc<str>>,
    /// Indices of the functions in the call chain, outermost first, this one last.
    pub chain: Arc<[usize]>,
    /// The outside caller's claims, verified by the gateway; service calls
    /// pass them on.
    pub claims: Option<Arc<crate::gateway::Claims>>,
}

impl CallCtx {
    /// The context of a request from outside that `function` serves.
    pub fn new(request_id: &str, traceparent: Option<&str>, function: usize) -> CallCtx {
        CallCtx {
            request_id: request_id.into(),
            traceparent: traceparent.map(Into::into),
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
}

/// Runs `request` through a fresh instance of `app.functions[index]`.
pub async fn invoke_http<B>(
    app: &Arc<App>,
    index: usize,
    request: hyper::Request<B>,
    call: CallCtx,
) -> Result<hyper::Response<HyperOutgoingBody>, InvocationError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let function = &app.functions[index];
    // The version (canary or stable) is chosen once; the clone keeps its
    // component alive for this invocation even if a deploy replaces it.
    let Some(pre) = function.version().and_then(|v| v.http.clone()) else {
        return Err(InvocationError::NoHttpHandler);
    };
    let permit = acquire_slot(function).await?;
    let mut store = new_store(app, index, call);

    let (sender, receiver) = oneshot::channel();
    // Set when the guest hands over its response head; a failure after that
    // cannot change the status, so the task logs it itself.
    let responded = Arc::new(AtomicBool::new(false));
    let on_response = {
        let responded = responded.clone();
        move |response| {
            responded.store(true, Ordering::Release);
            let _ = sender.send(response);
        }
    };
    let mut http = store.data_mut().http();
    let (req, out) = http
        .new_incoming_request(Scheme::Http, request)
        .and_then(|req| Ok((req, http.new_response_outparam_from_callback(on_response)?)))
        .map_err(|e| InvocationError::Failed(format!("{e:#}")))?;

    let timeout = function.limits.timeout;
    let id = function.id.clone();
    let task = tokio::spawn(async move {
        // The permit lives as long as the instance: a guest still streaming
        // its body after the response head went out still holds its slot.
        let _permit: OwnedSemaphorePermit = permit;
        let _in_flight = InFlight::new(id.as_str());
        let run = async {
            let started = std::time::Instant::now();
            let proxy = pre.instantiate_async(&mut store).await?;
            instantiated(id.as_str(), started);
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, req, out)
                .await
        };
        let result = match tokio::time::timeout(timeout, run).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(classify(e, &store.data().limiter)),
            Err(_) => Err(InvocationError::Timeout { limit: timeout }),
        };
        if let Err(e) = &result
            && responded.load(Ordering::Acquire)
        {
            tracing::warn!(function = %id, error = %e, "function failed after sending its response head");
        }
        result
    });

    match receiver.await {
        // The task runs on, detached, while the guest writes the body.
        Ok(Ok(response)) => Ok(response),
        Ok(Err(code)) => Err(InvocationError::GuestError(code)),
        Err(_) => match task.await {
            Ok(Ok(())) => Err(InvocationError::NoResponse),
            Ok(Err(e)) => Err(e),
            Err(join) => Err(InvocationError::Failed(join.to_string())),
        },
    }
}

async fn acquire_slot(function: &Function) -> Result<OwnedSemaphorePermit, InvocationError> {
    if let Ok(permit) = function.slots.clone().try_acquire_owned() {
        return Ok(permit);
    }
    let wait = function.limits.queue_timeout;
    match tokio::time::timeout(wait, function.slots.clone().acquire_owned()).await {
        Ok(Ok(permit)) => Ok(permit),
        // The semaphore is never closed; treat it as busy if it ever is.
        _ => Err(InvocationError::Overloaded {
            concurrency: function.limits.concurrency,
            waited: wait,
        }),
    }
}

fn classify(e: wasmtime::Error, limiter: &crate::state::MemoryLimiter) -> InvocationError {
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
