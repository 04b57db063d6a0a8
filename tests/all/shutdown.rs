//! Graceful shutdown: in-flight requests finish; new connections are refused.

use nimbus::trigger::http::ServeOptions;
use nimbus_tests::{EVENTUALLY, TestApp, eventually, in_flight};
use std::time::Duration;

/// An app whose function `id` sleeps as long as a request asks. Each test
/// names its function differently, so that it can wait for its own request
/// to be in flight (the gauge is per function id, across the process).
fn app(id: &str) -> String {
    format!(
        r#"
version = 1
[app]
name = "shutdown"

[functions.{id}]
source = "guest:sleeper"
routes = ["/sleep"]
"#
    )
}

/// Waits until the function `id` runs a request.
async fn until_in_flight(id: &str) {
    eventually(
        &format!("a request to be in flight in `{id}`"),
        EVENTUALLY,
        || async { (in_flight(id) > 0).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn in_flight_requests_finish_after_shutdown_begins() {
    let id = "sleeper-in-flight";
    let mut app = TestApp::start(&app(id)).await;
    let client = app.client.clone();
    let url = app.url("/sleep?ms=700");
    let in_flight = tokio::spawn(async move { client.get(url).send().await });
    until_in_flight(id).await;

    let server = app.begin_shutdown();
    let response = in_flight
        .await
        .unwrap()
        .expect("in-flight request completed");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "slept 700 ms\n");
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server stopped after its connections closed")
        .unwrap()
        .unwrap();

    let refused = nimbus_tests::client()
        .get(app.url("/sleep?ms=1"))
        .send()
        .await;
    assert!(
        refused.is_err(),
        "a new connection was accepted after shutdown"
    );
}

#[tokio::test]
async fn the_grace_period_bounds_shutdown() {
    let options = ServeOptions {
        grace: Duration::from_millis(300),
        ..ServeOptions::default()
    };
    let id = "sleeper-grace";
    let mut app = TestApp::start_with(&app(id), options).await;
    let client = app.client.clone();
    let url = app.url("/sleep?ms=10000");
    let in_flight = tokio::spawn(async move { client.get(url).send().await });
    until_in_flight(id).await;

    let server = app.begin_shutdown();
    tokio::time::timeout(Duration::from_secs(3), server)
        .await
        .expect("server stopped at the end of the grace period")
        .unwrap()
        .unwrap();
    in_flight.abort();
}
