//! The error a handler answers with: a status and a message, sent as JSON.

use std::borrow::Cow;
use std::fmt;

use ::http::StatusCode;
use ::http::header::{ALLOW, CONTENT_TYPE, HeaderName, HeaderValue};
use bytes::Bytes;
use nimbus_protocol::ErrorBody;

use crate::response::JSON;
use crate::{IntoResponse, Response};

/// An HTTP error response: a status, a snake_case error code and a message.
///
/// It is sent as `application/json` in the same shape as the host's own errors
/// (`nimbus_protocol::ErrorBody`):
///
/// ```json
/// {"status": 404, "error": "not_found", "message": "no user 42", "request_id": "..."}
/// ```
///
/// `request_id` is the current request's id, present when the error is rendered
/// inside a `#[http_handler]`. The code comes from the status (`bad_request`,
/// `not_found`, `internal` for 500, ...) unless set with [`Error::with_code`].
///
/// The SDK's own errors convert into it, so `?` works in a handler that returns
/// `Result<T, nimbus_sdk::Error>`:
///
/// | from | status | `error` |
/// |---|---|---|
/// | [`kv::Error::NoSuchStore`](crate::kv::Error::NoSuchStore) | 404 | `no_such_store` |
/// | [`kv::Error::AccessDenied`](crate::kv::Error::AccessDenied) | 403 | `access_denied` |
/// | [`kv::Error::Other`](crate::kv::Error::Other) | 500 | `internal` |
/// | [`sqlite::Error::AccessDenied`](crate::sqlite::Error::AccessDenied) | 403 | `access_denied` |
/// | [`sqlite::Error::NoSuchDatabase`](crate::sqlite::Error::NoSuchDatabase) | 404 | `no_such_database` |
/// | [`sqlite::Error::DatabaseFull`](crate::sqlite::Error::DatabaseFull) | 507 | `database_full` |
/// | [`sqlite::Error::Sql`](crate::sqlite::Error::Sql) | 500 | `sql_error` |
/// | other [`sqlite::Error`](crate::sqlite::Error)s | 500 | `internal` |
/// | [`postgres::Error::AccessDenied`](crate::postgres::Error::AccessDenied) | 403 | `access_denied` |
/// | [`postgres::Error::ConnectionFailed`](crate::postgres::Error::ConnectionFailed) | 503 | `database_unavailable` |
/// | [`postgres::Error::Db`](crate::postgres::Error::Db), a constraint violation (SQLSTATE class 23) | 409 | `constraint_violation` |
/// | [`postgres::Error::Db`](crate::postgres::Error::Db) otherwise, [`Query`](crate::postgres::Error::Query), [`BadParameter`](crate::postgres::Error::BadParameter) | 500 | `sql_error` |
/// | other [`postgres::Error`](crate::postgres::Error)s | 500 | `internal` |
/// | [`config::Error::Missing`](crate::config::Error::Missing) | 500 | `missing_config` |
/// | other [`config::Error`](crate::config::Error)s | 500 | `internal` |
/// | [`serde_json::Error`] (bad JSON input) | 400 | `bad_request` |
/// | [`http::Error`](crate::http::Error) (an outbound request failed) | 502 | `bad_gateway` |
/// | [`http::Error::InvalidRequest`](crate::http::Error::InvalidRequest) | 500 | `internal` |
/// | `http::Error` of the `http` crate (a builder failed) | 500 | `internal` |
/// | [`queue::Error::PermissionDenied`](crate::queue::Error::PermissionDenied) | 403 | `permission_denied` |
/// | [`queue::Error::Connection`](crate::queue::Error::Connection), [`Timeout`](crate::queue::Error::Timeout) | 502 | `bad_gateway` |
/// | [`queue::Error::Other`](crate::queue::Error::Other) | 500 | `internal` |
///
/// The message of each is the source error's `Display`, so the host's text
/// reaches the caller.
///
/// ```
/// use nimbus_sdk::{Error, IntoResponse};
///
/// let error = Error::not_found("no user 42");
/// assert_eq!(error.status(), 404);
/// assert_eq!(error.code(), "not_found");
///
/// let response = error.into_response();
/// assert_eq!(response.headers()["content-type"], "application/json");
/// let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
/// assert_eq!(body["message"], "no user 42");
/// assert_eq!(body["error"], "not_found");
/// assert_eq!(body["status"], 404);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    status: StatusCode,
    code: Cow<'static, str>,
    message: String,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Error {
    /// An error with any status; its code is derived from the status.
    ///
    /// ```
    /// use nimbus_sdk::{Error, StatusCode};
    ///
    /// let error = Error::new(StatusCode::TOO_MANY_REQUESTS, "slow down");
    /// assert_eq!(error.code(), "too_many_requests");
    /// ```
    pub fn new(status: StatusCode, message: impl Into<String>) -> Error {
        Error {
            status,
            code: Cow::Borrowed(default_code(status)),
            message: message.into(),
            headers: Vec::new(),
        }
    }

    /// `405 method_not_allowed` with the `Allow` header, for a handler that
    /// serves several methods on one path.
    ///
    /// ```
    /// use nimbus_sdk::{Error, IntoResponse};
    ///
    /// let response = Error::method_not_allowed("GET, PUT").into_response();
    /// assert_eq!(response.status(), 405);
    /// assert_eq!(response.headers()["allow"], "GET, PUT");
    /// ```
    pub fn method_not_allowed(allow: &'static str) -> Error {
        Error::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("this path allows {allow}"),
        )
        .with_header(ALLOW, HeaderValue::from_static(allow))
    }

    /// Adds a response header, such as `WWW-Authenticate` on a 401.
    ///
    /// ```
    /// use nimbus_sdk::{Error, IntoResponse};
    /// use nimbus_sdk::http::header::{HeaderValue, WWW_AUTHENTICATE};
    ///
    /// let response = Error::unauthorized("log in first")
    ///     .with_header(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
    ///     .into_response();
    /// assert_eq!(response.headers()["www-authenticate"], "Bearer");
    /// ```
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Error {
        self.headers.push((name, value));
        self
    }

    /// `400 bad_request`: the request is malformed.
    ///
    /// ```
    /// assert_eq!(nimbus_sdk::Error::bad_request("no name").status(), 400);
    /// ```
    pub fn bad_request(message: impl Into<String>) -> Error {
        Error::new(StatusCode::BAD_REQUEST, message)
    }

    /// `401 unauthorized`: the caller is not authenticated.
    ///
    /// ```
    /// assert_eq!(nimbus_sdk::Error::unauthorized("log in").status(), 401);
    /// ```
    pub fn unauthorized(message: impl Into<String>) -> Error {
        Error::new(StatusCode::UNAUTHORIZED, message)
    }

    /// `403 forbidden`: the caller may not do this.
    ///
    /// ```
    /// assert_eq!(nimbus_sdk::Error::forbidden("admins only").status(), 403);
    /// ```
    pub fn forbidden(message: impl Into<String>) -> Error {
        Error::new(StatusCode::FORBIDDEN, message)
    }

    /// `404 not_found`: the thing asked for does not exist.
    ///
    /// ```
    /// assert_eq!(nimbus_sdk::Error::not_found("no user 42").code(), "not_found");
    /// ```
    pub fn not_found(message: impl Into<String>) -> Error {
        Error::new(StatusCode::NOT_FOUND, message)
    }

    /// `409 conflict`: the request conflicts with the current state.
    ///
    /// ```
    /// assert_eq!(nimbus_sdk::Error::conflict("name taken").status(), 409);
    /// ```
    pub fn conflict(message: impl Into<String>) -> Error {
        Error::new(StatusCode::CONFLICT, message)
    }

    /// `500 internal`: the function failed.
    ///
    /// ```
    /// assert_eq!(nimbus_sdk::Error::internal("oops").code(), "internal");
    /// ```
    pub fn internal(message: impl Into<String>) -> Error {
        Error::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// `502 bad_gateway`: a service or upstream this function called failed.
    ///
    /// ```
    /// assert_eq!(nimbus_sdk::Error::bad_gateway("catalog is down").status(), 502);
    /// ```
    pub fn bad_gateway(message: impl Into<String>) -> Error {
        Error::new(StatusCode::BAD_GATEWAY, message)
    }

    /// Replaces the error code, a stable snake_case name callers can match on.
    ///
    /// ```
    /// use nimbus_sdk::Error;
    ///
    /// let error = Error::conflict("sold out").with_code("out_of_stock");
    /// assert_eq!(error.code(), "out_of_stock");
    /// ```
    pub fn with_code(mut self, code: impl Into<Cow<'static, str>>) -> Error {
        self.code = code.into();
        self
    }

    /// The HTTP status.
    ///
    /// ```
    /// assert_eq!(nimbus_sdk::Error::forbidden("no").status(), nimbus_sdk::StatusCode::FORBIDDEN);
    /// ```
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The error code, e.g. `not_found`.
    ///
    /// ```
    /// assert_eq!(nimbus_sdk::Error::bad_request("x").code(), "bad_request");
    /// ```
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The message for the caller.
    ///
    /// ```
    /// assert_eq!(nimbus_sdk::Error::bad_request("no name").message(), "no name");
    /// ```
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// The code for a status: snake_case of its reason phrase (`404` is `not_found`),
/// except `500`, which is plain `internal`.
fn default_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        409 => "conflict",
        410 => "gone",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        422 => "unprocessable_entity",
        429 => "too_many_requests",
        500 => "internal",
        501 => "not_implemented",
        502 => "bad_gateway",
        503 => "service_unavailable",
        504 => "gateway_timeout",
        _ if status.is_client_error() => "client_error",
        _ => "error",
    }
}

