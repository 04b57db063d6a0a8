//! A running node: everything `nimbus up` serves, started from one config.
//!
//! [`start`] takes a [`NodeConfig`], the bound [`Listeners`] and a shutdown
//! future, and builds the engine, the backends, the app, the deployer, the
//! executor, the HTTP and queue triggers and the admin API; both listeners
//! are served by the same accept loop ([`crate::trigger::http::serve_with`]:
//! connection cap, header-read timeout, accept-error backoff). It returns a
//! [`Node`]: [`Node::shutdown`] stops it gracefully, and dropping it stops
//! it at once. The `nimbus` binary, the tests and the benchmarks all start
//! nodes this way, so a test can run several nodes in one process.
//!
//! See the crate root for an example.

use crate::admin::{ADMIN_GRACE, Admin};
use crate::app::{App, LiveApp, LoadError};
use crate::backend::embedded::EmbeddedBackend;
use crate::backend::members::HEARTBEAT;
use crate::backend::nats::NatsBackend;
use crate::backend::queue::now_ms;
use crate::backend::sqlite::Databases;
use crate::backend::{BackendError, Backends, Member, MembersBackend};
use crate::deploy::Deployer;
use crate::deploy::store::StoreError;
use crate::engine::{DEFAULT_POOL_INSTANCES, Runtime, RuntimeConfig};
use crate::executor::Executor;
use crate::manifest::Manifest;
use crate::trigger::http::{HttpTrigger, ServeOptions, serve, serve_with};
use crate::trigger::queue::QueueTriggers;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The state folder's name beside the manifest, unless the config says otherwise.
pub const DEFAULT_STATE_DIR: &str = ".nimbus";

/// The embedded store's file inside the state folder.
pub const STATE_FILE: &str = "state.redb";

/// The folder in the state folder that holds the SQLite databases, one
/// folder per app and one file per database: `sqlite/<app>/<name>.db`.
pub const SQLITE_DIR: &str = "sqlite";

/// The default prefix of the NATS streams and subjects a node creates.
pub const DEFAULT_BROKER_PREFIX: &str = "nimbus";

/// Where a node's queues live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Broker {
    /// In the embedded store in the state folder.
    Embedded,
    /// On NATS JetStream, with streams and subjects named after `prefix`.
    Nats {
        /// `nats://HOST:PORT`.
        url: String,
        /// Prefix of every stream and subject.
        prefix: String,
    },
}

impl Broker {
    /// `embedded`, or a `nats://` URL (with `prefix` for its names).
    pub fn parse(text: &str, prefix: &str) -> Result<Broker, NodeError> {
        match text {
            "embedded" => Ok(Broker::Embedded),
            url if url.starts_with("nats://") => Ok(Broker::Nats {
                url: url.to_owned(),
                prefix: prefix.to_owned(),
            }),
            other => Err(NodeError::Broker(other.to_owned())),
        }
    }
}

/// The cluster a node is a member of: every piece of shared state (key-value
/// stores, queues, members) on one NATS JetStream server or cluster, named
/// after the cluster so several clusters share one server without meeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// `nats://HOST:PORT`.
    pub url: String,
    /// Lowercase letters, digits and `-`: it prefixes every stream, bucket
    /// and subject the cluster uses.
    pub name: String,
}

impl Cluster {
    /// The cluster `name` on the NATS server at `url`, both checked.
    pub fn new(url: &str, name: &str) -> Result<Cluster, NodeError> {
        if !url.starts_with("nats://") {
            return Err(NodeError::ClusterUrl(url.to_owned()));
        }
        crate::manifest::validate_id(name).map_err(|why| NodeError::ClusterName {
            name: name.to_owned(),
            why: why.replacen("invalid id", "invalid cluster name", 1),
        })?;
        Ok(Cluster {
            url: url.to_owned(),
            name: name.to_owned(),
        })
    }
}

