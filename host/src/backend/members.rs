//! The members backend trait: which nodes serve the app now.
//!
//! Each node writes its own [`Member`] record every [`HEARTBEAT`]; a record
//! not renewed for [`MEMBER_TTL`] is gone, so a node killed without a word
//! leaves the list by itself. A node that stops gracefully removes its
//! record at once.

use super::BackendError;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How often a node renews its record.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// How long a record lives without a renewal: a few missed heartbeats.
pub const MEMBER_TTL: Duration = Duration::from_secs(5);

/// One node, as it last reported itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Unique per node process, e.g. `web-1-3f9c2a`.
    pub id: String,
    /// The public listener, `IP:PORT`.
    pub public: String,
    /// The admin listener, if it has one.
    pub admin: Option<String>,
    /// The Nimbus version it runs.
    pub version: String,
    /// When it started, in milliseconds since the Unix epoch.
    pub started_ms: u64,
    /// When it last renewed this record, in milliseconds since the Unix epoch.
    pub heartbeat_ms: u64,
    /// Invocations it was running at that moment.
    pub in_flight: u64,
}

/// Where members record themselves.
#[async_trait]
pub trait MembersBackend: Send + Sync + 'static {
    /// Writes (or renews) `member`'s record.
    async fn beat(&self, member: &Member) -> Result<(), BackendError>;
    /// Removes the record of node `id`; a missing one is not an error.
    async fn leave(&self, id: &str) -> Result<(), BackendError>;
    /// The live members (renewed within [`MEMBER_TTL`]), by id.
    async fn list(&self) -> Result<Vec<Member>, BackendError>;
    /// Why this node cannot reach the shared state right now, if it cannot.
    fn unreachable(&self) -> Option<String>;
}

/// Whether a record renewed at `heartbeat_ms` is still live at `now_ms`.
pub(crate) fn live(heartbeat_ms: u64, now_ms: u64) -> bool {
    now_ms.saturating_sub(heartbeat_ms) <= MEMBER_TTL.as_millis() as u64
}
