//! Test support: start the real Nimbus server on a loopback port for an app
//! written inline, with real components compiled from `functions/`.
//!
//! Manifests name guests as `source = "guest:NAME"`; [`TestApp::start`]
//! replaces that with the path of `functions/NAME`'s compiled component.

use nimbus::app::App;
use nimbus::engine::{Runtime, RuntimeConfig};
use nimbus::manifest::Manifest;
use nimbus::node::{self, Listeners, Node, NodeConfig};
use nimbus::trigger::http::ServeOptions;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::task::JoinHandle;

pub use nimbus_test_artifacts::guest;

/// One engine for the whole test process, with a shared compile cache so each
/// guest compiles once, not once per test (entries are keyed by content and
/// engine settings, so sharing the folder is safe).
pub fn runtime() -> Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            Runtime::new(&RuntimeConfig {
                cache_dir: Some(compile_cache_dir()),
                ..RuntimeConfig::default()
            })
            .expect("engine")
        })
        .clone()
}

/// Where tests cache compiled components.
pub fn compile_cache_dir() -> PathBuf {
    std::env::temp_dir().join("nimbus-test-compile-cache")
}

/// Replaces every `"guest:NAME"` in `text` with the quoted path of that guest.
pub fn with_guest_paths(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("\"guest:") {
        out.push_str(&rest[..start]);
        let after = &rest[start + "\"guest:".len()..];
        let end = after.find('"').expect("closing quote after guest:NAME");
        let path = guest(&after[..end]);
        out.push_str(&format!("{:?}", path.display().to_string()));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The manifest of `examples/<name>`, made runnable from a test folder: each
/// `source` under `target/wasm32-wasip2/release/` becomes that guest (built
/// by the test artifacts), `build` and `workdir` lines go, each `(from, to)`
/// of `replacements` is applied (a secret's `{{ env.* }}` template, say),
/// and the example's `schemas/` and `sql/` folders, if any, are copied into
/// `dir`.
pub fn example_manifest(name: &str, dir: &Path, replacements: &[(&str, &str)]) -> String {
    let example = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name);
    let text = std::fs::read_to_string(example.join("nimbus.toml")).expect("example manifest");
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("build =") || trimmed.starts_with("workdir =") {
            continue;
        }
        match trimmed
            .strip_prefix("source = \"")
            .and_then(|rest| rest.split_once("target/wasm32-wasip2/release/"))
            .and_then(|(_, file)| file.strip_suffix(".wasm\""))
        {
            Some(guest) => out.push_str(&format!("source = \"guest:{guest}\"")),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    for (from, to) in replacements {
        assert!(out.contains(from), "the example has no `{from}`");
        out = out.replace(from, to);
    }
    for folder in ["schemas", "sql"] {
        copy_folder(&example.join(folder), &dir.join(folder));
    }
    out
}

/// Copies the folder `from`, if it exists, with its subfolders, to `to`.
fn copy_folder(from: &Path, to: &Path) {
    if !from.is_dir() {
        return;
    }
    std::fs::create_dir_all(to).expect("create a folder");
    for entry in std::fs::read_dir(from).expect("read a folder") {
        let path = entry.expect("a folder entry").path();
        let target = to.join(path.file_name().expect("an entry has a name"));
        if path.is_dir() {
            copy_folder(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy a file");
        }
    }
}

/// Writes `manifest` (after [`with_guest_paths`]) to `dir/nimbus.toml`.
pub fn write_manifest(dir: &Path, manifest: &str) -> PathBuf {
    let file = dir.join("nimbus.toml");
    std::fs::write(&file, with_guest_paths(manifest)).expect("write manifest");
    file
}

/// The NATS server the tests use; `.ci/run` starts it when it is down.
pub const NATS_URL: &str = "nats://127.0.0.1:4222";

/// Which broker a test app's queues run on.
#[derive(Debug, Clone)]
pub enum Broker {
    /// The embedded redb broker in the app's state folder.
    Embedded,
    /// NATS JetStream, with streams named after `prefix` so runs never meet.
    Nats {
        /// Unique per test.
        prefix: String,
    },
    /// A cluster on NATS JetStream: key-value stores, queues and members
    /// all there, every name prefixed with the cluster's `name`.
    Cluster {
        /// Unique per test.
        name: String,
    },
}

impl Broker {
    /// A NATS broker with a prefix no other test or run uses.
    pub fn nats_unique() -> Broker {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Broker::Nats {
            prefix: format!("t{}x{nanos}x{n}", std::process::id()),
        }
    }

    /// A cluster whose name no other test or run uses.
    pub fn cluster_unique() -> Broker {
        let Broker::Nats { prefix } = Broker::nats_unique() else {
            unreachable!("nats_unique makes a NATS broker")
        };
        Broker::Cluster {
            name: prefix.replace('x', "-"),
        }
    }

    /// Deletes what the test made on the NATS server, if anything.
    pub async fn cleanup(&self) {
        let prefix = match self {
            Broker::Embedded => return,
            Broker::Nats { prefix } => prefix,
            Broker::Cluster { name } => name,
        };
        let nats = nimbus::backend::nats::NatsBackend::connect(NATS_URL, prefix)
            .await
            .expect("NATS is up");
        nats.delete_all().await.expect("the test's streams go");
    }
}

/// The PostgreSQL server the tests use: the machine's (`.ci/run` starts it
/// if it stopped), trust authentication.
pub const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A PostgreSQL database of the test's own on the machine's server, made
/// for one test and dropped (with whatever it holds) when this is dropped,
/// so runs and parallel tests never share one.
pub struct PgDatabase {
    /// Its name: `nimbus_<pid>_<n>_<nanos>`.
    pub name: String,
    /// Its URL, as a manifest grants it.
    pub url: String,
}

/// A connection to `url` for the test's own checks and setup, its
/// connection task running beside it.
pub async fn pg_connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {url} answers (`.ci/run` starts it): {e}"));
    tokio::spawn(connection);
    client
}

impl PgDatabase {
    /// A new, empty database.
    pub async fn create() -> PgDatabase {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!("nimbus_{}_{n}_{nanos}", std::process::id());
        pg_connect(POSTGRES_URL)
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("a test database is created");
        PgDatabase {
            url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
            name,
        }
    }

    /// A connection of the test's own to it.
    pub async fn connect(&self) -> tokio_postgres::Client {
        pg_connect(&self.url).await
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which cannot block on its
        // own futures: a thread of its own with a runtime of its own.
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                pg_connect(POSTGRES_URL)
                    .await
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("could not drop the test database {}: {e}", self.name);
        }
    }
}

/// A running node for one app, started as `nimbus up` starts one (without
/// an admin listener), stopped when dropped.
pub struct TestApp {
    /// The server's address.
    pub addr: SocketAddr,
    /// An HTTP client with no proxy and a generous timeout.
    pub client: reqwest::Client,
    /// The app as loaded, for reaching its backends directly.
    pub app: Arc<App>,
    node: Option<Node>,
    dir: tempfile::TempDir,
}

impl TestApp {
    /// Starts a server for `manifest` on 127.0.0.1:0.
    pub async fn start(manifest: &str) -> TestApp {
        Self::start_with(manifest, ServeOptions::default()).await
    }

    /// Starts a server with explicit options.
    pub async fn start_with(manifest: &str, options: ServeOptions) -> TestApp {
        Self::start_in(tempfile::tempdir().expect("tempdir"), manifest, options).await
    }

    /// Starts a server for `manifest` written into `dir`, with its state in
    /// `dir/.nimbus`: starting again in the same folder is a restart.
    pub async fn start_in(
        dir: tempfile::TempDir,
        manifest: &str,
        options: ServeOptions,
    ) -> TestApp {
        Self::start_on(dir, manifest, options, &Broker::Embedded).await
    }

    /// Starts a server whose queues run on `broker`.
    pub async fn start_on(
        dir: tempfile::TempDir,
        manifest: &str,
        options: ServeOptions,
        broker: &Broker,
    ) -> TestApp {
        let file = write_manifest(dir.path(), manifest);
        let manifest = Manifest::load(&file).expect("manifest loads");
        let mut config = NodeConfig::new(manifest);
        config.runtime = Some(runtime());
        config.serve = options;
        match broker {
            Broker::Embedded => {}
            Broker::Nats { prefix } => {
                config.broker = node::Broker::Nats {
                    url: NATS_URL.into(),
                    prefix: prefix.clone(),
                };
            }
            Broker::Cluster { name } => {
                config.cluster = Some(node::Cluster::new(NATS_URL, name).expect("a valid cluster"));
            }
        }
        let listeners = Listeners::bind(loopback(), None).await.expect("bind");
        let node = node::start(config, listeners, std::future::pending())
            .await
            .unwrap_or_else(|e| {
                panic!("the node starts (NATS at {NATS_URL} is started by .ci/run): {e}")
            });
        TestApp {
            addr: node.addr(),
            client: client(),
            app: node.app(),
            node: Some(node),
            dir,
        }
    }

    /// The running node.
    pub fn node(&self) -> &Node {
        self.node.as_ref().expect("the node runs")
    }

    /// Instances of function `id` waiting idle for a request (with `instance_reuse`).
    pub fn idle(&self, id: &str) -> usize {
        let index = self.app.index_of(id).expect("a function of the app");
        self.node().executor().idle(index)
    }

    /// `http://ADDR` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// GET `path`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }

    /// Stops the node gracefully, waits for it, and hands back its folder.
    pub async fn stop(mut self) -> tempfile::TempDir {
        self.begin_shutdown()
            .await
            .expect("server task")
            .expect("server stopped cleanly");
        let dir = tempfile::tempdir().expect("tempdir");
        std::mem::replace(&mut self.dir, dir)
    }

    /// Starts a graceful shutdown and returns the task that finishes it.
    pub fn begin_shutdown(&mut self) -> JoinHandle<std::io::Result<()>> {
        let node = self.node.take().expect("server running");
        tokio::spawn(node.shutdown())
    }
}

/// 127.0.0.1, port 0.
pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A client for tests: no proxies, a timeout long enough for debug builds.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// Sends an admin API request to `admin` (with `token` as its bearer token,
/// and `component` as an `application/wasm` body, if given); its status and
/// JSON answer.
pub async fn admin_call(
    client: &reqwest::Client,
    admin: SocketAddr,
    token: Option<&str>,
    method: http::Method,
    path: &str,
    component: Option<Vec<u8>>,
) -> (u16, serde_json::Value) {
    let mut request = client.request(method, format!("http://{admin}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = component {
        request = request
            .header("content-type", "application/wasm")
            .body(body);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), json(response).await)
}

/// A response's body as JSON.
pub async fn json(response: reqwest::Response) -> serde_json::Value {
    let text = response.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Log output of this test process, as JSON lines.
#[derive(Clone)]
pub struct Logs {
    buffer: Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Logs {
    /// Every line logged so far.
    pub fn lines(&self) -> Vec<String> {
        let buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&buffer)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buffer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs (once per process) a JSON tracing subscriber that keeps every
/// line at info level and above, and returns a handle to read them. Tests
/// find their own lines by a request id of their own.
pub fn captured_logs() -> Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs {
            buffer: Arc::default(),
        };
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .json()
            .with_env_filter("info")
            .with_writer(move || writer.clone())
            .try_init()
            .expect("no other subscriber in the test process");
        logs
    })
    .clone()
}

/// How long a test waits by default for something that happens on its own
/// time (a message handled, a server up, a file written, an instance
/// returned to its pool): far longer than any of it takes on a quiet
/// machine, so that only a real failure, not a debug build on a busy
/// two-core machine, runs into it.
pub const EVENTUALLY: Duration = Duration::from_secs(20);

/// The pause between two looks of [`eventually`] and [`eventually_blocking`]:
/// short beside any wait a test makes, long enough not to spin a core.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Looks with `check` until it finds something (`Some`), pausing
/// [`POLL_INTERVAL`] between looks, and returns it. Panics naming `what`
/// once `limit` has passed: tests wait for a condition, never a fixed time.
///
/// ```text
/// let body = eventually("the inventory to count the order", EVENTUALLY, || async {
///     let body = app.get("/inventory/1").await.text().await.ok()?;
///     body.contains("\"reserved\":3").then_some(body)
/// })
/// .await;
/// ```
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// [`eventually`] for a test without an async runtime (the CLI tests, which
/// drive processes): `check` may block, and the pause is a thread sleep.
pub fn eventually_blocking<T>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    retry_blocking(limit, || check().ok_or(()))
        .unwrap_or_else(|()| panic!("timed out after {limit:?} waiting for {what}"))
}

/// Tries `attempt` until it succeeds, pausing [`POLL_INTERVAL`] between
/// tries, for at most `limit`; returns the success, or the last failure
/// once `limit` has passed, for a test whose failure message shows what it
/// saw last (see [`eventually_blocking`] for one that needs none).
pub fn retry_blocking<T, E>(
    limit: Duration,
    mut attempt: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        match attempt() {
            Ok(found) => return Ok(found),
            Err(last) if std::time::Instant::now() >= deadline => return Err(last),
            Err(_) => std::thread::sleep(POLL_INTERVAL),
        }
    }
}

/// Component instances of the function `id` running now, in this process
/// (the `nimbus_instances_in_flight` gauge). The gauge is per function id
/// across every app of the process, so a test that reads it gives its
/// function an id no other test uses.
pub fn in_flight(id: &str) -> i64 {
    nimbus::telemetry::metrics()
        .in_flight
        .get_or_create(&nimbus::telemetry::function(id))
        .get()
}