/// Everything a node needs besides its listeners.
pub struct NodeConfig {
    /// The app.
    pub manifest: Manifest,
    /// Where the node keeps its state: the embedded store, deployments, and
    /// the compile cache unless `cache_dir` names another folder.
    pub state_dir: PathBuf,
    /// The engine to run on; `None` makes one with its compile cache in
    /// `cache_dir`. Nodes of one process (tests) may share one.
    pub runtime: Option<Runtime>,
    /// Where the node's own engine keeps compiled components; `None`:
    /// `cache/` in the state folder.
    pub cache_dir: Option<PathBuf>,
    /// Component instances the pooling allocator holds, when the node makes
    /// its own engine.
    pub pool_instances: u32,
    /// Where queues live, when the node is not in a cluster.
    pub broker: Broker,
    /// The cluster the node is a member of; `None`: a node on its own, with
    /// its state in the state folder.
    pub cluster: Option<Cluster>,
    /// The token the admin API requires; required when the admin listener
    /// is beyond loopback.
    pub admin_token: Option<String>,
    /// The public listener's settings.
    pub serve: ServeOptions,
}

impl NodeConfig {
    /// The defaults for `manifest`: state in `.nimbus` beside it, an engine
    /// of its own, the embedded broker, no admin token.
    pub fn new(manifest: Manifest) -> NodeConfig {
        NodeConfig {
            state_dir: state_dir(&manifest, None),
            manifest,
            runtime: None,
            cache_dir: None,
            pool_instances: DEFAULT_POOL_INSTANCES,
            broker: Broker::Embedded,
            cluster: None,
            admin_token: None,
            serve: ServeOptions::default(),
        }
    }
}

/// The compile cache: `flag` if given, else `cache/` in `state_dir`.
pub fn cache_dir(state_dir: &Path, flag: Option<&Path>) -> PathBuf {
    flag.map_or_else(|| state_dir.join("cache"), Path::to_owned)
}

/// The state folder: `flag` if given, else [`DEFAULT_STATE_DIR`] beside the
/// manifest.
pub fn state_dir(manifest: &Manifest, flag: Option<&Path>) -> PathBuf {
    flag.map_or_else(|| manifest.dir.join(DEFAULT_STATE_DIR), Path::to_owned)
}

/// The node's bound listeners.
pub struct Listeners {
    /// Public traffic.
    pub public: TcpListener,
    /// The admin API; `None` serves no admin API.
    pub admin: Option<TcpListener>,
}

