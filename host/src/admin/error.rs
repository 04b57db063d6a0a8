//! Every refusal of the admin API, mapped to one status code in one place,
//! with the body `{"status": N, "error": "code", "message": "..."}`.

use super::MAX_COMPONENT_SIZE;
use super::view::ErrorView;
use crate::backend::BackendError;
use crate::deploy::{DeployError, MANIFEST_HEADER};
use crate::manifest::format_bytes;
use crate::wire::Body;
use http::{HeaderValue, Method, Response, StatusCode, header};

/// Why the admin API refused a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// No token, or not the admin token.
    #[error("a valid admin token is required")]
    Unauthorized,
    /// No endpoint has this method and path.
    #[error("no admin endpoint {method} {path}")]
    NoEndpoint {
        /// Request method.
        method: Method,
        /// Request path.
        path: String,
    },
    /// A queue endpoint names a function the app does not have.
    #[error("no function `{0}`")]
    NoFunction(String),
    /// A queue endpoint names a function without a queue trigger.
    #[error("function `{0}` has no queue trigger")]
    NoQueueTrigger(String),
    /// The topic to publish to is not a valid topic; the message says why.
    #[error("{0}")]
    InvalidTopic(String),
    /// The message to publish could not be read whole (over
    /// [`MAX_PUBLISH_BODY`](super::MAX_PUBLISH_BODY), or cut off).
    #[error("reading the message: {0}")]
    Message(String),
    /// The uploaded component is over [`MAX_COMPONENT_SIZE`].
    #[error(
        "the component is larger than the limit of {}",
        format_bytes(MAX_COMPONENT_SIZE as u64)
    )]
    ComponentTooLarge,
    /// The uploaded component could not be read.
    #[error("reading the component: {0}")]
    Component(String),
    /// The new function's manifest entry header is not text.
    #[error("the `{MANIFEST_HEADER}` header is not UTF-8")]
    ManifestHeader,
    /// A canary upload without `?percent=N`.
    #[error("say how much traffic the canary takes: ?percent=N (0 to 100)")]
    NoPercent,
    /// `GET /v1/stats?window=` is not a number of seconds it keeps.
    #[error("`window` must be a whole number of seconds from 1 to {max}, not `{given}`")]
    InvalidWindow {
        /// What the query said.
        given: String,
        /// The most seconds kept.
        max: u64,
    },
    /// The deployer refused the change.
    #[error(transparent)]
    Deploy(#[from] DeployError),
    /// The queue backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// `nimbus sql` names a database the function does not list.
    #[error(
        "function `{function}` has no database `{database}`: its `sqlite` lists {sqlite}, its `postgres` grants {postgres}"
    )]
    NoDatabase {
        /// The function.
        function: String,
        /// The database asked for.
        database: String,
        /// Its SQLite databases, for the message.
        sqlite: String,
        /// Its PostgreSQL grants, for the message.
        postgres: String,
    },
    /// The SQL request is not `{"sql": ..., "params": [...], "write": bool}`.
    #[error("{0}")]
    InvalidQuery(String),
    /// A statement that writes, sent without `write`.
    #[error(
        "the statement writes to the database; run it with `nimbus sql --write` (`\"write\": true`) if that is meant"
    )]
    NotReadOnly,
    /// The statement failed; SQLite's or the host's message.
    #[error("{0}")]
    Sql(String),
    /// The PostgreSQL database cannot be reached now: it is down, refused
    /// the grant's credentials, or every pooled connection is in use.
    #[error("{0}")]
    DatabaseUnavailable(String),
    /// The blocking task that ran a deployment operation failed.
    #[error("the deployment task failed: {0}")]
    Task(String),
}

impl AdminError {
    /// The status code for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            AdminError::Unauthorized => StatusCode::UNAUTHORIZED,
            AdminError::NoEndpoint { .. }
            | AdminError::NoFunction(_)
            | AdminError::NoQueueTrigger(_)
            | AdminError::NoDatabase { .. } => StatusCode::NOT_FOUND,
            AdminError::InvalidTopic(_)
            | AdminError::Component(_)
            | AdminError::ManifestHeader
            | AdminError::NoPercent
            | AdminError::InvalidWindow { .. }
            | AdminError::InvalidQuery(_)
            | AdminError::Sql(_) => StatusCode::BAD_REQUEST,
            AdminError::NotReadOnly => StatusCode::FORBIDDEN,
            AdminError::DatabaseUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AdminError::Message(_) | AdminError::ComponentTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            AdminError::Deploy(e) => e.status(),
            AdminError::Backend(_) | AdminError::Task(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A stable machine-readable name for the error.
    pub fn code(&self) -> &'static str {
        match self {
            AdminError::Unauthorized => "unauthorized",
            AdminError::NoEndpoint { .. } => "not_found",
            AdminError::NoFunction(_) => "unknown_function",
            AdminError::NoQueueTrigger(_) => "no_queue_trigger",
            AdminError::InvalidTopic(_) => "invalid_topic",
            AdminError::Message(_) | AdminError::ComponentTooLarge => "payload_too_large",
            AdminError::Component(_) => "bad_request",
            AdminError::ManifestHeader => "invalid_manifest_header",
            AdminError::NoPercent => "missing_percent",
            AdminError::InvalidWindow { .. } => "invalid_window",
            AdminError::NoDatabase { .. } => "unknown_database",
            AdminError::InvalidQuery(_) => "invalid_query",
            AdminError::NotReadOnly => "not_read_only",
            AdminError::Sql(_) => "sql_error",
            AdminError::DatabaseUnavailable(_) => "database_unavailable",
            AdminError::Deploy(e) => e.code(),
            AdminError::Backend(_) => "backend",
            AdminError::Task(_) => "internal",
        }
    }

