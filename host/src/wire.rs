//! What crosses the HTTP boundary of the host: the header names Nimbus sets
//! or reads, the body type of every response the host makes, and the JSON
//! error body. The names themselves are shared with the guest SDK through
//! the `nimbus-protocol` crate.

use bytes::Bytes;
use http::HeaderName;
use http_body_util::{BodyExt, Full};
use nimbus_protocol::header;

pub use nimbus_protocol::ErrorBody;

/// The body of every response the host sends, the guest's or its own.
pub use wasmtime_wasi_http::p2::body::HyperOutgoingBody as Body;

/// The request id header, kept from the caller when valid.
pub const REQUEST_ID: HeaderName = HeaderName::from_static(header::REQUEST_ID);
/// The W3C trace context header, passed along service calls.
pub const TRACEPARENT: HeaderName = HeaderName::from_static(header::TRACEPARENT);

/// Headers starting with this are set by Nimbus only; the caller's are dropped.
pub const NIMBUS_HEADER_PREFIX: &str = header::PREFIX;
/// The function's id.
pub const HEADER_FUNCTION: HeaderName = HeaderName::from_static(header::FUNCTION);
/// The matched route's path as written in the manifest.
pub const HEADER_ROUTE: HeaderName = HeaderName::from_static(header::ROUTE);
/// For a `/...` route, the part of the path the wildcard matched.
pub const HEADER_PATH_INFO: HeaderName = HeaderName::from_static(header::PATH_INFO);
/// For a service call, the calling function's id.
pub const HEADER_CALLER: HeaderName = HeaderName::from_static(header::CALLER);
/// The caller's `ip:port`.
pub const HEADER_CLIENT_ADDR: HeaderName = HeaderName::from_static(header::CLIENT_ADDR);
/// Followed by a parameter name: that parameter's value, as in the URL.
pub const HEADER_PARAM_PREFIX: &str = header::PARAM_PREFIX;
/// The provider that verified the caller's token.
pub const HEADER_AUTH_PROVIDER: HeaderName = HeaderName::from_static(header::AUTH_PROVIDER);
/// The token's `sub`.
pub const HEADER_AUTH_SUBJECT: HeaderName = HeaderName::from_static(header::AUTH_SUBJECT);
/// The token's scopes, space-separated.
pub const HEADER_AUTH_SCOPES: HeaderName = HeaderName::from_static(header::AUTH_SCOPES);
/// The token's roles, space-separated.
pub const HEADER_AUTH_ROLES: HeaderName = HeaderName::from_static(header::AUTH_ROLES);
/// Every claim of the token, as JSON.
pub const HEADER_AUTH_CLAIMS: HeaderName = HeaderName::from_static(header::AUTH_CLAIMS);

/// A complete body in the type the host's responses use.
pub fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Checks that each of `errors` (status, code, message) has its row in the
/// README's error table whose header row is `header`.
#[cfg(test)]
pub(crate) fn assert_documented(
    header: &str,
    errors: impl IntoIterator<Item = (u16, &'static str, String)>,
) {
    let documented = documented_errors(header);
    for (status, code, message) in errors {
        assert!(
            documented.contains(&(status, code.to_owned())),
            "the README's table headed {header} lacks status {status} with `{code}` ({message})"
        );
    }
}

/// The `(status, code)` pairs of the README's error table whose header row
/// is `header`: the status is the number a row's status cell starts with,
/// the code the backticked word of its last cell.
#[cfg(test)]
fn documented_errors(header: &str) -> std::collections::BTreeSet<(u16, String)> {
    const README: &str = include_str!("../../README.md");
    let mut rows = README
        .lines()
        .skip_while(|line| line.trim() != header)
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .peekable();
    assert!(
        rows.peek().is_some(),
        "the README has no table headed {header}"
    );
    rows.map(|row| {
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        let [_, status, code] = cells[..] else {
            panic!("a README error row without three cells: {row}");
        };
        let status = status
            .get(..3)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("a README error row without a status: {row}"));
        (status, code.trim_matches('`').to_owned())
    })
    .collect()
}