impl Listeners {
    /// Binds `public` and, if given, `admin` (port 0 picks a free port).
    pub async fn bind(
        public: SocketAddr,
        admin: Option<SocketAddr>,
    ) -> Result<Listeners, NodeError> {
        let bind = |addr: SocketAddr, what: &'static str| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| NodeError::Listen { addr, what, source })
        };
        let public = bind(public, "public traffic").await?;
        let admin = match admin {
            Some(addr) => Some(bind(addr, "the admin API").await?),
            None => None,
        };
        Ok(Listeners { public, admin })
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The admin API would be reachable beyond loopback without a token.
    #[error(
        "the admin API would listen on {0} beyond loopback without a token; set --admin-token or NIMBUS_ADMIN_TOKEN"
    )]
    AdminWithoutToken(SocketAddr),
    /// A listener could not be bound.
    #[error("cannot listen on {addr} for {what}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Which listener.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The broker setting is neither `embedded` nor a NATS URL.
    #[error("--broker `{0}`: write `embedded` or a nats:// URL")]
    Broker(String),
    /// The cluster URL is not a NATS URL.
    #[error("--cluster `{0}`: write the NATS server's URL, such as nats://127.0.0.1:4222")]
    ClusterUrl(String),
    /// The cluster name breaks the naming rules.
    #[error("--cluster-name `{name}`: {why}")]
    ClusterName {
        /// The name.
        name: String,
        /// Which rule it breaks.
        why: String,
    },
    /// A cluster member was also given a broker of its own.
    #[error("a cluster member's queues are the cluster's: drop --broker, or drop --cluster")]
    BrokerInCluster,
    /// The wasm engine could not be made.
    #[error("cannot create the wasm engine: {0}")]
    Engine(String),
    /// The embedded store could not be opened.
    #[error("cannot open the state store {}: {source}", path.display())]
    Store {
        /// The store's file.
        path: PathBuf,
        /// Why.
        source: BackendError,
    },
    /// The NATS broker could not be reached or set up.
    #[error("cannot use the NATS broker at {url}: {source}")]
    Nats {
        /// Its URL.
        url: String,
        /// Why.
        source: BackendError,
    },
    /// A function could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The recorded deployments could not be read.
    #[error(transparent)]
    Deployments(#[from] StoreError),
    /// The cluster's deployments could not be read.
    #[error("cannot read the cluster's deployments: {0}")]
    SharedDeployments(BackendError),
    /// The queue consumers could not subscribe.
    #[error("cannot start the queue triggers: {0}")]
    Queues(BackendError),
    /// A listener failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A running node. [`Node::shutdown`] stops it gracefully; dropping it stops
/// it at once (listeners closed, consumers stopped).
pub struct Node {
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    live: LiveApp,
    deployer: Arc<Deployer>,
    executor: Arc<Executor>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

/// Starts a node serving `config`'s app on `listeners` until `shutdown`
/// resolves or [`Node::shutdown`] is called.
pub async fn start(
    config: NodeConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Node, NodeError> {
    let addr = listeners.public.local_addr()?;
    let admin_addr = listeners
        .admin
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?;
    if let Some(addr) = admin_addr
        && !addr.ip().is_loopback()
        && config.admin_token.is_none()
    {
        return Err(NodeError::AdminWithoutToken(addr));
    }
    let started = Instant::now();
    let runtime = match config.runtime.clone() {
        Some(runtime) => runtime,
        None => runtime(
            &cache_dir(&config.state_dir, config.cache_dir.as_deref()),
            config.pool_instances,
        )?,
    };
    let backends = open_backends(&config).await?;
    let app = load(&runtime, &config.manifest, backends).await?;
    let live = LiveApp::new(app.clone());
    let deployer = match app.backends().deployments.clone() {
        Some(shared) => {
            let live = live.clone();
            blocking(move || Deployer::join(live, shared))
                .await
                .map_err(NodeError::SharedDeployments)?
        }
        None => {
            let (live, state_dir) = (live.clone(), config.state_dir.clone());
            blocking(move || Deployer::open(live, &state_dir)).await?
        }
    };
    let deployer = Arc::new(deployer);
    tracing::info!(
        app = app.name,
        functions = app.functions.len(),
        routes = app.router.len(),
        pooling = runtime.is_pooling(),
        load_ms = started.elapsed().as_millis() as u64,
        "app loaded"
    );
    let executor = Arc::new(Executor::new());
    let trigger = Arc::new(HttpTrigger::new(live.clone(), executor.clone()));
    let queues = QueueTriggers::start(&app, executor.clone(), trigger.clone())
        .await
        .map_err(NodeError::Queues)?;
    let id = node_id();
    let admin = Admin::new(deployer.clone(), config.admin_token.clone()).with_node_id(id.clone());
    let admin = Arc::new(admin);
    let (stop, stopped) = watch::channel(false);
    let member = Member {
        id,
        public: addr.to_string(),
        admin: admin_addr.map(|a| a.to_string()),
        version: env!("CARGO_PKG_VERSION").into(),
        started_ms: now_ms(),
        heartbeat_ms: 0,
        in_flight: 0,
    };
    let heartbeat = Heartbeat {
        members: app.backends().members.clone(),
        member,
        live: live.clone(),
    };
    let serving = Serving {
        deployer: deployer.clone(),
        trigger,
        admin,
        queues,
        heartbeat,
        options: config.serve.clone(),
    };
    let task = tokio::spawn(serving.run(listeners, stopped, shutdown));
    Ok(Node {
        addr,
        admin_addr,
        live,
        deployer,
        executor,
        stop,
        task: Some(task),
    })
}

impl Node {
    /// The public listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin API's address, if it has one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The app as it serves now.
    pub fn app(&self) -> Arc<App> {
        self.live.current()
    }

    /// What deploys, rolls back and adds functions.
    pub fn deployer(&self) -> &Arc<Deployer> {
        &self.deployer
    }

    /// What runs the invocations, with the idle instances of reused functions.
    pub fn executor(&self) -> &Arc<Executor> {
        &self.executor
    }

    /// Stops gracefully: no new connections, in-flight requests and queue
    /// messages get the grace period to finish. Returns once all is stopped.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        let _ = self.stop.send(true);
        self.finished().await
    }

    /// Waits until the node stops: when the shutdown future given to
    /// [`start`] resolves, after the graceful stop.
    pub async fn wait(mut self) -> std::io::Result<()> {
        self.finished().await
    }

    async fn finished(&mut self) -> std::io::Result<()> {
        match self.task.take() {
            Some(task) => task.await.map_err(std::io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // Dropping the task's future closes both listeners and stops the
        // queue consumers; connections already open finish on their own.
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// What the node's task serves.
struct Serving {
    deployer: Arc<Deployer>,
    trigger: Arc<HttpTrigger>,
    admin: Arc<Admin>,
    queues: QueueTriggers,
    heartbeat: Heartbeat,
    options: ServeOptions,
}

/// The node's record among the members, renewed every [`HEARTBEAT`].
struct Heartbeat {
    members: Arc<dyn MembersBackend>,
    member: Member,
    live: LiveApp,
}

impl Heartbeat {
    /// Renews the record until `stop` turns true, then removes it.
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(HEARTBEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|stop| *stop) => break,
            }
            let app = self.live.current();
            self.member.in_flight = app
                .functions
                .iter()
                .map(|f| f.metrics.in_flight.get().max(0) as u64)
                .sum();
            self.member.heartbeat_ms = now_ms();
            match self.members.beat(&self.member).await {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!(node = self.member.id, "heartbeats recorded again");
                }
                Ok(()) => {}
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(node = self.member.id, error = %e, "cannot record this node's heartbeat; retrying");
                }
                Err(_) => {}
            }
        }
        if let Err(e) = self.members.leave(&self.member.id).await {
            tracing::warn!(node = self.member.id, error = %e, "cannot remove this node from the members; it expires on its own");
        }
    }
}

/// A node id unique to this process: the host name and a random suffix.
fn node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    match host.trim_matches('-') {
        "" => format!("node-{suffix}"),
        host => format!("{host}-{suffix}"),
    }
}

