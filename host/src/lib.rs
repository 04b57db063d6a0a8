//! Nimbus: a runtime for microservices written as WebAssembly components.
//!
//! An app is a manifest (`nimbus.toml`) listing functions; each function is a
//! component exporting the standard `wasi:http/incoming-handler`, run in a
//! fresh sandboxed instance per request under its own limits.
//!
//! # Layout
//! - [`manifest`]: the `nimbus.toml` schema, strict parsing and normalization;
//! - [`engine`]: the process-wide wasmtime engine (pooling allocator, epoch
//!   ticker) and the compile cache;
//! - [`app`]: an app loaded from a manifest, each function pre-instantiated;
//! - [`deploy`]: hot deploy, rollback and canaries, kept in the state folder;
//! - [`executor`]: one invocation, its limits, and failure classification;
//! - [`backend`]: storage behind small traits (embedded redb; NATS JetStream for queues);
//! - [`admin`]: the operator API and its client;
//! - [`trigger`]: what runs functions (`http`: gateway, router, server);
//! - [`capability`]: host interfaces given to guests;
//! - [`state`]: the store data that ties capabilities together;
//! - [`build`] and [`check`]: the `nimbus build` and `nimbus check` commands.
//!
//! # Example
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! use std::sync::Arc;
//! use nimbus::{app::App, engine::{Runtime, RuntimeConfig}, manifest::Manifest};
//! use nimbus::backend::{Backends, embedded::EmbeddedBackend};
//! use nimbus::trigger::http::{HttpTrigger, ServeOptions, serve};
//!
//! let manifest = Manifest::load("examples/hello".as_ref())?;
//! let runtime = Runtime::new(&RuntimeConfig::default()).map_err(|e| anyhow::anyhow!("{e:#}"))?;
//! let store = EmbeddedBackend::open("examples/hello/.nimbus/state.redb".as_ref())?;
//! let app = App::load(&runtime, &manifest, Backends::embedded(store))?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let trigger = Arc::new(HttpTrigger::new(Arc::new(app)));
//! // Queue triggers start with `nimbus::trigger::queue::QueueTriggers::start`.
//! serve(listener, trigger, ServeOptions::default(), async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await?;
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

pub mod admin;
pub mod app;
pub mod backend;
pub mod build;
pub mod capability;
pub mod check;
pub mod deploy;
pub mod engine;
pub mod executor;
pub mod gateway;
pub mod log_format;
pub mod manifest;
pub mod state;
pub mod telemetry;
pub mod trigger;
