//! Host interfaces given to guests, one module per capability.
//!
//! Each capability keeps its per-instance state in a `*Ctx` inside
//! [`crate::state::HostState`], is found through a `*View`, wires itself with
//! one `add_to_linker`, and is denied unless the manifest grants it. The
//! standard WASI interfaces (clocks, random, and the filesystem, sockets and
//! environment that a fresh [`wasmtime_wasi::WasiCtx`] denies) come from
//! `wasmtime-wasi`; this folder holds what Nimbus adds or restricts.

pub(crate) mod bindings;
pub mod config;
pub mod connections;
pub mod kv;
mod kv_draft;
pub mod logging;
pub mod messaging;
pub mod outbound;
pub mod postgres;
pub(crate) mod spin;
pub mod sqlite;
