//! `nimbus up`: serve an app, as a node of its own.

use super::watch::Watch;
use anyhow::Context;
use nimbus::manifest::Manifest;
use nimbus::node::{self, Broker, Cluster, DEFAULT_BROKER_PREFIX, Listeners, NodeConfig};
use nimbus::trigger::http::ServeOptions;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Default public listener.
const DEFAULT_LISTEN: &str = "127.0.0.1:3000";

/// `nimbus up`'s flags.
#[derive(clap::Args)]
pub struct UpArgs {
    /// A nimbus.toml, or a folder holding one.
    #[arg(default_value = ".", env = "NIMBUS_APP")]
    path: PathBuf,
    /// Address for public traffic; port 0 picks a free port.
    #[arg(long, default_value = DEFAULT_LISTEN, env = "NIMBUS_LISTEN")]
    listen: SocketAddr,
    /// Run the functions' build commands first.
    #[arg(long, env = "NIMBUS_BUILD")]
    build: bool,
    /// Build first, then rebuild a function whenever a file in the folder
    /// its build runs in changes, and deploy it without a restart (requests
    /// in flight finish on the old version). A failing build keeps the old
    /// version serving.
    #[arg(long, env = "NIMBUS_WATCH")]
    watch: bool,
    /// Where Nimbus keeps its state: key-value stores, queues, deployments,
    /// and compiled components unless --cache-dir says otherwise
    /// (default: .nimbus beside the manifest).
    #[arg(long, env = "NIMBUS_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Where compiled components are kept, so a component already compiled
    /// once starts at once (default: cache/ in the state folder). Apps, and
    /// test runs with fresh state folders, may share one.
    #[arg(long, env = "NIMBUS_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Time in-flight requests get to finish after Ctrl-C or SIGTERM.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, env = "NIMBUS_GRACE")]
    grace: Duration,
    /// Open connections at most.
    #[arg(long, default_value_t = nimbus::trigger::http::DEFAULT_MAX_CONNECTIONS, env = "NIMBUS_MAX_CONNECTIONS")]
    max_connections: usize,
    /// Queue broker: `embedded` (in the state folder) or a NATS JetStream
    /// URL such as `nats://127.0.0.1:4222`, for several nodes sharing queues.
    #[arg(long, default_value = "embedded", env = "NIMBUS_BROKER")]
    broker: String,
    /// Prefix of the NATS streams and subjects Nimbus creates.
    #[arg(long, default_value = DEFAULT_BROKER_PREFIX, env = "NIMBUS_BROKER_PREFIX")]
    broker_prefix: String,
    /// Join a cluster: every node given the same NATS JetStream URL and
    /// cluster name serves the app with shared key-value stores, queues and
    /// members, e.g. `nats://127.0.0.1:4222`.
    #[arg(long, env = "NIMBUS_CLUSTER")]
    cluster: Option<String>,
    /// The cluster's name (default: the app's name); it prefixes every
    /// stream and bucket the cluster uses on the NATS server.
    #[arg(long, env = "NIMBUS_CLUSTER_NAME", requires = "cluster")]
    cluster_name: Option<String>,
    /// Address for the admin API; beyond loopback it needs --admin-token.
    #[arg(long, default_value = nimbus::admin::DEFAULT_ADMIN_LISTEN, env = "NIMBUS_ADMIN_LISTEN")]
    admin_listen: SocketAddr,
    /// Token the admin API requires as `Authorization: Bearer <token>`.
    #[arg(long, env = "NIMBUS_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Export traces to this OpenTelemetry collector over OTLP/HTTP
    /// (protobuf), e.g. `http://127.0.0.1:4318`: a span per invocation.
    /// Off by default.
    #[arg(long, env = "NIMBUS_OTLP_ENDPOINT", value_name = "URL")]
    otlp_endpoint: Option<String>,
    /// PEM certificates to trust for an https:// collector, beside the
    /// public roots: its own, or the CA that signed it.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_CERTIFICATE", value_name = "PEM")]
    otlp_certificate: Option<std::path::PathBuf>,
    /// Component instances the pooling allocator holds at once.
    #[arg(long, default_value_t = nimbus::engine::DEFAULT_POOL_INSTANCES, env = "NIMBUS_POOL_INSTANCES")]
    pool_instances: u32,
}

/// Serves an app until Ctrl-C or SIGTERM.
pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    let manifest = Manifest::load(&args.path)?;
    if let Some(endpoint) = &args.otlp_endpoint {
        let certificate = args.otlp_certificate.as_deref();
        nimbus::telemetry::otlp::install(endpoint, &manifest.name, certificate)
            .map_err(|e| anyhow::anyhow!("--otlp-endpoint: {e}"))?;
    }
    if args.build || args.watch {
        let m = manifest.clone();
        tokio::task::spawn_blocking(move || nimbus::build::build_all(&m, &mut std::io::stderr()))
            .await??;
    }
    let cluster = match &args.cluster {
        Some(url) => Some(Cluster::new(
            url,
            args.cluster_name.as_deref().unwrap_or(&manifest.name),
        )?),
        None => None,
    };
    let state_dir = node::state_dir(&manifest, args.state_dir.as_deref());
    // After the first build (whose own writes are no change to react to),
    // before the node serves.
    let watch = if args.watch {
        Some(Watch::prepare(&manifest, &state_dir)?)
    } else {
        None
    };
    let config = NodeConfig {
        cluster,
        state_dir,
        runtime: None,
        cache_dir: args.cache_dir,
        pool_instances: args.pool_instances,
        broker: Broker::parse(&args.broker, &args.broker_prefix)?,
        admin_token: args.admin_token,
        serve: ServeOptions {
            grace: args.grace,
            max_connections: args.max_connections,
        },
        manifest,
    };
    // Before the address is printed: a SIGTERM sent as soon as the server
    // is up must shut it down gracefully, not kill it.
    let signals = Signals::install().context("cannot install the signal handlers")?;
    let listeners = Listeners::bind(args.listen, Some(args.admin_listen)).await?;
    let node = node::start(config, listeners, shutdown_signal(signals)).await?;
    let _watching = watch.map(|watch| watch.start(node.deployer().clone()));
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{}", node.addr())?;
        if let Some(admin) = node.admin_addr() {
            writeln!(out, "admin listening on http://{admin}")?;
        }
        out.flush()?;
    }
    let served = node.wait().await;
    // The last spans, among them those of the requests that just finished.
    nimbus::telemetry::otlp::flush(Duration::from_secs(5)).await;
    served?;
    Ok(())
}

/// Resolves on the first Ctrl-C or SIGTERM; a second one exits at once.
async fn shutdown_signal(mut signals: Signals) {
    signals.recv().await;
    tracing::info!("signal received; shutting down gracefully (send another to exit now)");
    tokio::spawn(async move {
        signals.recv().await;
        eprintln!("second signal: exiting now");
        std::process::exit(130);
    });
}

/// The shutdown signals, caught from the moment they are installed.
struct Signals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                terminate: signal(SignalKind::terminate())?,
                interrupt: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// The next SIGTERM or SIGINT (Ctrl-C).
    async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
