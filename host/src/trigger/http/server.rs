//! The accept loop of every listener (the public one and the admin API's):
//! accepts connections up to a cap, serves HTTP/1.1 and HTTP/2 with hyper
//! with a header-read timeout, backs off when `accept` fails (out of file
//! descriptors, say), and shuts down gracefully.

use super::{ConnInfo, HttpTrigger};
use crate::wire::Body;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Default time in-flight requests get to finish after a shutdown signal.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);

/// Default cap on open connections: well under a typical 64k file-descriptor
/// limit, far above what two cores can keep busy.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// How long a client may take to send its request head (slowloris guard).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop
/// does not spin while the condition lasts.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Time in-flight requests get after shutdown begins.
    pub grace: Duration,
    /// Open connections at most; further clients wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            grace: DEFAULT_GRACE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// Serves `trigger` on `listener` until `shutdown` resolves, then stops
/// accepting and gives open connections up to `options.grace` to finish.
pub async fn serve(
    listener: TcpListener,
    trigger: Arc<HttpTrigger>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let handle = move |req, conn: Arc<ConnInfo>| {
        let trigger = trigger.clone();
        async move { trigger.handle(req, &conn).await }
    };
    serve_with(listener, options, handle, shutdown).await
}

/// Serves every request on `listener` with `handle` until `shutdown`
/// resolves, then stops accepting and gives open connections up to
/// `options.grace` to finish.
pub async fn serve_with<F, Fut>(
    listener: TcpListener,
    options: ServeOptions,
    handle: F,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    F: Fn(Request<Incoming>, Arc<ConnInfo>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let local = listener.local_addr()?;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(options.max_connections));
    tokio::pin!(shutdown);

    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => permit.expect("never closed"),
            () = &mut shutdown => break,
        };
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(%local, error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let info = Arc::new(ConnInfo::new(client, local));
        let handle = handle.clone();
        let service = service_fn(move |req| {
            let answer = handle(req, info.clone());
            async move { Ok::<_, Infallible>(answer.await) }
        });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%client, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }

    drop(listener);
    tracing::info!(%local, "shutting down: no longer accepting; waiting for in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!(%local, "all connections closed"),
        () = tokio::time::sleep(options.grace) => {
            tracing::warn!(%local, grace = ?options.grace, "grace period over; dropping remaining connections");
        }
    }
    Ok(())
}
