//! Nothing is lost when the host dies. Each test runs the real `nimbus`
//! process, kills it with `kill -9` mid-run, restarts it on the same state
//! folder and checks that every write the server answered is there:
//!
//! - queues: 1,000 messages, three kills at random moments while they are
//!   handled; every message is handled at least once;
//! - key-value: 16 clients write distinct keys; every write answered `2xx`
//!   before the kill is there with its value after the restart;
//! - SQLite: the same, each write an `INSERT` through `sql-probe`;
//! - PostgreSQL: the same through `pg-probe`, on a database of the test's
//!   own (nimbus dies, not PostgreSQL: an answered write was committed).
//!
//! The random moments come from a seed printed by each test, so a failure
//! can be replayed with `NIMBUS_CRASH_SEED`.

use crate::support::{Server, app_dir, client, up_command};
use nimbus_tests::eventually;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// One consumer at a time, so the queue is worked through slowly enough
/// for three kills to land in it.
const QUEUE_APP: &str = r#"
[functions.worker]
source = @queue-worker@
routes = ["/worker/..."]
kv = ["deliveries"]
queue = { topic = "jobs.*", max_attempts = 5, backoff = "50ms", concurrency = 1 }
"#;

const KV_APP: &str = r#"
[functions.kv]
source = @kv-store@
routes = ["/kv/..."]
kv = ["data"]
"#;

/// Rows `key`, `value` in SQLite, written and read through `sql-probe`'s
/// `kv` routes.
const SQL_APP: &str = r#"
[sqlite.data]
migrations = "kv.sql"

[functions.sql]
source = @sql-probe@
routes = ["/sql/..."]
sqlite = ["data"]
"#;

const MESSAGES: usize = 1_000;

/// Clients at once, publishing or writing.
const CLIENTS: usize = 16;

/// How long the last server may take to handle what is left of the
/// messages, one at a time, in a debug build.
const DRAIN: Duration = Duration::from_secs(120);

