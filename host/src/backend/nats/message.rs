//! A queue message as a NATS message: the payload is the body, the
//! publisher's headers are NATS headers, and what Nimbus needs to know
//! besides (id, topic, attempts, the last error) travels in headers of its
//! own, which publishers may not set.

use super::fail;
use crate::backend::{BackendError, DeadLetter, Delivery, QueueMessage};
use async_nats::HeaderMap;
use async_nats::jetstream;

/// The headers this backend writes on dead letters and replays; publishers
/// may not set them.
pub const RESERVED_HEADERS: [&str; 6] = [H_ID, H_TOPIC, H_PUBLISHED, H_ATTEMPTS, H_ERROR, H_FAILED];
pub(super) const H_ID: &str = "Nimbus-Id";
pub(super) const H_TOPIC: &str = "Nimbus-Topic";
pub(super) const H_PUBLISHED: &str = "Nimbus-Published-Ms";
pub(super) const H_ATTEMPTS: &str = "Nimbus-Attempts";
pub(super) const H_ERROR: &str = "Nimbus-Error";
pub(super) const H_FAILED: &str = "Nimbus-Failed-Ms";

/// JetStream deduplicates publishes carrying the same value within its
/// duplicate window (2 minutes by default).
pub(super) const H_MSG_ID: &str = "Nats-Msg-Id";

/// A fetched message as a delivery; `topic_prefix` is what precedes the
/// topic in its subject.
pub(super) fn delivery(
    m: &jetstream::Message,
    topic_prefix: &str,
) -> Result<Delivery, BackendError> {
    let info = m
        .info()
        .map_err(|e| fail("a fetched message has no JetStream info", e))?;
    let headers = m.headers.as_ref();
    let header = |name: &str| headers.and_then(|h| h.get(name)).map(|v| v.as_str());
    let message = QueueMessage {
        id: header(H_ID)
            .or_else(|| header(H_MSG_ID))
            .map_or_else(|| info.stream_sequence.to_string(), str::to_owned),
        topic: header(H_TOPIC).map_or_else(
            || {
                m.subject
                    .strip_prefix(topic_prefix)
                    .unwrap_or(&m.subject)
                    .to_owned()
            },
            str::to_owned,
        ),
        headers: headers.map(own_headers).unwrap_or_default(),
        published_ms: header(H_PUBLISHED)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| (info.published.unix_timestamp_nanos() / 1_000_000) as u64),
        payload: m.payload.to_vec(),
    };
    let attempt = u32::try_from(info.delivered.max(1)).unwrap_or(u32::MAX);
    let token = m
        .reply
        .as_ref()
        .map(|r| r.to_string())
        .ok_or_else(|| BackendError::Storage("a fetched message has no ack subject".into()))?;
    Ok(Delivery {
        message,
        attempt,
        token,
    })
}

/// A message read from a dead-letter stream.
pub(super) fn decode_dead(m: &jetstream::Message) -> DeadLetter {
    let headers = m.headers.as_ref();
    let header = |name: &str| headers.and_then(|h| h.get(name)).map(|v| v.as_str());
    let number = |name: &str| {
        header(name)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    DeadLetter {
        message: QueueMessage {
            id: header(H_ID).unwrap_or_default().to_owned(),
            topic: header(H_TOPIC).unwrap_or_default().to_owned(),
            headers: headers.map(own_headers).unwrap_or_default(),
            published_ms: number(H_PUBLISHED),
            payload: m.payload.to_vec(),
        },
        attempts: u32::try_from(number(H_ATTEMPTS)).unwrap_or(u32::MAX),
        error: unescape(header(H_ERROR).unwrap_or_default()),
        failed_ms: number(H_FAILED),
    }
}

/// The publisher's headers among a stored message's: not NATS's, not ours;
/// sorted by name, since a header map has no order.
fn own_headers(map: &HeaderMap) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (name, values) in map.iter() {
        let name: &str = name.as_ref();
        if is_reserved(name) {
            continue;
        }
        for value in values {
            out.push((name.to_owned(), value.as_str().to_owned()));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn is_reserved(name: &str) -> bool {
    name.get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case("nats-"))
        || RESERVED_HEADERS
            .iter()
            .any(|r| r.eq_ignore_ascii_case(name))
}

/// The publisher's headers as NATS headers, or why they cannot be.
pub(super) fn publisher_headers(headers: &[(String, String)]) -> Result<HeaderMap, BackendError> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let bad = |why: &str| Err(BackendError::Invalid(format!("header `{name}`: {why}")));
        if is_reserved(name) {
            return bad("names starting with `Nats-` and Nimbus's own headers are reserved");
        }
        let Ok(parsed) = name.parse::<async_nats::HeaderName>() else {
            return bad("a name may only hold printable ASCII other than `:`");
        };
        if name.is_empty() {
            return bad("the name is empty");
        }
        let Ok(value) = header_value(value) else {
            return bad("a value may not hold CR or LF");
        };
        map.append(parsed, value);
    }
    Ok(map)
}

/// `value` as a header value, or why it cannot be one. (The client's own
/// conversion from `&str` does not check, and a CR or LF would break the
/// protocol's framing.)
pub(super) fn header_value(value: &str) -> Result<async_nats::HeaderValue, BackendError> {
    value.parse().map_err(|_| {
        BackendError::Invalid(format!(
            "`{}` cannot be a NATS header value: it holds CR or LF",
            value.escape_debug()
        ))
    })
}

/// A NATS header value may not hold CR or LF; errors often do.
pub(super) fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('\r', "\\r")
        .replace('\n', "\\n")
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_survive_the_header_escape() {
        for s in ["plain", "two\nlines\r\n", "back\\slash\\n", "trailing\\"] {
            let escaped = escape(s);
            assert!(!escaped.contains(['\r', '\n']));
            assert_eq!(unescape(&escaped), s);
        }
    }

    #[test]
    fn bad_and_reserved_headers_are_refused() {
        let h = |k: &str, v: &str| vec![(k.to_owned(), v.to_owned())];
        assert!(publisher_headers(&h("content-type", "text/plain")).is_ok());
        for (k, v) in [
            ("Nats-Msg-Id", "x"),
            ("nimbus-error", "x"),
            ("with space", "x"),
            ("colon:", "x"),
            ("", "x"),
            ("ok", "line\nbreak"),
        ] {
            assert!(
                matches!(publisher_headers(&h(k, v)), Err(BackendError::Invalid(_))),
                "{k:?}: {v:?}"
            );
        }
    }
}
