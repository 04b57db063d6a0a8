//! A client for the admin API, used by the operator commands of the CLI
//! (`nimbus publish`, `queues`, `dead-letters`, `deploy`, `ls`, `rollback`,
//! `canary`, `rm`). Each endpoint has a method that answers with the view
//! the server sent; [`call`](AdminClient::call) sends any request and
//! answers with the JSON as it came.
//!
//! ```no_run
//! # async fn run() -> Result<(), nimbus::admin::client::ClientError> {
//! use nimbus::admin::client::AdminClient;
//!
//! let admin = AdminClient::new("http://127.0.0.1:3001", None);
//! for function in admin.functions().await? {
//!     println!("{} {:?}", function.id, function.version);
//! }
//! let change = admin.rollback("hello").await?;
//! println!("{:?}, was {:?}", change.action, change.previous);
//! # Ok(())
//! # }
//! ```

use super::view::{
    DeadLetterView, ErrorView, HealthView, NodeView, PublishedView, PurgedView, QueueView,
    ReplayedView, StatsView,
};
use crate::deploy::{ChangeView, FunctionView, MANIFEST_HEADER};
use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The content type of an uploaded component.
const WASM: &str = "application/wasm";

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The admin URL is malformed.
    #[error("invalid admin URL `{0}`")]
    Url(String),
    /// Nimbus could not be reached.
    #[error("cannot reach the admin API at {url} (is `nimbus up` running?): {source}")]
    Connect {
        /// The URL tried.
        url: String,
        /// Why.
        source: hyper_util::client::legacy::Error,
    },
    /// The answer could not be read.
    #[error("reading the admin API's answer: {0}")]
    Read(String),
    /// The API said no.
    #[error("{status}: {message}")]
    Status {
        /// The status.
        status: StatusCode,
        /// The refusal's stable name (`no_history`, ...), when the server
        /// sent one.
        code: Option<String>,
        /// Its message.
        message: String,
    },
}

