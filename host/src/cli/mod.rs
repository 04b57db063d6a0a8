//! The `nimbus` command line: its commands and flags (clap derive; the doc
//! comments are the `--help` text), and what each command runs.
//!
//! - [`up`]: `nimbus up`, which starts a node, and [`watch`], its `--watch`;
//! - [`top`]: `nimbus top`, a live table of what each function does;
//! - [`operator`]: the commands that talk to a running node's admin API, and
//!   how their answers are printed;
//! - [`new`]: `nimbus new`, an app from a template;
//! - [`logging`]: the log subscriber.

pub mod logging;
pub mod new;
pub mod operator;
pub mod top;
pub mod up;
pub mod watch;

use clap::{Parser, Subcommand, ValueEnum};
use nimbus::admin::client::AdminClient;
use nimbus::manifest::Manifest;
use std::path::PathBuf;

/// Run microservices written as WebAssembly components.
#[derive(Parser)]
#[command(name = "nimbus", version, about)]
pub struct Cli {
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
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written.
#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The commands.
#[derive(Subcommand)]
pub enum Command {
    /// Serve an app: load its manifest and components and listen for HTTP.
    Up(up::UpArgs),
    /// Make a new app from a template, in a folder of its own
    /// (`nimbus new http-rust hello`; `nimbus new --list` shows the
    /// templates).
    New {
        /// The template, e.g. `http-rust`.
        #[arg(required_unless_present = "list")]
        template: Option<String>,
        /// The app's name, which is also its folder's, its function's and
        /// its key-value store's: lowercase letters, digits and `-`.
        #[arg(required_unless_present = "list")]
        name: Option<String>,
        /// The folder to create (default: NAME, in the current folder).
        #[arg(long)]
        path: Option<PathBuf>,
        /// The nimbus-sdk crate a Rust app depends on (the `guest-sdk`
        /// folder of a Nimbus checkout; default: the one this nimbus was
        /// built from).
        #[arg(long, env = "NIMBUS_SDK")]
        sdk: Option<PathBuf>,
        /// List the templates and what each makes.
        #[arg(long, exclusive = true)]
        list: bool,
    },
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
    /// List the nodes serving the app: this one, or a cluster's live members.
    Nodes {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// A live table of each function's requests/s, errors, p99 latency,
    /// peak memory and instances in flight, refreshed in place (once, when
    /// the output is not a terminal).
    Top {
        /// How often to refresh, e.g. `1s` or `500ms`.
        #[arg(long, default_value = "1s", value_parser = parse_interval)]
        interval: std::time::Duration,
        /// The seconds the figures cover (1 to 300).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
        window: u64,
        /// Print the table once and exit.
        #[arg(long)]
        once: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Run one SQL statement on a SQLite or PostgreSQL database of a
    /// function, through the admin API, under the function's limits:
    /// read-only unless `--write`. Prints the rows as a table.
    Sql {
        /// The function whose `sqlite` lists the database, or whose
        /// `postgres` grants it.
        function: String,
        /// The database.
        database: String,
        /// The statement, e.g. "SELECT * FROM products WHERE id = ?".
        sql: String,
        /// A value for the next `?` (PostgreSQL: `$1`, `$2`, ...): a whole number, a decimal, `null`, else text; repeat in order.
        #[arg(long = "param", value_name = "VALUE")]
        params: Vec<String>,
        /// Allow a statement that writes (INSERT, UPDATE, DELETE, CREATE, ...).
        #[arg(long)]
        write: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
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
        /// The state folder, whose cache/ holds compiled components unless
        /// --cache-dir says otherwise (default: .nimbus beside the manifest).
        #[arg(long, env = "NIMBUS_STATE_DIR")]
        state_dir: Option<PathBuf>,
        /// Where compiled components are kept (default: cache/ in the state folder).
        #[arg(long, env = "NIMBUS_CACHE_DIR")]
        cache_dir: Option<PathBuf>,
    },
}

/// `nimbus dead-letters ...`
#[derive(Subcommand)]
pub enum DeadLetterAction {
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

/// `nimbus canary promote|abort ...`
#[derive(Subcommand)]
pub enum CanaryAction {
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
pub struct OutputArgs {
    /// Print the admin API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Where the running app's admin API is.
#[derive(clap::Args)]
pub struct AdminArgs {
    /// The admin API's URL.
    #[arg(long, default_value = "http://127.0.0.1:3001", env = "NIMBUS_ADMIN")]
    pub admin: String,
    /// The admin token, if the server requires one.
    #[arg(long, env = "NIMBUS_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
}

impl AdminArgs {
    /// A client for the admin API these flags name.
    pub fn client(&self) -> AdminClient {
        AdminClient::new(&self.admin, self.admin_token.clone())
    }
}

/// A refresh interval of at least 100 ms, written as in nimbus.toml (`1s`).
fn parse_interval(text: &str) -> Result<std::time::Duration, String> {
    let interval = humantime::parse_duration(text).map_err(|e| format!("`{text}`: {e}"))?;
    if interval < std::time::Duration::from_millis(100) {
        return Err(format!("`{text}` is too often: at least 100ms"));
    }
    Ok(interval)
}

/// Runs one command.
pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Up(args) => up::up(args).await,
        Command::New { list: true, .. } => {
            new::list();
            Ok(())
        }
        Command::New {
            template,
            name,
            path,
            sdk,
            ..
        } => {
            let (Some(template), Some(name)) = (template, name) else {
                unreachable!("clap requires TEMPLATE and NAME without --list")
            };
            new::new(&template, &name, path.as_deref(), sdk.as_deref())
        }
        Command::Build { path } => {
            let manifest = Manifest::load(&path)?;
            tokio::task::spawn_blocking(move || {
                nimbus::build::build_all(&manifest, &mut std::io::stderr())
            })
            .await??;
            Ok(())
        }
        Command::Check {
            path,
            state_dir,
            cache_dir,
        } => {
            let manifest = Manifest::load(&path)?;
            let state_dir = nimbus::node::state_dir(&manifest, state_dir.as_deref());
            let cache_dir = nimbus::node::cache_dir(&state_dir, cache_dir.as_deref());
            let runtime =
                nimbus::node::runtime(&cache_dir, nimbus::engine::DEFAULT_POOL_INSTANCES)?;
            let report = tokio::task::spawn_blocking(move || nimbus::check::check(&runtime, &path))
                .await??;
            println!(
                "ok: app `{}`: {} function(s), {} route(s)",
                report.app, report.functions, report.routes
            );
            for (function, handlers) in &report.handlers {
                println!("  {function}: exports {}", handlers.join(", "));
            }
            Ok(())
        }
        Command::Publish {
            topic,
            data,
            file,
            content_type,
            admin,
        } => operator::publish(&topic, data, file, &content_type, &admin).await,
        Command::Nodes { json, admin } => operator::nodes(json, &admin).await,
        Command::Queues { json, admin } => operator::queues(json, &admin).await,
        Command::Sql {
            function,
            database,
            sql,
            params,
            write,
            json,
            admin,
        } => operator::sql(&function, &database, &sql, &params, write, json, &admin).await,
        Command::Top {
            interval,
            window,
            once,
            admin,
        } => top::top(interval, window, once, &admin).await,
        Command::DeadLetters { action } => operator::dead_letters(action).await,
        Command::Deploy {
            id,
            file,
            manifest,
            output,
            admin,
        } => operator::deploy(&id, &file, manifest.as_deref(), &output, &admin).await,
        Command::Ls { output, admin } => operator::ls(&output, &admin).await,
        Command::Rollback { id, output, admin } => operator::rollback(&id, &output, &admin).await,
        Command::Rm { id, output, admin } => operator::remove(&id, &output, &admin).await,
        Command::Canary {
            action,
            id,
            file,
            percent,
            output,
            admin,
        } => operator::canary(action, id, file, percent, output, admin).await,
    }
}
