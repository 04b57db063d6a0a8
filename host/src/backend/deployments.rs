//! The deployments backend trait: what serves each function, shared by the
//! nodes of a cluster.
//!
//! A node on its own keeps its deployments as files in its state folder
//! (`deploy::store`); a cluster keeps them here, so a deploy through any
//! node reaches every node. Each function has one record (opaque bytes to
//! the backend: the deployer's JSON) with a revision that every write
//! checks, so two changes of one function at once end with one winner.
//! Components are kept by digest beside the records.

use super::BackendError;
use async_trait::async_trait;
use futures_util::stream::BoxStream;
use std::sync::Mutex;

/// One function's record as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The function's id.
    pub function: String,
    /// The record; empty when the function serves just its manifest's
    /// component.
    pub value: Vec<u8>,
    /// Its revision, increasing with every write of any function.
    pub revision: u64,
}

/// Where a cluster's deployments live.
#[async_trait]
pub trait DeploymentsBackend: Send + Sync + 'static {
    /// Every function's record; a watch from their [`latest`] revision
    /// misses nothing.
    async fn records(&self) -> Result<Vec<Stored>, BackendError>;
    /// Writes function `function`'s record if `expected` is still its
    /// revision (0: it has none yet). `Ok(None)` when another write came
    /// first; else the new revision.
    async fn write(
        &self,
        function: &str,
        value: &[u8],
        expected: u64,
    ) -> Result<Option<u64>, BackendError>;
    /// Keeps a component's bytes under its digest (once).
    async fn put_component(&self, digest: &str, bytes: &[u8]) -> Result<(), BackendError>;
    /// A kept component's bytes, checked against their digest.
    async fn get_component(&self, digest: &str) -> Result<Vec<u8>, BackendError>;
    /// Every record written after revision `after`, as written; the stream
    /// ends (or yields an error) when the connection is lost.
    async fn watch(
        &self,
        after: u64,
    ) -> Result<BoxStream<'static, Result<Stored, BackendError>>, BackendError>;
    /// Whether this node serves what the records say, as the deployer last
    /// set it (readiness reads it).
    fn behind(&self) -> &Behind;
}

/// The latest revision of `records` (0 when there are none).
pub fn latest(records: &[Stored]) -> u64 {
    records.iter().map(|r| r.revision).max().unwrap_or(0)
}

/// What [`DeploymentsBackend::behind`] answers, kept by each backend: behind
/// until the deployer first applies the records.
#[derive(Debug)]
pub struct Behind(Mutex<Option<String>>);

impl Default for Behind {
    fn default() -> Behind {
        Behind(Mutex::new(Some(
            "the cluster's deployments are not applied yet".into(),
        )))
    }
}

impl Behind {
    /// Why the node is behind, if it is.
    pub fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Records why the node is behind, or `None` once it is not.
    pub fn set(&self, why: Option<String>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = why;
    }
}
