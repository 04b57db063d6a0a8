//! The operator commands: each calls a running node's admin API and prints
//! its answer as a table or a line (or, with `--json`, the answer itself).

use super::{AdminArgs, CanaryAction, DeadLetterAction, OutputArgs};
use anyhow::{Context, anyhow};
use bytes::Bytes;
use http::Method;
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
    let path = format!("/v1/topics/{topic}/messages");
    let answer = admin
        .client()
        .call(Method::POST, &path, Some((body, content_type)))
        .await?;
    println!(
        "published {} to {topic}",
        answer["id"].as_str().unwrap_or("?")
    );
    Ok(())
}

/// `nimbus queues`
pub async fn queues(json: bool, admin: &AdminArgs) -> anyhow::Result<()> {
    let answer = admin.client().call(Method::GET, "/v1/queues", None).await?;
    if json {
        println!("{answer:#}");
        return Ok(());
    }
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
    print_change(output, &answer);
    Ok(())
}

/// `nimbus ls`
pub async fn ls(output: &OutputArgs, admin: &AdminArgs) -> anyhow::Result<()> {
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

/// A deployment change without a body (`rollback`, `rm`), and its line.
pub async fn change(
    method: Method,
    path: &str,
    output: &OutputArgs,
    admin: &AdminArgs,
) -> anyhow::Result<()> {
    let answer = admin.client().call(method, path, None).await?;
    print_change(output, &answer);
    Ok(())
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
                Some(file) => read_file(file)?,
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

fn read_file(file: &Path) -> anyhow::Result<Bytes> {
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

/// `nimbus dead-letters ...`
pub async fn dead_letters(action: DeadLetterAction) -> anyhow::Result<()> {
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
