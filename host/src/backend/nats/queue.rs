//! The [`QueueBackend`] implementation on JetStream, and listing dead
//! letters.
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
//! [`DEFAULT_LEASE`]: super::DEFAULT_LEASE

use super::consumer::{Pair, pull_now, pull_wait};
use super::message::{
    H_ATTEMPTS, H_ERROR, H_FAILED, H_ID, H_MSG_ID, H_PUBLISHED, H_TOPIC, decode_dead, delivery,
    escape, header_value, publisher_headers,
};
use super::{NatsBackend, fail, is_stream_not_found, name_token};
use crate::backend::queue::now_ms;
use crate::backend::{BackendError, Consumer, DeadLetter, Delivery, QueueBackend, QueueStats};
use crate::manifest::{TopicPattern, validate_topic};
use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::context::{ConsumerInfoErrorKind, GetStreamErrorKind, PublishErrorKind};
use async_nats::jetstream::stream::{self, ConsumerErrorKind};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;

/// How long the server keeps a consumer made to list dead letters if this
/// node dies before deleting it.
const LIST_CONSUMER_IDLE: Duration = Duration::from_secs(30);

/// Dead letters read per request when listing them.
const LIST_BATCH: usize = 256;

impl NatsBackend {
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
        self.connected()?;
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
            // Nothing took the message: either the app has no stream (no
            // function of it ever subscribed), or JetStream is not answering
            // (a server shutting down stops its streams before it closes
            // connections). Only the first is a success.
            Err(e) if e.kind() == PublishErrorKind::StreamNotFound => {
                match self.js.get_stream(self.queue_stream(app)).await {
                    Err(missing) if matches!(missing.kind(), GetStreamErrorKind::JetStream(ref j) if is_stream_not_found(j)) =>
                    {
                        tracing::debug!(app, topic, "published to a topic nobody consumes");
                        Ok(id)
                    }
                    _ => Err(fail(
                        &format!("cannot publish to `{topic}`: JetStream did not store it"),
                        e,
                    )),
                }
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
