//! The app manifest, `nimbus.toml`: schema, validation and normalization.
//!
//! Loading is two passes, as in Spin's manifest crate:
//! 1. [`schema`] deserializes the file strictly (unknown keys are errors) into
//!    types that mirror the TOML, with ids, routes, durations and sizes
//!    validated as they are read, so errors carry the key path and line;
//! 2. [`normalize`](Manifest::load) resolves paths against the manifest's
//!    folder, applies the documented defaults and checks rules that span
//!    several keys (two functions claiming one route).

pub mod gateway;
mod id;
mod normalize;
mod outbound;
mod route;
pub mod schema;
mod topic;
mod units;

pub use gateway::{
    AuthRule, CorsSpec, JwtProviderSpec, KeySource, RateKey, RateLimitSpec, RouteOptions,
};
pub(crate) use id::validate_id;
pub use id::{FunctionId, MAX_ID_LEN, StoreName};
pub use outbound::HostPattern;
pub use route::{Route, RoutePattern, Segment};
pub use topic::{TopicPattern, validate_topic};
pub use units::format_bytes;

use schema::RawManifest;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The file name `nimbus up DIR` looks for.
pub const MANIFEST_FILE: &str = "nimbus.toml";

/// The manifest format this Nimbus reads.
pub const MANIFEST_VERSION: u32 = 1;

/// Default wall-clock limit per request: long enough for a slow downstream
/// call, short enough that a runaway guest gives its slot back quickly.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Default linear-memory cap per instance: ample for a JSON microservice,
/// small enough that a full pool of instances fits in RAM.
pub const DEFAULT_MEMORY: u64 = 128 * 1024 * 1024;

/// Default instances of one function at once. With the pool's default of
/// 1,000 instances, ten busy functions still fit side by side.
pub const DEFAULT_CONCURRENCY: u32 = 100;

/// Default time a request waits for a free instance before it gets a 503:
/// a short burst is absorbed, a sustained overload is told to back off.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(1);

/// Default request body cap, the same as nginx's `client_max_body_size`.
pub const DEFAULT_MAX_BODY: u64 = 1024 * 1024;

/// Default longest key-value key: room for a composite key such as
/// `orders/2026/11/27/<uuid>`, short enough to index cheaply.
pub const DEFAULT_KV_KEY_SIZE: u64 = 256;

/// Default largest key-value value: a JSON document, not a file store.
pub const DEFAULT_KV_VALUE_SIZE: u64 = 1024 * 1024;

/// Default time limit per outbound HTTP request: a downstream service that
/// has not answered in 30 s is down; the caller should fail, not hang.
pub const DEFAULT_OUTBOUND_TIMEOUT: Duration = Duration::from_secs(30);

/// Default time limit per SQL statement: a point query takes microseconds,
/// a report seconds; a statement stuck behind a lock fails well inside the
/// request's own 30 s.
pub const DEFAULT_SQL_TIMEOUT: Duration = Duration::from_secs(5);

/// Default most rows per SQL result: a page of a listing, not a table dump.
pub const DEFAULT_SQL_ROWS: u64 = 10_000;

/// Default most bytes per SQL result, kept well inside the default 128 MiB
/// of guest memory the rows are copied into.
pub const DEFAULT_SQL_RESULT_SIZE: u64 = 16 * 1024 * 1024;

/// Default size cap of a SQLite database.
pub const DEFAULT_SQLITE_MAX_SIZE: u64 = 1024 * 1024 * 1024;

/// Default deliveries of a message before it moves to dead letters: enough
/// to ride out a restart of a dependency, few enough to surface a bug fast.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// Default delay before the first retry; it doubles with each attempt.
pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(200);

/// Default longest delay between retries.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Default messages one queue function handles at once.
pub const DEFAULT_QUEUE_CONCURRENCY: u32 = 16;

/// The largest memory cap a function may ask for: the pooling allocator
/// reserves 4 GiB of address space per memory, and wasm32 cannot address more.
pub const MAX_MEMORY: u64 = 4 * 1024 * 1024 * 1024;

/// A manifest that failed to load. The message names the file, the line where
/// known, the key and what would be valid; it fits on one line.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {message}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ManifestError {
    /// The manifest file.
    pub file: PathBuf,
    /// The 1-based line of the problem, where the parser knows it.
    pub line: Option<usize>,
    /// What is wrong, naming the key.
    pub message: String,
}

impl ManifestError {
    fn new(file: &Path, message: impl Into<String>) -> Self {
        ManifestError {
            file: file.to_owned(),
            line: None,
            message: message.into(),
        }
    }
}

