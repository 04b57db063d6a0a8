//! The manifest exactly as written: serde types, strict about unknown keys.
//!
//! Nothing here resolves paths or applies defaults; that is `super::normalize`'s job.

use super::id::{FunctionId, StoreName};
use super::outbound::HostPattern;
use super::route::Route;
use super::topic::TopicPattern;
use super::units::{ByteSize, HumanDuration};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::num::NonZeroU32;

/// `nimbus.toml`, version 1.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawManifest {
    /// The manifest format version. Example: `version = 1`.
    pub version: u32,
    /// The `[app]` table.
    pub app: RawApp,
    /// `[functions.<id>]` tables, one per function.
    #[serde(default)]
    pub functions: BTreeMap<FunctionId, RawFunction>,
}

/// `[app]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApp {
    /// The app's name, with the same rules as a function id. Example: `name = "shop"`.
    pub name: String,
    /// A sentence about the app. Example: `description = "A small shop"`.
    #[serde(default)]
    pub description: Option<String>,
}

/// `[functions.<id>]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFunction {
    /// The component file, relative to the manifest.
    /// Example: `source = "target/wasm32-wasip2/release/hello.wasm"`.
    pub source: String,
    /// A shell command that builds `source`. Example: `build = "cargo build --release"`.
    #[serde(default)]
    pub build: Option<String>,
    /// Where `build` runs, relative to the manifest (default: the manifest's folder).
    #[serde(default)]
    pub workdir: Option<String>,
    /// HTTP routes. Example: `routes = ["GET /", "GET /hello/:name", "/static/..."]`.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// `[functions.<id>.limits]`.
    #[serde(default)]
    pub limits: RawLimits,
    /// `[functions.<id>.env]`: environment variables the guest sees.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Key-value stores the function may open. Example: `kv = ["catalog"]`.
    #[serde(default)]
    pub kv: Vec<StoreName>,
    /// Other functions of the app it may call as `http://<id>.internal/`.
    /// Example: `services = ["users"]`.
    #[serde(default)]
    pub services: Vec<FunctionId>,
    /// Outbound HTTP it may make, as `scheme://host:port` patterns with `*`.
    /// Example: `allowed_outbound_hosts = ["https://api.example.com", "http://127.0.0.1:*"]`.
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<HostPattern>,
    /// A queue trigger. Example:
    /// `queue = { topic = "orders.created", max_attempts = 5, backoff = "200ms" }`.
    #[serde(default)]
    pub queue: Option<RawQueue>,
    /// Topics it may publish to (`*` one token, `>` the rest). Example: `publish = ["orders.*"]`.
    #[serde(default)]
    pub publish: Vec<TopicPattern>,
    /// `[functions.<id>.config]`: values the guest reads through `wasi:config`;
    /// `{{ env.NAME }}` is replaced by the host's environment variable.
    /// Example: `signing_key = "{{ env.SHOP_SIGNING_KEY }}"`.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Opt-in instance reuse, for a function that keeps no state from one
    /// request to the next: each instance serves up to this many requests
    /// (one at a time) instead of one. Absent: a fresh instance per request.
    /// Example: `instance_reuse = 1000`.
    #[serde(default)]
    pub instance_reuse: Option<NonZeroU32>,
}

/// `queue = { ... }`: the topic and the retry policy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQueue {
    /// The topic (or pattern) to consume. Example: `topic = "orders.created"`.
    pub topic: TopicPattern,
    /// Deliveries before a message moves to dead letters. Example: `max_attempts = 5`.
    pub max_attempts: Option<u32>,
    /// Delay before the first retry; it doubles each time. Example: `backoff = "200ms"`.
    pub backoff: Option<HumanDuration>,
    /// The longest delay between retries. Example: `max_backoff = "30s"`.
    pub max_backoff: Option<HumanDuration>,
    /// Messages handled at once. Example: `concurrency = 16`.
    pub concurrency: Option<u32>,
}

/// `[functions.<id>.limits]`; every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Wall-clock time per request. Example: `timeout = "5s"`.
    pub timeout: Option<HumanDuration>,
    /// Linear-memory cap per instance. Example: `memory = "64MiB"`.
    pub memory: Option<ByteSize>,
    /// Instances of this function running at once. Example: `concurrency = 100`.
    pub concurrency: Option<u32>,
    /// How long a request waits for a free instance before a 503. Example: `queue_timeout = "1s"`.
    pub queue_timeout: Option<HumanDuration>,
    /// Request body cap. Example: `max_body = "1MiB"`.
    pub max_body: Option<ByteSize>,
    /// Longest key-value key. Example: `kv_key_size = "256B"`.
    pub kv_key_size: Option<ByteSize>,
    /// Largest key-value value. Example: `kv_value_size = "1MiB"`.
    pub kv_value_size: Option<ByteSize>,
    /// Time limit for each outbound HTTP request. Example: `outbound_timeout = "10s"`.
    pub outbound_timeout: Option<HumanDuration>,
}
