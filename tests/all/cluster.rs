//! Three nodes of one cluster on the real NATS server, each started as
//! `nimbus up --cluster` starts one (own state folder, own listeners, the
//! admin API on loopback), sharing key-value stores, queues, deployments
//! and members.

use nimbus::manifest::Manifest;
use nimbus::node::{self, Cluster, Listeners, Node, NodeConfig};
use nimbus_tests::{
    Broker, EVENTUALLY, NATS_URL, admin_call, client, eventually, guest, json, loopback, runtime,
    write_manifest,
};
use serde_json::Value;
use std::time::{Duration, Instant};

/// What the manifest's `hello` answers, and what `wstd-hello` answers.
const OLD: &str = "Hello, world!\n";
const NEW: &str = "Hello from wstd!\n";

/// How soon a change through one node serves on the others: one second,
/// as the issue asks (the times seen are printed; tens of milliseconds in a
/// debug build).
const SPREAD: Duration = Duration::from_secs(1);

const APP: &str = r#"
version = 1
[app]
name = "cluster"

[functions.hello]
source = "guest:hello"
routes = ["GET /hello"]

[functions.store]
source = "guest:kv-store"
routes = ["/kv/..."]
kv = ["data", "counters"]

[functions.worker]
source = "guest:queue-worker"
routes = ["/worker/..."]
kv = ["deliveries"]
queue = { topic = "jobs.*", max_attempts = 3, backoff = "100ms", concurrency = 4 }
"#;

/// One member: a node with its own folder and both listeners.
struct Member {
    node: Option<Node>,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Member {
    async fn start(cluster: &Cluster) -> Member {
        let dir = tempfile::tempdir().unwrap();
        let manifest = Manifest::load(&write_manifest(dir.path(), APP)).unwrap();
        let mut config = NodeConfig::new(manifest);
        config.runtime = Some(runtime());
        config.cluster = Some(cluster.clone());
        let listeners = Listeners::bind(loopback(), Some(loopback())).await.unwrap();
        let node = node::start(config, listeners, std::future::pending())
            .await
            .unwrap_or_else(|e| panic!("the node joins (.ci/run starts NATS): {e}"));
        Member {
            node: Some(node),
            client: client(),
            _dir: dir,
        }
    }

    fn node(&self) -> &Node {
        self.node.as_ref().expect("running")
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.node().addr())
    }

