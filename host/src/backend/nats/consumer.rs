//! Each app's streams and each function's durable JetStream consumers:
//! creating them at `subscribe`, finding them again on another node or after
//! a restart, keeping their `ack_wait` equal to the lease, and pulling
//! messages from them.

use super::{NatsBackend, fail, name_token};
use crate::backend::{BackendError, Consumer};
use async_nats::jetstream;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, FromConsumer, PullConsumer, pull};
use async_nats::jetstream::context::ConsumerInfoErrorKind;
use async_nats::jetstream::stream::{self, RetentionPolicy, StorageType};
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;

/// The lease a new consumer starts with, until the first `fetch` says the
/// real one: the default function timeout (30 s) plus the trigger's margin
/// (10 s), which is what the trigger passes for a function with defaults.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(40);

/// One function's JetStream consumers.
pub(super) struct Pair {
    /// On the app's message stream.
    pub(super) queue: PullConsumer,
    /// On the app's replay stream.
    pub(super) replay: PullConsumer,
}

impl Pair {
    fn ack_wait(&self) -> Duration {
        self.queue.cached_info().config.ack_wait
    }
}

impl NatsBackend {
    /// Creates the app's three streams if they are missing.
    pub(super) async fn ensure_streams(&self, app: &str) -> Result<(), BackendError> {
        let p = &self.prefix;
        let app = name_token(app);
        let streams = [
            (
                format!("{p}_queue_{app}"),
                format!("{p}.msg.{app}.>"),
                RetentionPolicy::Interest,
                "messages",
            ),
            (
                format!("{p}_dead_{app}"),
                format!("{p}.dead.{app}.*"),
                RetentionPolicy::Limits,
                "dead letters",
            ),
            (
                format!("{p}_replay_{app}"),
                format!("{p}.replay.{app}.*"),
                RetentionPolicy::WorkQueue,
                "replayed dead letters",
            ),
        ];
        for (name, subject, retention, what) in streams {
            self.js
                .get_or_create_stream(stream::Config {
                    name: name.clone(),
                    description: Some(format!("Nimbus queue {what} of app `{app}`")),
                    subjects: vec![subject],
                    retention,
                    storage: StorageType::File,
                    ..Default::default()
                })
                .await
                .map_err(|e| fail(&format!("cannot create stream {name}"), e))?;
        }
        Ok(())
    }

    /// Gets the durable consumer `name` on `stream`, creating it (reading
    /// from `deliver`) if missing and pointing it at `filter` if it was
    /// subscribed to another pattern before.
    pub(super) async fn ensure_consumer(
        &self,
        stream: &str,
        name: &str,
        filter: String,
        deliver: DeliverPolicy,
        description: String,
    ) -> Result<PullConsumer, BackendError> {
        let handle = self.stream(stream).await?;
        let config = pull::Config {
            durable_name: Some(name.to_owned()),
            description: Some(description),
            deliver_policy: deliver,
            ack_policy: AckPolicy::Explicit,
            ack_wait: DEFAULT_LEASE,
            // Nimbus decides when a message is dead, from `attempt`.
            max_deliver: -1,
            // Messages waiting for a retry delay count as pending acks; a
            // limit would stall the whole consumer behind a burst of retries.
            max_ack_pending: -1,
            filter_subject: filter.clone(),
            ..Default::default()
        };
        let existing: PullConsumer = handle
            .get_or_create_consumer(name, config)
            .await
            .map_err(|e| fail(&format!("cannot create consumer {name} on {stream}"), e))?;
        let current = &existing.cached_info().config;
        if current.filter_subject == filter {
            return Ok(existing);
        }
        tracing::info!(
            consumer = name,
            from = current.filter_subject,
            to = filter,
            "topic pattern changed; updating the JetStream consumer"
        );
        let mut config = pull::Config::try_from_consumer_config(current.clone()).map_err(|e| {
            fail(
                &format!("consumer {name} on {stream} is not a pull consumer"),
                e,
            )
        })?;
        config.filter_subject = filter;
        handle
            .create_consumer(config)
            .await
            .map_err(|e| fail(&format!("cannot update consumer {name} on {stream}"), e))
    }

