//! The operator's API, on its own listener apart from public traffic.
//!
//! JSON under `/v1/`. When a token is set, every request must carry
//! `Authorization: Bearer <token>`; `nimbus up` refuses to listen beyond
//! loopback without one.
//!
//! | method and path | what |
//! |---|---|
//! | `GET /v1/health` | `{"status":"ok"}` |
//! | `GET /metrics` | Prometheus metrics, OpenMetrics text format |
//! | `GET /v1/queues` | each queue function: topic, policy, ready/delayed/in-flight/dead counts |
//! | `POST /v1/topics/{topic}/messages` | publish the body (its `content-type` is kept) |
//! | `GET /v1/queues/{function}/dead-letters` | the function's dead letters |
//! | `POST /v1/queues/{function}/dead-letters/replay[?id=ID]` | put one or all back in the queue |
//! | `DELETE /v1/queues/{function}/dead-letters[?id=ID]` | delete one or all |
//! | `GET /v1/functions` | each function: routes, triggers, version, deployed time, limits, in-flight instances, canary, history length |
//! | `GET /v1/functions/{id}` | one of them |
//! | `PUT /v1/functions/{id}` | deploy the body (a component) as the stable version; a new function needs its manifest entry in a `Nimbus-Manifest` header |
//! | `POST /v1/functions/{id}/rollback` | back to the previous version |
//! | `DELETE /v1/functions/{id}` | stop serving the function (a rollback brings it back) |
//! | `PUT /v1/functions/{id}/canary?percent=N` | the body (a component) takes N% of the traffic; with no body, change N |
//! | `POST /v1/functions/{id}/canary/promote` | the canary becomes the stable version |
//! | `POST /v1/functions/{id}/canary/abort` (or `DELETE .../canary`) | drop the canary |
//!
//! Deployment changes are described in [`crate::deploy`].

pub mod client;

use crate::app::App;
use crate::backend::{Consumer, QueueStats};
use crate::deploy::{DeployError, Deployer, MANIFEST_HEADER, parse_percent};
use crate::manifest::validate_topic;
use crate::trigger::http::error::full;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use serde::Serialize;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// Default admin listener: loopback only, so no token is needed by default.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:3001";

/// Largest message the admin API accepts for publishing.
pub const MAX_PUBLISH_BODY: usize = 4 * 1024 * 1024;

/// Largest component the admin API accepts for a deploy. Release builds of
/// Rust services are a few MiB; debug builds with symbols reach tens of MiB.
/// The whole body is held in memory while it is checked and compiled.
pub const MAX_COMPONENT_SIZE: usize = 128 * 1024 * 1024;

/// How long the admin listener waits for its requests at shutdown.
const ADMIN_GRACE: Duration = Duration::from_secs(5);

/// The admin API for one app.
pub struct Admin {
    deployer: Arc<Deployer>,
    token: Option<String>,
}

impl Admin {
    /// An API over the app that `deployer` changes, requiring `token` when given.
    pub fn new(deployer: Arc<Deployer>, token: Option<String>) -> Admin {
        Admin { deployer, token }
    }

    /// The app as it serves now.
    fn app(&self) -> Arc<App> {
        self.deployer.app()
    }

