//! The `nimbus` command: parses the command line and calls the library.

use anyhow::{Context, anyhow};
use clap::{Parser, Subcommand, ValueEnum};
use nimbus::app::App;
use nimbus::backend::Backends;
use nimbus::backend::embedded::EmbeddedBackend;
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

/// Run microservices written as WebAssembly components.
#[derive(Parser)]
#[command(name = "nimbus", version, about)]
struct Cli {
    /// Log format on stderr. The level comes from NIMBUS_LOG (e.g. `debug`,
    /// `nimbus::access=debug`), default `info`.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "NIMBUS_LOG_FORMAT"
    )]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve an app: load its manifest and components and listen for HTTP.
    Up(UpArgs),
    /// Run each function's build command.
    Build {
        /// A nimbus.toml, or a folder holding one.
        #[arg(default_value = ".", env = "NIMBUS_APP")]
        path: PathBuf,
    },
    /// Validate the manifest and every component; exit non-zero on a problem.
    Check {
        /// A nimbus.toml, or a folder holding one.
        #[arg(default_value = ".", env = "NIMBUS_APP")]
        path: PathBuf,
        /// Where the compile cache lives (default: .nimbus beside the manifest).
        #[arg(long, env = "NIMBUS_STATE_DIR")]
        state_dir: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct UpArgs {
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
    /// Component instances the pooling allocator holds at once.
    #[arg(long, default_value_t = nimbus::engine::DEFAULT_POOL_INSTANCES, env = "NIMBUS_POOL_INSTANCES")]
    pool_instances: u32,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Up(args) => up(args).await,
        Command::Build { path } => {
            let manifest = Manifest::load(&path)?;
            tokio::task::spawn_blocking(move || {
                nimbus::build::build_all(&manifest, &mut std::io::stderr())
            })
            .await??;
            Ok(())
        }
        Command::Check { path, state_dir } => {
            let manifest = Manifest::load(&path)?;
            let state_dir = self::state_dir(&manifest, state_dir.as_deref());
            let runtime = new_runtime(&state_dir, nimbus::engine::DEFAULT_POOL_INSTANCES)?;
            let report = tokio::task::spawn_blocking(move || nimbus::check::check(&runtime, &path))
                .await??;
            println!(
                "ok: app `{}`: {} function(s), {} route(s)",
                report.app, report.functions, report.routes
            );
            Ok(())
        }
    }
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
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
    let app = {
        let runtime = runtime.clone();
        let manifest = manifest.clone();
        let backends = Backends::embedded(store);
        Arc::new(
            tokio::task::spawn_blocking(move || App::load(&runtime, &manifest, backends)).await??,
        )
    };
    tracing::info!(
        app = app.name,
        functions = app.functions.len(),
        routes = app.router.len(),
        pooling = runtime.is_pooling(),
        load_ms = started.elapsed().as_millis() as u64,
        "app loaded"
    );
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
    let queues = QueueTriggers::start(&app)
        .await
        .context("cannot start the queue triggers")?;
    let trigger = Arc::new(HttpTrigger::new(app));
    serve(listener, trigger, options, shutdown_signal()).await?;
    queues.shutdown(args.grace).await;
    tracing::info!("stopped");
    Ok(())
}

fn state_dir(manifest: &Manifest, flag: Option<&Path>) -> PathBuf {
    flag.map_or_else(|| manifest.dir.join(DEFAULT_STATE_DIR), Path::to_owned)
}

fn new_runtime(state_dir: &Path, pool_instances: u32) -> anyhow::Result<Runtime> {
    Runtime::new(&RuntimeConfig {
        cache_dir: Some(state_dir.join("cache")),
        pooling: true,
        pool_instances,
    })
    .map_err(|e| anyhow!("cannot create the wasm engine: {e:#}"))
}

/// Resolves on the first Ctrl-C or SIGTERM; a second one exits at once.
async fn shutdown_signal() {
    wait_for_signal().await;
    tracing::info!("signal received; shutting down gracefully (send another to exit now)");
    tokio::spawn(async {
        wait_for_signal().await;
        eprintln!("second signal: exiting now");
        std::process::exit(130);
    });
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("NIMBUS_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
