//! One invocation of a function: a fresh [`Store`] and instance (or, opted
//! in, a reused one), the function's limits applied, and every failure
//! classified once ([`error`]).
//!
//! Limits and how each is enforced:
//! - concurrency: a per-function semaphore, waited on for at most
//!   `queue_timeout`;
//! - wall-clock time: the guest yields at every epoch tick, and a tokio
//!   timeout around the task that owns the store drops the store (and so the
//!   instance) when time is up;
//! - memory: [`crate::state::MemoryLimiter`] refuses grows past the cap;
//! - pool slots: the pooling allocator refuses an instance past its size.
//!
//! The [`Executor`] owns what outlives one invocation: the idle instances of
//! functions with `instance_reuse` ([`reuse`]).

mod error;
mod reuse;
mod shared;

pub use error::InvocationError;

use crate::app::{App, Function, HttpPre, Version};
use crate::call::CallCtx;
use crate::capability::outbound::Services;
use crate::engine::Runtime;
use crate::state::{Grants, HostState};
use crate::wire::Body;
use bytes::Bytes;
use error::classify;
use http_body::Body as HttpBody;
use http_body_util::BodyExt;
use prometheus_client::metrics::gauge::Gauge;
use reuse::{IdleInstance, ReusePool};
use shared::SharedPool;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use wasmtime::Store;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::Proxy;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p3::bindings::ServicePre;

/// What the guest answers: a response head with its streaming body, or the
/// `wasi:http` error code it reported instead.
type Answer = Result<hyper::Response<Body>, wasmtime_wasi_http::Error>;

/// Runs invocations of one app's functions, and keeps the idle instances of
/// those with `instance_reuse`.
#[derive(Default)]
pub struct Executor {
    /// By function index (indices are stable: functions are only ever
    /// added), the idle instances of a function with `instance_reuse`.
    pools: RwLock<Vec<Option<Arc<ReusePool>>>>,
    /// By function index, the shared instances of a WASI 0.3 function with
    /// `instance_reuse`: a pool per version serving (two during a canary).
    shared: RwLock<Vec<Vec<Arc<SharedPool>>>>,
}

impl Executor {
    /// An executor with no idle instances yet.
    pub fn new() -> Executor {
        Executor::default()
    }

    /// Instances of `app.functions[index]` waiting idle for their next
    /// request (0 without reuse).
    pub fn idle(&self, index: usize) -> usize {
        let pools = self.pools.read().unwrap_or_else(PoisonError::into_inner);
        match pools.get(index) {
            Some(Some(pool)) => pool.lock().len(),
            _ => 0,
        }
    }

    /// The idle instances of `app.functions[index]`, made on first use;
    /// `None` for a function without `instance_reuse`.
    fn pool(&self, app: &App, index: usize) -> Option<Arc<ReusePool>> {
        let function = &app.functions[index];
        let reuse = function.spec.instance_reuse?;
        {
            let pools = self.pools.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(Some(pool)) = pools.get(index) {
                return Some(pool.clone());
            }
        }
        let mut pools = self.pools.write().unwrap_or_else(PoisonError::into_inner);
        if pools.len() <= index {
            pools.resize(index + 1, None);
        }
        let pool = pools[index].get_or_insert_with(|| {
            // At most the function's concurrency idle: also the most that
            // can ever be busy, so the pool never holds more instances than
            // a burst at the limit needed.
            Arc::new(ReusePool::new(
                reuse.requests.get(),
                function.limits.concurrency as usize,
                reuse.idle,
            ))
        });
        Some(pool.clone())
    }

    /// The shared-instance pool of `version` of `app.functions[index]`, made
    /// on first use; the pools of versions no longer serving are let go
    /// (their instances finish what they took).
    fn shared_pool(
        &self,
        app: &App,
        index: usize,
        version: &Arc<Version>,
        pre: ServicePre<HostState>,
        reuse: crate::manifest::Reuse,
        services: &Arc<dyn Services>,
    ) -> Arc<SharedPool> {
        let find = |pools: &[Arc<SharedPool>]| {
            pools
                .iter()
                .find(|pool| Arc::ptr_eq(pool.version(), version))
                .cloned()
        };
        {
            let pools = self.shared.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(pool) = pools.get(index).and_then(|pools| find(pools)) {
                return pool;
            }
        }
        let mut pools = self.shared.write().unwrap_or_else(PoisonError::into_inner);
        if pools.len() <= index {
            pools.resize_with(index + 1, Vec::new);
        }
        if let Some(pool) = find(&pools[index]) {
            return pool;
        }
        let function = &app.functions[index];
        let serving = function.traffic();
        pools[index].retain(|pool| {
            serving.as_ref().is_some_and(|traffic| {
                Arc::ptr_eq(&traffic.stable, pool.version())
                    || traffic
                        .canary
                        .as_ref()
                        .is_some_and(|canary| Arc::ptr_eq(&canary.version, pool.version()))
            })
        });
        let pool = Arc::new(SharedPool::new(
            app.runtime().clone(),
            index,
            function.clone(),
            version.clone(),
            pre,
            reuse,
            services.clone(),
        ));
        pools[index].push(pool.clone());
        pool
    }