/// A loaded, validated and normalized manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The manifest file, absolute.
    pub file: PathBuf,
    /// The folder holding the manifest; relative paths in it start here.
    pub dir: PathBuf,
    /// The app's name.
    pub name: String,
    /// The app's description, if any.
    pub description: Option<String>,
    /// The app's version for its API documentation, if any.
    pub version: Option<String>,
    /// JWT providers, in name order.
    pub auth_providers: Vec<JwtProviderSpec>,
    /// The default auth rule for every route (public when absent).
    pub auth: Option<AuthRule>,
    /// The default CORS rules for every function.
    pub cors: Option<CorsSpec>,
    /// Functions in id order.
    pub functions: Vec<FunctionSpec>,
    /// The app's SQLite databases in name order: each declared under
    /// `[sqlite.<name>]` or listed by a function.
    pub sqlite: Vec<SqliteSpec>,
}

/// A SQLite database of the app, defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteSpec {
    /// Its name.
    pub name: StoreName,
    /// Its migrations in the order they apply.
    pub migrations: Vec<MigrationFile>,
    /// The most bytes its file may hold.
    pub max_size: u64,
}

impl SqliteSpec {
    /// Database `name` with no migrations and the default size cap: what a
    /// database a function lists without a `[sqlite.<name>]` table gets.
    pub fn with_defaults(name: StoreName) -> SqliteSpec {
        SqliteSpec {
            name,
            migrations: Vec::new(),
            max_size: DEFAULT_SQLITE_MAX_SIZE,
        }
    }
}

/// A PostgreSQL database granted to a function under a name of its own.
#[derive(Debug, Clone)]
pub struct PostgresGrant {
    /// The name the function opens it by.
    pub name: StoreName,
    /// Where it is and who connects, templates resolved. Its `Debug` hides
    /// the password, and nothing else prints it.
    pub config: tokio_postgres::Config,
    /// Connections kept open to it at most.
    pub pool: u32,
}

/// Connections a PostgreSQL grant's pool holds when the manifest does not
/// say: enough for a function's concurrent requests on a small node, few
/// enough that several functions and nodes stay under PostgreSQL's default
/// `max_connections` (100).
pub const DEFAULT_POSTGRES_POOL: u32 = 8;

/// The largest pool one grant may ask for.
pub const MAX_POSTGRES_POOL: u32 = 256;

/// One migration of a database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationFile {
    /// What it is recorded as in the database: its file name.
    pub name: String,
    /// The file, absolute.
    pub path: PathBuf,
}

/// One function, with paths resolved and defaults applied.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    /// The function's id.
    pub id: FunctionId,
    /// The component file, absolute.
    pub source: PathBuf,
    /// How to build the component, if the manifest says.
    pub build: Option<BuildSpec>,
    /// HTTP routes.
    pub routes: Vec<Route>,
    /// Each route's own options, in the order of `routes`.
    pub route_options: Vec<RouteOptions>,
    /// A sentence about the function, for its API documentation.
    pub description: Option<String>,
    /// Who may call its routes, when a route does not say (else the app's rule).
    pub auth: Option<AuthRule>,
    /// Its rate limit, when a route does not say.
    pub rate_limit: Option<RateLimitSpec>,
    /// Its CORS rules (else the app's).
    pub cors: Option<CorsSpec>,
    /// Resource limits.
    pub limits: Limits,
    /// Environment variables the guest sees, in name order.
    pub env: Vec<(String, String)>,
    /// Key-value stores it may open.
    pub kv: Vec<StoreName>,
    /// SQLite databases it may open.
    pub sqlite: Vec<StoreName>,
    /// PostgreSQL databases it may use, in name order.
    pub postgres: Vec<PostgresGrant>,
    /// Functions of the app it may call.
    pub services: Vec<FunctionId>,
    /// Outbound HTTP it may make.
    pub allowed_outbound_hosts: Vec<HostPattern>,
    /// Configuration values, templates resolved, in key order.
    pub config: Vec<(String, String)>,
    /// Its queue trigger, if any.
    pub queue: Option<QueueSpec>,
    /// Topics it may publish to.
    pub publish: Vec<TopicPattern>,
    /// How instances are reused, when the function opted in; `None`: a
    /// fresh instance per request.
    pub instance_reuse: Option<Reuse>,
}

/// Instance reuse, defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reuse {
    /// Requests each instance serves before it is dropped.
    pub requests: NonZeroU32,
    /// Requests one instance runs at once; more than 1 only for WASI 0.3.
    pub concurrent: NonZeroU32,
    /// How long an idle instance waits for its next request.
    pub idle: Duration,
}

