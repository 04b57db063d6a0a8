//! Nimbus: a runtime for microservices written as WebAssembly components.
//!
//! An app is a manifest (`nimbus.toml`) listing functions; each function is a
//! component exporting the standard `wasi:http/incoming-handler` (or a queue
//! handler), run in a fresh sandboxed instance per request under its own
//! limits. A [`node`] serves one app: the public listener with its gateway,
//! the queue consumers and the admin API.
//!
//! # Layout
//! Each layer uses only the layers below it (a test checks that no two of
//! these modules import each other, directly or through others):
//! - [`node`]: starts everything from a config and owns the shutdown; the
//!   binary, the tests and the benchmarks start nodes through it;
//! - [`admin`]: the operator API (and its client) over deploy and queues;
//! - [`deploy`]: hot deploy, rollback and canaries, kept in the state folder;
//! - [`trigger`]: what makes a function run: `http` (the gateway's gate,
//!   dispatch into the function, the accept loop, error responses, service
//!   calls) and `queue` (consumer loops, retries, dead letters);
//! - [`executor`]: one invocation: store, limits, failure classes, instance reuse;
//! - [`app`]: functions loaded, checked and pre-instantiated, the router;
//! - [`state`]: the store data that implements every capability's view;
//! - [`capability`]: host interfaces given to guests (key-value, config,
//!   logging, messaging, outbound HTTP and service calls);
//! - [`call`]: what an invocation belongs to (request id, trace, call chain, claims);
//! - [`gateway`]: auth, rate limits, CORS, OpenAPI: pure policy;
//! - [`backend`]: storage behind small traits (embedded redb; NATS JetStream);
//! - [`wire`]: header names, the response body type, shared with the guest SDK;
//! - [`engine`], [`manifest`], [`telemetry`], [`log_format`]: the wasmtime
//!   engine and compile cache, the strict manifest, metrics and trace
//!   context, the access-log formatter;
//! - [`build`] and [`check`]: the `nimbus build` and `nimbus check` commands.
//!
//! # Example
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use nimbus::manifest::Manifest;
//! use nimbus::node::{self, Listeners, NodeConfig};
//!
//! let manifest = Manifest::load("examples/hello".as_ref())?;
//! let listeners = Listeners::bind("127.0.0.1:0".parse()?, Some("127.0.0.1:0".parse()?)).await?;
//! let node = node::start(NodeConfig::new(manifest), listeners, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await?;
//! println!("listening on http://{}", node.addr());
//! node.wait().await?;
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

pub mod admin;
pub mod app;
pub mod backend;
pub mod build;
pub mod call;
pub mod capability;
pub mod check;
pub mod deploy;
pub mod engine;
pub mod executor;
pub mod gateway;
pub mod log_format;
pub mod manifest;
pub mod node;
pub mod state;
pub mod telemetry;
pub mod trigger;
pub mod wire;

/// An error with its causes, which many crates keep apart: the `Display`
/// of a `tokio_postgres` connect error alone says only "error connecting to
/// server", and `reqwest`'s only which URL it was sending to.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