    /// Runs one queue delivery through a fresh instance of
    /// `app.functions[index]`. Concurrency is the queue trigger's business;
    /// the time and memory limits are the function's.
    pub async fn invoke_queue(
        &self,
        app: &Arc<App>,
        index: usize,
        delivery: &crate::backend::Delivery,
        call: CallCtx,
        services: &Arc<dyn Services>,
    ) -> Result<(), InvocationError> {
        let function = &app.functions[index];
        // The version is chosen once: its handler and its engine go together.
        let version = function.version();
        let Some((version, pre)) = version.and_then(|v| v.queue.clone().map(|pre| (v, pre))) else {
            return Err(InvocationError::Failed(
                "the function has no queue trigger".into(),
            ));
        };
        if let Some(span) = &call.span {
            span.version(&version.digest);
        }
        let mut store = new_store(
            app.runtime(),
            &version,
            &function.grants,
            call,
            services.clone(),
        )?;
        let timeout = function.limits.timeout;
        let message = crate::capability::messaging::Message::delivered(delivery);
        let _in_flight = InFlight::new(&function.metrics.in_flight);
        let mut clock = Clock::start();
        let run = async {
            let message = store.data_mut().push_message(message)?;
            let started = Instant::now();
            let handler = pre.instantiate_async(&mut store).await?;
            clock.instantiating = function.metrics.instantiated(started);
            handler
                .wasi_messaging_incoming_handler()
                .call_handle(&mut store, message)
                .await
        };
        let result = tokio::time::timeout(timeout, run).await;
        clock.stop(function, &store);
        match result {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(InvocationError::Rejected(messaging_error_text(&e))),
            Ok(Err(e)) => Err(classify(e, &store.data().limiter)),
            Err(_) => Err(InvocationError::Timeout { limit: timeout }),
        }
    }

    /// Runs `request` through an instance of `app.functions[index]`: a fresh
    /// one, or with `instance_reuse` an idle one when there is one. The
    /// guest's service calls go through `services`.
    pub async fn invoke_http<B>(
        &self,
        app: &Arc<App>,
        index: usize,
        request: hyper::Request<B>,
        call: CallCtx,
        services: &Arc<dyn Services>,
    ) -> Result<hyper::Response<Body>, InvocationError>
    where
        B: HttpBody<Data = Bytes> + Send + 'static,
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
        if let Some(span) = &call.span {
            span.version(&version.digest);
        }
        let permit = acquire_slot(function).await?;
        if let (HttpPre::P3(pre), Some(reuse)) = (&pre, function.spec.instance_reuse) {
            let pool = self.shared_pool(app, index, &version, pre.clone(), reuse, services);
            let request =
                with_authority(request).map(|body| body.map_err(Into::into).boxed_unsync());
            let response = pool.handle(request, call).await?;
            // The request holds its concurrency slot until its body ends.
            return Ok(response.map(|body| {
                Holding {
                    body,
                    _permit: permit,
                }
                .boxed_unsync()
            }));
        }
        let (sender, receiver) = oneshot::channel();
        let responded = Arc::new(AtomicBool::new(false));
        let pool = match pre {
            HttpPre::P2(_) => self.pool(app, index),
            HttpPre::P3(_) => None,
        };
        let idle = pool.as_ref().and_then(|pool| pool.take(&version));
        let (mut store, reused) = match idle {
            Some(idle) => {
                let mut store = idle.store;
                store.data_mut().begin_request(call, services.clone());
                store.set_epoch_deadline(1);
                (store, Some((idle.proxy, idle.served)))
            }
            None => {
                let grants = &function.grants;
                let store = new_store(app.runtime(), &version, grants, call, services.clone())?;
                (store, None)
            }
        };
        let guest = Guest {
            app: app.clone(),
            index,
            version,
            pool,
            permit,
            responded: responded.clone(),
        };
        let task: GuestFuture = match pre {
            HttpPre::P2(pre) => {
                let (req, out) = incoming(&mut store, request, sender, responded)?;
                Box::pin(guest.run(store, pre, reused, req, out))
            }
            HttpPre::P3(pre) => Box::pin(guest.run_p3(store, pre, request, sender)),
        };
        answer(task, receiver).await
    }
}

/// When an invocation began and how long its instantiation took: the
/// guest's own time is the rest.
struct Clock {
    began: Instant,
    instantiating: Duration,
}

