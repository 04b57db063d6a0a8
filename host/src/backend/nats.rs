//! The NATS JetStream queue backend, so several Nimbus nodes share queues.
//!
//! # Layout on the server
//!
//! Every name starts with the backend's prefix (`P` below), so several
//! deployments (or test runs) share one server without meeting. App and
//! function names are `[a-z0-9-]`, valid in both stream names and subjects.
//!
//! | what | stream | subjects | retention |
//! |---|---|---|---|
//! | messages of app `A` | `P_queue_A` | `P.msg.A.<topic>` | interest |
//! | dead letters of app `A` | `P_dead_A` | `P.dead.A.<function>` | limits (kept until replayed or purged) |
//! | replays for app `A` | `P_replay_A` | `P.replay.A.<function>` | work queue |
//!
//! Each queue-triggered function `F` has a durable pull consumer `P_F` on
//! `P_queue_A` filtered on `P.msg.A.<its topic pattern>` (Nimbus patterns are
//! NATS wildcards), and one named alike on `P_replay_A` filtered on
//! `P.replay.A.F`. Subjects carry a kind token (`msg`, `dead`, `replay`) so an
//! app named `dead` cannot collide with another app's dead letters.
//!
//! # Why it is built this way
//!
//! - **Fan-out matches the embedded broker.** A consumer is created with
//!   `DeliverPolicy::New`, and the message stream has interest retention: a
//!   message reaches exactly the functions subscribed when it was published,
//!   and leaves the stream once each of them has acknowledged it (or moved it
//!   to dead letters). A message nobody subscribes to is not kept. Consumers
//!   are durable, so what is published while every node is down waits.
//! - **Nimbus counts attempts, not JetStream.** `max_deliver` is unlimited;
//!   `attempt` is JetStream's delivery count, and the trigger decides when a
//!   message is dead. Retries are `-NAK` with a delay.
//! - **The lease is the consumer's `ack_wait`.** `subscribe` does not know the
//!   lease, so a new consumer starts with [`DEFAULT_LEASE`]; the first `fetch`
//!   with another lease updates `ack_wait` on the server (once: the trigger
//!   always passes the same lease for a function).
//! - **Tokens are JetStream ack subjects.** A delivery's token is the reply
//!   subject JetStream acks go to, so `ack`, `retry` and `dead_letter` need no
//!   state on this node and still work after a restart; each is sent as a
//!   request, so it returns once the server has recorded it. Acking a
//!   delivery whose lease ran out is harmless, as with the embedded backend.
//! - **Dead letters are written before the original is dropped.** The dead
//!   letter is published and its ack awaited, then the delivery is
//!   terminated: a crash in between duplicates a dead letter (deduplicated
//!   within JetStream's window by a `Nats-Msg-Id` naming the original), never
//!   loses one.
//! - **Replay reaches only the one consumer.** Republishing to the topic would
//!   fan out to every subscriber again, and a second filter subject on the
//!   consumer needs nats-server 2.10. So a replayed message goes to the
//!   function's own subject in the app's replay stream, which only that
//!   function's replay consumer reads; `fetch` takes from it first.
//!
//! # Differences from the embedded backend
//!
//! - Publisher headers become NATS headers: names must be printable ASCII
//!   without `:`, values must not hold CR or LF, and names starting with
//!   `Nats-` or the ones listed in [`RESERVED_HEADERS`] are refused. They come
//!   back sorted by name (values of one name keep their order): NATS headers
//!   are a map.
//! - `stats` cannot tell a message waiting for its retry delay from one being
//!   handled: both are JetStream "ack pending" and count as `in_flight`;
//!   `delayed` is always 0.
//! - A replayed message is seen by `fetch` at its next call, not while a
//!   `fetch` is already waiting.
//! - A `fetch` dropped while it waits (the trigger stopping) leaves its pull
//!   request on the server until `wait` ends; a message delivered to it in
//!   that window comes back after the lease, one attempt further on.
//! - A JetStream publish ack means the server stored the message; a single
//!   server syncs its files to disk periodically (`sync_interval`, 2 minutes
//!   by default), so run JetStream clustered (or with `sync_interval: always`)
//!   where power loss must not lose acknowledged messages.

