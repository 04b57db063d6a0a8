//! The queue backend trait: durable topics with fan-out to consumers,
//! leases, retries and dead letters.
//!
//! Delivery is at-least-once: a message leaves a consumer's queue only when
//! it is acknowledged or moved to dead letters; a lease that runs out (the
//! host died mid-handling) makes it deliverable again.

use super::BackendError;
use crate::manifest::TopicPattern;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Who consumes: one queue-triggered function of one app.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Consumer {
    /// The app's name.
    pub app: String,
    /// The function's id.
    pub function: String,
}

/// A published message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueMessage {
    /// Unique id, assigned at publish.
    pub id: String,
    /// The topic it was published to.
    pub topic: String,
    /// The publisher's headers.
    pub headers: Vec<(String, String)>,
    /// When it was published, in milliseconds since the Unix epoch.
    pub published_ms: u64,
    /// The payload.
    #[serde(skip)]
    pub payload: Vec<u8>,
}

/// One delivery of a message to a consumer.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The message.
    pub message: QueueMessage,
    /// 1 on the first delivery.
    pub attempt: u32,
    /// The backend's handle on this delivery, for ack and retry.
    pub token: String,
}

/// A message that used up its attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The message.
    pub message: QueueMessage,
    /// Deliveries made.
    pub attempts: u32,
    /// The last failure.
    pub error: String,
    /// When it was dead-lettered, in milliseconds since the Unix epoch.
    pub failed_ms: u64,
}

/// How much a consumer has waiting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    /// Deliverable now.
    pub ready: u64,
    /// Waiting for a retry delay.
    pub delayed: u64,
    /// Being handled.
    pub in_flight: u64,
    /// In dead letters.
    pub dead: u64,
}

/// Durable queues.
#[async_trait]
pub trait QueueBackend: Send + Sync + 'static {
    /// From now on, `consumer` gets every message published in its app to a
    /// topic matching `topic`.
    async fn subscribe(
        &self,
        consumer: &Consumer,
        topic: &TopicPattern,
    ) -> Result<(), BackendError>;

    /// Publishes to `topic` of `app`; durable for every subscriber when it
    /// returns. Returns the message id.
    async fn publish(
        &self,
        app: &str,
        topic: &str,
        payload: &[u8],
        headers: &[(String, String)],
    ) -> Result<String, BackendError>;

    /// Up to `max` deliveries, waiting up to `wait` for the first; each is
    /// leased for `lease`, after which it is deliverable again.
    async fn fetch(
        &self,
        consumer: &Consumer,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, BackendError>;

    /// The delivery was handled: the message leaves the queue.
    async fn ack(&self, consumer: &Consumer, delivery: &Delivery) -> Result<(), BackendError>;

    /// The delivery failed: deliver it again after `delay`.
    async fn retry(
        &self,
        consumer: &Consumer,
        delivery: &Delivery,
        delay: Duration,
        error: &str,
    ) -> Result<(), BackendError>;

    /// The delivery failed for the last time: move it to dead letters.
    async fn dead_letter(
        &self,
        consumer: &Consumer,
        delivery: &Delivery,
        error: &str,
    ) -> Result<(), BackendError>;

    /// The consumer's dead letters, oldest first.
    async fn dead_letters(&self, consumer: &Consumer) -> Result<Vec<DeadLetter>, BackendError>;

    /// Puts dead letters (one by id, or all) back in the queue with fresh
    /// attempts. Returns how many.
    async fn replay(&self, consumer: &Consumer, id: Option<&str>) -> Result<usize, BackendError>;

    /// Deletes dead letters (one by id, or all). Returns how many.
    async fn purge(&self, consumer: &Consumer, id: Option<&str>) -> Result<usize, BackendError>;

    /// Counts of what the consumer has waiting.
    async fn stats(&self, consumer: &Consumer) -> Result<QueueStats, BackendError>;
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