/// An admin API client.
pub struct AdminClient {
    base: String,
    token: Option<String>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl AdminClient {
    /// A client for the admin API at `base` (e.g. `http://127.0.0.1:3001`).
    pub fn new(base: &str, token: Option<String>) -> AdminClient {
        AdminClient {
            base: base.trim_end_matches('/').to_owned(),
            token,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// `GET /v1/health`
    pub async fn health(&self) -> Result<HealthView, ClientError> {
        self.get("/v1/health").await
    }

    /// `GET /v1/functions`: every function.
    pub async fn functions(&self) -> Result<Vec<FunctionView>, ClientError> {
        self.get("/v1/functions").await
    }

    /// `GET /v1/functions/{id}`
    pub async fn function(&self, id: &str) -> Result<FunctionView, ClientError> {
        self.get(&format!("/v1/functions/{id}")).await
    }

    /// `PUT /v1/functions/{id}`: `component` becomes the stable version of
    /// function `id`; with `manifest_entry` (the keys of its manifest table
    /// as a TOML inline table), a new function is added.
    pub async fn deploy(
        &self,
        id: &str,
        component: Bytes,
        manifest_entry: Option<&str>,
    ) -> Result<ChangeView, ClientError> {
        let headers: Vec<(&str, &str)> = manifest_entry
            .map(|entry| (MANIFEST_HEADER, entry))
            .into_iter()
            .collect();
        let path = format!("/v1/functions/{id}");
        self.send(Method::PUT, &path, Some((component, WASM)), &headers)
            .await
    }

    /// `POST /v1/functions/{id}/rollback`
    pub async fn rollback(&self, id: &str) -> Result<ChangeView, ClientError> {
        self.change(Method::POST, &format!("/v1/functions/{id}/rollback"))
            .await
    }

    /// `DELETE /v1/functions/{id}`: the function stops serving.
    pub async fn remove(&self, id: &str) -> Result<ChangeView, ClientError> {
        self.change(Method::DELETE, &format!("/v1/functions/{id}"))
            .await
    }

    /// `PUT /v1/functions/{id}/canary?percent=N`: `component` takes
    /// `percent` of the invocations.
    pub async fn canary(
        &self,
        id: &str,
        component: Bytes,
        percent: u8,
    ) -> Result<ChangeView, ClientError> {
        let path = format!("/v1/functions/{id}/canary?percent={percent}");
        self.send(Method::PUT, &path, Some((component, WASM)), &[])
            .await
    }

    /// `PUT /v1/functions/{id}/canary?percent=N` without a body: the running
    /// canary's new share.
    pub async fn set_canary_percent(
        &self,
        id: &str,
        percent: u8,
    ) -> Result<ChangeView, ClientError> {
        self.change(
            Method::PUT,
            &format!("/v1/functions/{id}/canary?percent={percent}"),
        )
        .await
    }

    /// `POST /v1/functions/{id}/canary/promote`
    pub async fn promote(&self, id: &str) -> Result<ChangeView, ClientError> {
        self.change(Method::POST, &format!("/v1/functions/{id}/canary/promote"))
            .await
    }

    /// `POST /v1/functions/{id}/canary/abort`
    pub async fn abort(&self, id: &str) -> Result<ChangeView, ClientError> {
        self.change(Method::POST, &format!("/v1/functions/{id}/canary/abort"))
            .await
    }

    /// `GET /v1/nodes`: the nodes serving the app.
    pub async fn nodes(&self) -> Result<Vec<NodeView>, ClientError> {
        self.get("/v1/nodes").await
    }

    /// `GET /v1/stats?window=SECONDS`: each function's last seconds.
    pub async fn stats(&self, window: u64) -> Result<StatsView, ClientError> {
        self.get(&format!("/v1/stats?window={window}")).await
    }

    /// `GET /v1/queues`: every queue function.
    pub async fn queues(&self) -> Result<Vec<QueueView>, ClientError> {
        self.get("/v1/queues").await
    }

    /// `POST /v1/topics/{topic}/messages`: publishes `body`.
    pub async fn publish(
        &self,
        topic: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<PublishedView, ClientError> {
        let path = format!("/v1/topics/{topic}/messages");
        self.send(Method::POST, &path, Some((body, content_type)), &[])
            .await
    }

    /// `GET /v1/queues/{function}/dead-letters`
    pub async fn dead_letters(&self, function: &str) -> Result<Vec<DeadLetterView>, ClientError> {
        self.get(&format!("/v1/queues/{function}/dead-letters"))
            .await
    }

    /// `POST /v1/queues/{function}/dead-letters/replay[?id=ID]`: one dead
    /// letter back in the queue, or all of them.
    pub async fn replay(
        &self,
        function: &str,
        id: Option<&str>,
    ) -> Result<ReplayedView, ClientError> {
        let path = format!("/v1/queues/{function}/dead-letters/replay{}", id_query(id));
        self.send(Method::POST, &path, None, &[]).await
    }

    /// `DELETE /v1/queues/{function}/dead-letters[?id=ID]`: one dead letter
    /// deleted, or all of them.
    pub async fn purge(&self, function: &str, id: Option<&str>) -> Result<PurgedView, ClientError> {
        let path = format!("/v1/queues/{function}/dead-letters{}", id_query(id));
        self.send(Method::DELETE, &path, None, &[]).await
    }

    /// `POST /v1/functions/{function}/sql/{database}`: one statement,
    /// read-only unless `write`.
    pub async fn sql(
        &self,
        function: &str,
        database: &str,
        sql: &str,
        params: &[Value],
        write: bool,
    ) -> Result<super::sql::QueryView, ClientError> {
        let body = serde_json::json!({ "sql": sql, "params": params, "write": write });
        let path = format!("/v1/functions/{function}/sql/{database}");
        let body = Bytes::from(body.to_string());
        self.send(Method::POST, &path, Some((body, "application/json")), &[])
            .await
    }

    /// Sends a request and returns the JSON answer as it came, or the API's
    /// error.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<(Bytes, &str)>,
    ) -> Result<Value, ClientError> {
        self.call_with(method, path, body, &[]).await
    }

    /// [`call`](Self::call) with extra request headers.
    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        body: Option<(Bytes, &str)>,
        headers: &[(&str, &str)],
    ) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        let uri: Uri = url.parse().map_err(|_| ClientError::Url(url.clone()))?;
        let mut builder = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        if let Some(token) = &self.token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match body {
            Some((bytes, content_type)) => {
                builder = builder.header(header::CONTENT_TYPE, content_type);
                bytes
            }
            None => Bytes::new(),
        };
        let request = builder
            .body(Full::new(body))
            .map_err(|e| ClientError::Url(e.to_string()))?;
        let response =
            self.client
                .request(request)
                .await
                .map_err(|source| ClientError::Connect {
                    url: url.clone(),
                    source,
                })?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Read(e.to_string()))?
            .to_bytes();
        let value: Value =
            serde_json::from_slice(&bytes).map_err(|e| ClientError::Read(e.to_string()))?;
        if status.is_success() {
            return Ok(value);
        }
        let refusal = serde_json::from_value::<ErrorView>(value).ok();
        Err(ClientError::Status {
            status,
            code: refusal.as_ref().and_then(|r| r.error.clone()),
            message: refusal.map_or_else(|| "no message".to_owned(), |r| r.message),
        })
    }

    /// A `GET` answered with a `T`.
    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(Method::GET, path, None, &[]).await
    }

    /// A change without a body, answered with its view.
    async fn change(&self, method: Method, path: &str) -> Result<ChangeView, ClientError> {
        self.send(method, path, None, &[]).await
    }

    /// [`call_with`](Self::call_with), its answer read as a `T`.
    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<(Bytes, &str)>,
        headers: &[(&str, &str)],
    ) -> Result<T, ClientError> {
        let value = self.call_with(method, path, body, headers).await?;
        serde_json::from_value(value).map_err(|e| ClientError::Read(e.to_string()))
    }
}

/// `?id=ID` for one dead letter, nothing for all.
fn id_query(id: Option<&str>) -> String {
    id.map(|id| format!("?id={id}")).unwrap_or_default()
}