impl Reuse {
    /// Requests per instance when the table leaves them out: `wasmtime
    /// serve`'s default for WASI 0.3 components.
    pub const DEFAULT_REQUESTS: NonZeroU32 = NonZeroU32::new(128).unwrap();
    /// How long an idle instance is kept when the manifest does not say: the
    /// default of `wasmtime serve --idle-instance-timeout`. Long enough to
    /// bridge the gaps of steady traffic; short enough that the pool slots of
    /// a function gone quiet return to the others soon.
    pub const DEFAULT_IDLE: Duration = Duration::from_secs(1);
}

/// A queue trigger with its retry policy, defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    /// The topic or pattern consumed.
    pub topic: TopicPattern,
    /// Deliveries before dead letters.
    pub max_attempts: u32,
    /// Delay before the first retry.
    pub backoff: Duration,
    /// Longest delay between retries.
    pub max_backoff: Duration,
    /// Messages handled at once.
    pub concurrency: u32,
}

/// A function's build command.
#[derive(Debug, Clone)]
pub struct BuildSpec {
    /// The shell command.
    pub command: String,
    /// The folder it runs in, absolute.
    pub workdir: PathBuf,
}

/// Per-function resource limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time per request.
    pub timeout: Duration,
    /// Cap on each linear memory of an instance, in bytes.
    pub memory: u64,
    /// Instances running at once.
    pub concurrency: u32,
    /// How long a request waits for a free instance.
    pub queue_timeout: Duration,
    /// Request body cap, in bytes.
    pub max_body: u64,
    /// Longest key-value key, in bytes.
    pub kv_key_size: u64,
    /// Largest key-value value, in bytes.
    pub kv_value_size: u64,
    /// Time limit per outbound HTTP request.
    pub outbound_timeout: Duration,
    /// Time limit per SQL statement.
    pub sql_timeout: Duration,
    /// Most rows per SQL result.
    pub sql_rows: u64,
    /// Most bytes per SQL result.
    pub sql_result_size: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: DEFAULT_TIMEOUT,
            memory: DEFAULT_MEMORY,
            concurrency: DEFAULT_CONCURRENCY,
            queue_timeout: DEFAULT_QUEUE_TIMEOUT,
            max_body: DEFAULT_MAX_BODY,
            kv_key_size: DEFAULT_KV_KEY_SIZE,
            kv_value_size: DEFAULT_KV_VALUE_SIZE,
            outbound_timeout: DEFAULT_OUTBOUND_TIMEOUT,
            sql_timeout: DEFAULT_SQL_TIMEOUT,
            sql_rows: DEFAULT_SQL_ROWS,
            sql_result_size: DEFAULT_SQL_RESULT_SIZE,
        }
    }
}

impl Manifest {
    /// Finds the manifest: `path` is a `nimbus.toml` or a folder holding one.
    pub fn locate(path: &Path) -> Result<PathBuf, ManifestError> {
        if path.is_dir() {
            let file = path.join(MANIFEST_FILE);
            if file.is_file() {
                Ok(file)
            } else {
                Err(ManifestError::new(
                    path,
                    format!("no {MANIFEST_FILE} in this folder"),
                ))
            }
        } else if path.is_file() {
            Ok(path.to_owned())
        } else {
            Err(ManifestError::new(path, "no such file or folder"))
        }
    }

    /// Locates, reads, parses and normalizes a manifest.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let file = Self::locate(path)?;
        let file = std::path::absolute(&file).unwrap_or(file);
        let text = std::fs::read_to_string(&file)
            .map_err(|e| ManifestError::new(&file, format!("cannot read: {e}")))?;
        Self::parse(&file, &text)
    }

    /// Parses and normalizes manifest text; `file` names it in errors and
    /// anchors relative paths.
    pub fn parse(file: &Path, text: &str) -> Result<Manifest, ManifestError> {
        let raw = parse_raw(file, text)?;
        normalize::normalize(file, raw)
    }
}

