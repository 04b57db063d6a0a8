//! `nimbus up`: serve an app.

use anyhow::{Context, anyhow};
use nimbus::admin::Admin;
use nimbus::app::{App, LiveApp};
use nimbus::backend::Backends;
use nimbus::backend::embedded::EmbeddedBackend;
use nimbus::backend::nats::NatsBackend;
use nimbus::deploy::Deployer;
use nimbus::engine::{Runtime, RuntimeConfig};
use nimbus::manifest::Manifest;
use nimbus::trigger::http::{HttpTrigger, ServeOptions, serve};
use nimbus::trigger::queue::QueueTriggers;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Default public listener.
const DEFAULT_LISTEN: &str = "127.0.0.1:3000";

/// State folder created beside the manifest unless `--state-dir` says otherwise.
const DEFAULT_STATE_DIR: &str = ".nimbus";

/// The embedded store's file inside the state folder.
const STATE_FILE: &str = "state.redb";

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
    /// Where Nimbus keeps state such as compiled components
    /// (default: .nimbus beside the manifest).
    #[arg(long, env = "NIMBUS_STATE_DIR")]
    state_dir: Option<PathBuf>,
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
    #[arg(long, default_value = "nimbus", env = "NIMBUS_BROKER_PREFIX")]
    broker_prefix: String,
    /// Address for the admin API; beyond loopback it needs --admin-token.
    #[arg(long, default_value = nimbus::admin::DEFAULT_ADMIN_LISTEN, env = "NIMBUS_ADMIN_LISTEN")]
    admin_listen: SocketAddr,
    /// Token the admin API requires as `Authorization: Bearer <token>`.
    #[arg(long, env = "NIMBUS_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Component instances the pooling allocator holds at once.
    #[arg(long, default_value_t = nimbus::engine::DEFAULT_POOL_INSTANCES, env = "NIMBUS_POOL_INSTANCES")]
    pool_instances: u32,
}

/// Serves an app until Ctrl-C or SIGTERM.
pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    if !args.admin_listen.ip().is_loopback() && args.admin_token.is_none() {
        anyhow::bail!(
            "the admin API would listen on {} beyond loopback without a token; set --admin-token or NIMBUS_ADMIN_TOKEN",
            args.admin_listen
        );
    }
    let manifest = Manifest::load(&args.path)?;
    if args.build {
        let m = manifest.clone();
        tokio::task::spawn_blocking(move || nimbus::build::build_all(&m, &mut std::io::stderr()))
            .await??;
    }
    let started = Instant::now();
    let state_dir = state_dir(&manifest, args.state_dir.as_deref());
    let runtime = new_runtime(&state_dir, args.pool_instances)?;
    let state_file = state_dir.join(STATE_FILE);
    let store = EmbeddedBackend::open(&state_file)
        .with_context(|| format!("cannot open the state store {}", state_file.display()))?;
    let mut backends = Backends::embedded(store);
    match args.broker.as_str() {
        "embedded" => {}
        url if url.starts_with("nats://") => {
            let nats = NatsBackend::connect(url, &args.broker_prefix)
                .await
                .with_context(|| format!("cannot use the NATS broker at {url}"))?;
            backends.queue = Arc::new(nats);
        }
        other => anyhow::bail!("--broker `{other}`: write `embedded` or a nats:// URL"),
    }
    let app = {
        let runtime = runtime.clone();
        let manifest = manifest.clone();
        Arc::new(
            tokio::task::spawn_blocking(move || App::load(&runtime, &manifest, backends)).await??,
        )
    };
    let live = LiveApp::new(app.clone());
    let deployer = {
        let live = live.clone();
        let state_dir = state_dir.clone();
        Arc::new(tokio::task::spawn_blocking(move || Deployer::open(live, &state_dir)).await??)
    };
    tracing::info!(
        app = app.name,
        functions = app.functions.len(),
        routes = app.router.len(),
        pooling = runtime.is_pooling(),
        load_ms = started.elapsed().as_millis() as u64,
        "app loaded"
    );
    // Before the address is printed: a SIGTERM sent as soon as the server
    // is up must shut it down gracefully, not kill it.
    let signals = Signals::install().context("cannot install the signal handlers")?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{addr}")?;
        out.flush()?;
    }
    let options = ServeOptions {
        grace: args.grace,
        max_connections: args.max_connections,
    };
    let admin_listener = tokio::net::TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| format!("cannot listen on {} for the admin API", args.admin_listen))?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "admin listening on http://{}",
            admin_listener.local_addr()?
        )?;
        out.flush()?;
    }
    let queues = QueueTriggers::start(&app)
        .await
        .context("cannot start the queue triggers")?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal(signals).await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let admin = Arc::new(Admin::new(deployer, args.admin_token.clone()));
    let admin_task = tokio::spawn(admin.serve(admin_listener, stopped(stop_rx.clone())));
    let trigger = Arc::new(HttpTrigger::new(live));
    serve(listener, trigger, options, stopped(stop_rx)).await?;
    queues.shutdown(args.grace).await;
    let _ = admin_task.await;
    tracing::info!("stopped");
    Ok(())
}

/// The state folder: `--state-dir`, else `.nimbus` beside the manifest.
pub fn state_dir(manifest: &Manifest, flag: Option<&Path>) -> PathBuf {
    flag.map_or_else(|| manifest.dir.join(DEFAULT_STATE_DIR), Path::to_owned)
}

/// The engine, with its compile cache in the state folder.
pub fn new_runtime(state_dir: &Path, pool_instances: u32) -> anyhow::Result<Runtime> {
    let runtime = Runtime::new(&RuntimeConfig {
        cache_dir: Some(state_dir.join("cache")),
        pooling: true,
        pool_instances,
    })
    .map_err(|e| anyhow!("cannot create the wasm engine: {e:#}"))?;
    let capacity = if runtime.is_pooling() {
        pool_instances
    } else {
        0
    };
    nimbus::telemetry::metrics()
        .pool_capacity
        .set(i64::from(capacity));
    Ok(runtime)
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
