//! Outbound HTTP: denied unless the manifest allows the host.

use nimbus_tests::{TestApp, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A one-route HTTP server on a loopback port that answers every request
/// with `upstream ok`, for as long as the test runs.
async fn upstream() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\nconnection: close\r\n\r\nupstream ok")
                    .await;
            });
        }
    });
    addr
}

const APP: &str = r#"
version = 1
[app]
name = "outbound"

[functions.open]
source = "guest:fetcher"
routes = ["/fetch"]
allowed_outbound_hosts = ["http://127.0.0.1:*"]

[functions.closed]
source = "guest:fetcher"
routes = ["/closed/fetch"]
"#;

#[tokio::test]
async fn an_allowed_host_is_reached() {
    let upstream = upstream().await;
    let app = TestApp::start(APP).await;
    let response = app
        .get(&format!("/fetch?url=http://{upstream}/hello"))
        .await;
    assert_eq!(response.status(), 200);
    let body = json(response).await;
    assert_eq!(body["status"], 200);
    assert_eq!(body["body"], "upstream ok");
}

#[tokio::test]
async fn a_host_not_allowed_gets_http_request_denied() {
    let upstream = upstream().await;
    let app = TestApp::start(APP).await;
    // Allowed for `open` only on 127.0.0.1; `localhost` is another host.
    let response = app
        .get(&format!("/fetch?url=http://localhost:{}/", upstream.port()))
        .await;
    assert_eq!(response.status(), 502);
    assert!(
        json(response).await["message"]
            .as_str()
            .unwrap()
            .contains("HttpRequestDenied")
    );
    let response = app
        .get(&format!("/closed/fetch?url=http://{upstream}/"))
        .await;
    assert_eq!(response.status(), 502);
    assert!(
        json(response).await["message"]
            .as_str()
            .unwrap()
            .contains("HttpRequestDenied")
    );
}
