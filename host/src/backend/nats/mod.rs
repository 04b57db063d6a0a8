//! The NATS JetStream backend, so several Nimbus nodes share queues,
//! key-value stores, deployments and members.
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
//! | the cluster's members | bucket `P_members` | `$KV.P_members.<node id>` | expire after `MEMBER_TTL` |
//! | key-value store `S` of app `A` | bucket `P_kv_A_S` (stream `KV_P_kv_A_S`) | `$KV.P_kv_A_S.<key>` | one revision per key |
//! | what serves each function | bucket `P_deploy` | `$KV.P_deploy.<function>` | one revision per function |
//! | deployed components | object store `P_components` (stream `OBJ_P_components`) | `$O.P_components.>` | an object per digest |
//!
//! Each queue-triggered function `F` has a durable pull consumer `P_F` on
//! `P_queue_A` filtered on `P.msg.A.<its topic pattern>` (Nimbus patterns are
//! NATS wildcards), and one named alike on `P_replay_A` filtered on
//! `P.replay.A.F`. Subjects carry a kind token (`msg`, `dead`, `replay`) so an
//! app named `dead` cannot collide with another app's dead letters.
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
//!
//! # Files
//! - this file: [`NatsBackend`], connecting, the names of streams, consumers
//!   and subjects, and the helpers every part uses;
//! - `queue.rs`: the [`QueueBackend`](super::QueueBackend) implementation, and
//!   why it is built the way it is;
//! - `kv.rs`: the [`KvBackend`](super::KvBackend) implementation on KV
//!   buckets, and how keys are encoded;
//! - `members.rs`: the [`MembersBackend`](super::MembersBackend)
//!   implementation, a bucket whose entries expire;
//! - `consumer.rs`: each app's streams and each function's durable consumers:
//!   creating them, finding them again, pulling messages from them;
//! - `ack.rs`: delivery tokens (JetStream ack subjects) and settling a
//!   delivery through its token;
//! - `message.rs`: a queue message as a NATS message: its headers, and
//!   decoding what is fetched into deliveries and dead letters.

mod ack;
mod consumer;
mod deployments;
mod kv;
mod members;
mod message;
mod queue;

pub use consumer::DEFAULT_LEASE;
pub use message::RESERVED_HEADERS;

use super::{BackendError, Consumer, Namespace};
use async_nats::jetstream::stream;
use async_nats::jetstream::{self, ErrorCode};
use bytes::Bytes;
use consumer::Pair;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::fmt::Display;
use std::sync::{Arc, Mutex};

/// Queues on a NATS JetStream server.
pub struct NatsBackend {
    client: async_nats::Client,
    /// The server's URL, for errors.
    url: String,
    js: jetstream::Context,
    prefix: String,
    /// Each consumer's pair of JetStream consumers, once looked up.
    consumers: Mutex<HashMap<Consumer, Arc<Pair>>>,
    /// Each key-value store's bucket, once opened.
    buckets: Mutex<HashMap<Namespace, async_nats::jetstream::kv::Store>>,
    /// The members' bucket, once opened.
    members: tokio::sync::OnceCell<async_nats::jetstream::kv::Store>,
    /// The deployments bucket, opened on first use.
    deployments: tokio::sync::OnceCell<async_nats::jetstream::kv::Store>,
    /// The components' object store, opened on first use.
    components: tokio::sync::OnceCell<async_nats::jetstream::object_store::ObjectStore>,
    /// Whether the deployer applied the deployments.
    behind: crate::backend::deployments::Behind,
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
            url: url.to_owned(),
            js,
            prefix: prefix.to_owned(),
            consumers: Mutex::default(),
            buckets: Mutex::default(),
            members: tokio::sync::OnceCell::new(),
            deployments: tokio::sync::OnceCell::new(),
            components: tokio::sync::OnceCell::new(),
            behind: Default::default(),
        })
    }

    /// The stream of `app`'s messages.
    fn queue_stream(&self, app: &str) -> String {
        format!("{}_queue_{}", self.prefix, name_token(app))
    }

    fn names(&self, consumer: &Consumer) -> Names {
        let p = &self.prefix;
        let app = name_token(&consumer.app);
        let function = name_token(&consumer.function);
        Names {
            queue_stream: self.queue_stream(&consumer.app),
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

    /// Refuses at once, rather than after a timeout, while the connection to
    /// the server is down (the client reconnects on its own meanwhile).
    fn connected(&self) -> Result<(), BackendError> {
        match self.client.connection_state() {
            async_nats::connection::State::Connected => Ok(()),
            state => Err(BackendError::Storage(format!(
                "NATS at {} is unreachable ({state}); reconnecting",
                self.url
            ))),
        }
    }

    /// A handle on a stream by name; sends no request.
    async fn stream(&self, name: &str) -> Result<stream::Stream<()>, BackendError> {
        self.js
            .get_stream_no_info(name)
            .await
            .map_err(|e| fail(&format!("stream {name}"), e))
    }

    /// Deletes all of this backend's streams (everything under its prefix):
    /// messages, dead letters, consumers and key-value buckets of every app.
    /// Returns how many.
    pub async fn delete_all(&self) -> Result<usize, BackendError> {
        let mut names = self.js.stream_names();
        let mut mine = Vec::new();
        while let Some(name) = names.next().await {
            let name = name.map_err(|e| fail("cannot list streams", e))?;
            let bucket = name
                .strip_prefix("KV_")
                .or_else(|| name.strip_prefix("OBJ_"))
                .unwrap_or(&name);
            if bucket.starts_with(&format!("{}_", self.prefix)) {
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
        self.buckets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        Ok(mine.len())
    }
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
