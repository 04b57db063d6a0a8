//! The operator's API, on its own listener apart from public traffic.
//!
//! JSON under `/v1/`. When a token is set, every request must carry
//! `Authorization: Bearer <token>`; `nimbus up` refuses to listen beyond
//! loopback without one.
//!
//! | method and path | what |
//! |---|---|
//! | `GET /v1/health` | `{"status":"ok","app":...}` ([`HealthView`]) |
//! | `GET /metrics` | Prometheus metrics, OpenMetrics text format |
//! | `GET /` or `GET /ui` | the dashboard: one page, no token needed to load it (it asks for one and sends it with each call) |
//! | `GET /v1/stats[?window=SECONDS]` | each function's requests/s, error rate, p50/p99, peak memory and in-flight instances over the last SECONDS (default 60, at most 300), with a per-second series ([`StatsView`]) |
//! | `GET /v1/nodes` | the nodes serving the app: this one alone, or a cluster's live members ([`NodeView`]) |
//! | `GET /v1/queues` | each queue function: topic, policy, ready/delayed/in-flight/dead counts ([`QueueView`]) |
//! | `POST /v1/topics/{topic}/messages` | publish the body (its `content-type` is kept); `202` ([`PublishedView`]) |
//! | `GET /v1/queues/{function}/dead-letters` | the function's dead letters ([`DeadLetterView`]) |
//! | `POST /v1/queues/{function}/dead-letters/replay[?id=ID]` | put one or all back in the queue ([`ReplayedView`]) |
//! | `DELETE /v1/queues/{function}/dead-letters[?id=ID]` | delete one or all ([`PurgedView`]) |
//! | `GET /v1/functions` | each function: routes, triggers, version, deployed time, limits, in-flight instances, canary, history length ([`FunctionView`]) |
//! | `GET /v1/functions/{id}` | one of them |
//! | `PUT /v1/functions/{id}` | deploy the body (a component) as the stable version; a new function needs its manifest entry in a `Nimbus-Manifest` header ([`ChangeView`], as for every change) |
//! | `POST /v1/functions/{id}/rollback` | back to the previous version |
//! | `DELETE /v1/functions/{id}` | stop serving the function (a rollback brings it back) |
//! | `PUT /v1/functions/{id}/canary?percent=N` | the body (a component) takes N% of the traffic; with no body, change N |
//! | `POST /v1/functions/{id}/canary/promote` | the canary becomes the stable version |
//! | `POST /v1/functions/{id}/canary/abort` (or `DELETE .../canary`) | drop the canary |
//! | `POST /v1/functions/{id}/sql/{database}` (also `.../sqlite/...`) | one SQL statement, `{"sql": "...", "params": [...], "write": false}`, on a SQLite database the function lists or a PostgreSQL database it is granted, under its limits; read-only unless `write` ([`QueryView`]) |
//!
//! A refusal is `{"status": N, "error": "code", "message": "..."}`
//! ([`ErrorView`]), its status and code given by [`AdminError`]. A refused
//! request with a body also closes its connection.
//!
//! Deployment changes are described in [`crate::deploy`].
//!
//! # Layout
//!
//! - this module: [`Admin`], the token check and the dispatch to handlers;
//! - `route`: the routing table, a method and path to an endpoint;
//! - `functions`, `queues`, [`sql`]: the handlers of each group of endpoints;
//! - [`view`]: the answers as types, [`error`]: the refusals;
//! - [`client`]: a client for the API, used by the CLI.
//!
//! [`FunctionView`]: crate::deploy::FunctionView
//! [`ChangeView`]: crate::deploy::ChangeView
//! [`QueryView`]: sql::QueryView

pub mod client;
pub mod error;
mod functions;
mod queues;
mod route;
pub mod sql;
pub mod view;

pub use error::AdminError;
pub use view::{
    DeadLetterView, ErrorView, FunctionStatsView, HealthView, NodeView, PublishedView, PurgedView,
    QueueView, ReplayedView, StatsView,
};

use crate::app::App;
use crate::deploy::Deployer;
use crate::telemetry::recent::WINDOW_SECONDS;
use crate::wire::{Body, full};
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use route::Endpoint;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// Default admin listener: loopback only, so no token is needed by default.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:3001";

/// Largest message the admin API accepts for publishing.
pub const MAX_PUBLISH_BODY: usize = 4 * 1024 * 1024;

/// Largest component the admin API accepts for a deploy. Release builds of
/// Rust services are a few MiB; debug builds with symbols reach tens of MiB.
/// The whole body is held in memory while it is checked and compiled.
pub const MAX_COMPONENT_SIZE: usize = 128 * 1024 * 1024;

/// The seconds `GET /v1/stats` covers unless asked.
pub const DEFAULT_STATS_WINDOW: u64 = 60;

/// How long the admin listener waits for its requests at shutdown:
/// operator calls are short, and a deploy in flight finishes in the background.
pub const ADMIN_GRACE: Duration = Duration::from_secs(5);

/// The admin API for one app.
pub struct Admin {
    deployer: Arc<Deployer>,
    token: Option<String>,
    /// The id this node records itself under among the members.
    node_id: Option<String>,
}

/// What a handler answers: a response, or the refusal to render.
type Answer = Result<Response<Body>, AdminError>;

impl Admin {
    /// An API over the app that `deployer` changes, requiring `token` when given.
    pub fn new(deployer: Arc<Deployer>, token: Option<String>) -> Admin {
        Admin {
            deployer,
            token,
            node_id: None,
        }
    }

