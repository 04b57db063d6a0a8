//! Nothing is lost when the host dies: `kill -9` while 1,000 messages are
//! being handled, restart, and every message is handled at least once.
//! Also the operator's queue commands against a running server.

mod common;

use common::{Server, app_dir, nimbus, up_command};
use std::path::Path;
use std::time::{Duration, Instant};

const APP: &str = r#"
[functions.worker]
source = @queue-worker@
routes = ["/worker/..."]
kv = ["deliveries"]
queue = { topic = "jobs.*", max_attempts = 2, backoff = "50ms", concurrency = 8 }
"#;

/// A slower consumer (two at a time), so the kill lands mid-queue.
const CRASH_APP: &str = r#"
[functions.worker]
source = @queue-worker@
routes = ["/worker/..."]
kv = ["deliveries"]
queue = { topic = "jobs.*", max_attempts = 5, backoff = "50ms", concurrency = 2 }
"#;

const MESSAGES: usize = 1_000;

/// Publishers at once: enough to publish faster than the consumer handles.
const PUBLISHERS: usize = 16;

fn start(dir: &Path) -> Server {
    Server::start(up_command(dir))
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
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

#[test]
fn kill_9_mid_processing_loses_no_message() {
    let dir = app_dir(CRASH_APP);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = client();

    let mut server = start(dir.path());
    let ids: Vec<String> = rt.block_on(async {
        let url = format!("{}/v1/topics/jobs.crash/messages", server.admin);
        let mut tasks = Vec::new();
        for p in 0..PUBLISHERS {
            let (client, url) = (client.clone(), url.clone());
            tasks.push(tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in (p..MESSAGES).step_by(PUBLISHERS) {
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
        let mut ids = Vec::with_capacity(MESSAGES);
        for task in tasks {
            ids.extend(task.await.unwrap());
        }
        ids
    });
    assert_eq!(ids.len(), MESSAGES);
    // Kill it while the queue is still being worked through.
    let stats = rt.block_on(queue_stats(&client, &server.admin));
    let left = stats["ready"].as_u64().unwrap() + stats["in_flight"].as_u64().unwrap();
    assert!(
        left > 0,
        "all messages were handled before the kill; the test proves nothing: {stats}"
    );
    server.signal("-KILL");
    server.wait(Duration::from_secs(10));
    drop(server);

    let server = start(dir.path());
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let stats = queue_stats(&client, &server.admin).await;
            let open: u64 = ["ready", "delayed", "in_flight"]
                .iter()
                .map(|k| stats[k].as_u64().unwrap())
                .sum();
            if open == 0 {
                assert_eq!(stats["dead"], 0, "{stats}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the queue never drained: {stats}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut redelivered = 0;
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
                redelivered += 1;
            }
        }
        eprintln!(
            "{MESSAGES} messages handled; {redelivered} handled more than once (at-least-once)"
        );
    });
}

#[test]
fn operators_publish_list_replay_and_purge_from_the_cli() {
    let dir = app_dir(APP);
    let server = start(dir.path());
    let admin = ["--admin", server.admin.as_str()];

    let out = nimbus(dir.path())
        .args(["publish", "jobs.cli", "--data", "fail on purpose"])
        .args(admin)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("published "));

    let deadline = Instant::now() + Duration::from_secs(20);
    let listing = loop {
        let out = nimbus(dir.path())
            .args(["dead-letters", "list", "worker"])
            .args(admin)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains("asked to fail") {
            break text;
        }
        assert!(Instant::now() < deadline, "no dead letter appeared: {text}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        listing.contains("jobs.cli") && listing.contains("attempts=2"),
        "{listing}"
    );

    let out = nimbus(dir.path())
        .args(["queues"])
        .args(admin)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("worker") && l.trim_end().ends_with('1')),
        "{table}"
    );

    let out = nimbus(dir.path())
        .args(["dead-letters", "purge", "worker"])
        .args(admin)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "purged 1 message(s)\n"
    );

    let out = nimbus(dir.path())
        .args(["publish", "not a topic!", "--data", "x"])
        .args(admin)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid topic"));
}
