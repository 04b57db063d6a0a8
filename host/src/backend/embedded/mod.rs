//! The embedded backend: one crash-safe `redb` file in the state directory,
//! holding key-value stores and queues.
//!
//! redb commits are atomic and, with the default durability, synced to disk
//! before the commit returns, so a `kill -9` at any moment leaves either the
//! old or the new value, never half of one. Every write goes through one
//! writer thread that commits the writes waiting together (group commit), so
//! one sync covers many writes; reads run on read transactions on tokio's
//! blocking pool and never wait for the writer.
//!
//! # Layout
//! - this file: [`EmbeddedBackend`], opening the file, its tables and the
//!   helpers both capabilities use;
//! - `writer.rs`: the writer thread and its batches;
//! - `kv.rs`: key-value stores, in the `kv` table;
//! - `queue.rs`: queues, in the `queue`, `dead` and `meta` tables, and how
//!   their records are encoded;
//! - `members.rs`: the one member, this node, kept in memory.

mod kv;
mod members;
mod queue;
mod writer;

use super::BackendError;
use super::members::Member;
use crate::manifest::TopicPattern;
use queue::release_leases;
use redb::{Database, TableDefinition, WriteTransaction};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use writer::Writer;

/// Every key-value pair of every app, keyed `app \0 store \0 key`.
const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");

/// Each consumer's messages, keyed `app \0 function \0 due \0 seq` (hex), so
/// the messages due now are one range scan.
const QUEUE: TableDefinition<&str, &[u8]> = TableDefinition::new("queue");

/// Dead letters, keyed `app \0 function \0 seq`.
const DEAD: TableDefinition<&str, &[u8]> = TableDefinition::new("dead");

/// Counters; `seq` numbers queue entries.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Per app, each consuming function and its topic pattern.
type Subscriptions = HashMap<String, Vec<(String, TopicPattern)>>;

/// The embedded store.
#[derive(Clone)]
pub struct EmbeddedBackend {
    /// For reads; every write goes through `writer`.
    db: Arc<Database>,
    writer: Arc<Writer>,
    /// Who consumes which topics, per app; declared at each start.
    subscriptions: Arc<Mutex<Subscriptions>>,
    /// Woken when a message becomes deliverable.
    wake: Arc<Notify>,
    /// This node's last heartbeat: a node on embedded state is alone.
    member: Arc<Mutex<Option<Member>>>,
}

impl EmbeddedBackend {
    /// Opens (or creates) the database file at `path`.
    pub fn open(path: &Path) -> Result<EmbeddedBackend, BackendError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                BackendError::Storage(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let db = Database::create(path)
            .map_err(|e| BackendError::Storage(format!("cannot open {}: {e}", path.display())))?;
        // Create the tables up front so readers never see one missing, and
        // release the leases of a previous run: whatever it was handling when
        // it stopped is deliverable again now.
        let tx = db.begin_write().map_err(storage)?;
        tx.open_table(KV).map_err(storage)?;
        tx.open_table(DEAD).map_err(storage)?;
        tx.open_table(META).map_err(storage)?;
        let released = release_leases(&tx)?;
        tx.commit().map_err(storage)?;
        if released > 0 {
            tracing::info!(
                released,
                "redelivering messages that were in flight when the last run stopped"
            );
        }
        let db = Arc::new(db);
        Ok(EmbeddedBackend {
            writer: Arc::new(Writer::start(db.clone())?),
            db,
            subscriptions: Arc::default(),
            wake: Arc::new(Notify::new()),
            member: Arc::default(),
        })
    }

    /// Runs `write` in the writer's next commit (see `writer.rs`); `bytes`
    /// is about how much it writes. Answers once that commit is on disk.
    async fn write<T, F>(&self, bytes: usize, write: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: FnMut(&WriteTransaction) -> Result<T, BackendError> + Send + 'static,
    {
        self.writer.write(bytes, write).await
    }

    /// Removes `key` from `table`.
    async fn remove(
        &self,
        table: TableDefinition<'static, &'static str, &'static [u8]>,
        key: String,
    ) -> Result<(), BackendError> {
        self.write(key.len(), move |tx| {
            tx.open_table(table)
                .map_err(storage)?
                .remove(key.as_str())
                .map_err(storage)?;
            Ok(())
        })
        .await
    }

    /// Runs a read `f` on tokio's blocking pool, since every redb call blocks.
    async fn blocking<T, F>(&self, f: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, BackendError> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| BackendError::Storage(e.to_string()))?
    }
}

/// A redb failure as a backend error.
fn storage(e: impl std::fmt::Display) -> BackendError {
    BackendError::Storage(e.to_string())
}
