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
use crate::manifest::{FunctionId, format_bytes};
use crate::state::HostState;
use bytes::Bytes;
use http_body::Body;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use wasmtime::{PoolConcurrencyLimitError, Store, Trap};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::Proxy;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// How long an idle reused instance is kept: the default of `wasmtime serve
/// --idle-instance-timeout`. Long enough to bridge the gaps of steady
/// traffic; short enough that the pool slots of a function gone quiet return
/// to the others soon.
pub const REUSE_IDLE_TIMEOUT: Duration = Duration::from_secs(1);

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

/// What the executor keeps for one function, prepared when the app loads so
/// that an invocation finds it ready: its metric handles (no label lookup
/// per request) and, with `instance_reuse`, its idle instances.
pub struct Instances {
    in_flight: Gauge,
    instantiate_seconds: Histogram,
    request_seconds: Histogram,
    reuse: Option<Arc<ReusePool>>,
}

impl Instances {
    /// The instances of `function`: reused up to `reuse` times each when set
    /// (at most `concurrency` of them kept idle), else fresh per request.
    pub fn new(function: &FunctionId, reuse: Option<NonZeroU32>, concurrency: u32) -> Instances {
        let metrics = crate::telemetry::metrics();
        let label = crate::telemetry::function(function.as_str());
        Instances {
            in_flight: metrics.in_flight.get_or_create(&label).clone(),
            instantiate_seconds: metrics.instantiate_seconds.get_or_create(&label).clone(),
            request_seconds: metrics.request_seconds.get_or_create(&label).clone(),
            reuse: reuse.map(|max_requests| {
                Arc::new(ReusePool {
                    max_requests: max_requests.get(),
                    capacity: concurrency as usize,
                    idle: Mutex::new(Vec::new()),
                    sweeping: AtomicBool::new(false),
                })
            }),
        }
    }

    /// Instances waiting idle for their next request (0 without reuse).
    pub fn idle(&self) -> usize {
        self.reuse.as_ref().map_or(0, |pool| pool.lock().len())
    }

    /// Counts an HTTP request answered after `elapsed`, in the function's
    /// latency histogram.
    pub fn answered(&self, elapsed: Duration) {
        self.request_seconds.observe(elapsed.as_secs_f64());
    }

    fn instantiated(&self, started: Instant) {
        self.instantiate_seconds
            .observe(started.elapsed().as_secs_f64());
    }
}

/// The idle instances of a function with `instance_reuse`: most recently used
/// first, each dropped after `max_requests` requests or
/// [`REUSE_IDLE_TIMEOUT`] without one. Only an instance whose guest returned
/// normally, with a response, comes back here; one that trapped, timed out or
/// hit its memory cap is dropped with its store.
struct ReusePool {
    max_requests: u32,
    /// At most this many idle: the function's concurrency, which is also the
    /// most that can ever be busy, so the pool never holds more instances
    /// than a burst at the limit needed.
    capacity: usize,
    /// Held only to push or pop.
    idle: Mutex<Vec<IdleInstance>>,
    sweeping: AtomicBool,
}

/// An instance between requests.
struct IdleInstance {
    store: Store<HostState>,
    proxy: Proxy,
    /// The version it is an instance of: after a deploy or rollback, an idle
    /// instance of another version is dropped, never reused.
    version: Arc<crate::app::Version>,
    /// Requests it has served.
    served: u32,
    since: Instant,
}

impl ReusePool {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<IdleInstance>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An idle instance of `version`; idle ones of other versions met on
    /// the way are dropped (outside the lock).
    fn take(&self, version: &Arc<crate::app::Version>) -> Option<IdleInstance> {
        let mut stale = Vec::new();
        let found = {
            let mut idle = self.lock();
            loop {
                match idle.pop() {
                    Some(instance) if Arc::ptr_eq(&instance.version, version) => {
                        break Some(instance);
                    }
                    Some(instance) => stale.push(instance),
                    None => break None,
                }
            }
        };
        drop(stale);
        found
    }

    /// Keeps `instance` for another request if it has requests left and
    /// there is room; drops it otherwise (outside the lock: dropping a store
    /// resets its memory).
    fn put(self: &Arc<Self>, mut instance: IdleInstance) {
        if instance.served >= self.max_requests {
            return;
        }
        self.start_sweeper();
        instance.store.data_mut().end_request();
        instance.since = Instant::now();
        let mut idle = self.lock();
        if idle.len() < self.capacity {
            idle.push(instance);
        } else {
            drop(idle);
            drop(instance);
        }
    }

    /// Removes the instances idle for longer than [`REUSE_IDLE_TIMEOUT`].
    fn expire(&self) -> Vec<IdleInstance> {
        let now = Instant::now();
        let mut idle = self.lock();
        // Oldest first: everything before the first young one has expired.
        let young = idle
            .iter()
            .position(|i| now.duration_since(i.since) < REUSE_IDLE_TIMEOUT)
            .unwrap_or(idle.len());
        idle.drain(..young).collect()
    }

    /// Starts, once, the task that drops expired idle instances even when no
    /// request comes; it ends when the pool (that is, the app) is dropped.
    fn start_sweeper(self: &Arc<Self>) {
        if self.sweeping.swap(true, Ordering::Relaxed) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.sweeping.store(false, Ordering::Relaxed);
            return;
        };
        let pool = Arc::downgrade(self);
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(REUSE_IDLE_TIMEOUT);
            loop {
                tick.tick().await;
                let Some(pool) = pool.upgrade() else { break };
                drop(pool.expire());
            }
        });
    }
}

