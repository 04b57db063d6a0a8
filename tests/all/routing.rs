//! Routing, the `x-nimbus-*` headers guests receive, request ids and the
//! gateway's own error responses.

use nimbus_tests::{TestApp, json};

const APP: &str = r#"
version = 1
[app]
name = "routing"

[functions.hello]
source = "guest:hello"
routes = ["GET /", "GET /hello/:name"]

[functions.echo]
source = "guest:echo"
routes = ["/echo/...", "POST /items/:id/notes/:note"]
[functions.echo.limits]
max_body = "1KiB"
"#;

#[tokio::test]
async fn hello_answers() {
    let app = TestApp::start(APP).await;
    let response = app.get("/").await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-request-id"));
    assert_eq!(response.text().await.unwrap(), "Hello, world!\n");
}

#[tokio::test]
async fn path_params_reach_the_guest() {
    let app = TestApp::start(APP).await;
    let response = app.get("/hello/alice").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "Hello, alice!\n");

    let response = app
        .client
        .post(app.url("/items/42/notes/n%201?x=1"))
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let echo = json(response).await;
    let headers = &echo["headers"];
    assert_eq!(headers["x-nimbus-param-id"], "42");
    assert_eq!(headers["x-nimbus-param-note"], "n%201");
    assert_eq!(headers["x-nimbus-route"], "/items/:id/notes/:note");
    assert_eq!(headers["x-nimbus-function"], "echo");
    assert!(
        headers["x-nimbus-client-addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    assert_eq!(echo["path_with_query"], "/items/42/notes/n%201?x=1");
    assert_eq!(echo["body"], "hi");
}

#[tokio::test]
async fn wildcard_routes_get_the_rest_of_the_path() {
    let app = TestApp::start(APP).await;
    let echo = json(app.get("/echo/a/b/c").await).await;
    assert_eq!(echo["headers"]["x-nimbus-path-info"], "/a/b/c");
    assert_eq!(echo["headers"]["x-nimbus-route"], "/echo/...");
}

#[tokio::test]
async fn spoofed_nimbus_headers_never_reach_the_guest() {
    let app = TestApp::start(APP).await;
    let response = app
        .client
        .get(app.url("/echo/x"))
        .header("x-nimbus-function", "admin")
        .header("x-nimbus-param-id", "1 OR 1=1")
        .header("X-Nimbus-Claims", "{\"admin\":true}")
        .send()
        .await
        .unwrap();
    let echo = json(response).await;
    let headers = echo["headers"].as_object().unwrap();
    assert_eq!(headers["x-nimbus-function"], "echo");
    assert!(!headers.contains_key("x-nimbus-param-id"));
    assert!(!headers.contains_key("x-nimbus-claims"));
}

#[tokio::test]
async fn request_ids_are_kept_or_made() {
    let app = TestApp::start(APP).await;
    let response = app
        .client
        .get(app.url("/echo/"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "abc-123");
    let echo = json(response).await;
    assert_eq!(echo["headers"]["x-request-id"], "abc-123");

    let a = app.get("/").await.headers()["x-request-id"].clone();
    let b = app.get("/").await.headers()["x-request-id"].clone();
    assert_ne!(a, b);
    assert_eq!(a.len(), 36, "a UUID: {a:?}");
}

#[tokio::test]
async fn unknown_route_is_404_with_a_json_error() {
    let app = TestApp::start(APP).await;
    let response = app
        .client
        .get(app.url("/nope"))
        .header("x-request-id", "req-404")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body = json(response).await;
    assert_eq!(body["status"], 404);
    assert_eq!(body["error"], "not_found");
    assert_eq!(body["request_id"], "req-404");
    assert!(body["message"].as_str().unwrap().contains("GET /nope"));
}

#[tokio::test]
async fn wrong_method_is_405_with_allow() {
    let app = TestApp::start(APP).await;
    let response = app
        .client
        .delete(app.url("/hello/bob"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET, HEAD");
    assert_eq!(json(response).await["error"], "method_not_allowed");
}

#[tokio::test]
async fn oversized_body_is_413_with_or_without_a_length() {
    let app = TestApp::start(APP).await;
    let big = vec![b'x'; 2048];
    let response = app
        .client
        .post(app.url("/echo/upload"))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(json(response).await["error"], "payload_too_large");

    // Chunked: no content-length, so the gateway counts as it reads.
    let stream = futures_stream(big);
    let response = app
        .client
        .post(app.url("/echo/upload"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);

    // Under the limit, chunked, reaches the guest whole.
    let response = app
        .client
        .post(app.url("/echo/upload"))
        .body(reqwest::Body::wrap_stream(futures_stream(vec![b'y'; 700])))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(json(response).await["body_len"], 700);
}

fn futures_stream(
    data: Vec<u8>,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        data.chunks(256).map(|c| Ok(c.to_vec())).collect();
    futures_util::stream::iter(chunks)
}

#[tokio::test]
async fn health_endpoint_answers() {
    let app = TestApp::start(APP).await;
    let response = app.get("/.well-known/nimbus/health").await;
    assert_eq!(response.status(), 200);
    let body = json(response).await;
    assert_eq!(body["status"], "ok");
    assert_eq!(body["app"], "routing");
    assert_eq!(body["functions"], 2);
}

#[tokio::test]
async fn every_invocation_gets_a_w3c_traceparent() {
    let app = TestApp::start(APP).await;
    // Without one, the request starts a trace.
    let echo = json(app.get("/echo/x").await).await;
    let root = echo["headers"]["traceparent"].as_str().unwrap().to_owned();
    let parts: Vec<&str> = root.split('-').collect();
    assert_eq!(parts.len(), 4, "{root}");
    assert_eq!(
        (parts[0], parts[1].len(), parts[2].len(), parts[3]),
        ("00", 32, 16, "01")
    );

    // With one, the function is a span in the caller's trace.
    let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let response = app
        .client
        .get(app.url("/echo/x"))
        .header("traceparent", parent)
        .send()
        .await
        .unwrap();
    let echo = json(response).await;
    let child = echo["headers"]["traceparent"].as_str().unwrap();
    assert!(
        child.starts_with("00-0af7651916cd43dd8448eb211c80319c-"),
        "{child}"
    );
    assert!(!child.contains("b7ad6b7169203331"), "{child}");
}
