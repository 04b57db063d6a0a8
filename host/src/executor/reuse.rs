//! Opt-in instance reuse of WASI 0.2 functions (`instance_reuse = N`): a
//! function's idle instances between requests.

use crate::app::Version;
use crate::state::HostState;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::Proxy;

/// The idle instances of a function with `instance_reuse`: most recently used
/// first, each dropped after `max_requests` requests or `idle` without one. Only an instance whose guest returned
/// normally, with a response, comes back here; one that trapped, timed out or
/// hit its memory cap is dropped with its store.
pub(super) struct ReusePool {
    max_requests: u32,
    idle_timeout: Duration,
    /// At most this many idle: the function's concurrency, which is also the
    /// most that can ever be busy, so the pool never holds more instances
    /// than a burst at the limit needed.
    capacity: usize,
    /// Held only to push or pop.
    idle: Mutex<Vec<IdleInstance>>,
    sweeping: AtomicBool,
}

/// An instance between requests.
pub(super) struct IdleInstance {
    pub(super) store: Store<HostState>,
    pub(super) proxy: Proxy,
    /// The version it is an instance of: after a deploy or rollback, an idle
    /// instance of another version is dropped, never reused.
    pub(super) version: Arc<Version>,
    /// Requests it has served.
    pub(super) served: u32,
    pub(super) since: Instant,
}

impl ReusePool {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Vec<IdleInstance>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An idle instance of `version`; idle ones of other versions met on
    /// the way are dropped (outside the lock).
    pub(super) fn take(&self, version: &Arc<Version>) -> Option<IdleInstance> {
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
    pub(super) fn put(self: &Arc<Self>, mut instance: IdleInstance) {
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

    /// Removes the instances idle for longer than the idle timeout.
    fn expire(&self) -> Vec<IdleInstance> {
        let now = Instant::now();
        let mut idle = self.lock();
        // Oldest first: everything before the first young one has expired.
        let young = idle
            .iter()
            .position(|i| now.duration_since(i.since) < self.idle_timeout)
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
        let every = self.idle_timeout;
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let Some(pool) = pool.upgrade() else { break };
                drop(pool.expire());
            }
        });
    }
}

impl ReusePool {
    /// A pool of up to `capacity` idle instances, each serving up to
    /// `max_requests` requests and kept for `idle_timeout` between them.
    pub(super) fn new(max_requests: u32, capacity: usize, idle_timeout: Duration) -> ReusePool {
        ReusePool {
            max_requests,
            idle_timeout,
            capacity,
            idle: Mutex::new(Vec::new()),
            sweeping: AtomicBool::new(false),
        }
    }
}