use super::queue::now_ms;
use super::{BackendError, Consumer, DeadLetter, Delivery, QueueBackend, QueueMessage, QueueStats};
use crate::manifest::{TopicPattern, validate_topic};
use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, FromConsumer, PullConsumer, pull};
use async_nats::jetstream::context::{ConsumerInfoErrorKind, PublishErrorKind};
use async_nats::jetstream::stream::{self, ConsumerErrorKind, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, AckKind, ErrorCode};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::fmt::Display;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The lease a new consumer starts with, until the first `fetch` says the
/// real one: the default function timeout (30 s) plus the trigger's margin
/// (10 s), which is what the trigger passes for a function with defaults.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(40);

/// How long the server keeps a consumer made to list dead letters if this
/// node dies before deleting it.
const LIST_CONSUMER_IDLE: Duration = Duration::from_secs(30);

/// Dead letters read per request when listing them.
const LIST_BATCH: usize = 256;

/// The headers this backend writes on dead letters and replays; publishers
/// may not set them.
pub const RESERVED_HEADERS: [&str; 6] = [H_ID, H_TOPIC, H_PUBLISHED, H_ATTEMPTS, H_ERROR, H_FAILED];
const H_ID: &str = "Nimbus-Id";
const H_TOPIC: &str = "Nimbus-Topic";
const H_PUBLISHED: &str = "Nimbus-Published-Ms";
const H_ATTEMPTS: &str = "Nimbus-Attempts";
const H_ERROR: &str = "Nimbus-Error";
const H_FAILED: &str = "Nimbus-Failed-Ms";

/// JetStream deduplicates publishes carrying the same value within its
/// duplicate window (2 minutes by default).
const H_MSG_ID: &str = "Nats-Msg-Id";

/// Queues on a NATS JetStream server.
pub struct NatsBackend {
    client: async_nats::Client,
    js: jetstream::Context,
    prefix: String,
    /// Each consumer's pair of JetStream consumers, once looked up.
    consumers: Mutex<HashMap<Consumer, Arc<Pair>>>,
}

/// One function's JetStream consumers.
struct Pair {
    /// On the app's message stream.
    queue: PullConsumer,
    /// On the app's replay stream.
    replay: PullConsumer,
}

impl Pair {
    fn ack_wait(&self) -> Duration {
        self.queue.cached_info().config.ack_wait
    }
}

/// Where one consumer's messages live.
struct Names {
    queue_stream: String,
    dead_stream: String,
    replay_stream: String,
    /// The durable consumer's name, on both the queue and the replay stream.
    consumer: String,
    dead_subject: String,
    replay_subject: String,
}