impl Clock {
    fn start() -> Clock {
        Clock {
            began: Instant::now(),
            instantiating: Duration::ZERO,
        }
    }

    /// Counts what the invocation of `function` in `store` cost.
    fn stop(&self, function: &Function, store: &Store<HostState>) {
        let guest = self.began.elapsed().saturating_sub(self.instantiating);
        function
            .metrics
            .ran(Some(guest), store.data().limiter.peak());
    }
}

/// A fresh store for one invocation of `version`, on the engine it was
/// compiled for, with the function's limits applied.
fn new_store(
    runtime: &Runtime,
    version: &Version,
    grants: &Grants,
    call: CallCtx,
    services: Arc<dyn Services>,
) -> Result<Store<HostState>, InvocationError> {
    let engine = runtime
        .engine_of(version.engine)
        .map_err(|e| InvocationError::Failed(format!("{e:#}")))?;
    let mut store = Store::new(engine, HostState::new(grants, call, services));
    store.limiter(|state| &mut state.limiter);
    // Yield at every epoch tick, so the tokio timeout around the invocation
    // can stop a guest that never returns.
    store.set_epoch_deadline(1);
    store.epoch_deadline_async_yield_and_update(1);
    Ok(store)
}

/// The guest's request and response out-parameter, in the store's table.
/// `responded` is set when the guest hands over its response head, which
/// goes to `sender`.
fn incoming<B>(
    store: &mut Store<HostState>,
    request: hyper::Request<B>,
    sender: oneshot::Sender<Answer>,
    responded: Arc<AtomicBool>,
) -> Result<(IncomingRequest, ResponseOutparam), InvocationError>
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let on_response = move |response: Result<_, _>| {
        responded.store(true, Ordering::Release);
        let _ = sender.send(response.map_err(Into::into));
    };
    let mut http = store.data_mut().http();
    http.new_incoming_request(Scheme::Http, request)
        .and_then(|req| Ok((req, http.new_response_outparam_from_callback(on_response)?)))
        .map_err(|e| InvocationError::Failed(format!("{e:#}")))
}

type IncomingRequest =
    wasmtime::component::Resource<wasmtime_wasi_http::p2::types::HostIncomingRequest>;
type ResponseOutparam =
    wasmtime::component::Resource<wasmtime_wasi_http::p2::types::HostResponseOutparam>;

/// What an HTTP invocation's guest task holds while it runs.
struct Guest {
    app: Arc<App>,
    index: usize,
    version: Arc<Version>,
    pool: Option<Arc<ReusePool>>,
    /// The permit lives as long as the instance: a guest still streaming its
    /// body after the response head went out still holds its slot.
    permit: OwnedSemaphorePermit,
    /// Set when the guest hands over its response head; a failure after that
    /// cannot change the status, so the task logs it itself.
    responded: Arc<AtomicBool>,
}

