//! A cluster of real `nimbus up --cluster` processes on a NATS server of
//! the test's own (Debian's `nats-server` on a free port, with its own
//! store folder), so the test can restart it without disturbing the other
//! tests, which share the machine's server:
//!
//! - 3,000 queue messages are handled across three nodes, each taking a
//!   share (read from each process's own metrics), with node 2 killed with
//!   `kill -9` mid-run: its messages come back to the others once their
//!   lease (the function's timeout and a margin) runs out, and none is lost;
//! - NATS is stopped and started again while messages are published and
//!   handled: meanwhile every node keeps serving what needs no shared state,
//!   key-value calls fail at once with a clear error and readiness is `503`;
//!   afterwards every node is ready again on its own, every message whose
//!   publish was acknowledged is handled, and a deploy through one node
//!   reaches the others (each follows the deployments again).

use crate::crash::{kill_9, publish_all, runtime};
use crate::support::{Server, app_dir, client, up_command};
use nimbus_tests::eventually;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const APP: &str = r#"
[functions.worker]
source = @queue-worker@
routes = ["/worker/..."]
kv = ["deliveries"]
queue = { topic = "jobs.*", max_attempts = 5, backoff = "50ms", concurrency = 4 }
limits = { timeout = "2s" }

[functions.hello]
source = @hello@
routes = ["GET /hello"]

[functions.kv]
source = @kv-store@
routes = ["/kv/..."]
kv = ["data"]
"#;

const MESSAGES: usize = 3_000;

/// How long the cluster may take to handle what is left, in a debug build,
/// including a lease of a killed node running out.
const DRAIN: Duration = Duration::from_secs(120);

/// How long a node may take to be ready again once NATS is back.
const RECOVER: Duration = Duration::from_secs(30);