    /// The consumer's JetStream consumers, with `ack_wait` equal to `lease`.
    pub(super) async fn pair(
        &self,
        consumer: &Consumer,
        lease: Duration,
    ) -> Result<Arc<Pair>, BackendError> {
        let cached = self.cached(consumer);
        let pair = match cached {
            Some(pair) => pair,
            None => self.open(consumer).await?,
        };
        if pair.ack_wait() == lease {
            return Ok(pair);
        }
        let names = self.names(consumer);
        let mut updated = Vec::new();
        for stream in [&names.queue_stream, &names.replay_stream] {
            let handle = self.stream(stream).await?;
            // Start from the server's config, not the cached one: another
            // node may have changed the topic pattern since.
            let current = handle
                .consumer_info(&names.consumer)
                .await
                .map_err(|e| fail(&format!("consumer {} on {stream}", names.consumer), e))?;
            let mut config = pull::Config::try_from_consumer_config(current.config)
                .map_err(|e| fail("not a pull consumer", e))?;
            config.ack_wait = lease;
            let c = handle.create_consumer(config).await.map_err(|e| {
                fail(
                    &format!(
                        "cannot set the lease of consumer {} on {stream}",
                        names.consumer
                    ),
                    e,
                )
            })?;
            updated.push(c);
        }
        let replay = updated.pop().expect("two consumers");
        let queue = updated.pop().expect("two consumers");
        let pair = Arc::new(Pair { queue, replay });
        self.remember(consumer, pair.clone());
        Ok(pair)
    }

    fn cached(&self, consumer: &Consumer) -> Option<Arc<Pair>> {
        let consumers = self.consumers.lock().unwrap_or_else(|e| e.into_inner());
        consumers.get(consumer).cloned()
    }

    pub(super) fn remember(&self, consumer: &Consumer, pair: Arc<Pair>) {
        let mut consumers = self.consumers.lock().unwrap_or_else(|e| e.into_inner());
        consumers.insert(consumer.clone(), pair);
    }

    /// Looks up the JetStream consumers another node (or an earlier run)
    /// created.
    async fn open(&self, consumer: &Consumer) -> Result<Arc<Pair>, BackendError> {
        let names = self.names(consumer);
        let not_subscribed = || {
            BackendError::Invalid(format!(
                "`{}` of app `{}` has not subscribed to a topic",
                consumer.function, consumer.app
            ))
        };
        let mut pair = Vec::new();
        for stream in [&names.queue_stream, &names.replay_stream] {
            match self
                .stream(stream)
                .await?
                .consumer_info(&names.consumer)
                .await
            {
                Ok(info) => pair.push(
                    self.stream(stream)
                        .await?
                        .get_consumer::<pull::Config>(&info.name)
                        .await
                        .map_err(|e| fail(&format!("consumer {}", names.consumer), e))?,
                ),
                Err(e)
                    if matches!(
                        e.kind(),
                        ConsumerInfoErrorKind::NotFound | ConsumerInfoErrorKind::StreamNotFound
                    ) =>
                {
                    return Err(not_subscribed());
                }
                Err(e) => return Err(fail(&format!("consumer {}", names.consumer), e)),
            }
        }
        let replay = pair.pop().expect("two consumers");
        let queue = pair.pop().expect("two consumers");
        let pair = Arc::new(Pair { queue, replay });
        self.remember(consumer, pair.clone());
        Ok(pair)
    }
}

/// How long past its own wait a pull may go unanswered. A pull request sent
/// as the connection drops is lost with it and would never be answered, so
/// the consumer loop would wait forever; past this it fails, and the loop
/// asks again.
const PULL_MARGIN: Duration = Duration::from_secs(5);

/// Up to `max` messages there now, without waiting.
pub(super) async fn pull_now(
    consumer: &PullConsumer,
    max: usize,
) -> Result<Vec<jetstream::Message>, BackendError> {
    bounded(Duration::ZERO, async {
        let batch = consumer
            .fetch()
            .max_messages(max)
            .messages()
            .await
            .map_err(|e| fail("cannot fetch messages", e))?;
        collect(batch).await
    })
    .await
}

/// The next message, waiting up to `wait` for it.
pub(super) async fn pull_wait(
    consumer: &PullConsumer,
    wait: Duration,
) -> Result<Vec<jetstream::Message>, BackendError> {
    bounded(wait, async {
        let batch = consumer
            .batch()
            .max_messages(1)
            .expires(wait)
            .messages()
            .await
            .map_err(|e| fail("cannot fetch messages", e))?;
        collect(batch).await
    })
    .await
}

/// `pull`, failing if it is not answered within `wait` and [`PULL_MARGIN`].
async fn bounded(
    wait: Duration,
    pull: impl Future<Output = Result<Vec<jetstream::Message>, BackendError>>,
) -> Result<Vec<jetstream::Message>, BackendError> {
    let limit = wait + PULL_MARGIN;
    tokio::time::timeout(limit, pull).await.unwrap_or_else(|_| {
        Err(BackendError::Storage(format!(
            "NATS: a fetch of messages was not answered within {limit:?}; asking again"
        )))
    })
}

async fn collect(mut batch: pull::Batch) -> Result<Vec<jetstream::Message>, BackendError> {
    let mut out = Vec::new();
    while let Some(message) = batch.next().await {
        out.push(message.map_err(|e| fail("cannot fetch messages", e))?);
    }
    Ok(out)
}