impl fmt::Display for Error {
    /// `404 not_found: no user 42`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for Error {}

impl IntoResponse for Error {
    /// The status, with the JSON body described on [`Error`].
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: Cow::Borrowed(&self.code),
            message: Cow::Borrowed(&self.message),
            request_id: crate::runtime::current_request_id().map(Cow::Owned),
            status: self.status.as_u16(),
        };
        let mut text = serde_json::to_vec(&body).expect("an error body serializes");
        text.push(b'\n');
        let mut response = Response::new(Bytes::from(text));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(JSON));
        for (name, value) in self.headers {
            headers.append(name, value);
        }
        response
    }
}

impl From<crate::kv::Error> for Error {
    fn from(err: crate::kv::Error) -> Error {
        use crate::kv::Error as Kv;
        let (status, code) = match &err {
            Kv::NoSuchStore => (StatusCode::NOT_FOUND, "no_such_store"),
            Kv::AccessDenied => (StatusCode::FORBIDDEN, "access_denied"),
            Kv::Other(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        Error::new(status, err.to_string()).with_code(code)
    }
}

impl From<crate::sqlite::Error> for Error {
    fn from(err: crate::sqlite::Error) -> Error {
        use crate::sqlite::Error as Sql;
        let (status, code) = match &err {
            Sql::AccessDenied => (StatusCode::FORBIDDEN, "access_denied"),
            Sql::NoSuchDatabase => (StatusCode::NOT_FOUND, "no_such_database"),
            Sql::DatabaseFull => (StatusCode::INSUFFICIENT_STORAGE, "database_full"),
            Sql::Sql(_) => (StatusCode::INTERNAL_SERVER_ERROR, "sql_error"),
            Sql::InvalidConnection | Sql::Column(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        };
        Error::new(status, err.to_string()).with_code(code)
    }
}

impl From<crate::postgres::Error> for Error {
    fn from(err: crate::postgres::Error) -> Error {
        use crate::postgres::Error as Pg;
        let (status, code) = match &err {
            Pg::AccessDenied(_) => (StatusCode::FORBIDDEN, "access_denied"),
            Pg::ConnectionFailed(_) => (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable"),
            Pg::Db(db) if db.is_constraint_violation() => {
                (StatusCode::CONFLICT, "constraint_violation")
            }
            Pg::Db(_) | Pg::Query(_) | Pg::BadParameter(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "sql_error")
            }
            Pg::ValueConversion(_) | Pg::Column(_) | Pg::Other(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        };
        Error::new(status, err.to_string()).with_code(code)
    }
}

impl From<crate::config::Error> for Error {
    fn from(err: crate::config::Error) -> Error {
        let code = match &err {
            crate::config::Error::Missing(_) => "missing_config",
            _ => "internal",
        };
        Error::internal(err.to_string()).with_code(code)
    }
}

impl From<serde_json::Error> for Error {
    /// Bad JSON input is the caller's fault: `400`.
    fn from(err: serde_json::Error) -> Error {
        Error::bad_request(format!("invalid JSON: {err}"))
    }
}

impl From<crate::http::Error> for Error {
    fn from(err: crate::http::Error) -> Error {
        match &err {
            crate::http::Error::InvalidRequest(_) => Error::internal(err.to_string()),
            _ => Error::bad_gateway(err.to_string()),
        }
    }
}

impl From<crate::queue::Error> for Error {
    /// Publishing to a topic the manifest does not grant is the function's
    /// `403`; a broker that fails is a `502`, like an upstream.
    fn from(err: crate::queue::Error) -> Error {
        use crate::queue::Error as Queue;
        match &err {
            Queue::PermissionDenied(_) => {
                Error::forbidden(err.to_string()).with_code("permission_denied")
            }
            Queue::Connection(_) | Queue::Timeout => Error::bad_gateway(err.to_string()),
            Queue::Other(_) => Error::internal(err.to_string()),
        }
    }
}

impl From<::http::Error> for Error {
    /// A request or response the handler built is invalid: `500`.
    fn from(err: ::http::Error) -> Error {
        Error::internal(err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_status() {
        assert_eq!(Error::bad_request("m").code(), "bad_request");
        assert_eq!(Error::unauthorized("m").code(), "unauthorized");
        assert_eq!(Error::forbidden("m").code(), "forbidden");
        assert_eq!(Error::not_found("m").code(), "not_found");
        assert_eq!(Error::conflict("m").code(), "conflict");
        assert_eq!(Error::internal("m").code(), "internal");
        assert_eq!(
            Error::new(StatusCode::PAYLOAD_TOO_LARGE, "m").code(),
            "payload_too_large"
        );
        assert_eq!(
            Error::new(StatusCode::IM_A_TEAPOT, "m").code(),
            "client_error"
        );
    }

    #[test]
    fn renders_json_like_the_host() {
        let response = Error::conflict("taken").into_response();
        assert_eq!(response.status(), 409);
        assert_eq!(response.headers()[CONTENT_TYPE], JSON);
        let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"status": 409, "error": "conflict", "message": "taken"})
        );
    }

    #[test]
    fn renders_the_bytes_the_host_renders() {
        let error = Error::not_found("no \"user\" café\n");
        let expected = serde_json::json!({
            "status": 404,
            "error": "not_found",
            "message": "no \"user\" café\n",
        });
        let response = error.into_response();
        assert_eq!(response.body().as_ref(), format!("{expected}\n").as_bytes());
    }

    #[test]
    fn sdk_errors_convert_with_their_status() {
        let denied = Error::from(crate::kv::Error::AccessDenied);
        assert_eq!(
            (denied.status().as_u16(), denied.code()),
            (403, "access_denied")
        );
        let missing = Error::from(crate::kv::Error::NoSuchStore);
        assert_eq!(
            (missing.status().as_u16(), missing.code()),
            (404, "no_such_store")
        );
        let other = Error::from(crate::kv::Error::Other("too large: 2 MiB".into()));
        assert_eq!(other.status(), 500);
        assert!(other.message().contains("too large: 2 MiB"));

        let config = Error::from(crate::config::Error::Missing("api_url".into()));
        assert_eq!(
            (config.status().as_u16(), config.code()),
            (500, "missing_config")
        );
        assert!(config.message().contains("api_url"));

        let json = Error::from(serde_json::from_str::<u8>("x").unwrap_err());
        assert_eq!(json.status(), 400);

        let denied = Error::from(crate::http::Error::Code("HttpRequestDenied".into()));
        assert_eq!(denied.status(), 502);
        assert!(denied.message().contains("HttpRequestDenied"));
    }
}
