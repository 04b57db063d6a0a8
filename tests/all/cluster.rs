//! Three nodes of one cluster on the real NATS server, each started as
//! `nimbus up --cluster` starts one (own state folder, own listeners, the
//! admin API on loopback), sharing key-value stores, queues and members.

use nimbus::manifest::Manifest;
use nimbus::node::{self, Cluster, Listeners, Node, NodeConfig};
use nimbus_tests::{
    Broker, EVENTUALLY, NATS_URL, client, eventually, json, loopback, runtime, write_manifest,
};
use serde_json::Value;

const APP: &str = r#"
version = 1
[app]
name = "cluster"

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
