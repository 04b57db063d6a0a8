//! Every failure an HTTP caller can see, mapped to one status code in one
//! place, with a short JSON body that names the problem and the request id.
//! Internals (traps, paths, backtraces) go to the host log, never the caller.

use crate::executor::InvocationError;
use crate::gateway::{CorsError, TokenError};
use crate::manifest::format_bytes;
use crate::wire::{Body, ErrorBody, full};
use http::{HeaderValue, Method, Response, StatusCode, header};
use std::time::Duration;

/// Seconds a 503 tells the caller to wait before trying again.
const RETRY_AFTER_SECS: u32 = 1;

/// A request the gateway answers itself.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// No route matches the path.
    #[error("no route matches {method} {path}")]
    NotFound {
        /// Request method.
        method: Method,
        /// Request path.
        path: String,
    },
    /// A route matches the path but not the method.
    #[error("{method} is not allowed here; allowed: {}", allow_list(allow))]
    MethodNotAllowed {
        /// Request method.
        method: Method,
        /// Methods that would match.
        allow: Vec<Method>,
    },
    /// The body is over the function's `max_body`.
    #[error("the request body is larger than the limit of {}", format_bytes(*limit))]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The request is malformed.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// No valid bearer token for a route that needs one.
    #[error("authentication required: {reason}")]
    Unauthorized {
        /// What is wrong with the token.
        reason: TokenError,
        /// The app's name, for `WWW-Authenticate`.
        realm: String,
    },
    /// A valid token without a scope or role the route requires.
    #[error("the token lacks {missing}")]
    Forbidden {
        /// What is missing (`scope orders:write`, `role admin`).
        missing: String,
        /// The app's name, for `WWW-Authenticate`.
        realm: String,
        /// The route's required scopes, for `WWW-Authenticate`.
        scopes: Vec<String>,
    },
    /// The identity provider's keys could not be fetched.
    #[error("the identity provider's keys are unavailable; try again")]
    AuthUnavailable,
    /// Over the route's rate limit.
    #[error("rate limit exceeded; retry in {} s", retry_after_secs(*retry_after))]
    TooManyRequests {
        /// How long until a request would be allowed.
        retry_after: Duration,
    },
    /// A fault of the host itself; the details go to the log.
    #[error("internal error: {0}")]
    Internal(String),
    /// A CORS preflight that the function's rules refuse.
    #[error("cross-origin request refused: {0}")]
    CorsRejected(CorsError),
    /// The function could not produce a response.
    #[error("function `{function}` {error}")]
    Invocation {
        /// The function's id.
        function: String,
        /// What went wrong.
        error: InvocationError,
    },
}

fn allow_list(allow: &[Method]) -> String {
    allow
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

impl HttpError {
    /// The status code for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            HttpError::NotFound { .. } => StatusCode::NOT_FOUND,
            HttpError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            HttpError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            HttpError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HttpError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            HttpError::Forbidden { .. } | HttpError::CorsRejected(_) => StatusCode::FORBIDDEN,
            HttpError::AuthUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            HttpError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            HttpError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            HttpError::Invocation { error, .. } => match error {
                InvocationError::Overloaded { .. } | InvocationError::PoolExhausted => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                InvocationError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
                InvocationError::NoHttpHandler => StatusCode::NOT_FOUND,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }

    /// A stable machine-readable name for the error.
    pub fn code(&self) -> &'static str {
        match self {
            HttpError::NotFound { .. } => "not_found",
            HttpError::MethodNotAllowed { .. } => "method_not_allowed",
            HttpError::PayloadTooLarge { .. } => "payload_too_large",
            HttpError::BadRequest(_) => "bad_request",
            HttpError::Unauthorized { .. } => "unauthorized",
            HttpError::Forbidden { .. } => "forbidden",
            HttpError::AuthUnavailable => "auth_unavailable",
            HttpError::Internal(_) => "internal",
            HttpError::TooManyRequests { .. } => "rate_limited",
            HttpError::CorsRejected(_) => "cors_rejected",
            HttpError::Invocation { error, .. } => error.kind(),
        }
    }

    /// What the caller is told: enough to act on, nothing internal.
    fn public_message(&self) -> String {
        match self {
            HttpError::Invocation { function, error } => {
                let what = match error {
                    InvocationError::Trap { trap, .. } => format!("crashed ({trap})"),
                    InvocationError::GuestError(_) => "reported an error".into(),
                    InvocationError::Failed(_) => "failed".into(),
                    other => other.to_string(),
                };
                format!("function `{function}` {what}")
            }
            HttpError::Internal(_) => "internal error; the host log has the details".into(),
            other => other.to_string(),
        }
    }

    /// The response for this error.
    pub fn into_response(self, request_id: &str) -> Response<Body> {
        let status = self.status();
        let body = ErrorBody {
            error: self.code().into(),
            message: self.public_message().into(),
            request_id: Some(request_id.into()),
            status: status.as_u16(),
        };
        let mut text = serde_json::to_string(&body).expect("an error body serializes");
        text.push('\n');
        let mut response = Response::new(full(text));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        match &self {
            HttpError::MethodNotAllowed { allow, .. } => {
                if let Ok(v) = HeaderValue::from_str(&allow_list(allow)) {
                    headers.insert(header::ALLOW, v);
                }
            }
            HttpError::Unauthorized { reason, realm } => {
                let challenge = format!(
                    "Bearer realm=\"{}\", error=\"invalid_token\", error_description=\"{}\"",
                    quote_safe(realm),
                    quote_safe(&reason.to_string())
                );
                if let Ok(v) = HeaderValue::from_str(&challenge) {
                    headers.insert(header::WWW_AUTHENTICATE, v);
                }
            }
            HttpError::Forbidden { realm, scopes, .. } => {
                let mut challenge = format!(
                    "Bearer realm=\"{}\", error=\"insufficient_scope\"",
                    quote_safe(realm)
                );
                if !scopes.is_empty() {
                    challenge.push_str(&format!(", scope=\"{}\"", quote_safe(&scopes.join(" "))));
                }
                if let Ok(v) = HeaderValue::from_str(&challenge) {
                    headers.insert(header::WWW_AUTHENTICATE, v);
                }
            }
            HttpError::CorsRejected(_) => {
                // The refusal depends on the origin: caches must key on it.
                headers.insert(header::VARY, HeaderValue::from_static("Origin"));
            }
            HttpError::TooManyRequests { retry_after } => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after_secs(*retry_after)),
                );
            }
            _ if status == StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            }
            _ => {}
        }
        response
    }
}

