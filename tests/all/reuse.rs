//! Instance reuse (`instance_reuse = N`): reused instances answer like fresh
//! ones, are really reused (a guest global survives), at most N times, and an
//! instance that trapped or timed out never serves again.
//!
//! The probe functions run with `concurrency = 1`: a request's permit is
//! released only after its instance is back in the idle pool, so the next
//! request finds it there and the counts below are exact.

use nimbus::manifest::Reuse;
use nimbus_tests::{EVENTUALLY, TestApp, eventually, json};

const APP: &str = r#"
version = 1
[app]
name = "reuse"

[functions.probe]
source = "guest:reuse-probe"
routes = ["/probe/..."]
instance_reuse = 1000
[functions.probe.limits]
concurrency = 1
timeout = "500ms"

[functions.probe-fresh]
source = "guest:reuse-probe"
routes = ["/fresh/..."]
[functions.probe-fresh.limits]
concurrency = 1

[functions.probe-three]
source = "guest:reuse-probe"
routes = ["/three/..."]
instance_reuse = 3
[functions.probe-three.limits]
concurrency = 1

[functions.hello]
source = "guest:hello"
routes = ["GET /hello/:name"]
instance_reuse = 1000

[functions.echo]
source = "guest:echo"
routes = ["POST /echo"]
instance_reuse = 1000

[functions.caller]
source = "guest:caller"
routes = ["/call/..."]
services = ["hello"]
instance_reuse = 1000
"#;

/// The count the probe answers: requests its instance has served.
async fn served(app: &TestApp, path: &str) -> u64 {
    let response = app.get(path).await;
    assert_eq!(response.status(), 200, "GET {path}");
    let text = response.text().await.expect("body");
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a count: {text:?}"))
}

#[tokio::test]
async fn reused_instances_answer_each_request_as_fresh_ones_do() {
    let app = TestApp::start(APP).await;
    for name in ["ada", "grace", "barbara", "ada"] {
        let response = app.get(&format!("/hello/{name}")).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), format!("Hello, {name}!\n"));
    }
    // Each echo sees its own request and body, nothing of the one before.
    for i in 0..5 {
        let body = "x".repeat(1000 * i + 1);
        let response = app
            .client
            .post(app.url("/echo"))
            .header("x-round", i.to_string())
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let echoed = json(response).await;
        assert_eq!(echoed["body"], body.as_str());
        assert_eq!(echoed["headers"]["x-round"], i.to_string().as_str());
    }
    // Service calls from and to reused instances.
    for _ in 0..3 {
        let response = app.get("/call/hello/hello/tim").await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "Hello, tim!\n");
    }
}

#[tokio::test]
async fn an_instance_serves_many_requests_with_reuse_and_one_without() {
    let app = TestApp::start(APP).await;
    let mut counts = Vec::new();
    for _ in 0..5 {
        counts.push(served(&app, "/probe/").await);
    }
    assert_eq!(
        counts,
        [1, 2, 3, 4, 5],
        "one instance, kept from request to request"
    );
    for _ in 0..3 {
        assert_eq!(
            served(&app, "/fresh/").await,
            1,
            "without reuse every instance is new"
        );
    }
}

#[tokio::test]
async fn an_instance_is_dropped_after_its_reuse_count() {
    let app = TestApp::start(APP).await;
    let mut counts = Vec::new();
    for _ in 0..7 {
        counts.push(served(&app, "/three/").await);
    }
    assert_eq!(counts, [1, 2, 3, 1, 2, 3, 1]);
}

#[tokio::test]
async fn a_trap_discards_the_instance() {
    let app = TestApp::start(APP).await;
    assert_eq!(served(&app, "/probe/").await, 1);
    assert_eq!(served(&app, "/probe/").await, 2);
    let response = app.get("/probe/trap").await;
    assert_eq!(response.status(), 500);
    assert_eq!(json(response).await["error"], "function_trapped");
    assert_eq!(
        served(&app, "/probe/").await,
        1,
        "the trapped instance served again"
    );
    assert_eq!(served(&app, "/probe/").await, 2);
}

