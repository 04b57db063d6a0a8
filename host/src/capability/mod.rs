//! Host interfaces given to guests, one module per capability.
//!
//! Each capability keeps its per-instance state in a `*Ctx` inside
//! [`crate::state::HostState`] and is denied unless the manifest grants it.
//! The standard WASI interfaces (clocks, random, and the filesystem, sockets
//! and environment that a fresh [`wasmtime_wasi::WasiCtx`] denies) come from
//! `wasmtime-wasi`; this folder holds what Nimbus adds or restricts.

pub mod outbound;
