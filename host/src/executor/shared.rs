//! Instance reuse of WASI 0.3 functions: instances that each run up to
//! `concurrent` requests at once and `requests` in all, idle instances kept
//! for `idle`. The worker loop is wasmtime-wasi-http's `ProxyHandler`, the
//! one `wasmtime serve` runs; this module gives it Nimbus's stores, limits
//! and failure classes:
//! - each request keeps the function's `limits.timeout` (a request past it
//!   gets its 504 and the instance takes no more requests; the others in it
//!   run on); an instance still busy past the timeout of its most recent
//!   request is dropped, which is also what stops a guest that never yields;
//! - a trap or a memory-limit hit ends the instance: every request in flight
//!   in it fails with that cause, and it is never used again;
//! - log lines and service calls are matched to their request through
//!   [`SharedCalls`].

use super::{InFlight, InvocationError, new_store};
use crate::app::{Function, Version};
use crate::call::{CallCtx, SharedCalls};
use crate::capability::logging::LogCtx;
use crate::capability::outbound::Services;
use crate::engine::Runtime;
use crate::manifest::Reuse;
use crate::state::HostState;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use wasmtime::component::GuestTaskId;
use wasmtime::{Store, StoreContextMut};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::handler::{
    ExpirationError, HandlerState, Instance, InstantiationError, Proxy, ProxyHandler, ShouldAccept,
    TrapOrPanicError, WorkerExpiration, WorkerState, WorkerStatus,
};
use wasmtime_wasi_http::p3::bindings::ServicePre;
use wasmtime_wasi_http::p3::bindings::http::types::ErrorCode;

/// The shared instances of one version of a function.
pub(super) struct SharedPool {
    handler: ProxyHandler<Workers>,
}

impl SharedPool {
    pub(super) fn new(
        runtime: Runtime,
        index: usize,
        function: Arc<Function>,
        version: Arc<Version>,
        pre: ServicePre<HostState>,
        reuse: Reuse,
        services: Arc<dyn Services>,
    ) -> SharedPool {
        SharedPool {
            handler: ProxyHandler::new(Workers {
                runtime,
                index,
                function,
                version,
                pre,
                reuse,
                services: Arc::downgrade(&services),
            }),
        }
    }

    /// The version the pool's instances are of: after a deploy, the pool of
    /// the old version lets its instances finish and a new pool starts.
    pub(super) fn version(&self) -> &Arc<Version> {
        &self.handler.state().version
    }

    /// Runs `request` in one of the pool's instances, a new one if none
    /// can take it.
    pub(super) async fn handle(
        &self,
        request: wasmtime_wasi_http::handler::Request,
        call: CallCtx,
    ) -> Result<wasmtime_wasi_http::handler::Response, InvocationError> {
        let timeout = self.handler.state().function.limits.timeout;
        let ended = Arc::new(OnceLock::new());
        let data = RequestData {
            call,
            ended: ended.clone(),
        };
        match self.handler.handle(data, request).await {
            Ok(response) => Ok(response),
            Err(e) if e.is::<ExpirationError>() => Err(InvocationError::Timeout { limit: timeout }),
            Err(e) if e.is::<TrapOrPanicError>() => Err(match ended.get() {
                Some(end) => end.wait().await,
                None => InvocationError::Failed("its instance ended before taking it".into()),
            }),
            Err(e) => Err(match e.downcast::<InstantiationError<RequestData>>() {
                Ok(failed) if failed.error.is::<wasmtime::PoolConcurrencyLimitError>() => {
                    InvocationError::PoolExhausted
                }
                Ok(failed) => InvocationError::Failed(format!("{:#}", failed.error)),
                Err(e) => match e.downcast::<ErrorCode>() {
                    Ok(code) => InvocationError::GuestError(code.into()),
                    Err(e) => InvocationError::Failed(format!("{e:#}")),
                },
            }),
        }
    }
}

