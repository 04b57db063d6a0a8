//! What the admin API answers besides functions (those are in
//! [`crate::deploy`]'s views): health, nodes, queues, dead letters,
//! publishing and errors. The server serializes these types, the client reads them back.
//! Times are milliseconds since the Unix epoch.

use crate::backend::{DeadLetter, Member, QueueStats};
use crate::deploy::rfc3339;
use crate::manifest::QueueSpec;
use crate::telemetry::RecentView;
use serde::{Deserialize, Serialize};

/// `GET /v1/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthView {
    /// Always `ok`: an answer means the node is up.
    pub status: String,
    /// The app's name.
    pub app: String,
}

/// One node serving the app, as `GET /v1/nodes` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    /// Unique per node process.
    pub id: String,
    /// Whether this is the node that answered.
    pub this: bool,
    /// Its public listener, `IP:PORT`.
    pub public: String,
    /// Its admin listener, if it has one.
    pub admin: Option<String>,
    /// The Nimbus version it runs.
    pub version: String,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// When it last renewed its record (RFC 3339).
    pub heartbeat_at: String,
    /// Invocations it was running then.
    pub in_flight: u64,
}

impl NodeView {
    /// `member` as listed by the node `this_id`.
    pub fn new(member: Member, this_id: &str) -> NodeView {
        let at = |ms: u64| rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms));
        NodeView {
            this: member.id == this_id,
            started_at: at(member.started_ms),
            heartbeat_at: at(member.heartbeat_ms),
            id: member.id,
            public: member.public,
            admin: member.admin,
            version: member.version,
            in_flight: member.in_flight,
        }
    }
}

/// One queue function, as `GET /v1/queues` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueView {
    /// The function's id.
    pub function: String,
    /// The topic pattern it consumes.
    pub topic: String,
    /// Deliveries before a message goes to dead letters.
    pub max_attempts: u32,
    /// Messages handled at once.
    pub concurrency: u32,
    /// Messages deliverable now.
    pub ready: u64,
    /// Messages waiting for a retry delay.
    pub delayed: u64,
    /// Messages being handled.
    pub in_flight: u64,
    /// Messages in dead letters.
    pub dead: u64,
}

impl QueueView {
    /// `function`'s policy and counts.
    pub(super) fn new(function: &str, trigger: &QueueSpec, stats: QueueStats) -> QueueView {
        QueueView {
            function: function.to_owned(),
            topic: trigger.topic.as_str().to_owned(),
            max_attempts: trigger.max_attempts,
            concurrency: trigger.concurrency,
            ready: stats.ready,
            delayed: stats.delayed,
            in_flight: stats.in_flight,
            dead: stats.dead,
        }
    }
}

/// One dead letter, as `GET /v1/queues/{function}/dead-letters` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterView {
    /// The message's id.
    pub id: String,
    /// The topic it was published to.
    pub topic: String,
    /// Deliveries made.
    pub attempts: u32,
    /// The last failure.
    pub error: String,
    /// When it was published.
    pub published_ms: u64,
    /// When it was dead-lettered.
    pub failed_ms: u64,
    /// The publisher's headers, as name and value pairs.
    pub headers: Vec<(String, String)>,
    /// The payload's size in bytes.
    pub payload_len: usize,
    /// The payload, when it is UTF-8 text.
    pub payload: Option<String>,
}

impl From<DeadLetter> for DeadLetterView {
    fn from(dead: DeadLetter) -> DeadLetterView {
        DeadLetterView {
            payload_len: dead.message.payload.len(),
            id: dead.message.id,
            topic: dead.message.topic,
            attempts: dead.attempts,
            error: dead.error,
            published_ms: dead.message.published_ms,
            failed_ms: dead.failed_ms,
            headers: dead.message.headers,
            payload: String::from_utf8(dead.message.payload).ok(),
        }
    }
}

/// The answer to `POST /v1/topics/{topic}/messages` (status 202).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedView {
    /// The message's id.
    pub id: String,
    /// The topic it was published to.
    pub topic: String,
}

/// The answer to `POST /v1/queues/{function}/dead-letters/replay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayedView {
    /// Dead letters put back in the queue.
    pub replayed: usize,
}

/// The answer to `DELETE /v1/queues/{function}/dead-letters`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgedView {
    /// Dead letters deleted.
    pub purged: usize,
}

/// Every refusal of the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorView {
    /// The HTTP status, repeated.
    pub status: u16,
    /// A stable machine-readable name for the refusal (`unknown_function`,
    /// `canary_running`, ...); absent from Nimbus versions before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What is wrong, for people.
    pub message: String,
}

/// `GET /v1/stats`: each function's last seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsView {
    /// The seconds the figures cover, the current one included.
    pub window_seconds: u64,
    /// Each function the app serves, in manifest order.
    pub functions: Vec<FunctionStatsView>,
}

/// One function's figures in [`StatsView`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionStatsView {
    /// The function's id.
    pub function: String,
    /// Instances running now.
    pub in_flight: i64,
    /// Invocations, failures, latency and memory over the window.
    #[serde(flatten)]
    pub recent: RecentView,
}