    /// The response for this error.
    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        let body = ErrorView {
            status: status.as_u16(),
            error: Some(self.code().to_owned()),
            message: self.to_string(),
        };
        let mut response = super::json(status, &body);
        if let AdminError::Unauthorized = self {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::store::StoreError;

    /// One of every refusal of the admin API. The matches have no wildcard,
    /// so a new kind does not compile until it is listed here, and so in the
    /// README.
    fn every_refusal() -> Vec<AdminError> {
        let f = || String::from("f");
        let deploy = vec![
            DeployError::UnknownFunction(f()),
            DeployError::Exists(f()),
            DeployError::Manifest {
                function: f(),
                message: f(),
            },
            DeployError::Removed(f()),
            DeployError::Rejected(crate::app::LoadError::NoQueueHandler {
                function: crate::manifest::FunctionId::parse("f").unwrap(),
                path: "f.wasm".into(),
            }),
            DeployError::NoHistory(f()),
            DeployError::CanaryRunning {
                function: f(),
                digest: f(),
            },
            DeployError::NoCanary(f()),
            DeployError::CanaryIsStable {
                function: f(),
                digest: f(),
            },
            DeployError::Percent(f()),
            DeployError::QueueFunction {
                function: f(),
                topic: f(),
            },
            DeployError::Unavailable {
                function: f(),
                digest: f(),
                message: f(),
            },
            DeployError::Store(StoreError {
                path: "f".into(),
                message: f(),
            }),
            DeployError::Conflict(f()),
            DeployError::Shared(BackendError::Storage(f())),
        ];
        for e in &deploy {
            match e {
                DeployError::UnknownFunction(_)
                | DeployError::Exists(_)
                | DeployError::Manifest { .. }
                | DeployError::Removed(_)
                | DeployError::Rejected(_)
                | DeployError::NoHistory(_)
                | DeployError::CanaryRunning { .. }
                | DeployError::NoCanary(_)
                | DeployError::CanaryIsStable { .. }
                | DeployError::Percent(_)
                | DeployError::QueueFunction { .. }
                | DeployError::Unavailable { .. }
                | DeployError::Store(_)
                | DeployError::Conflict(_)
                | DeployError::Shared(_) => {}
            }
        }
        let mut all = vec![
            AdminError::Unauthorized,
            AdminError::NoEndpoint {
                method: Method::GET,
                path: f(),
            },
            AdminError::NoFunction(f()),
            AdminError::NoQueueTrigger(f()),
            AdminError::InvalidTopic(f()),
            AdminError::Message(f()),
            AdminError::ComponentTooLarge,
            AdminError::Component(f()),
            AdminError::ManifestHeader,
            AdminError::NoPercent,
            AdminError::InvalidWindow {
                given: f(),
                max: 300,
            },
            AdminError::NoDatabase {
                function: f(),
                database: f(),
                sqlite: f(),
                postgres: f(),
            },
            AdminError::InvalidQuery(f()),
            AdminError::NotReadOnly,
            AdminError::Sql(f()),
            AdminError::DatabaseUnavailable(f()),
            AdminError::Backend(BackendError::Storage(f())),
            AdminError::Task(f()),
        ];
        for e in &all {
            match e {
                AdminError::Unauthorized
                | AdminError::NoEndpoint { .. }
                | AdminError::NoFunction(_)
                | AdminError::NoQueueTrigger(_)
                | AdminError::InvalidTopic(_)
                | AdminError::Message(_)
                | AdminError::ComponentTooLarge
                | AdminError::Component(_)
                | AdminError::ManifestHeader
                | AdminError::NoPercent
                | AdminError::InvalidWindow { .. }
                | AdminError::NoDatabase { .. }
                | AdminError::InvalidQuery(_)
                | AdminError::NotReadOnly
                | AdminError::Sql(_)
                | AdminError::DatabaseUnavailable(_)
                | AdminError::Deploy(_)
                | AdminError::Backend(_)
                | AdminError::Task(_) => {}
            }
        }
        all.extend(deploy.into_iter().map(AdminError::Deploy));
        all
    }

    #[test]
    fn every_refusal_is_in_the_readme() {
        crate::wire::assert_documented(
            "| refusal | status | `error` |",
            every_refusal()
                .iter()
                .map(|e| (e.status().as_u16(), e.code(), e.to_string())),
        );
    }

    #[test]
    fn a_refusal_of_the_deployer_keeps_its_status_and_code() {
        let e = AdminError::from(DeployError::NoHistory("hello".into()));
        assert_eq!(e.status(), StatusCode::CONFLICT);
        assert_eq!(e.code(), "no_history");
        assert_eq!(
            e.to_string(),
            "function `hello` has no earlier version to roll back to"
        );
    }

    #[test]
    fn the_component_limit_is_named_in_its_unit() {
        let e = AdminError::ComponentTooLarge;
        assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            e.to_string(),
            "the component is larger than the limit of 128 MiB"
        );
    }
}
