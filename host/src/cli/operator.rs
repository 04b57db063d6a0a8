//! The operator commands: each calls a running node's admin API through
//! [`AdminClient`](nimbus::admin::client::AdminClient) and prints its typed
//! answer as a table or a line (or, with `--json`, as the API's JSON).

use super::{AdminArgs, CanaryAction, DeadLetterAction, OutputArgs};
use anyhow::{Context, anyhow};
use bytes::Bytes;
use nimbus::admin::{DeadLetterView, QueueView};
use nimbus::deploy::{Action, ChangeView, FunctionView};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// `nimbus publish TOPIC`
pub async fn publish(
    topic: &str,
    data: Option<String>,
    file: Option<PathBuf>,
    content_type: &str,
    admin: &AdminArgs,
) -> anyhow::Result<()> {
    nimbus::manifest::validate_topic(topic).map_err(|e| anyhow!(e))?;
    let body = match (data, file) {
        (Some(data), _) => Bytes::from(data),
        (None, Some(file)) => read_file(&file)?,
        (None, None) => unreachable!("clap requires one of them"),
    };
    let published = admin.client().publish(topic, body, content_type).await?;
    println!("published {} to {topic}", published.id);
    Ok(())
}

/// `nimbus queues`
pub async fn queues(json: bool, admin: &AdminArgs) -> anyhow::Result<()> {
    let queues = admin.client().queues().await?;
    if json {
        return print_json(&queues);
    }
    print_queues(&queues);
    Ok(())
}

