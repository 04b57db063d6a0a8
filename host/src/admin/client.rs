//! A client for the admin API, used by the operator commands of the CLI
//! (`nimbus publish`, `queues`, `dead-letters`, `deploy`, `ls`, `rollback`,
//! `canary`, `rm`).

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

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

    /// Sends a request and returns the JSON answer, or the API's error.
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
            Ok(value)
        } else {
            Err(ClientError::Status {
                status,
                message: value["message"].as_str().unwrap_or("no message").to_owned(),
            })
        }
    }
}