#[tokio::test]
async fn a_timed_out_instance_is_discarded() {
    let app = TestApp::start(APP).await;
    assert_eq!(served(&app, "/probe/").await, 1);
    let response = app.get("/probe/spin").await;
    assert_eq!(response.status(), 504);
    assert_eq!(json(response).await["error"], "timeout");
    assert_eq!(
        served(&app, "/probe/").await,
        1,
        "the stopped instance served again"
    );
}

#[tokio::test]
async fn idle_instances_are_counted_and_dropped_after_the_idle_timeout() {
    let app = TestApp::start(APP).await;
    assert_eq!(app.idle("probe"), 0);
    served(&app, "/probe/").await;
    // The instance goes back to the pool just after its response.
    eventually(
        "the instance to be back in the pool",
        EVENTUALLY,
        || async { (app.idle("probe") > 0).then_some(()) },
    )
    .await;
    assert_eq!(app.idle("probe"), 1);
    served(&app, "/fresh/").await;
    assert_eq!(app.idle("probe-fresh"), 0);
    // Unused for longer than the idle timeout, the instance is dropped
    // (the sweep may run up to one timeout late, so allow ten).
    eventually(
        "the idle instance to be dropped",
        Reuse::DEFAULT_IDLE * 10,
        || async { (app.idle("probe") == 0).then_some(()) },
    )
    .await;
    assert_eq!(
        app.idle("probe"),
        0,
        "an idle instance outlived its timeout"
    );
}

/// `guest:hello` with a `producers` section appended that says, as
/// componentize-js writes it, that ComponentizeJS processed it.
fn as_if_built_by_componentize_js(dir: &std::path::Path) -> std::path::PathBuf {
    fn string(out: &mut Vec<u8>, s: &str) {
        out.push(u8::try_from(s.len()).unwrap());
        out.extend_from_slice(s.as_bytes());
    }
    let mut content = vec![1]; // one field
    string(&mut content, "processed-by");
    content.push(1); // with one value
    string(&mut content, "ComponentizeJS");
    string(&mut content, "0.23.0");
    let mut section = Vec::new();
    string(&mut section, "producers");
    section.extend_from_slice(&content);
    let mut bytes = std::fs::read(nimbus_tests::guest("hello")).unwrap();
    bytes.push(0); // a custom section
    bytes.push(u8::try_from(section.len()).unwrap());
    bytes.extend_from_slice(&section);
    let path = dir.join("js-hello.wasm");
    std::fs::write(&path, bytes).unwrap();
    path
}

/// componentize-js's engine answers only the first request of an instance,
/// so `instance_reuse` on what it built is a load error naming why, and the
/// same component without it loads.
#[test]
fn reuse_of_a_componentize_js_component_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let component = as_if_built_by_componentize_js(dir.path());
    let load = |reuse: &str| {
        let manifest = format!(
            "version = 1\n[app]\nname = \"js\"\n[functions.hello]\nsource = {:?}\nroutes = [\"GET /\"]\n{reuse}\n",
            component.display().to_string()
        );
        let path = nimbus_tests::write_manifest(dir.path(), &manifest);
        let manifest = nimbus::manifest::Manifest::load(&path).unwrap();
        let store = nimbus::backend::embedded::EmbeddedBackend::open(
            &dir.path().join(format!("{}.redb", reuse.len())),
        )
        .unwrap();
        nimbus::app::App::load(
            &nimbus_tests::runtime(),
            &manifest,
            nimbus::backend::Backends::embedded(store),
        )
    };
    let message = load("instance_reuse = 1000")
        .err()
        .expect("reuse of a componentize-js component loads")
        .to_string();
    for part in [
        "function `hello`",
        "was built by ComponentizeJS 0.23.0",
        "bytecodealliance/StarlingMonkey#247",
        "cannot have `instance_reuse`",
    ] {
        assert!(message.contains(part), "{part:?} not in: {message}");
    }
    assert!(load("").is_ok(), "the same component without reuse loads");
}