fn parse_raw(file: &Path, text: &str) -> Result<RawManifest, ManifestError> {
    let line_of = |span: Option<std::ops::Range<usize>>| {
        span.map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
    };
    let de = toml::Deserializer::parse(text).map_err(|e| ManifestError {
        file: file.to_owned(),
        line: line_of(e.span()),
        message: format!("invalid TOML: {}", one_line(e.message())),
    })?;
    serde_path_to_error::deserialize::<_, RawManifest>(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = one_line(inner.message());
        ManifestError {
            file: file.to_owned(),
            line: line_of(inner.span()),
            message: if path == "." || path.is_empty() {
                message
            } else {
                format!("`{path}`: {message}")
            },
        }
    })
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, String> {
        Manifest::parse(Path::new("/app/nimbus.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn minimal_manifest_gets_defaults() {
        let m = parse(
            r#"
version = 1
[app]
name = "hello"
[functions.hello]
source = "hello.wasm"
routes = ["GET /"]
"#,
        )
        .unwrap();
        assert_eq!(m.name, "hello");
        let f = &m.functions[0];
        assert_eq!(f.id.as_str(), "hello");
        assert_eq!(f.source, Path::new("/app/hello.wasm"));
        assert_eq!(f.limits, Limits::default());
    }

    #[test]
    fn full_manifest() {
        let m = parse(
            r#"
version = 1
[app]
name = "hello"
[functions.hello]
source = "../../target/hello.wasm"
build = "cargo build"
workdir = "../.."
routes = ["GET /", "GET /hello/:name", "/static/..."]
[functions.hello.limits]
timeout = "5s"
memory = "64MiB"
concurrency = 7
max_body = "1MiB"
queue_timeout = "250ms"
[functions.hello.env]
GREETING = "hi"
"#,
        )
        .unwrap();
        let f = &m.functions[0];
        assert_eq!(f.limits.timeout, Duration::from_secs(5));
        assert_eq!(f.limits.memory, 64 << 20);
        assert_eq!(f.limits.concurrency, 7);
        assert_eq!(f.limits.max_body, 1 << 20);
        assert_eq!(f.limits.queue_timeout, Duration::from_millis(250));
        assert_eq!(f.env, [("GREETING".to_string(), "hi".to_string())]);
        assert_eq!(f.build.as_ref().unwrap().workdir, Path::new("/app/../.."));
        assert_eq!(f.routes.len(), 3);
    }

    #[test]
    fn instance_reuse_is_a_number_or_a_table_with_defaults() {
        let reuse = |value: &str| {
            parse(&format!(
                "version = 1\n[app]\nname = \"a\"\n[functions.a]\nsource = \"a.wasm\"\ninstance_reuse = {value}\n"
            ))
            .map(|m| m.functions[0].instance_reuse.unwrap())
        };
        let n = |n: u32| std::num::NonZeroU32::new(n).unwrap();
        assert_eq!(
            reuse("1000").unwrap(),
            Reuse {
                requests: n(1000),
                concurrent: n(1),
                idle: Duration::from_secs(1)
            }
        );
        assert_eq!(
            reuse("{ requests = 128, concurrent = 16, idle = \"250ms\" }").unwrap(),
            Reuse {
                requests: n(128),
                concurrent: n(16),
                idle: Duration::from_millis(250)
            }
        );
        assert_eq!(
            reuse("{ concurrent = 8 }").unwrap(),
            Reuse {
                requests: Reuse::DEFAULT_REQUESTS,
                concurrent: n(8),
                idle: Reuse::DEFAULT_IDLE
            }
        );
        let err = reuse("{ requsts = 5 }").unwrap_err();
        assert!(err.contains("unknown field `requsts`"), "{err}");
        let err = reuse("0").unwrap_err();
        assert!(
            err.contains("0 requests per instance: it must be from 1"),
            "{err}"
        );
        let err = reuse("{ concurrent = 0 }").unwrap_err();
        assert!(err.contains("concurrent"), "{err}");
        let err = reuse("\"many\"").unwrap_err();
        assert!(
            err.contains("a number of requests per instance, or a table"),
            "{err}"
        );
    }

    #[test]
    fn errors_name_the_key_and_line() {
        let err = parse(
            "version = 1\n[app]\nname = \"a\"\n[functions.a]\nsource = \"a.wasm\"\n[functions.a.limits]\ntmeout = \"5s\"\n",
        )
        .unwrap_err();
        assert!(err.starts_with("/app/nimbus.toml:7: "), "{err}");
        assert!(err.contains("functions.a.limits"), "{err}");
        assert!(err.contains("unknown field `tmeout`"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn methodless_route_conflicts_with_any_method() {
        let err = parse(
            r#"
version = 1
[app]
name = "a"
[functions.a]
source = "a.wasm"
routes = ["/users/:id"]
[functions.b]
source = "b.wasm"
routes = ["GET /users/:name"]
"#,
        )
        .unwrap_err();
        assert!(err.contains("of function `a`"), "{err}");
    }

    #[test]
    fn services_must_exist() {
        let err = parse(
            r#"
version = 1
[app]
name = "a"
[functions.a]
source = "a.wasm"
services = ["b"]
"#,
        )
        .unwrap_err();
        assert!(err.contains("no function `b`"), "{err}");
    }

    #[test]
    fn different_methods_on_one_path_are_fine() {
        parse(
            r#"
version = 1
[app]
name = "a"
[functions.a]
source = "a.wasm"
routes = ["GET /users"]
[functions.b]
source = "b.wasm"
routes = ["POST /users"]
"#,
        )
        .unwrap();
    }
}