/// What the handler knows of each request it is given.
struct RequestData {
    call: CallCtx,
    /// The end of the instance that took it, set when it starts there.
    ended: Arc<OnceLock<Arc<InstanceEnd>>>,
}

/// How an instance ended, for the requests that were in flight in it.
#[derive(Default)]
struct InstanceEnd {
    cause: OnceLock<Cause>,
    notify: Notify,
}

/// Why an instance ended under its requests.
#[derive(Debug, Clone)]
enum Cause {
    Trap {
        trap: wasmtime::Trap,
        detail: String,
    },
    MemoryExceeded {
        limit: u64,
    },
    Timeout {
        limit: Duration,
    },
    Failed(String),
}

impl InstanceEnd {
    fn set(&self, cause: Cause) {
        let _ = self.cause.set(cause);
        self.notify.notify_waiters();
    }

    /// The cause, once the instance's store has been dropped; a request
    /// learns its instance failed a moment before the cause is known.
    async fn wait(&self) -> InvocationError {
        let cause = loop {
            let notified = self.notify.notified();
            if let Some(cause) = self.cause.get() {
                break cause.clone();
            }
            if tokio::time::timeout(Duration::from_secs(5), notified)
                .await
                .is_err()
            {
                break Cause::Failed("its instance ended".into());
            }
        };
        match cause {
            Cause::Trap { trap, detail } => InvocationError::Trap { trap, detail },
            Cause::MemoryExceeded { limit } => InvocationError::MemoryExceeded { limit },
            Cause::Timeout { limit } => InvocationError::Timeout { limit },
            Cause::Failed(message) => InvocationError::Failed(message),
        }
    }
}

/// Makes the pool's instances.
struct Workers {
    runtime: Runtime,
    /// The function's index in the app, for the call chain.
    index: usize,
    function: Arc<Function>,
    version: Arc<Version>,
    pre: ServicePre<HostState>,
    reuse: Reuse,
    /// The trigger, for the guests' service calls. Weak: the trigger owns
    /// the executor, which owns this pool; only a running instance's store
    /// holds it strongly, until the instance ends.
    services: Weak<dyn Services>,
}

impl HandlerState for Workers {
    type StoreData = HostState;
    type WorkerExpiration = Expiry;
    type WorkerState = Worker;

    async fn instantiate(&self) -> wasmtime::Result<Instance<HostState, Expiry, Worker>> {
        let function = &self.function;
        // Each request's own context comes with it; until the first one,
        // the instance belongs to none.
        let placeholder = CallCtx::new("-", None, self.index);
        let services = self
            .services
            .upgrade()
            .ok_or_else(|| wasmtime::format_err!("the node is shutting down"))?;
        let mut store = new_store(
            &self.runtime,
            &self.version,
            &function.grants,
            placeholder,
            services,
        )
        .map_err(|e| wasmtime::format_err!("{e}"))?;
        let (calls, log) = store.data_mut().share();
        let in_flight = InFlight::new(&function.metrics.in_flight);
        let started = Instant::now();
        let service = self.pre.instantiate_async(&mut store).await?;
        function.metrics.instantiated(started);
        let timed_out = Arc::new(AtomicBool::new(false));
        let timeout = function.limits.timeout;
        Ok(Instance {
            store,
            proxy: Proxy::P3(service),
            view: <HostState as WasiHttpView>::http,
            expiration: Expiry {
                timeout,
                idle: self.reuse.idle,
                timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
                timed_out: timed_out.clone(),
            },
            state: Worker {
                function: function.id_str.clone(),
                metrics: function.metrics.clone(),
                reuse: self.reuse,
                timeout,
                calls,
                log,
                end: Arc::new(InstanceEnd::default()),
                timed_out,
                _in_flight: in_flight,
            },
        })
    }
}

