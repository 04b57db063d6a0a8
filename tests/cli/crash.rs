//! Nothing is lost when the host dies: `kill -9` while 1,000 messages are
//! being handled, restart, and every message is handled at least once.

use crate::support::{Server, app_dir, up_command};
use nimbus_tests::eventually;
use std::path::Path;
use std::time::Duration;

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

/// How long the restarted server may take to handle what is left of the
/// 1,000 messages, two at a time, in a debug build.
const DRAIN: Duration = Duration::from_secs(120);

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
        let stats = eventually("the queue to drain", DRAIN, || async {
            let stats = queue_stats(&client, &server.admin).await;
            let open: u64 = ["ready", "delayed", "in_flight"]
                .iter()
                .map(|k| stats[k].as_u64().unwrap())
                .sum();
            (open == 0).then_some(stats)
        })
        .await;
        assert_eq!(stats["dead"], 0, "{stats}");
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