impl Serving {
    /// Serves both listeners until `stopped` turns true or `shutdown`
    /// resolves; then the public listener drains, the queue consumers finish
    /// their messages, and the admin listener closes.
    async fn run(
        self,
        listeners: Listeners,
        stopped: watch::Receiver<bool>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let Serving {
            deployer,
            trigger,
            admin,
            queues,
            heartbeat,
            options,
        } = self;
        let (stop_all, stop_rx) = watch::channel(false);
        let mut stopped = stopped;
        let watcher = async move {
            tokio::select! {
                () = shutdown => {}
                _ = stopped.wait_for(|stop| *stop) => {}
            }
            let _ = stop_all.send(true);
        };
        let until = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let admin = async {
            let Some(listener) = listeners.admin else {
                return Ok(());
            };
            let handle = move |req, _conn| {
                let admin = admin.clone();
                async move { admin.handle(req).await }
            };
            let options = ServeOptions {
                grace: ADMIN_GRACE,
                ..options.clone()
            };
            serve_with(listener, options, handle, until(stop_rx.clone())).await
        };
        let public = async {
            let served = serve(
                listeners.public,
                trigger,
                options.clone(),
                until(stop_rx.clone()),
            )
            .await;
            queues.shutdown(options.grace).await;
            served
        };
        let heartbeat = heartbeat.run(stop_rx.clone());
        let follow = deployer.follow(stop_rx.clone());
        let ((), public, admin, (), ()) = tokio::join!(watcher, public, admin, heartbeat, follow);
        tracing::info!("stopped");
        public.and(admin)
    }
}

