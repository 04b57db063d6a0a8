//! The data every [`wasmtime::Store`] carries: one struct that implements the
//! view trait of each capability, plus the per-instance resource limiter.

use crate::capability::outbound::OutboundCtx;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Most table elements one instance may have. Tables hold function
/// references; real programs need thousands, a runaway one millions.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// Per-invocation host state.
pub struct HostState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    outbound: OutboundCtx,
    table: ResourceTable,
    /// The memory limiter; read back after a trap to explain it.
    pub limiter: MemoryLimiter,
}

impl HostState {
    /// State for one invocation: `wasi` carries exactly what the manifest grants.
    pub fn new(wasi: WasiCtx, memory_limit: u64) -> HostState {
        HostState {
            wasi,
            http: WasiHttpCtx::new(),
            outbound: OutboundCtx::default(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(memory_limit),
        }
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
}

impl MemoryLimiter {
    fn new(limit: u64) -> MemoryLimiter {
        MemoryLimiter {
            limit,
            exceeded: false,
        }
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
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.limit {
            self.exceeded = true;
            return Ok(false);
        }
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