/// Whole seconds for `Retry-After`, rounded up: a client that waits that
/// long is let through.
fn retry_after_secs(d: Duration) -> u64 {
    d.as_nanos().div_ceil(1_000_000_000).max(1) as u64
}

/// Longest text put in a quoted-string of an auth challenge; a token's
/// `kid` or `alg` echoed back is cut there.
const MAX_CHALLENGE_TEXT: usize = 100;

/// Text safe inside a quoted-string of an auth challenge: printable ASCII
/// without quotes or backslashes, so the header is always valid.
fn quote_safe(s: &str) -> String {
    s.chars()
        .filter(|c| matches!(c, ' '..='~') && *c != '"' && *c != '\\')
        .take(MAX_CHALLENGE_TEXT)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::{CorsError, TokenError};
    use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;

    /// One of every invocation failure. The match has no wildcard, so a new
    /// kind does not compile until it is listed here, and so in the README.
    fn every_invocation_error() -> Vec<InvocationError> {
        let all = vec![
            InvocationError::Overloaded {
                concurrency: 1,
                waited: Duration::from_secs(1),
            },
            InvocationError::PoolExhausted,
            InvocationError::Timeout {
                limit: Duration::from_secs(1),
            },
            InvocationError::MemoryExceeded { limit: 1 },
            InvocationError::Trap {
                trap: wasmtime::Trap::UnreachableCodeReached,
                detail: String::new(),
            },
            InvocationError::NoResponse,
            InvocationError::GuestError(ErrorCode::InternalError(None).into()),
            InvocationError::Rejected(String::new()),
            InvocationError::NoHttpHandler,
            InvocationError::Failed(String::new()),
        ];
        for e in &all {
            match e {
                InvocationError::Overloaded { .. }
                | InvocationError::PoolExhausted
                | InvocationError::Timeout { .. }
                | InvocationError::MemoryExceeded { .. }
                | InvocationError::Trap { .. }
                | InvocationError::NoResponse
                | InvocationError::GuestError(_)
                | InvocationError::Rejected(_)
                | InvocationError::NoHttpHandler
                | InvocationError::Failed(_) => {}
            }
        }
        all
    }

    /// One of every error an HTTP caller can receive, listed the same way.
    fn every_error() -> Vec<HttpError> {
        let realm = String::from("app");
        let mut all = vec![
            HttpError::NotFound {
                method: Method::GET,
                path: "/".into(),
            },
            HttpError::MethodNotAllowed {
                method: Method::GET,
                allow: vec![Method::POST],
            },
            HttpError::PayloadTooLarge { limit: 1 },
            HttpError::BadRequest(String::new()),
            HttpError::Unauthorized {
                reason: TokenError::Missing,
                realm: realm.clone(),
            },
            HttpError::Forbidden {
                missing: String::new(),
                realm,
                scopes: Vec::new(),
            },
            HttpError::AuthUnavailable,
            HttpError::TooManyRequests {
                retry_after: Duration::from_secs(1),
            },
            HttpError::Internal(String::new()),
            HttpError::CorsRejected(CorsError::Origin(String::new())),
        ];
        for e in &all {
            match e {
                HttpError::NotFound { .. }
                | HttpError::MethodNotAllowed { .. }
                | HttpError::PayloadTooLarge { .. }
                | HttpError::BadRequest(_)
                | HttpError::Unauthorized { .. }
                | HttpError::Forbidden { .. }
                | HttpError::AuthUnavailable
                | HttpError::TooManyRequests { .. }
                | HttpError::Internal(_)
                | HttpError::CorsRejected(_)
                | HttpError::Invocation { .. } => {}
            }
        }
        all.extend(
            every_invocation_error()
                .into_iter()
                .map(|error| HttpError::Invocation {
                    function: "f".into(),
                    error,
                }),
        );
        all
    }

    #[test]
    fn every_error_a_caller_can_receive_is_in_the_readme() {
        crate::wire::assert_documented(
            "| what happened | status | `error` |",
            every_error()
                .iter()
                .map(|e| (e.status().as_u16(), e.code(), e.to_string())),
        );
    }
}
