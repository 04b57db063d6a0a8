//! What a handler returns, and how it becomes an HTTP response.

use ::http::StatusCode;
use ::http::header::{CONTENT_TYPE, HeaderValue};
use bytes::Bytes;
use serde::Serialize;

use crate::Error;

/// A complete HTTP response, what every [`IntoResponse`] becomes.
///
/// ```
/// use nimbus_sdk::{IntoResponse, Response};
///
/// let response: Response = "hi".into_response();
/// assert_eq!(response.status(), 200);
/// assert_eq!(response.body().as_ref(), b"hi");
/// ```
pub type Response = ::http::Response<Bytes>;

/// `text/plain; charset=utf-8`, for string bodies.
const TEXT: &str = "text/plain; charset=utf-8";
/// `application/octet-stream`, for byte bodies.
const OCTET_STREAM: &str = "application/octet-stream";
/// `application/json`, for [`Json`] and [`Error`] bodies.
pub(crate) const JSON: &str = "application/json";

/// Anything a handler can return.
///
/// | type | status | `content-type` |
/// |---|---|---|
/// | `()` | 204 | none, empty body |
/// | `&'static str`, `String` | 200 | `text/plain; charset=utf-8` |
/// | `Vec<u8>`, `Bytes`, `&'static [u8]` | 200 | `application/octet-stream` |
/// | [`StatusCode`] | that status | none, empty body |
/// | [`Json<T>`] | 200 | `application/json` |
/// | [`Error`] | its status | `application/json` |
/// | `(StatusCode, T)` | that status | `T`'s |
/// | `http::Response<B>` for the body types above ([`IntoBody`]) | as built | as built (none added) |
/// | `Result<T, E>` | `T`'s or `E`'s | `T`'s or `E`'s |
///
/// ```
/// use nimbus_sdk::{Error, IntoResponse, Json, StatusCode};
///
/// assert_eq!(().into_response().status(), 204);
/// assert_eq!((StatusCode::CREATED, "made").into_response().status(), 201);
/// let json = Json(vec![1, 2]).into_response();
/// assert_eq!(json.headers()["content-type"], "application/json");
/// assert_eq!(json.body().as_ref(), b"[1,2]");
/// let failed: Result<&str, Error> = Err(Error::not_found("no such user"));
/// assert_eq!(failed.into_response().status(), 404);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be sent as an HTTP response",
    label = "this does not implement `IntoResponse`",
    note = "return a `String`, `&'static str`, `Vec<u8>`, `Json<T>`, `StatusCode`, \
            `(StatusCode, T)`, `http::Response<T>`, `()` or a `Result` of those"
)]
pub trait IntoResponse {
    /// Converts `self` into a response.
    ///
    /// ```
    /// use nimbus_sdk::IntoResponse;
    ///
    /// let response = b"\x00\x01".to_vec().into_response();
    /// assert_eq!(response.headers()["content-type"], "application/octet-stream");
    /// ```
    fn into_response(self) -> Response;
}

/// A body type of an `http::Response<B>` that a handler can return.
///
/// ```
/// use nimbus_sdk::IntoBody;
///
/// assert_eq!(String::from("hi").into_body().as_ref(), b"hi");
/// ```
pub trait IntoBody {
    /// The body's bytes.
    ///
    /// ```
    /// use nimbus_sdk::IntoBody;
    ///
    /// assert!(().into_body().is_empty());
    /// ```
    fn into_body(self) -> Bytes;
}

impl IntoBody for () {
    fn into_body(self) -> Bytes {
        Bytes::new()
    }
}

impl IntoBody for &'static str {
    fn into_body(self) -> Bytes {
        Bytes::from_static(self.as_bytes())
    }
}

impl IntoBody for String {
    fn into_body(self) -> Bytes {
        Bytes::from(self)
    }
}

impl IntoBody for &'static [u8] {
    fn into_body(self) -> Bytes {
        Bytes::from_static(self)
    }
}

impl IntoBody for Vec<u8> {
    fn into_body(self) -> Bytes {
        Bytes::from(self)
    }
}

impl IntoBody for Bytes {
    fn into_body(self) -> Bytes {
        self
    }
}

/// A `200` response with `body` and its `content-type`.
fn ok_with_body(body: impl IntoBody, content_type: &'static str) -> Response {
    let mut response = ::http::Response::new(body.into_body());
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

impl IntoResponse for () {
    /// `204 No Content`.
    fn into_response(self) -> Response {
        StatusCode::NO_CONTENT.into_response()
    }
}

impl IntoResponse for &'static str {
    fn into_response(self) -> Response {
        ok_with_body(self, TEXT)
    }
}

impl IntoResponse for String {
    fn into_response(self) -> Response {
        ok_with_body(self, TEXT)
    }
}

impl IntoResponse for &'static [u8] {
    fn into_response(self) -> Response {
        ok_with_body(self, OCTET_STREAM)
    }
}

impl IntoResponse for Vec<u8> {
    fn into_response(self) -> Response {
        ok_with_body(self, OCTET_STREAM)
    }
}