    /// Serves until `shutdown` resolves.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let builder = auto::Builder::new(TokioExecutor::new());
        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "admin accept failed");
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let admin = self.clone();
            let service = service_fn(move |req| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(admin.handle(req).await) }
            });
            let conn = graceful.watch(
                builder
                    .serve_connection(TokioIo::new(stream), service)
                    .into_owned(),
            );
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
        let _ = tokio::time::timeout(ADMIN_GRACE, graceful.shutdown()).await;
        Ok(())
    }

    /// Handles one admin request. A refusal of a request with a body (a
    /// component upload refused before it was read, say) closes the
    /// connection: the unread body would otherwise be taken for the next
    /// request, and a client reusing the connection would see it dropped.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<HyperOutgoingBody> {
        let has_body = !http_body::Body::is_end_stream(req.body());
        let mut response = self.handle_inner(req).await;
        if has_body && !response.status().is_success() {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }

    async fn handle_inner(&self, req: Request<Incoming>) -> Response<HyperOutgoingBody> {
        if let Some(token) = &self.token {
            let presented = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            if presented.is_none_or(|p| !constant_time_eq(p.as_bytes(), token.as_bytes())) {
                let mut response =
                    error(StatusCode::UNAUTHORIZED, "a valid admin token is required");
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return response;
            }
        }
        match self.route(req).await {
            Ok(response) => response,
            Err((status, message)) => error(status, &message),
        }
    }

    async fn route(
        &self,
        req: Request<Incoming>,
    ) -> Result<Response<HyperOutgoingBody>, (StatusCode, String)> {
        let path = req.uri().path().to_owned();
        let query_id = query_param(req.uri().query(), "id");
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let method = req.method().clone();
        match (&method, segments.as_slice()) {
            (&Method::GET, ["v1", "health"]) => {
                Ok(ok(&json!({"status": "ok", "app": self.app().name})))
            }
            (&Method::GET, ["metrics"]) => {
                let mut response = Response::new(full(crate::telemetry::metrics().encode()));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                Ok(response)
            }
            (&Method::GET, ["v1", "queues"]) => self.queues().await,
            (&Method::POST, ["v1", "topics", topic, "messages"]) => {
                let topic = topic.to_string();
                self.publish(&topic, req).await
            }
            (&Method::GET, ["v1", "queues", function, "dead-letters"]) => {
                self.dead_letters(function).await
            }
            (&Method::POST, ["v1", "queues", function, "dead-letters", "replay"]) => {
                let consumer = self.consumer(function)?;
                let n = self
                    .app()
                    .backends()
                    .queue
                    .replay(&consumer, query_id.as_deref())
                    .await
                    .map_err(internal)?;
                Ok(ok(&json!({"replayed": n})))
            }
            (&Method::DELETE, ["v1", "queues", function, "dead-letters"]) => {
                let consumer = self.consumer(function)?;
                let n = self
                    .app()
                    .backends()
                    .queue
                    .purge(&consumer, query_id.as_deref())
                    .await
                    .map_err(internal)?;
                Ok(ok(&json!({"purged": n})))
            }
            (&Method::GET, ["v1", "functions"]) => self.deploying(|d| Ok(d.list())).await,
            (&Method::GET, ["v1", "functions", id]) => {
                let id = id.to_string();
                self.deploying(move |d| d.get(&id)).await
            }
            (&Method::PUT, ["v1", "functions", id]) => {
                let id = id.to_string();
                let entry = match req.headers().get(MANIFEST_HEADER) {
                    Some(value) => {
                        Some(String::from_utf8(value.as_bytes().to_vec()).map_err(|_| {
                            (
                                StatusCode::BAD_REQUEST,
                                format!("the `{MANIFEST_HEADER}` header is not UTF-8"),
                            )
                        })?)
                    }
                    None => None,
                };
                let component = component(req).await?;
                match entry {
                    Some(entry) => {
                        self.deploying(move |d| d.add(&id, &entry, &component))
                            .await
                    }
                    None => self.deploying(move |d| d.deploy(&id, &component)).await,
                }
            }
            (&Method::DELETE, ["v1", "functions", id]) => {
                let id = id.to_string();
                self.deploying(move |d| d.remove(&id)).await
            }
            (&Method::POST, ["v1", "functions", id, "rollback"]) => {
                let id = id.to_string();
                self.deploying(move |d| d.rollback(&id)).await
            }
            (&Method::PUT, ["v1", "functions", id, "canary"]) => {
                let id = id.to_string();
                let percent = query_param(req.uri().query(), "percent");
                // The body is read first, so a refusal leaves the connection
                // clean for the client's next request; nothing is compiled
                // before the percentage is checked.
                let component = component(req).await?;
                let Some(percent) = percent else {
                    return Err((
                        StatusCode::BAD_REQUEST,
                        "say how much traffic the canary takes: ?percent=N (0 to 100)".into(),
                    ));
                };
                let percent = parse_percent(&percent).map_err(|e| (e.status(), e.to_string()))?;
                if component.is_empty() {
                    self.deploying(move |d| d.set_canary_percent(&id, percent))
                        .await
                } else {
                    self.deploying(move |d| d.canary(&id, &component, percent))
                        .await
                }
            }
            (&Method::POST, ["v1", "functions", id, "canary", "promote"]) => {
                let id = id.to_string();
                self.deploying(move |d| d.promote(&id)).await
            }
            (&Method::POST, ["v1", "functions", id, "canary", "abort"])
            | (&Method::DELETE, ["v1", "functions", id, "canary"]) => {
                let id = id.to_string();
                self.deploying(move |d| d.abort(&id)).await
            }
            _ => Err((
                StatusCode::NOT_FOUND,
                format!("no admin endpoint {method} {path}"),
            )),
        }
    }

    /// Runs a deployment operation off the async workers: it may compile.
    async fn deploying<T: Serialize + Send + 'static>(
        &self,
        operation: impl FnOnce(&Deployer) -> Result<T, DeployError> + Send + 'static,
    ) -> Result<Response<HyperOutgoingBody>, (StatusCode, String)> {
        let deployer = self.deployer.clone();
        match tokio::task::spawn_blocking(move || operation(&deployer)).await {
            Ok(Ok(answer)) => Ok(ok(&answer)),
            Ok(Err(e)) => Err((e.status(), e.to_string())),
            Err(e) => Err((
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the deployment task failed: {e}"),
            )),
        }
    }

    fn consumer(&self, function: &str) -> Result<Consumer, (StatusCode, String)> {
        match self
            .app()
            .functions
            .iter()
            .find(|f| f.id.as_str() == function)
        {
            Some(f) if f.queue.is_some() => Ok(Consumer {
                app: self.app().name.clone(),
                function: function.to_owned(),
            }),
            Some(_) => Err((
                StatusCode::NOT_FOUND,
                format!("function `{function}` has no queue trigger"),
            )),
            None => Err((StatusCode::NOT_FOUND, format!("no function `{function}`"))),
        }
    }

    async fn queues(&self) -> Result<Response<HyperOutgoingBody>, (StatusCode, String)> {
        let mut out = Vec::new();
        let app = self.app();
        for f in &app.functions {
            let Some(trigger) = &f.queue else { continue };
            let consumer = Consumer {
                app: self.app().name.clone(),
                function: f.id.to_string(),
            };
            let QueueStats {
                ready,
                delayed,
                in_flight,
                dead,
            } = self
                .app()
                .backends()
                .queue
                .stats(&consumer)
                .await
                .map_err(internal)?;
            out.push(json!({
                "function": f.id.as_str(),
                "topic": trigger.spec.topic.as_str(),
                "max_attempts": trigger.spec.max_attempts,
                "concurrency": trigger.spec.concurrency,
                "ready": ready,
                "delayed": delayed,
                "in_flight": in_flight,
                "dead": dead,
            }));
        }
        Ok(ok(&Value::Array(out)))
    }

    async fn publish(
        &self,
        topic: &str,
        req: Request<Incoming>,
    ) -> Result<Response<HyperOutgoingBody>, (StatusCode, String)> {
        validate_topic(topic).map_err(|e| (StatusCode::BAD_REQUEST, e))?;
        let mut headers = Vec::new();
        if let Some(ct) = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
        {
            headers.push(("content-type".to_owned(), ct.to_owned()));
        }
        let body = Limited::new(req.into_body(), MAX_PUBLISH_BODY)
            .collect()
            .await
            .map_err(|e| {
                (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("reading the message: {e}"),
                )
            })?
            .to_bytes();
        let id = self
            .app()
            .backends()
            .queue
            .publish(&self.app().name, topic, &body, &headers)
            .await
            .map_err(internal)?;
        crate::telemetry::metrics()
            .queue_published
            .get_or_create(&crate::telemetry::function("admin"))
            .inc();
        let mut response = ok(&json!({"id": id, "topic": topic}));
        *response.status_mut() = StatusCode::ACCEPTED;
        Ok(response)
    }

    async fn dead_letters(
        &self,
        function: &str,
    ) -> Result<Response<HyperOutgoingBody>, (StatusCode, String)> {
        let consumer = self.consumer(function)?;
        let letters = self
            .app()
            .backends()
            .queue
            .dead_letters(&consumer)
            .await
            .map_err(internal)?;
        let out: Vec<Value> = letters
            .into_iter()
            .map(|d| {
                json!({
                    "id": d.message.id,
                    "topic": d.message.topic,
                    "attempts": d.attempts,
                    "error": d.error,
                    "published_ms": d.message.published_ms,
                    "failed_ms": d.failed_ms,
                    "headers": d.message.headers,
                    "payload_len": d.message.payload.len(),
                    "payload": String::from_utf8(d.message.payload).ok(),
                })
            })
            .collect();
        Ok(ok(&Value::Array(out)))
    }
}

/// Reads an uploaded component, up to [`MAX_COMPONENT_SIZE`].
async fn component(req: Request<Incoming>) -> Result<Bytes, (StatusCode, String)> {
    Limited::new(req.into_body(), MAX_COMPONENT_SIZE)
        .collect()
        .await
        .map(|body| body.to_bytes())
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "the component is larger than the limit of {}",
                        crate::manifest::format_bytes(MAX_COMPONENT_SIZE as u64)
                    ),
                )
            } else {
                (
                    StatusCode::BAD_REQUEST,
                    format!("reading the component: {e}"),
                )
            }
        })
}

fn internal(e: crate::backend::BackendError) -> (StatusCode, String) {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

fn ok(body: &impl Serialize) -> Response<HyperOutgoingBody> {
    let mut text = serde_json::to_vec(body).expect("a view serializes");
    text.push(b'\n');
    let mut response = Response::new(full(Bytes::from(text)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn error(status: StatusCode, message: &str) -> Response<HyperOutgoingBody> {
    let mut response = ok(&json!({"status": status.as_u16(), "message": message}));
    *response.status_mut() = status;
    response
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// Compares secrets without leaking, through timing, how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