/// Counts an instance as running while it lives.
struct InFlight(Gauge);

impl InFlight {
    fn new(gauge: &Gauge) -> InFlight {
        gauge.inc();
        InFlight(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
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
    let _in_flight = InFlight::new(&function.instances.in_flight);
    let run = async {
        let message = store.data_mut().push_message(message)?;
        let started = Instant::now();
        let handler = pre.instantiate_async(&mut store).await?;
        function.instances.instantiated(started);
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
    /// The W3C `traceparent` this invocation runs under, passed on to the
    /// service calls it makes.
    pub traceparent: Option<http::HeaderValue>,
    /// Indices of the functions in the call chain, outermost first, this one last.
    pub chain: Arc<[usize]>,
    /// The outside caller's claims, verified by the gateway; service calls
    /// pass them on.
    pub claims: Option<Arc<crate::gateway::Claims>>,
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
            traceparent: traceparent.and_then(|t| http::HeaderValue::from_str(t).ok()),
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

/// Runs `request` through an instance of `app.functions[index]`: a fresh one,
/// or with `instance_reuse` an idle one when there is one.
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
    let Some(version) = function.version() else {
        return Err(InvocationError::NoHttpHandler);
    };
    let Some(pre) = version.http.clone() else {
        return Err(InvocationError::NoHttpHandler);
    };
    let permit = acquire_slot(function).await?;
    let pool = function.instances.reuse.as_ref();
    let (mut store, reused) = match pool.and_then(|pool| pool.take(&version)) {
        Some(idle) => {
            let mut store = idle.store;
            store.data_mut().begin_request(app, index, call);
            store.set_epoch_deadline(1);
            (store, Some((idle.proxy, idle.served)))
        }
        None => (new_store(app, index, call), None),
    };

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

    let app = app.clone();
    let task = Box::pin(async move {
        let function = &app.functions[index];
        // The permit lives as long as the instance: a guest still streaming
        // its body after the response head went out still holds its slot.
        let _permit: OwnedSemaphorePermit = permit;
        let _in_flight = InFlight::new(&function.instances.in_flight);
        let timeout = function.limits.timeout;
        let run = async {
            let (proxy, served) = match reused {
                Some(reused) => reused,
                None => {
                    let started = Instant::now();
                    let proxy = pre.instantiate_async(&mut store).await?;
                    function.instances.instantiated(started);
                    (proxy, 0)
                }
            };
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, req, out)
                .await?;
            wasmtime::Result::Ok((proxy, served + 1))
        };
        let result = match tokio::time::timeout(timeout, run).await {
            Ok(Ok((proxy, served))) => {
                // Only a guest that finished normally, answered, and stayed
                // under its memory cap gets another request.
                if let Some(pool) = &function.instances.reuse
                    && responded.load(Ordering::Acquire)
                    && !store.data().limiter.exceeded()
                {
                    pool.put(IdleInstance {
                        store,
                        proxy,
                        version,
                        served,
                        since: Instant::now(),
                    });
                }
                Ok(())
            }
            Ok(Err(e)) => Err(classify(e, &store.data().limiter)),
            Err(_) => Err(InvocationError::Timeout { limit: timeout }),
        };
        if let Err(e) = &result
            && responded.load(Ordering::Acquire)
        {
            tracing::warn!(function = %function.id, error = %e, "function failed after sending its response head");
        }
        result
    });

    // The guest runs here, in the caller's task, until it answers. Only a
    // guest still busy after it handed over its response head (streaming a
    // body, or waiting on I/O) moves on to a task of its own, so a request
    // whose guest answers at once costs no spawn and no hand-off between tasks.
    let mut guest = Detach(Some(task));
    let mut receiver = receiver;
    let answer = tokio::select! {
        biased;
        result = guest.running() => {
            // The guest is done: its answer, if it gave one, is waiting.
            guest.0 = None;
            match receiver.try_recv() {
                Ok(answer) => answer,
                Err(_) => return result.and(Err(InvocationError::NoResponse)),
            }
        }
        // The guest answered and is still running: dropping `guest` below
        // detaches it; its task writes the rest of the body and ends the
        // instance. A closed channel means the guest ended without answering.
        answer = &mut receiver => match answer {
            Ok(answer) => answer,
            Err(_) => {
                let result = match guest.0.take() {
                    Some(rest) => rest.await,
                    None => Ok(()),
                };
                return result.and(Err(InvocationError::NoResponse));
            }
        },
    };
    drop(guest);
    answer.map_err(InvocationError::GuestError)
}

/// The rest of a running invocation.
type GuestFuture = Pin<Box<dyn Future<Output = Result<(), InvocationError>> + Send>>;

/// An invocation being run in its caller's task. Dropped before it
/// finished (the guest answered and streams on, or the caller went away), it
/// goes on in a task of its own, as if it had been spawned from the start: a
/// guest is only ever stopped by its limits.
struct Detach(Option<GuestFuture>);

impl Detach {
    async fn running(&mut self) -> Result<(), InvocationError> {
        self.0.as_mut().expect("polled only while running").await
    }
}

impl Drop for Detach {
    fn drop(&mut self) {
        if let Some(guest) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(guest);
        }
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