fn start(dir: &Path) -> Server {
    Server::start(up_command(dir))
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A random generator from `NIMBUS_CRASH_SEED` or a fresh seed, printed.
fn rng(test: &str) -> fastrand::Rng {
    let seed = std::env::var("NIMBUS_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("{test}: NIMBUS_CRASH_SEED={seed}");
    fastrand::Rng::with_seed(seed)
}

pub(crate) fn kill_9(server: &mut Server) {
    server.signal("-KILL");
    server.wait(Duration::from_secs(10));
}

async fn queue_stats(client: &reqwest::Client, admin: &str) -> serde_json::Value {
    let queues: serde_json::Value = client
        .get(format!("{admin}/v1/queues"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    queues[0].clone()
}

/// Messages not yet handled for good: ready, delayed or in flight.
fn open(stats: &serde_json::Value) -> u64 {
    ["ready", "delayed", "in_flight"]
        .iter()
        .map(|k| stats[k].as_u64().unwrap())
        .sum()
}

/// Publishes `count` messages to `topic` through the admin API at `admin`,
/// from `CLIENTS` publishers; returns their ids.
pub(crate) async fn publish_all(
    client: &reqwest::Client,
    admin: &str,
    topic: &str,
    count: usize,
) -> Vec<String> {
    let url = format!("{admin}/v1/topics/{topic}/messages");
    let mut tasks = Vec::new();
    for p in 0..CLIENTS {
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in (p..count).step_by(CLIENTS) {
                let answer: serde_json::Value = client
                    .post(&url)
                    .body(format!("message {i}"))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                ids.push(answer["id"].as_str().unwrap().to_owned());
            }
            ids
        }));
    }
    let mut ids = Vec::with_capacity(count);
    for task in tasks {
        ids.extend(task.await.unwrap());
    }
    ids
}

#[test]
fn three_kill_9s_while_messages_are_handled_lose_none() {
    let dir = app_dir(QUEUE_APP);
    let rt = runtime();
    let client = client();
    let mut rng = rng("queues");

    let mut server = start(dir.path());
    let ids = rt.block_on(publish_all(&client, &server.admin, "jobs.crash", MESSAGES));
    assert_eq!(ids.len(), MESSAGES);

    // Each kill comes once the open messages fall below a random mark in
    // its own third of the queue, so every kill lands mid-queue.
    for (kill, third) in [(1, 2), (2, 1), (3, 0)] {
        let third_size = MESSAGES as u64 / 3;
        let mark = third * third_size + rng.u64(50..third_size);
        let stats = rt.block_on(eventually(
            "the queue to be worked down to the kill's mark",
            DRAIN,
            || async {
                let stats = queue_stats(&client, &server.admin).await;
                (open(&stats) <= mark).then_some(stats)
            },
        ));
        assert!(
            open(&stats) > 0,
            "kill {kill} would land after the last message; the test proves nothing: {stats}"
        );
        eprintln!("kill {kill}: -9 with {} messages open", open(&stats));
        kill_9(&mut server);
        drop(server);
        server = start(dir.path());
    }

    rt.block_on(async {
        let stats = eventually("the queue to drain", DRAIN, || async {
            let stats = queue_stats(&client, &server.admin).await;
            (open(&stats) == 0).then_some(stats)
        })
        .await;
        assert_eq!(stats["dead"], 0, "{stats}");
        let mut duplicates = 0;
        for id in &ids {
            let count: u64 = client
                .get(format!("{}/worker/count/{id}", server.url))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            assert!(count >= 1, "message {id} was never handled");
            if count > 1 {
                duplicates += 1;
            }
        }
        eprintln!(
            "{MESSAGES} messages handled after three kills; {duplicates} handled more than once (at-least-once)"
        );
    });
}

#[test]
fn a_kill_9_mid_writes_keeps_every_answered_write() {
    answered_writes_survive_a_kill_9("key-value", app_dir(KV_APP), "/kv/data");
}

#[test]
fn a_kill_9_mid_postgres_inserts_keeps_every_answered_row() {
    let db = crate::support::PgDatabase::create();
    db.run("CREATE TABLE kv (key text PRIMARY KEY, value bytea NOT NULL)");
    let dir = app_dir(&format!(
        "[functions.pg]\nsource = @pg-probe@\nroutes = [\"/pg/...\"]\npostgres = {{ data = \"{}\" }}\n",
        db.url
    ));
    answered_writes_survive_a_kill_9("postgres", dir, "/pg/data/kv");
}

#[test]
fn a_kill_9_mid_sql_inserts_keeps_every_answered_row() {
    let dir = app_dir(SQL_APP);
    std::fs::write(
        dir.path().join("kv.sql"),
        "CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB NOT NULL);\n",
    )
    .unwrap();
    answered_writes_survive_a_kill_9("sqlite", dir, "/sql/data/kv");
}

/// `CLIENTS` clients PUT distinct keys under `path` of the app in `dir`
/// until the server is killed with `kill -9` at a random moment; after a
/// restart each key whose write was answered `2xx` reads back its value.
fn answered_writes_survive_a_kill_9(what: &str, dir: tempfile::TempDir, path: &str) {
    let rt = runtime();
    let client = client();
    let mut rng = rng(what);

    let mut server = start(dir.path());
    // Kill once this many writes were answered, at least a few per client.
    let mark = rng.usize(200..800);
    let answered = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (client, url) = (client.clone(), format!("{}{path}", server.url));
            let (answered, killed) = (answered.clone(), killed.clone());
            rt.spawn(async move {
                // Keys this client's writes were answered 2xx for.
                let mut kept = Vec::new();
                let mut unanswered = 0;
                for n in 0.. {
                    let key = format!("c{c}-{n}");
                    let sent = client
                        .put(format!("{url}/{key}"))
                        .body(format!("value of {key}"))
                        .send()
                        .await;
                    match sent {
                        Ok(response) if response.status().is_success() => {
                            kept.push(key);
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(response) => panic!("{key}: answered {}", response.status()),
                        // The server died with this write in flight: it may
                        // or may not have been kept, and nobody was told.
                        Err(_) if killed.load(Ordering::Relaxed) => {
                            unanswered += 1;
                            break;
                        }
                        Err(e) => panic!("{key}: {e}"),
                    }
                }
                (kept, unanswered)
            })
        })
        .collect();

    rt.block_on(eventually(
        "the writes to reach the kill's mark",
        Duration::from_secs(60),
        || async { (answered.load(Ordering::Relaxed) >= mark).then_some(()) },
    ));
    killed.store(true, Ordering::Relaxed);
    kill_9(&mut server);
    let mut kept = Vec::new();
    let mut unanswered = 0;
    for writer in writers {
        let (keys, lost_answers) = rt.block_on(writer).unwrap();
        kept.extend(keys);
        unanswered += lost_answers;
    }
    assert!(
        kept.len() >= mark,
        "{} answered before the kill",
        kept.len()
    );
    drop(server);

    let server = start(dir.path());
    rt.block_on(async {
        for key in &kept {
            let response = client
                .get(format!("{}{path}/{key}", server.url))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{key} was answered 2xx, then lost");
            assert_eq!(response.text().await.unwrap(), format!("value of {key}"));
        }
    });
    eprintln!(
        "{what}: {} answered writes all kept after kill -9 (mark {mark}); {unanswered} were in flight",
        kept.len()
    );
}
