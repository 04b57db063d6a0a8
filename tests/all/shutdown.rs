//! Graceful shutdown: in-flight requests finish; new connections are refused.

use nimbus::trigger::http::ServeOptions;
use nimbus_tests::TestApp;
use std::time::Duration;

const APP: &str = r#"
version = 1
[app]
name = "shutdown"

[functions.sleeper]
source = "guest:sleeper"
routes = ["/sleep"]
"#;

#[tokio::test]
async fn in_flight_requests_finish_after_shutdown_begins() {
    let mut app = TestApp::start(APP).await;
    let client = app.client.clone();
    let url = app.url("/sleep?ms=700");
    let in_flight = tokio::spawn(async move { client.get(url).send().await });
    tokio::time::sleep(Duration::from_millis(200)).await;

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
    let mut app = TestApp::start_with(APP, options).await;
    let client = app.client.clone();
    let url = app.url("/sleep?ms=10000");
    let in_flight = tokio::spawn(async move { client.get(url).send().await });
    tokio::time::sleep(Duration::from_millis(200)).await;

    let server = app.begin_shutdown();
    tokio::time::timeout(Duration::from_secs(3), server)
        .await
        .expect("server stopped at the end of the grace period")
        .unwrap()
        .unwrap();
    in_flight.abort();
}