impl NatsBackend {
    /// Connects to the NATS server at `url` (e.g. `nats://127.0.0.1:4222`);
    /// every stream, consumer and subject this backend uses starts with
    /// `prefix` (letters, digits, `_` and `-`).
    pub async fn connect(url: &str, prefix: &str) -> Result<NatsBackend, BackendError> {
        if prefix.is_empty()
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(BackendError::Invalid(format!(
                "invalid NATS prefix `{prefix}`: use letters, digits, `_` and `-`"
            )));
        }
        let client = async_nats::ConnectOptions::new()
            .name("nimbus")
            .connect(url)
            .await
            .map_err(|e| fail(&format!("cannot connect to {url}"), e))?;
        // The account info request answers with an error (or not at all)
        // when JetStream is off; better to say so now than at the first
        // publish. (async-nats's typed `query_account` cannot parse the
        // answer of servers before 2.10, hence the raw request.)
        let unavailable = |why: &dyn Display| {
            fail(
                &format!("JetStream is not available at {url} (is the server run with -js?)"),
                why,
            )
        };
        let reply = client
            .request("$JS.API.INFO", Bytes::new())
            .await
            .map_err(|e| unavailable(&e))?;
        let info: serde_json::Value =
            serde_json::from_slice(&reply.payload).map_err(|e| unavailable(&e))?;
        if let Some(error) = info.get("error") {
            return Err(unavailable(&error));
        }
        let js = jetstream::new(client.clone());
        Ok(NatsBackend {
            client,
            js,
            prefix: prefix.to_owned(),
            consumers: Mutex::default(),
        })
    }

    fn names(&self, consumer: &Consumer) -> Names {
        let p = &self.prefix;
        let app = name_token(&consumer.app);
        let function = name_token(&consumer.function);
        Names {
            queue_stream: format!("{p}_queue_{app}"),
            dead_stream: format!("{p}_dead_{app}"),
            replay_stream: format!("{p}_replay_{app}"),
            consumer: format!("{p}_{function}"),
            dead_subject: format!("{p}.dead.{app}.{function}"),
            replay_subject: format!("{p}.replay.{app}.{function}"),
        }
    }

    fn message_subject(&self, app: &str, topic: &str) -> String {
        format!("{}.msg.{}.{topic}", self.prefix, name_token(app))
    }

    /// Creates the app's three streams if they are missing.
    async fn ensure_streams(&self, app: &str) -> Result<(), BackendError> {
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
    async fn ensure_consumer(
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

    /// A handle on a stream by name; sends no request.
    async fn stream(&self, name: &str) -> Result<stream::Stream<()>, BackendError> {
        self.js
            .get_stream_no_info(name)
            .await
            .map_err(|e| fail(&format!("stream {name}"), e))
    }

    /// The consumer's JetStream consumers, with `ack_wait` equal to `lease`.
    async fn pair(&self, consumer: &Consumer, lease: Duration) -> Result<Arc<Pair>, BackendError> {
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

    fn remember(&self, consumer: &Consumer, pair: Arc<Pair>) {
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

    /// Checks that `token` is a delivery to `consumer`, and returns it parsed.
    fn check_token<'a>(
        &self,
        consumer: &Consumer,
        token: &'a str,
    ) -> Result<AckToken<'a>, BackendError> {
        let names = self.names(consumer);
        AckToken::parse(token)
            .filter(|t| {
                t.consumer == names.consumer
                    && (t.stream == names.queue_stream || t.stream == names.replay_stream)
            })
            .ok_or_else(|| {
                BackendError::Invalid(format!(
                    "`{token}` is not a delivery to `{}` of app `{}`",
                    consumer.function, consumer.app
                ))
            })
    }

    /// Sends `kind` for a delivery and waits until the server has it.
    async fn settle(
        &self,
        consumer: &Consumer,
        delivery: &Delivery,
        kind: AckKind,
    ) -> Result<(), BackendError> {
        self.check_token(consumer, &delivery.token)?;
        let what = match kind {
            AckKind::Ack => "acknowledging",
            AckKind::Nak(_) => "scheduling a retry of",
            _ => "terminating",
        };
        match self
            .client
            .request(delivery.token.clone(), Bytes::from(kind))
            .await
        {
            Ok(_) => Ok(()),
            // The consumer is gone (deleted, or its stream was): so is the
            // delivery, as with a token the embedded backend no longer holds.
            Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                tracing::debug!(
                    message_id = delivery.message.id,
                    "{what} a delivery whose consumer is gone"
                );
                Ok(())
            }
            Err(e) => Err(fail(&format!("{what} message {}", delivery.message.id), e)),
        }
    }

    /// The consumer's dead letters, oldest first, with their sequence in the
    /// dead-letter stream.
    async fn list_dead(&self, consumer: &Consumer) -> Result<Vec<(u64, DeadLetter)>, BackendError> {
        let names = self.names(consumer);
        let stream = self.stream(&names.dead_stream).await?;
        let lister = format!("{}_list_{}", self.prefix, uuid::Uuid::new_v4().simple());
        let config = pull::Config {
            name: Some(lister.clone()),
            filter_subject: names.dead_subject.clone(),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            inactive_threshold: LIST_CONSUMER_IDLE,
            memory_storage: true,
            ..Default::default()
        };
        let reader: PullConsumer = match stream.create_consumer(config).await {
            Ok(reader) => reader,
            Err(e) if matches!(e.kind(), ConsumerErrorKind::JetStream(ref j) if is_stream_not_found(j)) =>
            {
                return Ok(Vec::new());
            }
            Err(e) => {
                return Err(fail(
                    &format!("cannot read dead letters of {}", names.consumer),
                    e,
                ));
            }
        };
        let total = reader.cached_info().num_pending as usize;
        let mut out = Vec::with_capacity(total);
        let result = async {
            while out.len() < total {
                let want = (total - out.len()).min(LIST_BATCH);
                let batch = pull_now(&reader, want).await?;
                if batch.is_empty() {
                    break;
                }
                for m in batch {
                    let seq = m
                        .info()
                        .map_err(|e| fail("a dead letter has no JetStream info", e))?
                        .stream_sequence;
                    out.push((seq, decode_dead(&m)));
                }
            }
            Ok::<_, BackendError>(())
        }
        .await;
        if let Err(e) = stream.delete_consumer(&lister).await {
            tracing::debug!(error = %e, "deleting a dead-letter lister failed; it expires by itself");
        }
        result?;
        Ok(out)
    }

    /// Deletes all of this backend's streams (everything under its prefix):
    /// messages, dead letters and consumers of every app. Returns how many.
    pub async fn delete_all(&self) -> Result<usize, BackendError> {
        let mut names = self.js.stream_names();
        let mut mine = Vec::new();
        while let Some(name) = names.next().await {
            let name = name.map_err(|e| fail("cannot list streams", e))?;
            if name.starts_with(&format!("{}_", self.prefix)) {
                mine.push(name);
            }
        }
        for name in &mine {
            self.js
                .delete_stream(name)
                .await
                .map_err(|e| fail(&format!("cannot delete stream {name}"), e))?;
        }
        self.consumers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        Ok(mine.len())
    }
}

