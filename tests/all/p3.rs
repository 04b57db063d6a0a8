//! wasi:http 0.3 (WASI p3) functions: a component exporting
//! `wasi:http/handler@0.3.0`, built on the `wasip3` crate with no Nimbus SDK,
//! served like any other function: routes, capabilities, streaming bodies,
//! service calls both ways between 0.2 and 0.3, limits.

use bytes::Bytes;
use futures_util::StreamExt;
use nimbus_tests::{TestApp, json};
use serde_json::json;
use std::time::{Duration, Instant};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

const APP: &str = r#"
version = 1
[app]
name = "p3"

[functions.p3]
source = "guest:p3-probe"
routes = ["/p3/..."]
kv = ["data"]
services = ["echo"]
limits = { max_body = "32MiB" }
[functions.p3.config]
greeting = "hej"

[functions.p3-spin]
source = "guest:p3-probe"
routes = ["GET /p3/spin"]
limits = { timeout = "1s" }

[functions.caller]
source = "guest:caller"
routes = ["/call/..."]
services = ["p3"]

[functions.echo]
source = "guest:echo"

[functions.hello]
source = "guest:hello"
routes = ["GET /hello/:name"]
"#;

#[tokio::test]
async fn a_p3_component_answers_and_keeps_its_p2_neighbours_serving() {
    let app = TestApp::start(APP).await;
    let response = app.get("/p3/hello").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    assert!(response.headers().contains_key("x-request-id"));
    assert_eq!(response.text().await.unwrap(), "hello from p3");
    // A WASI 0.2 function of the same app, on the other engine.
    let hello = app.get("/hello/p2").await;
    assert_eq!(hello.text().await.unwrap(), "Hello, p2!\n");
    // The gateway's answers are the same for both.
    let missing = app.get("/p3/nowhere").await;
    assert_eq!(missing.status(), 404);

    // The guest saw the authority and the request id, as a 0.2 guest does.
    let seen = json(
        app.client
            .get(app.url("/p3/headers?x=1"))
            .header("x-request-id", "p3-seen-1")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(seen["path_with_query"], "/p3/headers?x=1");
    assert_eq!(seen["headers"]["x-request-id"], "p3-seen-1");
    assert_eq!(seen["headers"]["x-nimbus-function"], "p3");
}

#[tokio::test]
async fn a_p3_component_uses_key_value_and_config() {
    let app = TestApp::start(APP).await;
    let put = app
        .client
        .put(app.url("/p3/kv/colour"))
        .body("teal")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    assert_eq!(
        json(app.get("/p3/kv/colour").await).await,
        json!({"value": "teal"})
    );
    assert_eq!(
        json(app.get("/p3/kv/unset").await).await,
        json!({"value": null})
    );
    assert_eq!(
        json(app.get("/p3/config/greeting").await).await,
        json!({"value": "hej"})
    );
}

/// 16 MiB up and 16 MiB down, in 256 KiB chunks: the first chunks come back
/// before the last ones are sent, so neither side was buffered whole. (The
/// body declares its length: a chunked one is read up to `max_body` before
/// the guest runs, for a clean 413.)
#[tokio::test]
async fn a_p3_echo_streams_16_mib_each_way() {
    const CHUNK: usize = 256 << 10;
    const CHUNKS: usize = 64;
    let app = TestApp::start(APP).await;
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(2);
    let body = reqwest::Body::wrap_stream(tokio_stream_of(receiver));
    let request = app
        .client
        .post(app.url("/p3/echo"))
        .header("content-length", (CHUNK * CHUNKS).to_string())
        .body(body)
        .send();
    let chunk = |i: usize| Bytes::from(vec![(i % 251) as u8; CHUNK]);

    // Send the first quarter, then wait for its echo before sending more.
    let send_first = async {
        for i in 0..CHUNKS / 4 {
            sender.send(Ok(chunk(i))).await.unwrap();
        }
    };
    let (response, ()) = tokio::join!(request, send_first);
    let response = response.unwrap();
    assert_eq!(response.status(), 200);
    let mut stream = response.bytes_stream();
    let mut received = Vec::with_capacity(CHUNK * CHUNKS);
    while received.len() < CHUNK {
        let piece = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("the echo started while the request was still being sent")
            .expect("the body did not end")
            .unwrap();
        received.extend_from_slice(&piece);
    }
    let send_rest = async {
        for i in CHUNKS / 4..CHUNKS {
            sender.send(Ok(chunk(i))).await.unwrap();
        }
        drop(sender);
    };
    let read_rest = async {
        while let Some(piece) = stream.next().await {
            received.extend_from_slice(&piece.unwrap());
        }
    };
    tokio::join!(send_rest, read_rest);
    assert_eq!(received.len(), CHUNK * CHUNKS);
    for (i, piece) in received.chunks(CHUNK).enumerate() {
        assert!(piece.iter().all(|b| *b == (i % 251) as u8), "chunk {i}");
    }
}

fn tokio_stream_of<T: Send + 'static>(
    mut receiver: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

/// GETs `path` with request id `id` under [`TRACEPARENT`]; checks the status
/// and the id on the response, and answers the JSON body.
async fn traced(app: &TestApp, path: &str, id: &str) -> serde_json::Value {
    let response = app
        .client
        .get(app.url(path))
        .header("x-request-id", id)
        .header("traceparent", TRACEPARENT)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], id);
    json(response).await
}