impl IntoResponse for Bytes {
    fn into_response(self) -> Response {
        ok_with_body(self, OCTET_STREAM)
    }
}

impl IntoResponse for StatusCode {
    /// That status with an empty body.
    fn into_response(self) -> Response {
        let mut response = Response::default();
        *response.status_mut() = self;
        response
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    /// `200 application/json`, or a `500` [`Error`] if `T` fails to serialize.
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(body) => ok_with_body(body, JSON),
            Err(err) => {
                Error::internal(format!("the response is not valid JSON: {err}")).into_response()
            }
        }
    }
}

impl<T: IntoResponse> IntoResponse for (StatusCode, T) {
    /// `T`'s response with its status replaced.
    fn into_response(self) -> Response {
        let (status, inner) = self;
        let mut response = inner.into_response();
        *response.status_mut() = status;
        response
    }
}

impl<B: IntoBody> IntoResponse for ::http::Response<B> {
    /// The response exactly as built: no header is added, not even a
    /// `content-type`, so a handler can pass a response through unchanged.
    fn into_response(self) -> Response {
        self.map(IntoBody::into_body)
    }
}

impl<T: IntoResponse, E: IntoResponse> IntoResponse for Result<T, E> {
    fn into_response(self) -> Response {
        match self {
            Ok(ok) => ok.into_response(),
            Err(err) => err.into_response(),
        }
    }
}

/// JSON in either direction: as a response (`200 application/json`) or as a
/// handler's argument (the request body parsed with serde, `400` if it does not
/// parse).
///
/// ```
/// use nimbus_sdk::{IntoResponse, Json};
///
/// #[derive(serde::Serialize)]
/// struct Greeting {
///     text: &'static str,
/// }
///
/// let response = Json(Greeting { text: "hi" }).into_response();
/// assert_eq!(response.body().as_ref(), br#"{"text":"hi"}"#);
/// ```
///
/// As an argument, with `#[http_handler]`:
///
/// ```
/// # fn main() {}
/// use nimbus_sdk::{http_handler, Json};
///
/// #[derive(serde::Deserialize, serde::Serialize)]
/// struct Order {
///     item: String,
///     quantity: u32,
/// }
///
/// #[http_handler]
/// fn echo_order(Json(order): Json<Order>) -> Json<Order> {
///     Json(order)
/// }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Json<T>(pub T);

#[cfg(test)]
mod tests {
    use super::*;

    fn content_type(response: &Response) -> Option<&str> {
        response
            .headers()
            .get(CONTENT_TYPE)
            .map(|value| value.to_str().unwrap())
    }

    #[test]
    fn plain_values_have_status_and_content_type() {
        let unit = ().into_response();
        assert_eq!(unit.status(), 204);
        assert_eq!(content_type(&unit), None);
        assert!(unit.body().is_empty());

        for text in [
            "static".into_response(),
            String::from("owned").into_response(),
        ] {
            assert_eq!(text.status(), 200);
            assert_eq!(content_type(&text), Some(TEXT));
        }
        for bytes in [
            vec![1u8].into_response(),
            Bytes::from_static(b"b").into_response(),
        ] {
            assert_eq!(bytes.status(), 200);
            assert_eq!(content_type(&bytes), Some(OCTET_STREAM));
        }

        let status = StatusCode::ACCEPTED.into_response();
        assert_eq!(status.status(), 202);
        assert!(status.body().is_empty());
    }

    #[test]
    fn json_serializes_or_becomes_a_500() {
        let ok = Json(serde_json::json!({"a": 1})).into_response();
        assert_eq!(ok.status(), 200);
        assert_eq!(content_type(&ok), Some(JSON));
        assert_eq!(ok.body().as_ref(), br#"{"a":1}"#);

        // A map with non-string keys cannot be JSON.
        let bad = std::collections::BTreeMap::from([((1, 2), 3)]);
        let failed = Json(bad).into_response();
        assert_eq!(failed.status(), 500);
        assert_eq!(content_type(&failed), Some(JSON));
    }

    #[test]
    fn tuples_results_and_responses_compose() {
        let created = (StatusCode::CREATED, Json([1])).into_response();
        assert_eq!(created.status(), 201);
        assert_eq!(content_type(&created), Some(JSON));

        let ok: Result<&str, Error> = Ok("fine");
        assert_eq!(ok.into_response().status(), 200);
        let err: Result<&str, StatusCode> = Err(StatusCode::IM_A_TEAPOT);
        assert_eq!(err.into_response().status(), 418);

        let built = ::http::Response::builder()
            .status(StatusCode::FOUND)
            .header("location", "/elsewhere")
            .body("moved")
            .unwrap()
            .into_response();
        assert_eq!(built.status(), 302);
        assert_eq!(built.headers()["location"], "/elsewhere");
        assert_eq!(content_type(&built), None);
        assert_eq!(built.body().as_ref(), b"moved");

        let typed = ::http::Response::builder()
            .header("content-type", "text/html")
            .body(String::from("<p>hi</p>"))
            .unwrap()
            .into_response();
        assert_eq!(content_type(&typed), Some("text/html"));
    }
}