/// A `nats-server` with JetStream on a free loopback port.
struct Nats {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl Nats {
    fn start() -> Nats {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut nats = Nats {
            child: None,
            port,
            dir: tempfile::tempdir().unwrap(),
        };
        nats.run();
        nats
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn run(&mut self) {
        let binary = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("nats-server");
        // Lame duck mode, as an operator takes a server down, as short as
        // nats-server allows.
        let config = self.dir.path().join("nats.conf");
        std::fs::write(
            &config,
            "lame_duck_duration: \"30s\"\nlame_duck_grace_period: \"1s\"\n",
        )
        .unwrap();
        let child = Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js"])
            .arg("-sd")
            .arg(self.dir.path().join("store"))
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("nats-server runs (.ci/run installs it): {e}"));
        self.child = Some(child);
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "nats-server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server as NATS's docs say to take one down: lame duck mode
    /// (`nats-server --signal ldm`, SIGUSR2), which stops taking clients,
    /// closes theirs over a while, then shuts down. (A plain SIGTERM under
    /// load makes nats-server 2.9 lose messages of interest streams stored
    /// in its last moments: its consumers come back past them.)
    fn stop(&mut self) {
        let mut child = self.child.take().expect("running");
        Command::new("kill")
            .args(["-USR2", &child.id().to_string()])
            .status()
            .unwrap();
        child.wait().unwrap();
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A node of the cluster on `nats`, in a folder of its own.
fn node(nats: &Nats) -> (Server, tempfile::TempDir) {
    let dir = app_dir(APP);
    let mut cmd = up_command(dir.path());
    cmd.args(["--cluster", &nats.url()]);
    (Server::start(cmd), dir)
}

/// The deliveries node `server` acknowledged, from its own metrics.
async fn acked(client: &reqwest::Client, server: &Server) -> u64 {
    let text = client
        .get(format!("{}/metrics", server.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("nimbus_queue_deliveries_total{") && l.contains("acked"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

async fn ready(client: &reqwest::Client, server: &Server) -> u16 {
    match client
        .get(format!("{}/.well-known/nimbus/ready", server.url))
        .send()
        .await
    {
        Ok(response) => response.status().as_u16(),
        Err(_) => 0,
    }
}

/// Waits until each of `ids` was handled at least once, read through `server`.
async fn all_handled(client: &reqwest::Client, server: &Server, ids: &[String]) {
    for id in ids {
        eventually("the message to be handled", DRAIN, || async {
            let count: u64 = client
                .get(format!("{}/worker/count/{id}", server.url))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?
                .trim()
                .parse()
                .ok()?;
            (count >= 1).then_some(())
        })
        .await;
    }
}

#[test]
fn three_nodes_share_the_queue_and_lose_nothing_to_a_kill_9_or_a_nats_restart() {
    let mut nats = Nats::start();
    let rt = runtime();
    let client = client();
    let (one, _d1) = node(&nats);
    let (mut two, _d2) = node(&nats);
    let (three, _d3) = node(&nats);

    // 3,000 messages, node 2 killed once it has handled some of them.
    let ids = rt.block_on(publish_all(&client, &one.admin, "jobs.cluster", MESSAGES));
    assert_eq!(ids.len(), MESSAGES);
    let by_two = rt.block_on(eventually("node 2 to take a share", DRAIN, || async {
        let n = acked(&client, &two).await;
        (n >= 50).then_some(n)
    }));
    kill_9(&mut two);
    eprintln!("node 2 killed with -9 after it acknowledged {by_two} deliveries");
    rt.block_on(all_handled(&client, &three, &ids));
    // Node 2's count is what it had acknowledged shortly before the kill.
    let shares = rt.block_on(async {
        [
            acked(&client, &one).await,
            by_two,
            acked(&client, &three).await,
        ]
    });
    eprintln!("acknowledged deliveries by node: {shares:?} for {MESSAGES} messages");
    assert!(
        shares.iter().all(|&n| n > 0),
        "every node took a share: {shares:?}"
    );

    // A replacement node, then NATS restarted while messages keep coming.
    drop(two);
    let (four, _d4) = node(&nats);
    let nodes = [&one, &three, &four];
    let published = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (client, admin) = (client.clone(), one.admin.clone());
        let (published, stop) = (published.clone(), stop.clone());
        rt.spawn(async move {
            let url = format!("{admin}/v1/topics/jobs.restart/messages");
            let mut refused = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let answer = client.post(&url).body("during the restart").send().await;
                match answer {
                    Ok(r) if r.status().is_success() => {
                        let body: serde_json::Value = r.json().await.unwrap();
                        published
                            .lock()
                            .unwrap()
                            .push(body["id"].as_str().unwrap().to_owned());
                    }
                    _ => {
                        refused += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            refused
        })
    };
    rt.block_on(eventually("messages published", DRAIN, || async {
        (published.lock().unwrap().len() >= 100).then_some(())
    }));
    nats.stop();
    rt.block_on(async {
        for node in nodes {
            eventually("not ready while NATS is down", RECOVER, || async {
                (ready(&client, node).await == 503).then_some(())
            })
            .await;
            let hello = client
                .get(format!("{}/hello", node.url))
                .send()
                .await
                .unwrap();
            assert_eq!(hello.status(), 200, "what needs no shared state serves on");
            let asked = Instant::now();
            let write = client
                .put(format!("{}/kv/data/during-outage", node.url))
                .body("x")
                .send()
                .await
                .unwrap();
            let took = asked.elapsed();
            assert_eq!(write.status(), 500);
            let why = write.text().await.unwrap();
            assert!(why.contains("unreachable"), "{why}");
            assert!(
                took < Duration::from_secs(5),
                "a key-value call took {took:?}"
            );
        }
    });
    std::thread::sleep(Duration::from_secs(1));
    nats.run();
    rt.block_on(async {
        for node in nodes {
            eventually("ready again once NATS is back", RECOVER, || async {
                (ready(&client, node).await == 200).then_some(())
            })
            .await;
        }
        let before = published.lock().unwrap().len();
        eventually("publishing again", RECOVER, || async {
            (published.lock().unwrap().len() >= before + 100).then_some(())
        })
        .await;
    });
    stop.store(true, Ordering::Relaxed);
    let refused = rt.block_on(publisher).unwrap();
    let ids = published.lock().unwrap().clone();
    eprintln!(
        "{} messages acknowledged around the NATS restart ({refused} publishes refused while it was down)",
        ids.len()
    );
    rt.block_on(all_handled(&client, &four, &ids));

    let component = nimbus_test_artifacts::GUESTS
        .iter()
        .find(|(name, _)| *name == "wstd-hello")
        .map(|(_, path)| std::fs::read(path).unwrap())
        .unwrap();
    rt.block_on(async {
        let deployed = client
            .put(format!("{}/v1/functions/hello", three.admin))
            .header("content-type", "application/wasm")
            .body(component)
            .send()
            .await
            .unwrap();
        assert_eq!(deployed.status(), 200);
        for node in nodes {
            eventually(
                "the deploy after the restart on every node",
                RECOVER,
                || async {
                    let body = client
                        .get(format!("{}/hello", node.url))
                        .send()
                        .await
                        .ok()?
                        .text()
                        .await
                        .ok()?;
                    (body == "Hello from wstd!\n").then_some(())
                },
            )
            .await;
        }
    });
    drop(one);
}
