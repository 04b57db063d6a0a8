//! The `nimbus` command: parses the command line and calls the library.

use anyhow::{Context, anyhow};
use bytes::Bytes;
use clap::{Parser, Subcommand, ValueEnum};
use http::Method;
use nimbus::admin::Admin;
use nimbus::admin::client::AdminClient;
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

/// mimalloc instead of the system allocator: a request allocates and frees
/// a few hundred small blocks (hyper, the gateway, wasmtime's store and
/// instance), and glibc's malloc spent about an eighth of the server's
/// instructions on them (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// or `info,nimbus::access=off` without the per-request access log),
    /// default `info`.
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
    /// Publish a message to a topic of the running app (through the admin API).
    Publish {
        /// The topic, e.g. `orders.created`.
        topic: String,
        /// The message, as text.
        #[arg(long, conflicts_with = "file", required_unless_present = "file")]
        data: Option<String>,
        /// Read the message from a file.
        #[arg(long)]
        file: Option<PathBuf>,
        /// The message's content type.
        #[arg(long, default_value = "application/octet-stream")]
        content_type: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Show each queue's ready, delayed, in-flight and dead-letter counts.
    Queues {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List, replay or purge a queue function's dead letters.
    DeadLetters {
        #[command(subcommand)]
        action: DeadLetterAction,
    },
    /// Deploy a component as the new version of a function of the running
    /// app, without a restart; requests in flight finish on the old version.
    Deploy {
        /// The function's id.
        id: String,
        /// The component (.wasm).
        file: PathBuf,
        /// Adds a function that is not in the app: a TOML file with the keys
        /// of its `[functions.ID]` table (`routes`, `limits`, `kv`, ...;
        /// no `source`).
        #[arg(long, value_name = "FILE")]
        manifest: Option<PathBuf>,
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List the running app's functions: version, deployed time, canary,
    /// in-flight instances.
    Ls {
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Serve a function's previous version again.
    Rollback {
        /// The function's id.
        id: String,
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Send a share of a function's traffic to a new version
    /// (`nimbus canary ID FILE --percent 10`), change the share
    /// (`nimbus canary ID --percent 50`), then `promote` or `abort` it.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Canary {
        #[command(subcommand)]
        action: Option<CanaryAction>,
        /// The function's id.
        #[arg(required = true)]
        id: Option<String>,
        /// The candidate component (.wasm); without it, only the share changes.
        file: Option<PathBuf>,
        /// Percent of the function's invocations the canary serves (0 to 100).
        #[arg(long, required = true)]
        percent: Option<String>,
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Stop serving a function (its routes answer 404); `nimbus rollback ID`
    /// brings it back.
    Rm {
        /// The function's id.
        id: String,
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        admin: AdminArgs,
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

#[derive(Subcommand)]
enum DeadLetterAction {
    /// List the dead letters of FUNCTION.
    List {
        /// The queue function.
        function: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Put dead letters back in the queue, with fresh attempts.
    Replay {
        /// The queue function.
        function: String,
        /// Only this message (default: all).
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Delete dead letters.
    Purge {
        /// The queue function.
        function: String,
        /// Only this message (default: all).
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Subcommand)]
enum CanaryAction {
    /// Make the canary the stable version.
    Promote {
        /// The function's id.
        id: String,
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Drop the canary; the stable version takes all the traffic.
    Abort {
        /// The function's id.
        id: String,
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// How answers are printed.
#[derive(clap::Args)]
struct OutputArgs {
    /// Print the admin API's JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Where the running app's admin API is.
#[derive(clap::Args)]
struct AdminArgs {
    /// The admin API's URL.
    #[arg(long, default_value = "http://127.0.0.1:3001", env = "NIMBUS_ADMIN")]
    admin: String,
    /// The admin token, if the server requires one.
    #[arg(long, env = "NIMBUS_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
}

impl AdminArgs {
    fn client(&self) -> AdminClient {
        AdminClient::new(&self.admin, self.admin_token.clone())
    }
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

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Flushes the log when main returns.
    let _log = init_logging(cli.log_format);
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
        Command::Publish {
            topic,
            data,
            file,
            content_type,
            admin,
        } => {
            nimbus::manifest::validate_topic(&topic).map_err(|e| anyhow!(e))?;
            let body = match (data, file) {
                (Some(data), _) => Bytes::from(data),
                (None, Some(file)) => Bytes::from(
                    std::fs::read(&file)
                        .with_context(|| format!("cannot read {}", file.display()))?,
                ),
                (None, None) => unreachable!("clap requires one of them"),
            };
            let path = format!("/v1/topics/{topic}/messages");
            let answer = admin
                .client()
                .call(Method::POST, &path, Some((body, &content_type)))
                .await?;
            println!(
                "published {} to {topic}",
                answer["id"].as_str().unwrap_or("?")
            );
            Ok(())
        }
        Command::Queues { json, admin } => {
            let answer = admin.client().call(Method::GET, "/v1/queues", None).await?;
            if json {
                println!("{answer:#}");
            } else {
                println!(
                    "{:<20} {:<28} {:>7} {:>7} {:>9} {:>6}",
                    "FUNCTION", "TOPIC", "READY", "DELAYED", "IN-FLIGHT", "DEAD"
                );
                for q in answer.as_array().into_iter().flatten() {
                    println!(
                        "{:<20} {:<28} {:>7} {:>7} {:>9} {:>6}",
                        q["function"].as_str().unwrap_or(""),
                        q["topic"].as_str().unwrap_or(""),
                        q["ready"],
                        q["delayed"],
                        q["in_flight"],
                        q["dead"]
                    );
                }
            }
            Ok(())
        }
        Command::DeadLetters { action } => dead_letters(action).await,
        Command::Deploy {
            id,
            file,
            manifest,
            output,
            admin,
        } => {
            let body = read_component(&file)?;
            let entry = match &manifest {
                Some(path) => Some(manifest_entry(path)?),
                None => None,
            };
            let headers: Vec<(&str, &str)> = entry
                .as_deref()
                .map(|e| (nimbus::deploy::MANIFEST_HEADER, e))
                .into_iter()
                .collect();
            let answer = admin
                .client()
                .call_with(
                    Method::PUT,
                    &format!("/v1/functions/{id}"),
                    Some((body, "application/wasm")),
                    &headers,
                )
                .await?;
            print_change(&output, &answer);
            Ok(())
        }
        Command::Ls { output, admin } => {
            let answer = admin
                .client()
                .call(Method::GET, "/v1/functions", None)
                .await?;
            if output.json {
                println!("{answer:#}");
            } else {
                print_functions(&answer);
            }
            Ok(())
        }
        Command::Rollback { id, output, admin } => {
            let path = format!("/v1/functions/{id}/rollback");
            let answer = admin.client().call(Method::POST, &path, None).await?;
            print_change(&output, &answer);
            Ok(())
        }
        Command::Rm { id, output, admin } => {
            let path = format!("/v1/functions/{id}");
            let answer = admin.client().call(Method::DELETE, &path, None).await?;
            print_change(&output, &answer);
            Ok(())
        }
        Command::Canary {
            action,
            id,
            file,
            percent,
            output,
            admin,
        } => canary(action, id, file, percent, output, admin).await,
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

async fn canary(
    action: Option<CanaryAction>,
    id: Option<String>,
    file: Option<PathBuf>,
    percent: Option<String>,
    output: OutputArgs,
    admin: AdminArgs,
) -> anyhow::Result<()> {
    let (answer, output) = match action {
        Some(CanaryAction::Promote { id, output, admin }) => {
            let path = format!("/v1/functions/{id}/canary/promote");
            (
                admin.client().call(Method::POST, &path, None).await?,
                output,
            )
        }
        Some(CanaryAction::Abort { id, output, admin }) => {
            let path = format!("/v1/functions/{id}/canary/abort");
            (
                admin.client().call(Method::POST, &path, None).await?,
                output,
            )
        }
        None => {
            let (Some(id), Some(percent)) = (id, percent) else {
                unreachable!("clap requires the id and --percent");
            };
            let percent = nimbus::deploy::parse_percent(&percent)?;
            let body = match &file {
                Some(file) => read_component(file)?,
                None => Bytes::new(),
            };
            let path = format!("/v1/functions/{id}/canary?percent={percent}");
            let answer = admin
                .client()
                .call(Method::PUT, &path, Some((body, "application/wasm")))
                .await?;
            (answer, output)
        }
    };
    print_change(&output, &answer);
    Ok(())
}

/// A new function's manifest entry from a TOML file, as the one-line inline
/// table the admin API takes in a header.
fn manifest_entry(file: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} is not valid TOML", file.display()))?;
    Ok(toml::Value::Table(table).to_string())
}

fn read_component(file: &Path) -> anyhow::Result<Bytes> {
    Ok(Bytes::from(std::fs::read(file).with_context(|| {
        format!("cannot read {}", file.display())
    })?))
}

/// Characters of a digest shown in tables.
const TABLE_DIGEST_LEN: usize = 12;

fn short_digest(value: &serde_json::Value) -> &str {
    let digest = value.as_str().unwrap_or("-");
    &digest[..TABLE_DIGEST_LEN.min(digest.len())]
}

/// One line about what a deployment change did, or its JSON.
fn print_change(output: &OutputArgs, answer: &serde_json::Value) {
    if output.json {
        println!("{answer:#}");
        return;
    }
    let id = answer["id"].as_str().unwrap_or("?");
    let version = short_digest(&answer["version"]);
    let previous = short_digest(&answer["previous"]);
    let canary = &answer["canary"];
    match answer["action"].as_str().unwrap_or("") {
        "unchanged" => println!("{id}: version {version} already serves; nothing changed"),
        "add" => println!("{id}: added, version {version}"),
        "remove" => {
            println!("{id}: removed (was {previous}); `nimbus rollback {id}` brings it back")
        }
        "canary" | "canary_percent" => println!(
            "{id}: canary {} takes {}% of the traffic; stable is {version}",
            short_digest(&canary["version"]),
            canary["percent"]
        ),
        "abort" => println!("{id}: canary {previous} aborted; {version} serves everything"),
        action => println!("{id}: {action}: now {version} (was {previous})"),
    }
}

fn print_functions(answer: &serde_json::Value) {
    println!(
        "{:<20} {:<12} {:<24} {:<18} {:>7} {:>9}  ROUTES",
        "FUNCTION", "VERSION", "DEPLOYED", "CANARY", "HISTORY", "IN-FLIGHT"
    );
    for f in answer.as_array().into_iter().flatten() {
        let version = if f["removed"].as_bool() == Some(true) {
            "(removed)".to_owned()
        } else {
            short_digest(&f["version"]).to_owned()
        };
        let canary = match f["canary"].as_object() {
            Some(c) => format!(
                "{} {}%",
                short_digest(&c["version"]),
                c["percent"].as_u64().unwrap_or(0)
            ),
            None => "-".into(),
        };
        let mut routes: Vec<String> = f["routes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str().map(str::to_owned))
            .collect();
        if let Some(topic) = f["topic"].as_str() {
            routes.push(format!("queue:{topic}"));
        }
        println!(
            "{:<20} {:<12} {:<24} {:<18} {:>7} {:>9}  {}",
            f["id"].as_str().unwrap_or(""),
            version,
            f["deployed_at"].as_str().unwrap_or("-"),
            canary,
            f["history"],
            f["in_flight"],
            routes.join(" ")
        );
    }
}

async fn dead_letters(action: DeadLetterAction) -> anyhow::Result<()> {
    match action {
        DeadLetterAction::List {
            function,
            json,
            admin,
        } => {
            let path = format!("/v1/queues/{function}/dead-letters");
            let answer = admin.client().call(Method::GET, &path, None).await?;
            if json {
                println!("{answer:#}");
                return Ok(());
            }
            let letters = answer.as_array().cloned().unwrap_or_default();
            if letters.is_empty() {
                println!("no dead letters for `{function}`");
            }
            for d in letters {
                println!(
                    "{}  {}  attempts={}  error: {}",
                    d["id"].as_str().unwrap_or(""),
                    d["topic"].as_str().unwrap_or(""),
                    d["attempts"],
                    d["error"].as_str().unwrap_or("")
                );
            }
            Ok(())
        }
        DeadLetterAction::Replay {
            function,
            id,
            admin,
        } => {
            let path = match &id {
                Some(id) => format!("/v1/queues/{function}/dead-letters/replay?id={id}"),
                None => format!("/v1/queues/{function}/dead-letters/replay"),
            };
            let answer = admin.client().call(Method::POST, &path, None).await?;
            println!("replayed {} message(s)", answer["replayed"]);
            Ok(())
        }
        DeadLetterAction::Purge {
            function,
            id,
            admin,
        } => {
            let path = match &id {
                Some(id) => format!("/v1/queues/{function}/dead-letters?id={id}"),
                None => format!("/v1/queues/{function}/dead-letters"),
            };
            let answer = admin.client().call(Method::DELETE, &path, None).await?;
            println!("purged {} message(s)", answer["purged"]);
            Ok(())
        }
    }
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
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

fn state_dir(manifest: &Manifest, flag: Option<&Path>) -> PathBuf {
    flag.map_or_else(|| manifest.dir.join(DEFAULT_STATE_DIR), Path::to_owned)
}

fn new_runtime(state_dir: &Path, pool_instances: u32) -> anyhow::Result<Runtime> {
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

/// Logs go to stderr from a background thread that writes them in batches:
/// with one access-log line per request, a write per line would cost a
/// syscall on every request's path. The channel is not lossy: when the
/// writer falls behind, requests wait rather than lines being dropped.
/// Colors only when stderr is a terminal.
fn init_logging(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("NIMBUS_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("nimbus-log")
        .finish(std::io::BufWriter::new(std::io::stderr()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    // The access log, a line per request, takes a fast path; other lines
    // are tracing-subscriber's own.
    use nimbus::log_format::{AccessFast, Shape};
    use tracing_subscriber::fmt::format::Format;
    match format {
        LogFormat::Text => builder
            .event_format(AccessFast::new(Format::default(), Shape::Text))
            .init(),
        LogFormat::Json => builder
            .json()
            .event_format(AccessFast::new(Format::default().json(), Shape::Json))
            .init(),
    }
    guard
}
