//! `native-hello`: a plain native hyper server that answers `POST /echo` the way the
//! `echo` guest does (the request as JSON) and every other request with
//! `200 Hello, world!`.
//!
//! It is the baseline `benches/load.sh` measures Nimbus against: the same responses over
//! the same HTTP stack (hyper 1 with hyper-util's HTTP/1 + HTTP/2 auto builder, on a
//! multi-threaded tokio runtime), with no WebAssembly in the way.
//!
//! Run with: `cargo run --release -p native-hello -- --listen 127.0.0.1:8080`

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// The answer to every request.
const BODY: &str = "Hello, world!\n";
/// The same content type as the `hello` guest, so both servers send the same bytes.
const CONTENT_TYPE_TEXT: &str = "text/plain; charset=utf-8";
/// The path answered like the `echo` guest.
const ECHO_PATH: &str = "/echo";
/// The largest body `POST /echo` reads, as the `echo` function's default `max_body`.
const MAX_ECHO_BODY: usize = 1024 * 1024;
/// How long to wait after a failed `accept` (typically out of file descriptors) before
/// trying again, so the loop does not spin while connections close.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// A native hyper server that answers every request with `Hello, world!`.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// The address to listen on; port 0 lets the OS pick a free port. The bound address
    /// is printed on stdout as `listening on http://ADDR`.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let cli = Cli::parse();
    let listener = TcpListener::bind(cli.listen).await?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on http://{}", listener.local_addr()?)?;
    stdout.flush()?;
    serve(listener).await
}

/// Serves connections from `listener` until the process is killed.
async fn serve(listener: TcpListener) -> ! {
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(err) => {
                eprintln!("accept failed: {err}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        if let Err(err) = stream.set_nodelay(true) {
            eprintln!("cannot set TCP_NODELAY: {err}");
        }
        let builder = builder.clone();
        tokio::spawn(async move {
            let connection = builder.serve_connection(TokioIo::new(stream), service_fn(answer));
            if let Err(err) = connection.await {
                eprintln!("connection failed: {err}");
            }
        });
    }
}

async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.method() == Method::POST && request.uri().path() == ECHO_PATH {
        return Ok(echo(request).await);
    }
    Ok(with_type(
        Bytes::from_static(BODY.as_bytes()),
        CONTENT_TYPE_TEXT,
    ))
}

/// The request as JSON, built the way `functions/probes/echo` builds it: method, path,
/// headers (lowercase names, repeated values joined with `", "`), body length and body.
async fn echo(request: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = match http_body_util::Limited::new(body, MAX_ECHO_BODY)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            let mut response =
                with_type(Bytes::from_static(b"body too large\n"), CONTENT_TYPE_TEXT);
            *response.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
            return response;
        }
    };
    let mut headers = BTreeMap::<String, String>::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|existing| {
                existing.push_str(", ");
                existing.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    let echoed = serde_json::json!({
        "method": parts.method.as_str(),
        "path_with_query": parts.uri.path_and_query().map(|p| p.as_str()),
        "headers": headers,
        "body_len": body.len(),
        "body": String::from_utf8_lossy(&body),
    });
    let json = serde_json::to_vec(&echoed).expect("a JSON value always serializes");
    with_type(Bytes::from(json), "application/json")
}

fn with_type(body: Bytes, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
