//! The data every [`wasmtime::Store`] carries: one struct that implements the
//! view trait of each capability, plus the per-instance resource limiter.

use crate::call::{CallCtx, SharedCalls};
use crate::capability::config::ConfigCtx;
use crate::capability::kv::{KvCtx, KvView};
use crate::capability::logging::LogCtx;
use crate::capability::messaging::{MessagingCtx, MessagingView};
use crate::capability::outbound::{OutboundCtx, OutboundPolicy, Services};
use crate::capability::postgres::{PostgresCtx, PostgresView};
use crate::capability::sqlite::{SqliteCtx, SqliteView};
use crate::engine::EngineKind;
use std::sync::Arc;
use wasmtime::ResourceLimiter;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Most table elements one instance may have. Tables hold function
/// references; real programs need thousands, a runaway one millions.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// What one function's instances are given, prepared once when it loads:
/// exactly what its manifest entry grants.
pub struct Grants {
    /// The function's id, for its log lines.
    pub function: Arc<str>,
    /// Environment variables for the guest.
    pub env: Arc<[(String, String)]>,
    /// Its key-value stores.
    pub kv: KvCtx,
    /// Its SQLite databases.
    pub sqlite: SqliteCtx,
    /// Its PostgreSQL databases.
    pub postgres: PostgresCtx,
    /// Its configuration.
    pub config: ConfigCtx,
    /// Its publishing grants.
    pub messaging: MessagingCtx,
    /// The hosts and services it may call.
    pub outbound: Arc<OutboundPolicy>,
    /// Its linear memory cap in bytes.
    pub memory: u64,
}

/// Per-instance host state: one invocation's, or with instance reuse, each
/// invocation's in turn ([`HostState::begin_request`]).
pub struct HostState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    outbound: OutboundCtx,
    kv: KvCtx,
    sqlite: SqliteCtx,
    sqlite_open: crate::capability::sqlite::OpenConnections,
    postgres: PostgresCtx,
    postgres_open: crate::capability::postgres::OpenConnections,
    config: ConfigCtx,
    log: LogCtx,
    messaging: MessagingCtx,
    table: ResourceTable,
    /// The memory limiter; read back after a trap to explain it.
    pub limiter: MemoryLimiter,
}