#[async_trait]
impl QueueBackend for NatsBackend {
    async fn subscribe(
        &self,
        consumer: &Consumer,
        topic: &TopicPattern,
    ) -> Result<(), BackendError> {
        self.ensure_streams(&consumer.app).await?;
        let names = self.names(consumer);
        let queue = self
            .ensure_consumer(
                &names.queue_stream,
                &names.consumer,
                self.message_subject(&consumer.app, topic.as_str()),
                // Like the embedded broker: only what is published from now on.
                DeliverPolicy::New,
                format!(
                    "Nimbus function `{}` of app `{}` on `{topic}`",
                    consumer.function, consumer.app
                ),
            )
            .await?;
        let replay = self
            .ensure_consumer(
                &names.replay_stream,
                &names.consumer,
                names.replay_subject.clone(),
                // Everything here is for this function alone.
                DeliverPolicy::All,
                format!(
                    "Nimbus function `{}` of app `{}`: replayed dead letters",
                    consumer.function, consumer.app
                ),
            )
            .await?;
        self.remember(consumer, Arc::new(Pair { queue, replay }));
        Ok(())
    }

    async fn publish(
        &self,
        app: &str,
        topic: &str,
        payload: &[u8],
        headers: &[(String, String)],
    ) -> Result<String, BackendError> {
        validate_topic(topic).map_err(BackendError::Invalid)?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let mut map = publisher_headers(headers)?;
        map.insert(H_MSG_ID, id.as_str());
        let subject = self.message_subject(app, topic);
        let ack = self
            .js
            .publish_with_headers(subject, map, Bytes::copy_from_slice(payload))
            .await
            .map_err(|e| fail(&format!("cannot publish to `{topic}`"), e))?;
        match ack.await {
            Ok(_) => Ok(id),
            // No stream: no function of this app has ever subscribed.
            Err(e) if e.kind() == PublishErrorKind::StreamNotFound => {
                tracing::debug!(app, topic, "published to a topic nobody consumes");
                Ok(id)
            }
            Err(e) => Err(fail(&format!("cannot publish to `{topic}`"), e)),
        }
    }