/// Checks that `traceparent` continues [`TRACEPARENT`]'s trace.
fn same_trace(traceparent: &serde_json::Value) {
    let traceparent = traceparent.as_str().unwrap();
    assert!(
        traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{traceparent}"
    );
}

#[tokio::test]
async fn p3_calls_p2_and_p2_calls_p3_in_one_trace() {
    let app = TestApp::start(APP).await;

    // 0.3 -> 0.2: the p3 probe calls echo through wasi:http/client.
    let called = traced(&app, "/p3/call/echo/orders/7", "p3-to-p2").await;
    assert_eq!(called["status"], 200);
    let echo: serde_json::Value = serde_json::from_str(called["body"].as_str().unwrap()).unwrap();
    assert_eq!(echo["path_with_query"], "/orders/7");
    assert_eq!(echo["headers"]["x-request-id"], "p3-to-p2");
    assert_eq!(echo["headers"]["x-nimbus-caller"], "p3");
    same_trace(&echo["headers"]["traceparent"]);

    // 0.2 -> 0.3: the caller (nimbus-sdk, WASI 0.2) calls the p3 probe.
    let seen = traced(&app, "/call/p3/p3/headers", "p2-to-p3").await;
    assert_eq!(seen["headers"]["x-request-id"], "p2-to-p3");
    assert_eq!(seen["headers"]["x-nimbus-caller"], "caller");
    same_trace(&seen["headers"]["traceparent"]);

    // A service the p3 function does not list is denied with the standard code.
    let denied = json(app.get("/p3/call/hello/hello/x").await).await;
    assert_eq!(denied["error"], "ErrorCode::HttpRequestDenied");
}

#[tokio::test]
async fn a_p3_trap_and_a_p3_runaway_get_their_own_statuses() {
    let app = TestApp::start(APP).await;
    let trapped = app.get("/p3/trap").await;
    assert_eq!(trapped.status(), 500);
    assert_eq!(json(trapped).await["error"], "function_trapped");

    let started = Instant::now();
    let spun = app.get("/p3/spin").await;
    let took = started.elapsed();
    assert_eq!(spun.status(), 504);
    assert!(took < Duration::from_millis(1500), "504 after {took:?}");
    assert_eq!(json(spun).await["error"], "timeout");

    // And it still serves.
    assert_eq!(app.get("/p3/hello").await.status(), 200);
}

