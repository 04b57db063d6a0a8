//! Storage behind small traits, so the same capability works on one machine
//! (the embedded default) and on several (NATS JetStream, later).
//!
//! # Layout
//! - [`kv`]: the [`KvBackend`] trait and what every key-value backend shares;
//! - [`queue`]: the [`QueueBackend`] trait and the messages it carries;
//! - [`members`]: the [`MembersBackend`] trait: the nodes serving an app;
//! - [`deployments`]: the [`DeploymentsBackend`] trait: what serves each
//!   function, shared by a cluster (a node on its own keeps deployments as
//!   files in its state folder instead);
//! - [`embedded`]: one `redb` file holding key-value stores and queues;
//! - [`sqlite`]: SQLite databases for functions, one file each, node-local;
//! - [`postgres`]: PostgreSQL databases granted to functions, a connection
//!   pool per grant; what a cluster shares for relational data;
//! - [`nats`]: NATS JetStream, for key-value stores, queues, deployments and
//!   members shared by several nodes.
//!
//! Each backend is a folder with one file per capability it implements, so a
//! new capability (or a new backend) is a file of its own beside the others.

pub mod deployments;
pub mod embedded;
pub mod kv;
pub mod members;
pub mod nats;
pub mod postgres;
pub mod queue;
pub mod sqlite;

pub use deployments::DeploymentsBackend;
pub use kv::{KeyPage, KvBackend};
pub use members::{Member, MembersBackend};
pub use queue::{Consumer, DeadLetter, Delivery, QueueBackend, QueueMessage, QueueStats};

use std::sync::Arc;
use std::time::Duration;

/// What one SQL statement may use, SQLite's or PostgreSQL's: time, and rows
/// and bytes of result (a function's `limits.sql_*`).
#[derive(Debug, Clone, Copy)]
pub struct StatementLimits {
    /// The longest one statement may run, waiting for a lock included.
    pub timeout: Duration,
    /// The most rows a result may have.
    pub max_rows: u64,
    /// The most bytes a result may hold, values and column names counted.
    pub max_bytes: u64,
}

impl StatementLimits {
    /// Why a result with more than `max_rows` rows was refused.
    pub fn too_many_rows(&self) -> String {
        format!(
            "the result has more than {} rows (limits.sql_rows); select fewer, or page with LIMIT and OFFSET",
            self.max_rows
        )
    }

    /// Why a result over `max_bytes` was refused.
    pub fn too_large(&self) -> String {
        format!(
            "the result holds more than {} (limits.sql_result_size); select fewer rows or columns",
            crate::manifest::format_bytes(self.max_bytes)
        )
    }

    /// Why a statement past `timeout` was stopped (`how`: "stopped",
    /// "cancelled").
    pub fn timed_out(&self, how: &str) -> String {
        format!(
            "the statement ran longer than {} (limits.sql_timeout) and was {how}",
            humantime::format_duration(self.timeout)
        )
    }
}

/// The storage an app runs on: one value, cloned into each function.
#[derive(Clone)]
pub struct Backends {
    /// Key-value stores.
    pub kv: Arc<dyn KvBackend>,
    /// Queues.
    pub queue: Arc<dyn QueueBackend>,
    /// The nodes serving the app.
    pub members: Arc<dyn MembersBackend>,
    /// A cluster's deployments; `None` on a node on its own.
    pub deployments: Option<Arc<dyn DeploymentsBackend>>,
    /// SQLite databases in the node's state folder; `None` in a cluster,
    /// whose nodes share no files (and until a node sets the folder).
    pub sqlite: Option<Arc<sqlite::Databases>>,
}

impl Backends {
    /// Everything on one embedded store: a node on its own.
    pub fn embedded(store: embedded::EmbeddedBackend) -> Backends {
        let store = Arc::new(store);
        Backends {
            kv: store.clone(),
            queue: store.clone(),
            members: store,
            deployments: None,
            sqlite: None,
        }
    }

    /// Everything on NATS JetStream: a member of a cluster.
    pub fn nats(nats: nats::NatsBackend) -> Backends {
        let nats = Arc::new(nats);
        Backends {
            kv: nats.clone(),
            queue: nats.clone(),
            members: nats.clone(),
            deployments: Some(nats),
            sqlite: None,
        }
    }
}

/// Keys a store holds are namespaced by app and store, so two apps never see
/// each other's data even when they use the same store name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Namespace {
    /// The app's name.
    pub app: String,
    /// The store's name.
    pub store: String,
}

/// A storage failure, explained.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    /// The value at a key is not what the operation needs.
    #[error("{0}")]
    Invalid(String),
    /// The storage itself failed.
    #[error("storage failed: {0}")]
    Storage(String),
}