    async fn fetch(
        &self,
        consumer: &Consumer,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, BackendError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let pair = self.pair(consumer, lease).await?;
        // Replays first: an operator asked for them.
        let mut messages = pull_now(&pair.replay, max).await?;
        if messages.len() < max {
            messages.extend(pull_now(&pair.queue, max - messages.len()).await?);
        }
        if messages.is_empty() && !wait.is_zero() {
            // A pull for `max` would wait until all `max` arrive; wait for
            // one, then take whatever else is there.
            messages = pull_wait(&pair.queue, wait).await?;
            if !messages.is_empty() && max > 1 {
                messages.extend(pull_now(&pair.queue, max - 1).await?);
            }
        }
        let prefix = format!("{}.msg.{}.", self.prefix, name_token(&consumer.app));
        messages
            .iter()
            .map(|m| delivery(m, &prefix))
            .collect::<Result<_, _>>()
    }

    async fn ack(&self, consumer: &Consumer, delivery: &Delivery) -> Result<(), BackendError> {
        self.settle(consumer, delivery, AckKind::Ack).await
    }

    async fn retry(
        &self,
        consumer: &Consumer,
        delivery: &Delivery,
        delay: Duration,
        _error: &str,
    ) -> Result<(), BackendError> {
        self.settle(consumer, delivery, AckKind::Nak(Some(delay)))
            .await
    }

    async fn dead_letter(
        &self,
        consumer: &Consumer,
        delivery: &Delivery,
        error: &str,
    ) -> Result<(), BackendError> {
        let token = self.check_token(consumer, &delivery.token)?;
        let names = self.names(consumer);
        let m = &delivery.message;
        let mut headers = publisher_headers(&m.headers)?;
        // One dead letter per delivered message, even if a crash between the
        // two steps below makes it dead-lettered twice.
        headers.insert(
            H_MSG_ID,
            format!("{}:{}:{}", token.stream, token.consumer, token.stream_seq).as_str(),
        );
        headers.insert(H_ID, header_value(&m.id)?);
        headers.insert(H_TOPIC, header_value(&m.topic)?);
        headers.insert(H_PUBLISHED, m.published_ms.to_string().as_str());
        headers.insert(H_ATTEMPTS, delivery.attempt.to_string().as_str());
        headers.insert(H_ERROR, escape(error).as_str());
        headers.insert(H_FAILED, now_ms().to_string().as_str());
        let cannot = || format!("cannot move message {} to dead letters", m.id);
        self.js
            .publish_with_headers(
                names.dead_subject,
                headers,
                Bytes::copy_from_slice(&m.payload),
            )
            .await
            .map_err(|e| fail(&cannot(), e))?
            .await
            .map_err(|e| fail(&cannot(), e))?;
        self.settle(consumer, delivery, AckKind::Term).await
    }

    async fn dead_letters(&self, consumer: &Consumer) -> Result<Vec<DeadLetter>, BackendError> {
        Ok(self
            .list_dead(consumer)
            .await?
            .into_iter()
            .map(|(_, dead)| dead)
            .collect())
    }

