//! The JSON body of an error response.

use alloc::borrow::Cow;
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer, Serialize};

/// The body of every error response, from the host and from handlers using
/// the SDK alike, sent as `application/json` and followed by a newline:
///
/// ```json
/// {"error":"not_found","message":"no user 42","request_id":"r-1","status":404}
/// ```
///
/// The fields are declared in alphabetical order, so the bytes are the same
/// as those of a `serde_json::json!` map (which sorts its keys), the way the
/// host built the body before this crate existed.
///
/// Reading is lenient, because a function reads error bodies from servers
/// that are not Nimbus too: only `error` and `message` must be strings. A
/// `status` or `request_id` that is missing or of another type reads as `0`
/// or `None`; the response's status line is what counts.
///
/// ```
/// use nimbus_protocol::ErrorBody;
///
/// let body: ErrorBody = serde_json::from_str(r#"{"error":"teapot","message":"no"}"#).unwrap();
/// assert_eq!((body.status, body.request_id), (0, None));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody<'a> {
    /// A stable snake_case code callers can match on, e.g. `not_found`.
    #[serde(borrow)]
    pub error: Cow<'a, str>,
    /// What went wrong, for a person to read.
    #[serde(borrow)]
    pub message: Cow<'a, str>,
    /// The request's id (the `x-request-id` header), when known; left out of
    /// the body when `None`.
    #[serde(
        borrow,
        default,
        deserialize_with = "text_or_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub request_id: Option<Cow<'a, str>>,
    /// The HTTP status, repeated from the status line.
    #[serde(default, deserialize_with = "status_or_zero")]
    pub status: u16,
}

/// A string, or `None` for anything else (`null`, a number, ...).
fn text_or_none<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'a, str>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text<'a> {
        Text(#[serde(borrow)] Cow<'a, str>),
        Other(IgnoredAny),
    }
    Ok(match Text::deserialize(d)? {
        Text::Text(text) => Some(text),
        Text::Other(_) => None,
    })
}

/// A status code, or `0` for anything else.
fn status_or_zero<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Status {
        Code(u16),
        Other(IgnoredAny),
    }
    Ok(match Status::deserialize(d)? {
        Status::Code(code) => code,
        Status::Other(_) => 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn body<'a>(message: &'a str, request_id: Option<&'a str>) -> ErrorBody<'a> {
        ErrorBody {
            error: "not_found".into(),
            message: message.into(),
            request_id: request_id.map(Cow::Borrowed),
            status: 404,
        }
    }

    /// The bytes the host wrote with `serde_json::json!`, whose map sorts keys.
    #[test]
    fn bytes_match_a_sorted_json_map() {
        for message in [
            "no user 42",
            "quote \" and \\ and\nnewline",
            "café ☕ \u{1}",
        ] {
            let with_id = serde_json::json!({
                "status": 404,
                "error": "not_found",
                "message": message,
                "request_id": "r-1",
            });
            assert_eq!(
                serde_json::to_string(&body(message, Some("r-1"))).unwrap(),
                with_id.to_string()
            );
            let without_id = serde_json::json!({
                "status": 404,
                "error": "not_found",
                "message": message,
            });
            assert_eq!(
                serde_json::to_string(&body(message, None)).unwrap(),
                without_id.to_string()
            );
        }
    }

    #[test]
    fn round_trips_borrowing_what_it_can() {
        let text = serde_json::to_string(&body("two\nlines", Some("r-1"))).unwrap();
        let read: ErrorBody = serde_json::from_str(&text).unwrap();
        assert_eq!(read, body("two\nlines", Some("r-1")));
        // An escape cannot be borrowed from the input; plain text can.
        assert!(matches!(read.message, Cow::Owned(_)));
        assert!(matches!(read.error, Cow::Borrowed(_)));
    }

    #[test]
    fn reads_other_servers_errors_leniently() {
        fn read(json: &str) -> Result<ErrorBody<'_>, alloc::string::String> {
            serde_json::from_str(json).map_err(|e| e.to_string())
        }
        let minimal = read(r#"{"error":"e","message":"m"}"#).unwrap();
        assert_eq!((minimal.status, minimal.request_id), (0, None));
        let odd =
            read(r#"{"error":"e","message":"m","status":"404","request_id":7,"x":[1]}"#).unwrap();
        assert_eq!((odd.status, odd.request_id), (0, None));
        let null = read(r#"{"error":"e","message":"m","status":70000,"request_id":null}"#).unwrap();
        assert_eq!((null.status, null.request_id), (0, None));
        assert!(read(r#"{"error":"e"}"#).is_err());
        assert!(read(r#"{"error":1,"message":"m"}"#).is_err());
    }
}