/// `wasip3` 0.10 targets `wasi:http@0.3.2`; the host implements 0.3.0, and
/// links it as `wasmtime serve` 48 does, by semver.
#[tokio::test]
async fn a_wasi_http_0_3_2_component_is_served() {
    let app = TestApp::start(
        r#"
version = 1
[app]
name = "p3-next"

[functions.next]
source = "guest:p3-next"
routes = ["GET /next"]
"#,
    )
    .await;
    let response = app.get("/next").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "hello from wasi:http@0.3.2");
}

/// A WASI 0.3 function whose instances each run up to 16 requests at once.
const SHARED: &str = r#"
version = 1
[app]
name = "p3-shared"

[functions.shared]
source = "guest:p3-probe"
routes = ["/p3/..."]
services = ["echo"]
instance_reuse = { requests = 128, concurrent = 16, idle = "10s" }
limits = { timeout = "2s", concurrency = 64 }

[functions.echo]
source = "guest:echo"
"#;

async fn wait(app: &TestApp, ms: u64) -> (u16, serde_json::Value) {
    let response = app.get(&format!("/p3/wait?ms={ms}")).await;
    let status = response.status().as_u16();
    (status, json(response).await)
}

/// Sends `n` requests for `/p3/wait?ms=ms`, 10 ms apart, and answers their
/// statuses and bodies.
async fn waits(app: &TestApp, n: usize, ms: u64) -> Vec<(u16, serde_json::Value)> {
    waits_at(app.client.clone(), app.url(&format!("/p3/wait?ms={ms}")), n).await
}

