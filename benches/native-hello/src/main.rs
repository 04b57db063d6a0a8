//! `native-hello`: a plain native hyper server that answers every request with
//! `200 Hello, world!`.
//!
//! It is the baseline `benches/load.sh` measures Nimbus against: the same response over
//! the same HTTP stack (hyper 1 with hyper-util's HTTP/1 + HTTP/2 auto builder, on a
//! multi-threaded tokio runtime), with no WebAssembly in the way.
//!
//! Run with: `cargo run --release -p native-hello -- --listen 127.0.0.1:8080`

use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// The answer to every request.
const BODY: &str = "Hello, world!\n";
/// The same content type as the `hello` guest, so both servers send the same bytes.
const CONTENT_TYPE_TEXT: &str = "text/plain; charset=utf-8";
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
            let connection = builder.serve_connection(TokioIo::new(stream), service_fn(hello));
            if let Err(err) = connection.await {
                eprintln!("connection failed: {err}");
            }
        });
    }
}

async fn hello(_request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = Response::new(Full::new(Bytes::from_static(BODY.as_bytes())));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_TEXT));
    Ok(response)
}