impl Guest {
    /// Instantiates (unless reused) and calls the handler under the
    /// function's timeout; a guest that finished well goes back to the pool.
    async fn run(
        self,
        mut store: Store<HostState>,
        pre: wasmtime_wasi_http::p2::bindings::ProxyPre<HostState>,
        reused: Option<(Proxy, u32)>,
        req: IncomingRequest,
        out: ResponseOutparam,
    ) -> Result<(), InvocationError> {
        let function = &self.app.functions[self.index];
        let _permit = &self.permit;
        let _in_flight = InFlight::new(&function.metrics.in_flight);
        let timeout = function.limits.timeout;
        let mut clock = Clock::start();
        let run = async {
            let (proxy, served) = match reused {
                Some(reused) => reused,
                None => {
                    let started = Instant::now();
                    let proxy = pre.instantiate_async(&mut store).await?;
                    clock.instantiating = function.metrics.instantiated(started);
                    (proxy, 0)
                }
            };
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, req, out)
                .await?;
            wasmtime::Result::Ok((proxy, served + 1))
        };
        let result = tokio::time::timeout(timeout, run).await;
        clock.stop(function, &store);
        let result = match result {
            Ok(Ok((proxy, served))) => {
                self.keep(store, proxy, served);
                Ok(())
            }
            Ok(Err(e)) => Err(classify(e, &store.data().limiter)),
            Err(_) => Err(InvocationError::Timeout { limit: timeout }),
        };
        self.finished(result)
    }

    /// The end of a run: a failure after the response head went out can
    /// change no status, so it is logged here.
    fn finished(&self, result: Result<(), InvocationError>) -> Result<(), InvocationError> {
        if let Err(e) = &result
            && self.responded.load(Ordering::Acquire)
        {
            let function = &self.app.functions[self.index];
            tracing::warn!(function = %function.id, error = %e, "function failed after sending its response head");
        }
        result
    }

    /// Instantiates the WASI 0.3 component and calls its handler under the
    /// function's timeout. The store's event loop runs on after the handler
    /// returned its response, until the guest's last task ends: that is what
    /// writes a streamed body.
    async fn run_p3<B>(
        self,
        mut store: Store<HostState>,
        pre: ServicePre<HostState>,
        request: hyper::Request<B>,
        sender: oneshot::Sender<Answer>,
    ) -> Result<(), InvocationError>
    where
        B: HttpBody<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let function = &self.app.functions[self.index];
        let _permit = &self.permit;
        let _in_flight = InFlight::new(&function.metrics.in_flight);
        let timeout = function.limits.timeout;
        let responded = self.responded.clone();
        let mut clock = Clock::start();
        let run = async {
            let started = Instant::now();
            let service = pre.instantiate_async(&mut store).await?;
            clock.instantiating = function.metrics.instantiated(started);
            store
                .run_concurrent(async |accessor| {
                    let (request, io) = accessor.with(|mut access| {
                        let hooks = access.data_mut().http().hooks;
                        let (request, io) = wasmtime_wasi_http::p3::Request::from_http(
                            hooks,
                            with_authority(request),
                        );
                        let io: Pin<Box<dyn Future<Output = _> + Send>> = Box::pin(io);
                        (request, io)
                    });
                    let answer = match service.handle(accessor, request).await? {
                        Ok(response) => {
                            Ok(accessor.with(|mut access| response.into_http(&mut access, io))?)
                        }
                        Err(code) => Err(code.into()),
                    };
                    responded.store(true, Ordering::Release);
                    let _ = sender.send(answer);
                    std::future::poll_fn(|cx| accessor.poll_no_interesting_tasks(cx)).await;
                    wasmtime::Result::Ok(())
                })
                .await?
        };
        let result = tokio::time::timeout(timeout, run).await;
        clock.stop(function, &store);
        let result = match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(classify(e, &store.data().limiter)),
            Err(_) => Err(InvocationError::Timeout { limit: timeout }),
        };
        self.finished(result)
    }

    /// Only a guest that finished normally, answered, and stayed under its
    /// memory cap gets another request.
    fn keep(&self, store: Store<HostState>, proxy: Proxy, served: u32) {
        if let Some(pool) = &self.pool
            && self.responded.load(Ordering::Acquire)
            && !store.data().limiter.exceeded()
        {
            pool.put(IdleInstance {
                store,
                proxy,
                version: self.version.clone(),
                served,
                since: Instant::now(),
            });
        }
    }
}

/// A request as a WASI 0.3 guest sees it: with the scheme and the authority
/// (from `Host`) in its URI, as a WASI 0.2 guest gets them.
fn with_authority<B>(request: hyper::Request<B>) -> hyper::Request<B> {
    if request.uri().authority().is_some() {
        return request;
    }
    let (mut parts, body) = request.into_parts();
    let authority = parts
        .headers
        .get(http::header::HOST)
        .and_then(|host| host.to_str().ok())
        .and_then(|host| host.parse::<http::uri::Authority>().ok());
    if let Some(authority) = authority {
        let mut uri = std::mem::take(&mut parts.uri).into_parts();
        uri.scheme = Some(http::uri::Scheme::HTTP);
        uri.authority = Some(authority);
        if uri.path_and_query.is_none() {
            uri.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        if let Ok(full) = http::Uri::from_parts(uri) {
            parts.uri = full;
        }
    }
    hyper::Request::from_parts(parts, body)
}

/// Runs the guest in the caller's task until it answers. Only a guest still
/// busy after it handed over its response head (streaming a body, or
/// waiting on I/O) moves on to a task of its own, so a request whose guest
/// answers at once costs no spawn and no hand-off between tasks.
async fn answer(
    task: GuestFuture,
    mut receiver: oneshot::Receiver<Answer>,
) -> Result<hyper::Response<Body>, InvocationError> {
    let mut guest = Detach(Some(task));
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

/// A response body that holds the request's concurrency slot until it ends.
struct Holding {
    body: Body,
    _permit: OwnedSemaphorePermit,
}

impl HttpBody for Holding {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Counts an instance as running while it lives.
pub(super) struct InFlight(Gauge);

impl InFlight {
    pub(super) fn new(gauge: &Gauge) -> InFlight {
        gauge.inc();
        InFlight(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
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

fn messaging_error_text(e: &crate::capability::bindings::wasi::messaging::types::Error) -> String {
    use crate::capability::bindings::wasi::messaging::types::Error as E;
    match e {
        E::Timeout => "timeout".into(),
        E::Connection(m) => format!("connection: {m}"),
        E::PermissionDenied(m) => format!("permission denied: {m}"),
        E::Other(m) => m.clone(),
    }
}