    async fn nodes(&self) -> Vec<Value> {
        let admin = self.node().admin_addr().unwrap();
        let response = self
            .client
            .get(format!("http://{admin}/v1/nodes"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        json(response).await.as_array().unwrap().clone()
    }

    async fn stop(&mut self) {
        self.node.take().unwrap().shutdown().await.unwrap();
    }

    /// Sends an admin request, with `body` as a component if given; its
    /// status and JSON answer.
    async fn admin(&self, method: http::Method, path: &str, body: Option<Vec<u8>>) -> (u16, Value) {
        let admin = self.node().admin_addr().unwrap();
        admin_call(&self.client, admin, None, method, path, body).await
    }

    async fn hello(&self) -> String {
        let response = self.client.get(self.url("/hello")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    }

    async fn function(&self, id: &str) -> Value {
        let (status, view) = self
            .admin(http::Method::GET, &format!("/v1/functions/{id}"), None)
            .await;
        assert_eq!(status, 200, "{view}");
        view
    }
}

fn component(name: &str) -> Vec<u8> {
    std::fs::read(guest(name)).unwrap()
}

/// Waits until every one of `members` answers `/hello` with `body`; returns
/// how long that took.
async fn served_by_all(members: &[&Member], body: &str, what: &str) -> Duration {
    let start = Instant::now();
    for member in members {
        eventually(what, SPREAD, || async {
            (member.hello().await == body).then_some(())
        })
        .await;
    }
    start.elapsed()
}

/// The cluster named after a fresh test broker, and its three members.
async fn three() -> (Broker, Vec<Member>) {
    let broker = Broker::cluster_unique();
    let Broker::Cluster { name } = &broker else {
        unreachable!()
    };
    let cluster = Cluster::new(NATS_URL, name).unwrap();
    let mut members = Vec::new();
    for _ in 0..3 {
        members.push(Member::start(&cluster).await);
    }
    (broker, members)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_value_is_shared_and_increments_spread_over_nodes_lose_none() {
    let (broker, members) = three().await;
    let put = members[1]
        .client
        .put(members[1].url("/kv/data/greeting"))
        .body("written through node 2")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 204);
    let get = members[2]
        .client
        .get(members[2].url("/kv/data/greeting"))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    assert_eq!(get.text().await.unwrap(), "written through node 2");

    let increments = (0..60).map(|i| {
        let member = &members[i % 3];
        member
            .client
            .post(member.url("/kv/counters/hits/incr"))
            .send()
    });
    for response in futures_util::future::join_all(increments).await {
        assert_eq!(response.unwrap().status(), 200);
    }
    for member in &members {
        let total = member
            .client
            .get(member.url("/kv/counters/hits"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(total, "60");
    }
    drop(members);
    broker.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_are_listed_and_leave_when_they_stop() {
    let (broker, mut members) = three().await;
    for member in &members {
        let ready = member
            .client
            .get(member.url("/.well-known/nimbus/ready"))
            .send()
            .await
            .unwrap();
        assert_eq!(ready.status(), 200);
        assert_eq!(json(ready).await["status"], "ready");
    }
    let listed = eventually("three members", EVENTUALLY, || async {
        let nodes = members[0].nodes().await;
        (nodes.len() == 3).then_some(nodes)
    })
    .await;
    let mut publics: Vec<String> = listed
        .iter()
        .map(|n| n["public"].as_str().unwrap().to_owned())
        .collect();
    publics.sort();
    let mut expected: Vec<String> = members
        .iter()
        .map(|m| m.node().addr().to_string())
        .collect();
    expected.sort();
    assert_eq!(publics, expected);
    assert_eq!(listed.iter().filter(|n| n["this"] == true).count(), 1);
    for node in &listed {
        assert_eq!(node["version"], env!("CARGO_PKG_VERSION"));
        assert!(node["admin"].is_string());
        assert!(node["in_flight"].is_u64());
        assert!(node["heartbeat_at"].as_str().unwrap().ends_with('Z'));
    }

    members[1].stop().await;
    eventually("two members after one stopped", EVENTUALLY, || async {
        let nodes = members[2].nodes().await;
        (nodes.len() == 2).then_some(())
    })
    .await;
    drop(members);
    broker.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_messages_are_all_handled_across_the_cluster() {
    const MESSAGES: usize = 300;
    let (broker, members) = three().await;
    let queue = members[0].node().app().backends().queue.clone();
    let mut ids = Vec::new();
    for i in 0..MESSAGES {
        ids.push(
            queue
                .publish("cluster", "jobs.work", format!("job {i}").as_bytes(), &[])
                .await
                .unwrap(),
        );
    }
    // Every message is counted in the shared store by whichever node took
    // it; read the counts through another node.
    let reader = &members[2];
    for id in &ids {
        eventually("the message to be handled", EVENTUALLY, || async {
            let count: u32 = reader
                .client
                .get(reader.url(&format!("/worker/count/{id}")))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
                .parse()
                .unwrap();
            (count >= 1).then_some(())
        })
        .await;
    }
    drop(members);
    broker.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_rollback_and_canary_through_one_node_reach_every_node() {
    let (broker, mut members) = three().await;
    for member in &members {
        assert_eq!(member.hello().await, OLD);
    }
    let (status, change) = members[0]
        .admin(
            http::Method::PUT,
            "/v1/functions/hello",
            Some(component("wstd-hello")),
        )
        .await;
    assert_eq!(status, 200, "{change}");
    let digest = change["version"].as_str().unwrap().to_owned();
    let took = served_by_all(
        &[&members[1], &members[2]],
        NEW,
        "the deploy through node 1 to serve on nodes 2 and 3",
    )
    .await;
    eprintln!("deploy through node 1 served by nodes 2 and 3 after {took:?}");
    for member in &members {
        let view = member.function("hello").await;
        assert_eq!(view["version"], digest.as_str());
        assert_eq!(view["history"], 1);
    }

    let (status, change) = members[2]
        .admin(http::Method::POST, "/v1/functions/hello/rollback", None)
        .await;
    assert_eq!(status, 200, "{change}");
    let took = served_by_all(
        &[&members[0], &members[1]],
        OLD,
        "the rollback through node 3 to serve on nodes 1 and 2",
    )
    .await;
    eprintln!("rollback through node 3 served by nodes 1 and 2 after {took:?}");

    let (status, change) = members[2]
        .admin(
            http::Method::PUT,
            "/v1/functions/hello/canary?percent=100",
            Some(component("wstd-hello")),
        )
        .await;
    assert_eq!(status, 200, "{change}");
    let took = served_by_all(
        &[&members[0], &members[1]],
        NEW,
        "the canary through node 3 to serve on nodes 1 and 2",
    )
    .await;
    eprintln!("canary through node 3 served by nodes 1 and 2 after {took:?}");
    let view = members[0].function("hello").await;
    assert_eq!(view["canary"]["version"], digest.as_str());
    assert_eq!(view["canary"]["percent"], 100);
    // A change that needs the canary settled is refused on any node.
    let (status, refusal) = members[1]
        .admin(
            http::Method::PUT,
            "/v1/functions/hello",
            Some(component("echo")),
        )
        .await;
    assert_eq!(status, 409, "{refusal}");
    assert_eq!(refusal["error"], "canary_running");

    let (status, change) = members[1]
        .admin(http::Method::POST, "/v1/functions/hello/canary/abort", None)
        .await;
    assert_eq!(status, 200, "{change}");
    served_by_all(
        &[&members[0], &members[2]],
        OLD,
        "the abort through node 2 to serve on nodes 1 and 3",
    )
    .await;

    // A node that joins later serves what the cluster deployed before it
    // reports ready, and the members list grows to four, then shrinks.
    let (status, _) = members[0]
        .admin(
            http::Method::PUT,
            "/v1/functions/hello",
            Some(component("wstd-hello")),
        )
        .await;
    assert_eq!(status, 200);
    let cluster = Cluster::new(NATS_URL, broker_name(&broker)).unwrap();
    let fourth = Member::start(&cluster).await;
    let ready = fourth
        .client
        .get(fourth.url("/.well-known/nimbus/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(fourth.hello().await, NEW);
    assert_eq!(fourth.function("hello").await["history"], 1);
    members.push(fourth);
    eventually("four members", EVENTUALLY, || async {
        (members[3].nodes().await.len() == 4).then_some(())
    })
    .await;
    members[0].stop().await;
    eventually("three members after one stopped", EVENTUALLY, || async {
        (members[3].nodes().await.len() == 3).then_some(())
    })
    .await;
    drop(members);
    broker.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_deploys_at_once_through_two_nodes_end_on_one_version() {
    let (broker, members) = three().await;
    let (a, b) = (component("wstd-hello"), component("echo"));
    // The two changes race: when one lands before the other node decides,
    // both succeed one after the other; when they meet, one gets `409
    // conflict` (the next test makes them meet for sure). Either way every
    // node ends on the version the cluster recorded last.
    let mut conflicts = 0;
    for round in 0..3 {
        let (first, second) = if round % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let (one, two) = tokio::join!(
            members[0].admin(
                http::Method::PUT,
                "/v1/functions/hello",
                Some(first.clone())
            ),
            members[1].admin(
                http::Method::PUT,
                "/v1/functions/hello",
                Some(second.clone())
            ),
        );
        let mut statuses = [one.0, two.0];
        statuses.sort();
        let settled = eventually("all nodes on one version", SPREAD, || async {
            let mut versions = Vec::new();
            for member in &members {
                versions.push(member.function("hello").await["version"].clone());
            }
            versions
                .iter()
                .all(|v| *v == versions[0])
                .then(|| versions[0].clone())
        })
        .await;
        match statuses {
            [200, 200] => assert!(
                [&one.1, &two.1].iter().any(|c| c["version"] == settled),
                "the later deploy serves: {settled}"
            ),
            [200, 409] => {
                conflicts += 1;
                let (winner, loser) = if one.0 == 200 {
                    (&one.1, &two.1)
                } else {
                    (&two.1, &one.1)
                };
                assert_eq!(loser["error"], "conflict", "{loser}");
                assert_eq!(settled, winner["version"]);
            }
            other => panic!("round {round}: {other:?}: {} / {}", one.1, two.1),
        }
    }
    eprintln!("{conflicts} of 3 rounds met head on");
    drop(members);
    broker.cleanup().await;
}

/// Two deployers of one cluster, the second not following the records:
/// its change is decided on a revision the first already replaced, so the
/// cluster refuses it with `409 conflict` and nothing changes; once it
/// follows, it serves the winner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_decided_on_an_old_revision_is_refused_with_409() {
    use nimbus::app::{App, LiveApp};
    use nimbus::backend::Backends;
    use nimbus::deploy::{DeployError, Deployer};
    use std::sync::Arc;
    let broker = Broker::cluster_unique();
    let dir = tempfile::tempdir().unwrap();
    let manifest = Manifest::load(&write_manifest(dir.path(), APP)).unwrap();
    let mut deployers = Vec::new();
    for _ in 0..2 {
        let nats = nimbus::backend::nats::NatsBackend::connect(NATS_URL, broker_name(&broker))
            .await
            .unwrap();
        let manifest = manifest.clone();
        let deployer = tokio::task::spawn_blocking(move || {
            let backends = Backends::nats(nats);
            let shared = backends.deployments.clone().unwrap();
            let app = App::load(&runtime(), &manifest, backends).unwrap();
            Deployer::join(LiveApp::from(Arc::new(app)), shared).unwrap()
        })
        .await
        .unwrap();
        deployers.push(Arc::new(deployer));
    }
    let deploy = |d: &Arc<Deployer>, name: &str| {
        let (d, bytes) = (d.clone(), component(name));
        tokio::task::spawn_blocking(move || d.deploy("hello", &bytes))
    };
    let won = deploy(&deployers[0], "wstd-hello").await.unwrap().unwrap();
    let lost = deploy(&deployers[1], "echo").await.unwrap().unwrap_err();
    assert!(matches!(lost, DeployError::Conflict(_)), "{lost}");
    assert_eq!(lost.status(), 409);
    assert!(lost.to_string().contains("another node"), "{lost}");
    let before = deployers[1].get("hello").unwrap();
    assert_eq!(before.history, 0, "the refused change changed nothing");

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let follow = tokio::spawn(deployers[1].clone().follow(stopped));
    let second = deployers[1].clone();
    eventually(
        "the second deployer to apply the winner",
        SPREAD,
        || async { (second.get("hello").unwrap().version == won.function.version).then_some(()) },
    )
    .await;
    stop.send(true).unwrap();
    follow.await.unwrap();
    broker.cleanup().await;
}

fn broker_name(broker: &Broker) -> &str {
    match broker {
        Broker::Cluster { name } => name,
        _ => unreachable!("a cluster"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_records_are_revision_checked_watched_and_components_kept_whole() {
    use futures_util::StreamExt as _;
    use nimbus::backend::DeploymentsBackend;
    use nimbus::backend::deployments::latest;
    let broker = Broker::cluster_unique();
    let nats = nimbus::backend::nats::NatsBackend::connect(NATS_URL, broker_name(&broker))
        .await
        .unwrap();
    assert!(nats.behind().get().is_some(), "behind until first applied");
    let records = nats.records().await.unwrap();
    let last = latest(&records);
    assert_eq!((records.len(), last), (0, 0));
    let mut changes = nats.watch(last).await.unwrap();

    let first = nats.write("hello", b"one", 0).await.unwrap().unwrap();
    assert_eq!(nats.write("hello", b"again", 0).await.unwrap(), None);
    let second = nats.write("hello", b"two", first).await.unwrap().unwrap();
    assert!(second > first);
    assert_eq!(nats.write("hello", b"late", first).await.unwrap(), None);
    let other = nats.write("users", b"", 0).await.unwrap().unwrap();
    for (value, revision, function) in [
        (&b"one"[..], first, "hello"),
        (b"two", second, "hello"),
        (b"", other, "users"),
    ] {
        let change = tokio::time::timeout(EVENTUALLY, changes.next())
            .await
            .expect("a change in time")
            .expect("the watch goes on")
            .unwrap();
        assert_eq!(
            (
                change.function.as_str(),
                change.value.as_slice(),
                change.revision
            ),
            (function, value, revision)
        );
    }
    let mut records = nats.records().await.unwrap();
    let last = latest(&records);
    records.sort_by(|a, b| a.function.cmp(&b.function));
    assert_eq!(last, other);
    assert_eq!(records.len(), 2);
    assert_eq!(
        (records[0].value.as_slice(), records[0].revision),
        (&b"two"[..], second)
    );

    // A component is larger than one NATS message; it comes back whole,
    // and is kept once however often it is put.
    let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let digest = blake3::hash(&bytes).to_hex().to_string();
    nats.put_component(&digest, &bytes).await.unwrap();
    nats.put_component(&digest, &bytes).await.unwrap();
    assert!(nats.get_component(&digest).await.unwrap() == bytes);
    let missing = blake3::hash(b"nothing").to_hex().to_string();
    assert!(nats.get_component(&missing).await.is_err());
    nats.behind().set(None);
    assert_eq!(nats.behind().get(), None);
    broker.cleanup().await;
}

/// The Kubernetes example is not applied here (no cluster), but it parses,
/// and its pods join the cluster and are probed on the readiness endpoint;
/// nginx in the local example balances over the nodes its script starts.
#[test]
fn the_cluster_examples_parse_and_point_at_the_right_endpoints() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/cluster");
    let check = r#"
import json, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
print(json.dumps(docs))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", check])
        .arg(root.join("k8s/nimbus.yaml"))
        .output()
        .expect("python3 runs (.ci/run installs PyYAML)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["Secret", "Deployment", "Service", "Service"]);
    let pod = &docs[1]["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        pod["readinessProbe"]["httpGet"]["path"],
        "/.well-known/nimbus/ready"
    );
    assert_eq!(
        pod["livenessProbe"]["httpGet"]["path"],
        "/.well-known/nimbus/health"
    );
    let env: Vec<&str> = pod["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(env.contains(&"NIMBUS_CLUSTER"), "{env:?}");
    assert!(env.contains(&"NIMBUS_ADMIN_TOKEN"), "{env:?}");

    let nginx = std::fs::read_to_string(root.join("nginx.conf")).unwrap();
    let script = std::fs::read_to_string(root.join("run.sh")).unwrap();
    for i in 1..=3 {
        assert!(
            nginx.contains(&format!("server 127.0.0.1:310{i};")),
            "{nginx}"
        );
    }
    assert!(script.contains("--listen \"127.0.0.1:310$i\""), "{script}");
    assert!(script.contains("--cluster \"$NATS\""), "{script}");
}