/// One instance's state as its worker sees it.
struct Worker {
    function: Arc<str>,
    metrics: crate::telemetry::FunctionMetrics,
    reuse: Reuse,
    timeout: Duration,
    calls: Arc<SharedCalls>,
    log: LogCtx,
    end: Arc<InstanceEnd>,
    /// Set when [`Expiry`] ended the instance for running past a timeout.
    timed_out: Arc<AtomicBool>,
    /// The instance counts as running (`nimbus_instances_in_flight`) while
    /// it lives, idle or busy.
    _in_flight: InFlight,
}

impl WorkerState for Worker {
    type StoreData = HostState;
    type RequestData = RequestData;

    fn should_accept_request(&self, in_flight: usize, served: usize) -> ShouldAccept {
        if served >= self.reuse.requests.get() as usize {
            ShouldAccept::Never
        } else if in_flight >= self.reuse.concurrent.get() as usize {
            ShouldAccept::No
        } else {
            ShouldAccept::Yes
        }
    }

    fn on_request_start(
        &self,
        _store: StoreContextMut<'_, HostState>,
        data: RequestData,
        _task: GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync>> {
        let _ = data.ended.set(self.end.clone());
        let request_id = data.call.request_id.clone();
        self.calls.start(data.call);
        self.log.set_request_id(self.calls.log_id());
        // Dropped when the request is answered or expires: the request
        // leaves the instance's set.
        let leaving = Leaving {
            calls: self.calls.clone(),
            log: self.log.clone(),
            request_id,
        };
        let timeout = self.timeout;
        Box::pin(async move {
            let _leaving = leaving;
            tokio::time::sleep(timeout).await;
        })
    }

    fn drop(&self, store: Store<HostState>, result: wasmtime::Result<()>) {
        self.metrics.ran(None, store.data().limiter.peak());
        let Err(e) = result else { return };
        let cause = if self.timed_out.load(Ordering::Acquire) {
            Cause::Timeout {
                limit: self.timeout,
            }
        } else {
            match super::classify(e, &store.data().limiter) {
                InvocationError::Trap { trap, detail } => Cause::Trap { trap, detail },
                InvocationError::MemoryExceeded { limit } => Cause::MemoryExceeded { limit },
                other => Cause::Failed(other.to_string()),
            }
        };
        tracing::warn!(
            function = &*self.function,
            cause = ?cause,
            "a shared instance ended; the requests in flight in it fail"
        );
        // Drop the store (and the instance) before the waiting requests
        // answer, so a retry never finds it.
        drop(store);
        self.end.set(cause);
    }
}

/// A request leaving its instance's set of requests in flight.
struct Leaving {
    calls: Arc<SharedCalls>,
    log: LogCtx,
    request_id: Arc<str>,
}

impl Drop for Leaving {
    fn drop(&mut self) {
        self.calls.end(&self.request_id);
        self.log.set_request_id(self.calls.log_id());
    }
}

/// When an instance is done: idle past `idle`, or busy past `timeout` since
/// its most recent request started (every request in it has expired by
/// then). Polled outside the store's event loop, so it also stops a guest
/// that never yields to it.
struct Expiry {
    timeout: Duration,
    idle: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    timed_out: Arc<AtomicBool>,
}

impl WorkerExpiration for Expiry {
    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        status: WorkerStatus,
        start: Instant,
    ) -> Poll<()> {
        let limit = match status {
            WorkerStatus::Idle => self.idle,
            WorkerStatus::Requests | WorkerStatus::PostReturn => self.timeout,
        };
        let deadline = tokio::time::Instant::from_std(start + limit);
        // Called on every turn of the worker's loop, while the deadline moves
        // with each request: the timer is moved only when the deadline came
        // closer, and a timer that fires before the deadline is moved on.
        if deadline < self.timer.deadline() {
            self.timer.as_mut().reset(deadline);
        }
        loop {
            match self.timer.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) if tokio::time::Instant::now() < deadline => {
                    self.timer.as_mut().reset(deadline);
                }
                Poll::Ready(()) => {
                    if status != WorkerStatus::Idle {
                        self.timed_out.store(true, Ordering::Release);
                    }
                    return Poll::Ready(());
                }
            }
        }
    }
}