/// `nimbus sql FUNCTION DATABASE SQL [--param V]... [--write]`
#[allow(clippy::too_many_arguments)]
pub async fn sql(
    function: &str,
    database: &str,
    sql: &str,
    params: &[String],
    write: bool,
    json: bool,
    admin: &AdminArgs,
) -> anyhow::Result<()> {
    let params: Vec<serde_json::Value> = params.iter().map(|p| sql_param(p)).collect();
    let answer = admin
        .client()
        .sql(function, database, sql, &params, write)
        .await?;
    if json {
        return print_json(&answer);
    }
    let cell = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "NULL".to_owned(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let rows: Vec<Vec<String>> = answer
        .rows
        .iter()
        .map(|row| row.iter().map(cell).collect())
        .collect();
    if !answer.columns.is_empty() {
        let widths: Vec<usize> = (0..answer.columns.len())
            .map(|i| {
                rows.iter()
                    .filter_map(|r| r.get(i))
                    .chain([&answer.columns[i]])
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            println!("{}", padded.join("  ").trim_end());
        };
        line(&answer.columns);
        for row in &rows {
            line(row);
        }
    }
    match (answer.columns.is_empty(), rows.len()) {
        (true, _) => println!("{} rows changed", answer.changes),
        (false, 1) => println!("(1 row)"),
        (false, n) => println!("({n} rows)"),
    }
    Ok(())
}

/// A `--param` value: a whole number, a decimal, `null`, or else text.
fn sql_param(text: &str) -> serde_json::Value {
    if text == "null" {
        serde_json::Value::Null
    } else if let Ok(i) = text.parse::<i64>() {
        i.into()
    } else if let Some(f) = text.parse::<f64>().ok().filter(|f| f.is_finite()) {
        f.into()
    } else {
        text.into()
    }
}

/// `nimbus nodes`
pub async fn nodes(json: bool, admin: &AdminArgs) -> anyhow::Result<()> {
    let nodes = admin.client().nodes().await?;
    if json {
        return print_json(&nodes);
    }
    println!(
        "{:<28} {:<22} {:<22} {:<8} {:<24} {:>9}",
        "NODE", "PUBLIC", "ADMIN", "VERSION", "LAST HEARTBEAT", "IN-FLIGHT"
    );
    for n in &nodes {
        let id = if n.this {
            format!("{} *", n.id)
        } else {
            n.id.clone()
        };
        println!(
            "{:<28} {:<22} {:<22} {:<8} {:<24} {:>9}",
            id,
            n.public,
            n.admin.as_deref().unwrap_or("-"),
            n.version,
            n.heartbeat_at,
            n.in_flight
        );
    }
    Ok(())
}

/// `nimbus deploy ID FILE [--manifest ENTRY]`
pub async fn deploy(
    id: &str,
    file: &Path,
    manifest: Option<&Path>,
    output: &OutputArgs,
    admin: &AdminArgs,
) -> anyhow::Result<()> {
    let body = read_file(file)?;
    let entry = manifest.map(manifest_entry).transpose()?;
    let change = admin.client().deploy(id, body, entry.as_deref()).await?;
    print_change(output, &change)
}

/// `nimbus ls`
pub async fn ls(output: &OutputArgs, admin: &AdminArgs) -> anyhow::Result<()> {
    let functions = admin.client().functions().await?;
    if output.json {
        return print_json(&functions);
    }
    print_functions(&functions);
    Ok(())
}

/// `nimbus rollback ID`
pub async fn rollback(id: &str, output: &OutputArgs, admin: &AdminArgs) -> anyhow::Result<()> {
    print_change(output, &admin.client().rollback(id).await?)
}

/// `nimbus rm ID`
pub async fn remove(id: &str, output: &OutputArgs, admin: &AdminArgs) -> anyhow::Result<()> {
    print_change(output, &admin.client().remove(id).await?)
}

/// `nimbus canary ...`
pub async fn canary(
    action: Option<CanaryAction>,
    id: Option<String>,
    file: Option<PathBuf>,
    percent: Option<String>,
    output: OutputArgs,
    admin: AdminArgs,
) -> anyhow::Result<()> {
    let (change, output) = match action {
        Some(CanaryAction::Promote { id, output, admin }) => {
            (admin.client().promote(&id).await?, output)
        }
        Some(CanaryAction::Abort { id, output, admin }) => {
            (admin.client().abort(&id).await?, output)
        }
        None => {
            let (Some(id), Some(percent)) = (id, percent) else {
                unreachable!("clap requires the id and --percent");
            };
            let percent = nimbus::deploy::parse_percent(&percent)?;
            let client = admin.client();
            let change = match &file {
                Some(file) => client.canary(&id, read_file(file)?, percent).await?,
                None => client.set_canary_percent(&id, percent).await?,
            };
            (change, output)
        }
    };
    print_change(&output, &change)
}

/// `nimbus dead-letters ...`
pub async fn dead_letters(action: DeadLetterAction) -> anyhow::Result<()> {
    match action {
        DeadLetterAction::List {
            function,
            json,
            admin,
        } => {
            let letters = admin.client().dead_letters(&function).await?;
            if json {
                return print_json(&letters);
            }
            print_dead_letters(&function, &letters);
        }
        DeadLetterAction::Replay {
            function,
            id,
            admin,
        } => {
            let answer = admin.client().replay(&function, id.as_deref()).await?;
            println!("replayed {} message(s)", answer.replayed);
        }
        DeadLetterAction::Purge {
            function,
            id,
            admin,
        } => {
            let answer = admin.client().purge(&function, id.as_deref()).await?;
            println!("purged {} message(s)", answer.purged);
        }
    }
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

fn read_file(file: &Path) -> anyhow::Result<Bytes> {
    Ok(Bytes::from(std::fs::read(file).with_context(|| {
        format!("cannot read {}", file.display())
    })?))
}

/// Characters of a digest shown in tables.
const TABLE_DIGEST_LEN: usize = 12;

/// The start of `digest`, or `-` without one.
fn short_digest(digest: Option<&str>) -> &str {
    let digest = digest.unwrap_or("-");
    &digest[..TABLE_DIGEST_LEN.min(digest.len())]
}

/// An answer as JSON (`--json`): the view carries every field the API
/// sent; printed as before, pretty, its keys sorted.
fn print_json(answer: &impl Serialize) -> anyhow::Result<()> {
    println!("{:#}", serde_json::to_value(answer)?);
    Ok(())
}

/// One line about what a deployment change did, or its JSON.
fn print_change(output: &OutputArgs, change: &ChangeView) -> anyhow::Result<()> {
    if output.json {
        return print_json(change);
    }
    let function = &change.function;
    let id = &function.id;
    let version = short_digest(function.version.as_deref());
    let previous = short_digest(change.previous.as_deref());
    match change.action {
        Action::Unchanged => println!("{id}: version {version} already serves; nothing changed"),
        Action::Add => println!("{id}: added, version {version}"),
        Action::Remove => {
            println!("{id}: removed (was {previous}); `nimbus rollback {id}` brings it back")
        }
        Action::Canary | Action::CanaryPercent => {
            let canary = function.canary.as_ref();
            println!(
                "{id}: canary {} takes {}% of the traffic; stable is {version}",
                short_digest(canary.map(|c| c.version.as_str())),
                canary.map_or(0, |c| c.percent)
            )
        }
        Action::Abort => println!("{id}: canary {previous} aborted; {version} serves everything"),
        Action::Deploy | Action::Rollback | Action::Promote => println!(
            "{id}: {}: now {version} (was {previous})",
            change.action.as_str()
        ),
    }
    Ok(())
}

// The counts in the tables below are printed unpadded, under headers that
// are: the output has always looked so, and scripts and tests read it.

fn print_functions(functions: &[FunctionView]) {
    println!(
        "{:<20} {:<12} {:<24} {:<18} {:>7} {:>9}  ROUTES",
        "FUNCTION", "VERSION", "DEPLOYED", "CANARY", "HISTORY", "IN-FLIGHT"
    );
    for f in functions {
        let version = if f.removed {
            "(removed)".to_owned()
        } else {
            short_digest(f.version.as_deref()).to_owned()
        };
        let canary = match &f.canary {
            Some(c) => format!("{} {}%", short_digest(Some(&c.version)), c.percent),
            None => "-".into(),
        };
        let mut routes = f.routes.clone();
        if let Some(topic) = &f.topic {
            routes.push(format!("queue:{topic}"));
        }
        println!(
            "{:<20} {:<12} {:<24} {:<18} {} {}  {}",
            f.id,
            version,
            f.deployed_at.as_deref().unwrap_or("-"),
            canary,
            f.history,
            f.in_flight,
            routes.join(" ")
        );
    }
}

fn print_queues(queues: &[QueueView]) {
    println!(
        "{:<20} {:<28} {:>7} {:>7} {:>9} {:>6}",
        "FUNCTION", "TOPIC", "READY", "DELAYED", "IN-FLIGHT", "DEAD"
    );
    for q in queues {
        println!(
            "{:<20} {:<28} {:>7} {:>7} {:>9} {:>6}",
            q.function, q.topic, q.ready, q.delayed, q.in_flight, q.dead
        );
    }
}

fn print_dead_letters(function: &str, letters: &[DeadLetterView]) {
    if letters.is_empty() {
        println!("no dead letters for `{function}`");
    }
    for d in letters {
        println!(
            "{}  {}  attempts={}  error: {}",
            d.id, d.topic, d.attempts, d.error
        );
    }
}