    /// Marks `id` as this node in `GET /v1/nodes`.
    pub fn with_node_id(mut self, id: String) -> Admin {
        self.node_id = Some(id);
        self
    }

    /// The app as it serves now.
    fn app(&self) -> Arc<App> {
        self.deployer.app()
    }

    /// Handles one admin request. A refusal of a request with a body (a
    /// component upload refused before it was read, say) closes the
    /// connection: the unread body would otherwise be taken for the next
    /// request, and a client reusing the connection would see it dropped.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let has_body = !http_body::Body::is_end_stream(req.body());
        let endpoint = Endpoint::find(req.method(), req.uri().path());
        let mut response = match (endpoint, self.authorized(&req)) {
            // The page holds no data: it asks for the token, then sends it
            // with each call it makes.
            (Some(Endpoint::Dashboard), _) => Ok(dashboard()),
            (_, Err(e)) => Err(e),
            (Some(endpoint), Ok(())) => self.route(endpoint, req).await,
            (None, Ok(())) => Err(AdminError::NoEndpoint {
                method: req.method().clone(),
                path: req.uri().path().to_owned(),
            }),
        }
        .unwrap_or_else(AdminError::into_response);
        if has_body && !response.status().is_success() {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }

    /// Checks the request's bearer token, when the API has one.
    fn authorized(&self, req: &Request<Incoming>) -> Result<(), AdminError> {
        let Some(token) = &self.token else {
            return Ok(());
        };
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match presented {
            Some(p) if constant_time_eq(p.as_bytes(), token.as_bytes()) => Ok(()),
            _ => Err(AdminError::Unauthorized),
        }
    }

    /// Runs the handler of `endpoint`, the request's entry in the routing table.
    async fn route(&self, endpoint: Endpoint, req: Request<Incoming>) -> Answer {
        match endpoint {
            Endpoint::Health => self.health(),
            Endpoint::Metrics => Ok(metrics()),
            Endpoint::Dashboard => Ok(dashboard()),
            Endpoint::Stats => self.stats(req.uri().query()),
            Endpoint::Nodes => self.nodes().await,
            Endpoint::Queues => self.queues().await,
            Endpoint::Publish { topic } => self.publish(&topic, req).await,
            Endpoint::DeadLetters { function } => self.dead_letters(&function).await,
            Endpoint::Replay { function } => self.replay(&function, req.uri()).await,
            Endpoint::Purge { function } => self.purge(&function, req.uri()).await,
            Endpoint::Functions => self.functions().await,
            Endpoint::Function { id } => self.function(id).await,
            Endpoint::Deploy { id } => self.deploy(id, req).await,
            Endpoint::Remove { id } => self.remove(id).await,
            Endpoint::Rollback { id } => self.rollback(id).await,
            Endpoint::Canary { id } => self.canary(id, req).await,
            Endpoint::Promote { id } => self.promote(id).await,
            Endpoint::Abort { id } => self.abort(id).await,
            Endpoint::Sql { id, database } => self.sql(&id, &database, req).await,
        }
    }

    /// `GET /v1/health`
    fn health(&self) -> Answer {
        Ok(ok(&HealthView {
            status: "ok".into(),
            app: self.app().name.clone(),
        }))
    }

    /// `GET /v1/stats[?window=SECONDS]`
    fn stats(&self, query: Option<&str>) -> Answer {
        let window = match route::query_param(query, "window") {
            None => DEFAULT_STATS_WINDOW,
            Some(text) => match text.parse::<u64>() {
                Ok(seconds) if (1..=WINDOW_SECONDS).contains(&seconds) => seconds,
                _ => {
                    return Err(AdminError::InvalidWindow {
                        given: text,
                        max: WINDOW_SECONDS,
                    });
                }
            },
        };
        let app = self.app();
        let functions = app
            .functions
            .iter()
            .map(|function| FunctionStatsView {
                function: function.id_str.to_string(),
                in_flight: function.metrics.in_flight.get(),
                recent: function.metrics.recent.view(window),
            })
            .collect();
        Ok(ok(&StatsView {
            window_seconds: window,
            functions,
        }))
    }

    /// `GET /v1/nodes`
    async fn nodes(&self) -> Answer {
        let app = self.app();
        let members = app.backends().members.list().await?;
        let this = self.node_id.as_deref().unwrap_or_default();
        let nodes: Vec<NodeView> = members
            .into_iter()
            .map(|m| NodeView::new(m, this))
            .collect();
        Ok(ok(&nodes))
    }
}

/// `GET /` and `GET /ui`: the dashboard, one self-contained page.
fn dashboard() -> Response<Body> {
    const PAGE: &str = include_str!("dashboard.html");
    let mut response = Response::new(full(PAGE));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // Everything the page needs is inside it; it talks only to this API.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /metrics`
fn metrics() -> Response<Body> {
    let mut response = Response::new(full(crate::telemetry::metrics().encode()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}

/// A `200` answer with `body` as JSON.
fn ok(body: &impl Serialize) -> Response<Body> {
    json(StatusCode::OK, body)
}

/// An answer with `body` as JSON, on one line.
fn json(status: StatusCode, body: &impl Serialize) -> Response<Body> {
    // Views are structs of strings, numbers and lists: they always serialize.
    let mut text = serde_json::to_vec(body).unwrap_or_default();
    text.push(b'\n');
    let mut response = Response::new(full(Bytes::from(text)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Compares secrets without leaking, through timing, how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
