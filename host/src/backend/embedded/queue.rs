//! The embedded backend's queues: each consumer's messages in the `queue`
//! table ordered by when they are due, dead letters in `dead`, and the
//! sequence that numbers them in `meta`.
//!
//! A message published to a topic is copied once per subscribed function, so
//! each consumer leases, retries and acknowledges its own copy.

use super::{DEAD, EmbeddedBackend, META, QUEUE, storage};
use crate::backend::queue::now_ms;
use crate::backend::{
    BackendError, Consumer, DeadLetter, Delivery, QueueBackend, QueueMessage, QueueStats,
};
use crate::manifest::TopicPattern;
use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A queue entry's bookkeeping; the payload follows it in the stored value.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    message: QueueMessage,
    /// Deliveries so far.
    attempt: u32,
    /// Handed to a handler and not yet acknowledged.
    leased: bool,
    last_error: Option<String>,
}

/// Stored values are a 4-byte length, that much JSON, then the raw payload,
/// so payloads of any size cost no encoding.
fn encode<T: Serialize>(head: &T, payload: &[u8]) -> Vec<u8> {
    let json = serde_json::to_vec(head).expect("queue records serialize");
    let mut out = Vec::with_capacity(4 + json.len() + payload.len());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(payload);
    out
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<(T, Vec<u8>), BackendError> {
    let corrupt = || BackendError::Storage("a queue record is corrupt".into());
    let len = u32::from_le_bytes(
        bytes
            .get(..4)
            .ok_or_else(corrupt)?
            .try_into()
            .map_err(|_| corrupt())?,
    ) as usize;
    let json = bytes.get(4..4 + len).ok_or_else(corrupt)?;
    let head = serde_json::from_slice(json).map_err(|_| corrupt())?;
    Ok((head, bytes[4 + len..].to_vec()))
}

fn decode_entry(bytes: &[u8]) -> Result<Entry, BackendError> {
    let (mut entry, payload): (Entry, Vec<u8>) = decode(bytes)?;
    entry.message.payload = payload;
    Ok(entry)
}

/// Removes the queue entry under `key` and returns it; `None` when it is
/// gone (its lease ran out and another consumer took it since).
fn take_entry(
    table: &mut redb::Table<'_, &str, &[u8]>,
    key: &str,
) -> Result<Option<Entry>, BackendError> {
    let Some(value) = table.remove(key).map_err(storage)? else {
        return Ok(None);
    };
    let entry = decode_entry(value.value())?;
    Ok(Some(entry))
}

/// The dead letters stored under `prefix` (one consumer's), with their keys.
fn dead_letters_under(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    prefix: &str,
) -> Result<Vec<(String, DeadLetter)>, BackendError> {
    let mut out = Vec::new();
    for item in table.range(prefix..).map_err(storage)? {
        let (k, v) = item.map_err(storage)?;
        if !k.value().starts_with(prefix) {
            break;
        }
        let (mut letter, payload): (DeadLetter, Vec<u8>) = decode(v.value())?;
        letter.message.payload = payload;
        out.push((k.value().to_owned(), letter));
    }
    Ok(out)
}

fn consumer_prefix(c: &Consumer) -> String {
    format!("{}\0{}\0", c.app, c.function)
}

fn queue_key(c: &Consumer, due_ms: u64, seq: u64) -> String {
    format!("{}{due_ms:016x}\0{seq:016x}", consumer_prefix(c))
}

/// When the entry under `key`, one of the consumer whose keys start with
/// `prefix`, is due (or its lease ends); `None` for a key not of that form.
fn due_of(key: &str, prefix: &str) -> Option<u64> {
    let hex = key.strip_prefix(prefix)?.get(..16)?;
    u64::from_str_radix(hex, 16).ok()
}

fn seq_of(key: &str) -> Result<u64, BackendError> {
    key.rsplit('\0')
        .next()
        .and_then(|s| u64::from_str_radix(s, 16).ok())
        .ok_or_else(|| BackendError::Storage(format!("bad queue key {key:?}")))
}

fn next_seq(tx: &WriteTransaction) -> Result<u64, BackendError> {
    let mut meta = tx.open_table(META).map_err(storage)?;
    let seq = meta.get("seq").map_err(storage)?.map_or(0, |v| v.value()) + 1;
    meta.insert("seq", seq).map_err(storage)?;
    Ok(seq)
}

/// Makes every leased entry due now; returns how many.
pub(super) fn release_leases(tx: &WriteTransaction) -> Result<usize, BackendError> {
    let mut table = tx.open_table(QUEUE).map_err(storage)?;
    let mut leased = Vec::new();
    for item in table.iter().map_err(storage)? {
        let (k, v) = item.map_err(storage)?;
        let entry = decode_entry(v.value())?;
        if entry.leased {
            leased.push((k.value().to_owned(), entry));
        }
    }
    let count = leased.len();
    let now = now_ms();
    for (key, mut entry) in leased {
        table.remove(key.as_str()).map_err(storage)?;
        let mut parts = key.splitn(3, '\0');
        let consumer = Consumer {
            app: parts.next().unwrap_or_default().to_owned(),
            function: parts.next().unwrap_or_default().to_owned(),
        };
        entry.leased = false;
        let value = encode(&entry, &entry.message.payload);
        table
            .insert(
                queue_key(&consumer, now, seq_of(&key)?).as_str(),
                value.as_slice(),
            )
            .map_err(storage)?;
    }
    Ok(count)
}

#[async_trait]
impl QueueBackend for EmbeddedBackend {
    async fn subscribe(
        &self,
        consumer: &Consumer,
        topic: &TopicPattern,
    ) -> Result<(), BackendError> {
        let mut subs = self.subscriptions.lock().unwrap_or_else(|e| e.into_inner());
        let list = subs.entry(consumer.app.clone()).or_default();
        list.retain(|(f, _)| *f != consumer.function);
        list.push((consumer.function.clone(), topic.clone()));
        Ok(())
    }

    async fn publish(
        &self,
        app: &str,
        topic: &str,
        payload: &[u8],
        headers: &[(String, String)],
    ) -> Result<String, BackendError> {
        let consumers: Vec<Consumer> = {
            let subs = self.subscriptions.lock().unwrap_or_else(|e| e.into_inner());
            subs.get(app)
                .map(|list| {
                    list.iter()
                        .filter(|(_, pattern)| pattern.matches(topic))
                        .map(|(function, _)| Consumer {
                            app: app.to_owned(),
                            function: function.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let message = QueueMessage {
            id: uuid::Uuid::new_v4().simple().to_string(),
            topic: topic.to_owned(),
            headers: headers.to_vec(),
            published_ms: now_ms(),
            payload: payload.to_vec(),
        };
        let id = message.id.clone();
        if consumers.is_empty() {
            tracing::debug!(app, topic, "published to a topic nobody consumes");
            return Ok(id);
        }
        let published_ms = message.published_ms;
        let entry = Entry {
            message,
            attempt: 0,
            leased: false,
            last_error: None,
        };
        let value = encode(&entry, &entry.message.payload);
        self.write(value.len() * consumers.len(), move |tx| {
            for consumer in &consumers {
                let seq = next_seq(tx)?;
                tx.open_table(QUEUE)
                    .map_err(storage)?
                    .insert(
                        queue_key(consumer, published_ms, seq).as_str(),
                        value.as_slice(),
                    )
                    .map_err(storage)?;
            }
            Ok(())
        })
        .await?;
        self.wake.notify_waiters();
        Ok(id)
    }

    async fn fetch(
        &self,
        consumer: &Consumer,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, BackendError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Register for a wake-up before looking, so a publish between the
            // look and the wait is not missed.
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();

            // Look on a read transaction first, so an idle consumer's polls
            // cost the writer nothing.
            let c = consumer.clone();
            let next_due = self.blocking(move |db| first_due(db, &c)).await?;
            if next_due == Some(Duration::ZERO) {
                let c = consumer.clone();
                let deliveries = self
                    .write(0, move |tx| lease_due(tx, &c, max, lease))
                    .await?;
                if !deliveries.is_empty() {
                    return Ok(deliveries);
                }
                // Another fetch of the same consumer took them first.
                continue;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let until = next_due.map_or(deadline, |d| (now + d).min(deadline));
            tokio::select! {
                () = &mut woken => {}
                () = tokio::time::sleep_until(until) => {}
            }
        }
    }

    async fn ack(&self, _consumer: &Consumer, delivery: &Delivery) -> Result<(), BackendError> {
        self.remove(QUEUE, delivery.token.clone()).await
    }

    async fn retry(
        &self,
        consumer: &Consumer,
        delivery: &Delivery,
        delay: Duration,
        error: &str,
    ) -> Result<(), BackendError> {
        let key = delivery.token.clone();
        let consumer = consumer.clone();
        let error = error.to_owned();
        self.write(key.len() + error.len(), move |tx| {
            let mut table = tx.open_table(QUEUE).map_err(storage)?;
            let Some(mut entry) = take_entry(&mut table, &key)? else {
                return Ok(());
            };
            entry.leased = false;
            entry.last_error = Some(error.clone());
            let due = now_ms() + delay.as_millis() as u64;
            let value = encode(&entry, &entry.message.payload);
            table
                .insert(
                    queue_key(&consumer, due, seq_of(&key)?).as_str(),
                    value.as_slice(),
                )
                .map_err(storage)?;
            Ok(())
        })
        .await?;
        self.wake.notify_waiters();
        Ok(())
    }

    async fn dead_letter(
        &self,
        consumer: &Consumer,
        delivery: &Delivery,
        error: &str,
    ) -> Result<(), BackendError> {
        let key = delivery.token.clone();
        let prefix = consumer_prefix(consumer);
        let error = error.to_owned();
        self.write(key.len() + error.len(), move |tx| {
            let mut table = tx.open_table(QUEUE).map_err(storage)?;
            let Some(entry) = take_entry(&mut table, &key)? else {
                return Ok(());
            };
            let dead = DeadLetter {
                attempts: entry.attempt,
                error: error.clone(),
                failed_ms: now_ms(),
                message: entry.message,
            };
            let value = encode(&dead, &dead.message.payload);
            tx.open_table(DEAD)
                .map_err(storage)?
                .insert(
                    format!("{prefix}{:016x}", seq_of(&key)?).as_str(),
                    value.as_slice(),
                )
                .map_err(storage)?;
            Ok(())
        })
        .await
    }

    async fn dead_letters(&self, consumer: &Consumer) -> Result<Vec<DeadLetter>, BackendError> {
        let prefix = consumer_prefix(consumer);
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(storage)?;
            let table = tx.open_table(DEAD).map_err(storage)?;
            let letters = dead_letters_under(&table, &prefix)?;
            Ok(letters.into_iter().map(|(_, letter)| letter).collect())
        })
        .await
    }

    async fn replay(&self, consumer: &Consumer, id: Option<&str>) -> Result<usize, BackendError> {
        let moved = self.take_dead(consumer, id, true).await?;
        if moved > 0 {
            self.wake.notify_waiters();
        }
        Ok(moved)
    }

    async fn purge(&self, consumer: &Consumer, id: Option<&str>) -> Result<usize, BackendError> {
        self.take_dead(consumer, id, false).await
    }

    async fn stats(&self, consumer: &Consumer) -> Result<QueueStats, BackendError> {
        let prefix = consumer_prefix(consumer);
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(storage)?;
            let mut stats = QueueStats::default();
            let now = now_ms();
            for item in tx
                .open_table(QUEUE)
                .map_err(storage)?
                .range(prefix.as_str()..)
                .map_err(storage)?
            {
                let (k, v) = item.map_err(storage)?;
                let key = k.value();
                if !key.starts_with(&prefix) {
                    break;
                }
                let entry = decode_entry(v.value())?;
                let due = due_of(key, &prefix).unwrap_or(0);
                if entry.leased && due > now {
                    stats.in_flight += 1;
                } else if due > now {
                    stats.delayed += 1;
                } else {
                    stats.ready += 1;
                }
            }
            for item in tx
                .open_table(DEAD)
                .map_err(storage)?
                .range(prefix.as_str()..)
                .map_err(storage)?
            {
                let (k, _) = item.map_err(storage)?;
                if !k.value().starts_with(&prefix) {
                    break;
                }
                stats.dead += 1;
            }
            Ok(stats)
        })
        .await
    }
}

impl EmbeddedBackend {
    /// Removes dead letters (one by id, or all), putting them back in the
    /// queue with fresh attempts when `requeue`.
    async fn take_dead(
        &self,
        consumer: &Consumer,
        id: Option<&str>,
        requeue: bool,
    ) -> Result<usize, BackendError> {
        let consumer = consumer.clone();
        let id = id.map(str::to_owned);
        self.write(0, move |tx| {
            let prefix = consumer_prefix(&consumer);
            let mut dead = tx.open_table(DEAD).map_err(storage)?;
            let mut chosen = dead_letters_under(&dead, &prefix)?;
            chosen.retain(|(_, letter)| id.as_deref().is_none_or(|id| id == letter.message.id));
            for (key, letter) in &chosen {
                dead.remove(key.as_str()).map_err(storage)?;
                if requeue {
                    let entry = Entry {
                        message: letter.message.clone(),
                        attempt: 0,
                        leased: false,
                        last_error: Some(letter.error.clone()),
                    };
                    let value = encode(&entry, &entry.message.payload);
                    let seq = next_seq(tx)?;
                    tx.open_table(QUEUE)
                        .map_err(storage)?
                        .insert(
                            queue_key(&consumer, now_ms(), seq).as_str(),
                            value.as_slice(),
                        )
                        .map_err(storage)?;
                }
            }
            Ok(chosen.len())
        })
        .await
    }
}

/// How long until the consumer's next entry is due: zero when one is due
/// now, `None` when it has none waiting.
fn first_due(db: &Database, consumer: &Consumer) -> Result<Option<Duration>, BackendError> {
    let prefix = consumer_prefix(consumer);
    let tx = db.begin_read().map_err(storage)?;
    let table = tx.open_table(QUEUE).map_err(storage)?;
    let Some(item) = table.range(prefix.as_str()..).map_err(storage)?.next() else {
        return Ok(None);
    };
    let (k, _) = item.map_err(storage)?;
    let now = now_ms();
    Ok(due_of(k.value(), &prefix).map(|due| Duration::from_millis(due.saturating_sub(now))))
}

/// Leases up to `max` of the consumer's entries due now, for `lease`.
fn lease_due(
    tx: &WriteTransaction,
    consumer: &Consumer,
    max: usize,
    lease: Duration,
) -> Result<Vec<Delivery>, BackendError> {
    let prefix = consumer_prefix(consumer);
    let now = now_ms();
    let end = format!("{prefix}{now:016x}\u{1}");
    let mut table = tx.open_table(QUEUE).map_err(storage)?;
    let mut due = Vec::new();
    for item in table
        .range(prefix.as_str()..end.as_str())
        .map_err(storage)?
    {
        if due.len() == max {
            break;
        }
        let (k, v) = item.map_err(storage)?;
        due.push((k.value().to_owned(), decode_entry(v.value())?));
    }
    let expires = now + lease.as_millis() as u64;
    let mut deliveries = Vec::with_capacity(due.len());
    for (key, mut entry) in due {
        table.remove(key.as_str()).map_err(storage)?;
        entry.attempt += 1;
        entry.leased = true;
        let token = queue_key(consumer, expires, seq_of(&key)?);
        let value = encode(&entry, &entry.message.payload);
        table
            .insert(token.as_str(), value.as_slice())
            .map_err(storage)?;
        deliveries.push(Delivery {
            message: entry.message,
            attempt: entry.attempt,
            token,
        });
    }
    Ok(deliveries)
}