    async fn replay(&self, consumer: &Consumer, id: Option<&str>) -> Result<usize, BackendError> {
        let names = self.names(consumer);
        let dead = self.stream(&names.dead_stream).await?;
        let mut count = 0;
        for (seq, letter) in self.list_dead(consumer).await? {
            if id.is_some_and(|id| id != letter.message.id) {
                continue;
            }
            let m = &letter.message;
            let mut headers = publisher_headers(&m.headers)?;
            // Replaying again after a crash between the two steps below
            // does not queue it twice.
            headers.insert(H_MSG_ID, format!("{}:{seq}", names.dead_stream).as_str());
            headers.insert(H_ID, header_value(&m.id)?);
            headers.insert(H_TOPIC, header_value(&m.topic)?);
            headers.insert(H_PUBLISHED, m.published_ms.to_string().as_str());
            let cannot = || format!("cannot replay message {}", m.id);
            self.js
                .publish_with_headers(
                    names.replay_subject.clone(),
                    headers,
                    Bytes::copy_from_slice(&m.payload),
                )
                .await
                .map_err(|e| fail(&cannot(), e))?
                .await
                .map_err(|e| fail(&cannot(), e))?;
            dead.delete_message(seq)
                .await
                .map_err(|e| fail(&cannot(), e))?;
            count += 1;
        }
        Ok(count)
    }

    async fn purge(&self, consumer: &Consumer, id: Option<&str>) -> Result<usize, BackendError> {
        let names = self.names(consumer);
        let dead = self.stream(&names.dead_stream).await?;
        let Some(id) = id else {
            return match dead.purge().filter(&names.dead_subject).await {
                Ok(response) => Ok(response.purged as usize),
                Err(e) if matches!(e.kind(), stream::PurgeErrorKind::JetStream(ref j) if is_stream_not_found(j)) => {
                    Ok(0)
                }
                Err(e) => Err(fail("cannot purge dead letters", e)),
            };
        };
        let mut count = 0;
        for (seq, letter) in self.list_dead(consumer).await? {
            if letter.message.id == id {
                dead.delete_message(seq)
                    .await
                    .map_err(|e| fail(&format!("cannot delete dead letter {id}"), e))?;
                count += 1;
            }
        }
        Ok(count)
    }

    async fn stats(&self, consumer: &Consumer) -> Result<QueueStats, BackendError> {
        let names = self.names(consumer);
        let mut stats = QueueStats::default();
        let mut subscribed = false;
        for stream in [&names.queue_stream, &names.replay_stream] {
            match self
                .stream(stream)
                .await?
                .consumer_info(&names.consumer)
                .await
            {
                Ok(info) => {
                    subscribed = true;
                    stats.ready += info.num_pending;
                    stats.in_flight += info.num_ack_pending as u64;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ConsumerInfoErrorKind::NotFound | ConsumerInfoErrorKind::StreamNotFound
                    ) => {}
                Err(e) => return Err(fail(&format!("consumer {}", names.consumer), e)),
            }
        }
        match self
            .stream(&names.dead_stream)
            .await?
            .info_with_subjects(&names.dead_subject)
            .await
        {
            Ok(mut subjects) => {
                while let Some(subject) = subjects.next().await {
                    let (_, n) = subject.map_err(|e| fail("cannot count dead letters", e))?;
                    stats.dead += n as u64;
                }
            }
            // Never subscribed: no stream, no dead letters. (Subscribing
            // creates the streams before the consumers.)
            Err(_) if !subscribed => {}
            Err(e) => return Err(fail("cannot count dead letters", e)),
        }
        Ok(stats)
    }
}

/// A JetStream ack subject, parsed: `$JS.ACK.<stream>.<consumer>.<delivered>.
/// <stream seq>.<consumer seq>.<time>.<pending>`, or the newer form with a
/// domain and an account hash after `$JS.ACK` and a random token at the end.
struct AckToken<'a> {
    stream: &'a str,
    consumer: &'a str,
    stream_seq: u64,
}