async fn waits_at(client: reqwest::Client, url: String, n: usize) -> Vec<(u16, serde_json::Value)> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let client = client.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let response = client.get(url).send().await.unwrap();
            let status = response.status().as_u16();
            (status, json(response).await)
        }));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_requests_run_at_once_in_one_shared_instance() {
    let app = TestApp::start(SHARED).await;
    // The instance exists and waits idle.
    let (status, first) = wait(&app, 0).await;
    assert_eq!(status, 200);
    assert_eq!(first["served"], 1);

    let answers = waits(&app, 16, 1_000).await;
    assert!(
        answers.iter().all(|(status, _)| *status == 200),
        "{answers:?}"
    );
    let most = answers
        .iter()
        .map(|(_, seen)| seen["max_in_flight"].as_u64().unwrap())
        .max()
        .unwrap();
    assert_eq!(most, 16, "the guest never had 16 in flight: {answers:?}");
    // All 17 in the one instance.
    let served = answers
        .iter()
        .map(|(_, seen)| seen["served"].as_u64().unwrap())
        .max()
        .unwrap();
    assert_eq!(served, 17, "{answers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_request_past_its_timeout_in_a_shared_instance_fails_alone() {
    let app = TestApp::start(SHARED).await;
    assert_eq!(wait(&app, 0).await.0, 200);
    let slow = {
        let client = app.client.clone();
        let url = app.url("/p3/wait?ms=5000");
        tokio::spawn(async move {
            let started = Instant::now();
            let response = client.get(url).send().await.unwrap();
            (
                response.status().as_u16(),
                json(response).await,
                started.elapsed(),
            )
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let quick = waits(&app, 4, 300).await;
    let (status, body, took) = slow.await.unwrap();
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"], "timeout");
    assert!(took < Duration::from_millis(3_000), "504 after {took:?}");
    for (status, seen) in &quick {
        assert_eq!(*status, 200, "{seen}");
    }
    // They shared the slow request's instance.
    assert!(
        quick
            .iter()
            .any(|(_, seen)| seen["max_in_flight"].as_u64().unwrap() >= 2),
        "{quick:?}"
    );
    assert_eq!(wait(&app, 0).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_trap_in_a_shared_instance_fails_its_requests_and_the_instance_is_replaced() {
    let app = TestApp::start(SHARED).await;
    assert_eq!(wait(&app, 0).await.0, 200);
    let bystanders = tokio::spawn(waits_at(app.client.clone(), app.url("/p3/wait?ms=1500"), 3));
    // Time for the bystanders to reach the instance even on a loaded
    // machine (at 200 ms one sometimes came after the trap, to a new one).
    tokio::time::sleep(Duration::from_millis(600)).await;
    let trapped = app.get("/p3/trap?ms=100").await;
    assert_eq!(trapped.status(), 500);
    assert_eq!(json(trapped).await["error"], "function_trapped");
    for (status, body) in bystanders.await.unwrap() {
        assert_eq!(status, 500, "{body}");
        assert_eq!(body["error"], "function_trapped");
    }
    // A new instance: it has served one request.
    let (status, after) = wait(&app, 0).await;
    assert_eq!(status, 200);
    assert_eq!(after["served"], 1, "{after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn service_calls_from_a_shared_instance_carry_their_own_request_ids() {
    let app = TestApp::start(SHARED).await;
    assert_eq!(wait(&app, 0).await.0, 200);
    // Keep the instance busy with another request meanwhile.
    let busy = {
        let client = app.client.clone();
        let url = app.url("/p3/wait?ms=1000");
        tokio::spawn(async move { client.get(url).send().await.unwrap().status() })
    };
    let mut tasks = Vec::new();
    for i in 0..6 {
        let client = app.client.clone();
        let url = app.url(&format!("/p3/call/echo/item/{i}"));
        tasks.push(tokio::spawn(async move {
            let id = format!("shared-call-{i}");
            let response = client
                .get(url)
                .header("x-request-id", &id)
                .send()
                .await
                .unwrap();
            (id, json(response).await)
        }));
    }
    for task in tasks {
        let (id, called) = task.await.unwrap();
        assert_eq!(called["status"], 200, "{called}");
        let echo: serde_json::Value =
            serde_json::from_str(called["body"].as_str().unwrap()).unwrap();
        assert_eq!(echo["headers"]["x-request-id"], id.as_str());
    }
    assert_eq!(busy.await.unwrap(), 200);
}

#[test]
fn concurrent_reuse_of_a_wasi_0_2_component_is_refused_by_name() {
    let manifest = nimbus_tests::with_guest_paths(
        r#"
version = 1
[app]
name = "p2-concurrent"

[functions.hello]
source = "guest:hello"
routes = ["GET /"]
instance_reuse = { concurrent = 4 }
"#,
    );
    let dir = tempfile::tempdir().unwrap();
    let path = nimbus_tests::write_manifest(dir.path(), &manifest);
    let manifest = nimbus::manifest::Manifest::load(&path).unwrap();
    let runtime = nimbus_tests::runtime();
    let store =
        nimbus::backend::embedded::EmbeddedBackend::open(&dir.path().join("s.redb")).unwrap();
    let error = nimbus::app::App::load(
        &runtime,
        &manifest,
        nimbus::backend::Backends::embedded(store),
    )
    .err()
    .expect("a WASI 0.2 component cannot run requests concurrently");
    let message = error.to_string();
    assert!(
        message.contains("`instance_reuse.concurrent` must be 1, not 4"),
        "{message}"
    );
}

/// A guest that never yields to the event loop in a shared instance: the
/// instance is dropped once its last request's timeout has passed, and the
/// runaway gets its 504.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_runaway_in_a_shared_instance_is_stopped_by_the_timeout() {
    let app = TestApp::start(SHARED).await;
    assert_eq!(wait(&app, 0).await.0, 200);
    let started = Instant::now();
    let spun = app.get("/p3/spin").await;
    let took = started.elapsed();
    assert_eq!(spun.status(), 504);
    assert_eq!(json(spun).await["error"], "timeout");
    assert!(took < Duration::from_millis(3_500), "504 after {took:?}");
    let (status, after) = wait(&app, 0).await;
    assert_eq!(status, 200);
    assert_eq!(after["served"], 1, "a new instance: {after}");
}
