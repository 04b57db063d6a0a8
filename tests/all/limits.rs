//! Limits: each failure mode gets its one status code, and the server keeps
//! answering afterwards.

use nimbus_tests::{EVENTUALLY, TestApp, eventually, json};
use std::time::{Duration, Instant};

const APP: &str = r#"
version = 1
[app]
name = "limits"

[functions.hello]
source = "guest:hello"
routes = ["GET /"]

[functions.spinner]
source = "guest:spinner"
routes = ["/spin"]
[functions.spinner.limits]
timeout = "1s"

[functions.memhog]
source = "guest:memhog"
routes = ["/hog"]
[functions.memhog.limits]
memory = "32MiB"

[functions.panicker]
source = "guest:panicker"
routes = ["/panic"]

[functions.no-response]
source = "guest:no-response"
routes = ["/silent"]

[functions.sleeper]
source = "guest:sleeper"
routes = ["/sleep"]
[functions.sleeper.limits]
concurrency = 2
queue_timeout = "100ms"
"#;

async fn still_serving(app: &TestApp) {
    let response = app.get("/").await;
    assert_eq!(response.status(), 200, "the server stopped answering");
}

#[tokio::test]
async fn runaway_cpu_is_stopped_with_504_within_the_timeout() {
    let app = TestApp::start(APP).await;
    let started = Instant::now();
    let response = app.get("/spin").await;
    let took = started.elapsed();
    assert_eq!(response.status(), 504);
    assert!(
        took < Duration::from_millis(1500),
        "504 came after {took:?}, timeout is 1s"
    );
    assert!(
        took >= Duration::from_secs(1),
        "504 before the timeout: {took:?}"
    );
    let body = json(response).await;
    assert_eq!(body["error"], "timeout");
    still_serving(&app).await;
}

#[tokio::test]
async fn memory_past_the_limit_is_500_and_under_it_works() {
    let app = TestApp::start(APP).await;
    let response = app.get("/hog").await;
    assert_eq!(response.status(), 500);
    let body = json(response).await;
    assert_eq!(body["error"], "memory_limit_exceeded");
    assert!(
        body["message"].as_str().unwrap().contains("32 MiB"),
        "{body}"
    );
    still_serving(&app).await;

    let response = app.get("/hog?mb=8").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "allocated 8 MiB\n");
}

#[tokio::test]
async fn a_panic_is_500_without_internals() {
    let app = TestApp::start(APP).await;
    let response = app.get("/panic").await;
    assert_eq!(response.status(), 500);
    let body = json(response).await;
    assert_eq!(body["error"], "function_trapped");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.starts_with("function `panicker` crashed"),
        "{message}"
    );
    assert!(!message.contains(".rs"), "leaks internals: {message}");
    still_serving(&app).await;
}

#[tokio::test]
async fn no_response_is_500() {
    let app = TestApp::start(APP).await;
    let response = app.get("/silent").await;
    assert_eq!(response.status(), 500);
    assert_eq!(json(response).await["error"], "no_response");
}

#[tokio::test]
async fn two_hundred_concurrent_requests_all_succeed() {
    let app = TestApp::start(APP).await;
    let requests = (0..200).map(|_| app.client.get(app.url("/")).send());
    let responses = futures_util::future::join_all(requests).await;
    let ok = responses
        .into_iter()
        .filter(|r| r.as_ref().is_ok_and(|r| r.status() == 200))
        .count();
    assert_eq!(ok, 200);
}

#[tokio::test]
async fn over_concurrency_is_503_with_retry_after() {
    let app = TestApp::start(APP).await;
    // Two slow requests hold both instance slots...
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let client = app.client.clone();
            let url = app.url("/sleep?ms=3000");
            tokio::spawn(async move { client.get(url).send().await.unwrap().status() })
        })
        .collect();
    // ...and a third, once they do, waits its 100 ms, then is turned away.
    let response = eventually("a third request to be turned away", EVENTUALLY, || async {
        let response = app.get("/sleep?ms=1").await;
        (response.status() == 503).then_some(response)
    })
    .await;
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(json(response).await["error"], "overloaded");
    for task in slow {
        assert_eq!(task.await.unwrap(), 200);
    }
    // Slots are given back.
    assert_eq!(app.get("/sleep?ms=1").await.status(), 200);
}