impl<'a> AckToken<'a> {
    fn parse(token: &'a str) -> Option<AckToken<'a>> {
        let parts: Vec<&str> = token.strip_prefix("$JS.ACK.")?.split('.').collect();
        let at = match parts.len() {
            7 => 0,
            9.. => 2,
            _ => return None,
        };
        Some(AckToken {
            stream: parts[at],
            consumer: parts[at + 1],
            stream_seq: parts[at + 3].parse().ok()?,
        })
    }
}

/// Up to `max` messages there now, without waiting.
async fn pull_now(
    consumer: &PullConsumer,
    max: usize,
) -> Result<Vec<jetstream::Message>, BackendError> {
    let batch = consumer
        .fetch()
        .max_messages(max)
        .messages()
        .await
        .map_err(|e| fail("cannot fetch messages", e))?;
    collect(batch).await
}

/// The next message, waiting up to `wait` for it.
async fn pull_wait(
    consumer: &PullConsumer,
    wait: Duration,
) -> Result<Vec<jetstream::Message>, BackendError> {
    let batch = consumer
        .batch()
        .max_messages(1)
        .expires(wait)
        .messages()
        .await
        .map_err(|e| fail("cannot fetch messages", e))?;
    collect(batch).await
}

async fn collect(mut batch: pull::Batch) -> Result<Vec<jetstream::Message>, BackendError> {
    let mut out = Vec::new();
    while let Some(message) = batch.next().await {
        out.push(message.map_err(|e| fail("cannot fetch messages", e))?);
    }
    Ok(out)
}

/// A fetched message as a delivery; `topic_prefix` is what precedes the
/// topic in its subject.
fn delivery(m: &jetstream::Message, topic_prefix: &str) -> Result<Delivery, BackendError> {
    let info = m
        .info()
        .map_err(|e| fail("a fetched message has no JetStream info", e))?;
    let headers = m.headers.as_ref();
    let header = |name: &str| headers.and_then(|h| h.get(name)).map(|v| v.as_str());
    let message = QueueMessage {
        id: header(H_ID)
            .or_else(|| header(H_MSG_ID))
            .map_or_else(|| info.stream_sequence.to_string(), str::to_owned),
        topic: header(H_TOPIC).map_or_else(
            || {
                m.subject
                    .strip_prefix(topic_prefix)
                    .unwrap_or(&m.subject)
                    .to_owned()
            },
            str::to_owned,
        ),
        headers: headers.map(own_headers).unwrap_or_default(),
        published_ms: header(H_PUBLISHED)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| (info.published.unix_timestamp_nanos() / 1_000_000) as u64),
        payload: m.payload.to_vec(),
    };
    let attempt = u32::try_from(info.delivered.max(1)).unwrap_or(u32::MAX);
    let token = m
        .reply
        .as_ref()
        .map(|r| r.to_string())
        .ok_or_else(|| BackendError::Storage("a fetched message has no ack subject".into()))?;
    Ok(Delivery {
        message,
        attempt,
        token,
    })
}