/// An engine with the pooling allocator for `pool_instances` instances and
/// its compile cache in `cache_dir`, published in the pool-capacity metric.
pub fn runtime(cache_dir: &Path, pool_instances: u32) -> Result<Runtime, NodeError> {
    let runtime = Runtime::new(&RuntimeConfig {
        cache_dir: Some(cache_dir.to_owned()),
        pooling: true,
        pool_instances,
    })
    .map_err(|e| NodeError::Engine(format!("{e:#}")))?;
    let capacity = if runtime.is_pooling() {
        pool_instances
    } else {
        0
    };
    crate::telemetry::metrics()
        .pool_capacity
        .set(i64::from(capacity));
    Ok(runtime)
}

/// The cluster's NATS backend for everything, or the embedded store in the
/// state folder, with the queues on NATS if the config says so.
async fn open_backends(config: &NodeConfig) -> Result<Backends, NodeError> {
    let nats = |url: String, prefix: String| async move {
        NatsBackend::connect(&url, &prefix)
            .await
            .map_err(|source| NodeError::Nats { url, source })
    };
    if let Some(cluster) = &config.cluster {
        if config.broker != Broker::Embedded {
            return Err(NodeError::BrokerInCluster);
        }
        let backend = nats(cluster.url.clone(), cluster.name.clone()).await?;
        return Ok(Backends::nats(backend));
    }
    let path = config.state_dir.join(STATE_FILE);
    let store = {
        let path = path.clone();
        blocking(move || EmbeddedBackend::open(&path)).await
    }
    .map_err(|source| NodeError::Store { path, source })?;
    let mut backends = Backends::embedded(store);
    backends.sqlite = Some(Arc::new(Databases::new(&config.state_dir.join(SQLITE_DIR))));
    if let Broker::Nats { url, prefix } = &config.broker {
        backends.queue = Arc::new(nats(url.clone(), prefix.clone()).await?);
    }
    Ok(backends)
}

/// Loads the app off the async workers: compiling takes a while.
async fn load(
    runtime: &Runtime,
    manifest: &Manifest,
    backends: Backends,
) -> Result<Arc<App>, NodeError> {
    let (runtime, manifest) = (runtime.clone(), manifest.clone());
    let app = blocking(move || App::load(&runtime, &manifest, backends)).await?;
    Ok(Arc::new(app))
}

/// Runs blocking work (file I/O, compiling) off the async workers.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

#[cfg(test)]
mod tests {
    use super::{Cluster, NodeError};

    #[test]
    fn a_cluster_needs_a_nats_url_and_a_plain_name() {
        let cluster = Cluster::new("nats://127.0.0.1:4222", "shop-eu").unwrap();
        assert_eq!(cluster.name, "shop-eu");
        let url = Cluster::new("http://127.0.0.1:4222", "shop").unwrap_err();
        assert!(matches!(url, NodeError::ClusterUrl(_)), "{url}");
        assert!(url.to_string().contains("nats://127.0.0.1:4222"), "{url}");
        for bad in ["", "Shop", "shop_eu", "shop.eu", "-shop"] {
            let e = Cluster::new("nats://127.0.0.1:4222", bad).unwrap_err();
            assert!(
                e.to_string()
                    .starts_with(&format!("--cluster-name `{bad}`: invalid cluster name")),
                "{e}"
            );
        }
    }
}
