//! The manifest exactly as written: serde types, strict about unknown keys.
//!
//! Nothing here resolves paths or applies defaults; that is [`super::normalize`]'s job.

use super::id::FunctionId;
use super::route::Route;
use super::units::{ByteSize, HumanDuration};
use serde::Deserialize;
use std::collections::BTreeMap;

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
}