impl HostState {
    /// State for one invocation during `call`, granting what `grants` grant;
    /// service calls go through `services`.
    pub fn new(grants: &Grants, call: CallCtx, services: Arc<dyn Services>) -> HostState {
        let log = LogCtx::new(grants.function.clone(), &call);
        let mut wasi = WasiCtxBuilder::new();
        for (k, v) in grants.env.iter() {
            wasi.env(k, v);
        }
        wasi.stdout(log.stream("stdout"))
            .stderr(log.stream("stderr"));
        HostState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            outbound: OutboundCtx::new(grants.outbound.clone(), services, call),
            kv: grants.kv.clone(),
            sqlite: grants.sqlite.clone(),
            sqlite_open: Default::default(),
            postgres: grants.postgres.clone(),
            postgres_open: Default::default(),
            config: grants.config.clone(),
            messaging: grants.messaging.clone(),
            log,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(grants.memory),
        }
    }

    /// Hands a reused instance's state to the next invocation: its request id
    /// for logs, and the call chain and services for its outbound calls.
    pub fn begin_request(&mut self, call: CallCtx, services: Arc<dyn Services>) {
        self.log.set_call(&call);
        self.outbound.begin(services, call);
    }

    /// The key-value interfaces' view (wasi:keyvalue's drafts and Spin's).
    fn kv(&mut self) -> KvView<'_> {
        KvView {
            ctx: &self.kv,
            table: &mut self.table,
        }
    }

    /// The SQLite interfaces' view.
    fn sqlite(&mut self) -> SqliteView<'_> {
        SqliteView {
            ctx: &self.sqlite,
            table: &mut self.table,
            open: &mut self.sqlite_open,
        }
    }

    /// The PostgreSQL interfaces' view.
    fn postgres(&mut self) -> PostgresView<'_> {
        PostgresView {
            ctx: &self.postgres,
            table: &mut self.table,
            open: &mut self.postgres_open,
        }
    }

    /// Makes this the state of an instance that runs several requests at
    /// once: each request's call is registered in the returned set while it
    /// runs, and the log context follows it ([`SharedCalls::log_id`]).
    pub fn share(&mut self) -> (Arc<SharedCalls>, LogCtx) {
        let shared = Arc::new(SharedCalls::default());
        self.outbound.share(shared.clone());
        (shared, self.log.clone())
    }

    /// Lets go of what only the finished invocation needed, before the
    /// instance waits idle: above all the services handle, which reaches the
    /// app, so an idle instance never keeps a replaced app alive.
    pub fn end_request(&mut self) {
        self.outbound.release();
        self.sqlite_open.end_request();
        self.postgres_open.end_request();
    }

    /// Puts a delivered message in the table, for the queue handler.
    pub fn push_message(
        &mut self,
        message: crate::capability::messaging::Message,
    ) -> wasmtime::Result<wasmtime::component::Resource<crate::capability::messaging::Message>>
    {
        Ok(self.table.push(message)?)
    }

    /// The linker every function is checked against: WASI 0.2 (with the
    /// filesystem, sockets and environment empty unless granted), wasi:http,
    /// and Nimbus's capabilities; on the engine for WASI 0.3 components also
    /// WASI 0.3 and wasi:http 0.3 (a 0.3 component built by Rust's
    /// `wasm32-wasip2` target still imports WASI 0.2 for its standard
    /// library).
    pub fn linker(
        engine: &wasmtime::Engine,
        kind: EngineKind,
    ) -> wasmtime::Result<Linker<HostState>> {
        let mut linker: Linker<HostState> = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        if kind == EngineKind::Concurrent {
            wasmtime_wasi::p3::add_to_linker(&mut linker)?;
            wasmtime_wasi_http::p3::add_to_linker(&mut linker)?;
            crate::capability::spin::add_to_linker(&mut linker, HostState::kv, |s| &s.config)?;
        }
        crate::capability::kv::add_to_linker(&mut linker, HostState::kv)?;
        crate::capability::sqlite::add_to_linker(
            &mut linker,
            kind == EngineKind::Concurrent,
            HostState::sqlite,
        )?;
        crate::capability::postgres::add_to_linker(
            &mut linker,
            kind == EngineKind::Concurrent,
            HostState::postgres,
        )?;
        crate::capability::config::add_to_linker(&mut linker, |s| &s.config)?;
        crate::capability::logging::add_to_linker(&mut linker, |s| &s.log)?;
        crate::capability::messaging::add_to_linker(&mut linker, |s| MessagingView {
            ctx: &s.messaging,
            table: &mut s.table,
            traceparent: s.outbound.traceparent(),
        })?;
        Ok(linker)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

/// Caps each linear memory at the function's `limits.memory`.
///
/// A grow past the cap fails the way `memory.grow` fails in any wasm engine
/// (the guest sees -1 and usually aborts); the flag lets the executor tell
/// the operator that memory, not a bug, ended the request.
#[derive(Debug)]
pub struct MemoryLimiter {
    limit: u64,
    exceeded: bool,
    /// Linear memory the store's instances hold now, in bytes, and the
    /// most they held: every memory's creation and growth passes here.
    held: u64,
    peak: u64,
}

impl MemoryLimiter {
    fn new(limit: u64) -> MemoryLimiter {
        MemoryLimiter {
            limit,
            exceeded: false,
            held: 0,
            peak: 0,
        }
    }

    /// The most linear memory the store's instances held at once, in bytes.
    pub fn peak(&self) -> u64 {
        self.peak
    }

    /// True once a grow was refused.
    pub fn exceeded(&self) -> bool {
        self.exceeded
    }

    /// The cap in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.limit {
            self.exceeded = true;
            return Ok(false);
        }
        self.held = self
            .held
            .saturating_add(desired.saturating_sub(current) as u64);
        self.peak = self.peak.max(self.held);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