/// A message read from a dead-letter stream.
fn decode_dead(m: &jetstream::Message) -> DeadLetter {
    let headers = m.headers.as_ref();
    let header = |name: &str| headers.and_then(|h| h.get(name)).map(|v| v.as_str());
    let number = |name: &str| {
        header(name)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    DeadLetter {
        message: QueueMessage {
            id: header(H_ID).unwrap_or_default().to_owned(),
            topic: header(H_TOPIC).unwrap_or_default().to_owned(),
            headers: headers.map(own_headers).unwrap_or_default(),
            published_ms: number(H_PUBLISHED),
            payload: m.payload.to_vec(),
        },
        attempts: u32::try_from(number(H_ATTEMPTS)).unwrap_or(u32::MAX),
        error: unescape(header(H_ERROR).unwrap_or_default()),
        failed_ms: number(H_FAILED),
    }
}

/// The publisher's headers among a stored message's: not NATS's, not ours;
/// sorted by name, since a header map has no order.
fn own_headers(map: &HeaderMap) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (name, values) in map.iter() {
        let name: &str = name.as_ref();
        if is_reserved(name) {
            continue;
        }
        for value in values {
            out.push((name.to_owned(), value.as_str().to_owned()));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn is_reserved(name: &str) -> bool {
    name.get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case("nats-"))
        || RESERVED_HEADERS
            .iter()
            .any(|r| r.eq_ignore_ascii_case(name))
}

/// The publisher's headers as NATS headers, or why they cannot be.
fn publisher_headers(headers: &[(String, String)]) -> Result<HeaderMap, BackendError> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let bad = |why: &str| Err(BackendError::Invalid(format!("header `{name}`: {why}")));
        if is_reserved(name) {
            return bad("names starting with `Nats-` and Nimbus's own headers are reserved");
        }
        let Ok(parsed) = name.parse::<async_nats::HeaderName>() else {
            return bad("a name may only hold printable ASCII other than `:`");
        };
        if name.is_empty() {
            return bad("the name is empty");
        }
        let Ok(value) = header_value(value) else {
            return bad("a value may not hold CR or LF");
        };
        map.append(parsed, value);
    }
    Ok(map)
}

/// `value` as a header value, or why it cannot be one. (The client's own
/// conversion from `&str` does not check, and a CR or LF would break the
/// protocol's framing.)
fn header_value(value: &str) -> Result<async_nats::HeaderValue, BackendError> {
    value.parse().map_err(|_| {
        BackendError::Invalid(format!(
            "`{}` cannot be a NATS header value: it holds CR or LF",
            value.escape_debug()
        ))
    })
}

/// A NATS header value may not hold CR or LF; errors often do.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('\r', "\\r")
        .replace('\n', "\\n")
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// App and function names are `[a-z0-9-]` already; anything else becomes
/// `_`, so a name can never add a subject token or a wildcard.
fn name_token(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn is_stream_not_found(e: &jetstream::Error) -> bool {
    e.error_code() == ErrorCode::STREAM_NOT_FOUND
}

fn fail(what: &str, e: impl Display) -> BackendError {
    BackendError::Storage(format!("NATS: {what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_tokens_parse_in_both_forms() {
        let old = AckToken::parse("$JS.ACK.s.c.2.17.5.1700000000000000000.0").unwrap();
        assert_eq!((old.stream, old.consumer, old.stream_seq), ("s", "c", 17));
        let new =
            AckToken::parse("$JS.ACK.hub.ACCHASH.s.c.2.17.5.1700000000000000000.0.xyz").unwrap();
        assert_eq!((new.stream, new.consumer, new.stream_seq), ("s", "c", 17));
        assert!(AckToken::parse("$JS.ACK.s.c").is_none());
        assert!(AckToken::parse("orders.created").is_none());
    }

    #[test]
    fn errors_survive_the_header_escape() {
        for s in ["plain", "two\nlines\r\n", "back\\slash\\n", "trailing\\"] {
            let escaped = escape(s);
            assert!(!escaped.contains(['\r', '\n']));
            assert_eq!(unescape(&escaped), s);
        }
    }

    #[test]
    fn bad_and_reserved_headers_are_refused() {
        let h = |k: &str, v: &str| vec![(k.to_owned(), v.to_owned())];
        assert!(publisher_headers(&h("content-type", "text/plain")).is_ok());
        for (k, v) in [
            ("Nats-Msg-Id", "x"),
            ("nimbus-error", "x"),
            ("with space", "x"),
            ("colon:", "x"),
            ("", "x"),
            ("ok", "line\nbreak"),
        ] {
            assert!(
                matches!(publisher_headers(&h(k, v)), Err(BackendError::Invalid(_))),
                "{k:?}: {v:?}"
            );
        }
    }
}
