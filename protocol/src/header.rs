//! The headers the host sets on each request a function receives.
//!
//! Names are lowercase, so the host can make an `http::HeaderName` of each
//! with `HeaderName::from_static`. Every name starting with [`PREFIX`] comes
//! from the host: it drops any a caller sends before setting its own, so a
//! function can trust them.

/// Headers with this prefix come from the host only; callers' are dropped.
pub const PREFIX: &str = "x-nimbus-";

/// The id of the function handling the request; the host sets it on every
/// request.
pub const FUNCTION: &str = "x-nimbus-function";

/// The matched route's path as written in the manifest, e.g. `/hello/:name`;
/// the host sets it on every request.
pub const ROUTE: &str = "x-nimbus-route";

/// For a `/...` route: the rest of the path the wildcard matched, starting
/// with `/`, as sent (not decoded); set by the host.
pub const PATH_INFO: &str = "x-nimbus-path-info";

/// Followed by a parameter name (`x-nimbus-param-id`): that path parameter's
/// value as in the URL, percent-encoded; set by the host, one per parameter.
pub const PARAM_PREFIX: &str = "x-nimbus-param-";

/// The caller's `ip:port`; the host sets it on requests from the network.
pub const CLIENT_ADDR: &str = "x-nimbus-client-addr";

/// The id of the calling function; the host sets it on service calls (one
/// function calling another of the same app).
pub const CALLER: &str = "x-nimbus-caller";

/// The request id: the caller's when it sent a valid one, otherwise one the
/// host made. The host sets it on the request, on service calls the function
/// makes, and on the response.
pub const REQUEST_ID: &str = "x-request-id";

/// The W3C trace context: the host sets it to the function's own span, a
/// child of the caller's trace (or the root of a new one), and passes it on
/// to service calls the function makes unless the call sets its own.
pub const TRACEPARENT: &str = "traceparent";

/// The W3C vendor trace state; the caller sets it, and the SDK's service
/// client copies it onto calls along with [`REQUEST_ID`] and [`TRACEPARENT`].
pub const TRACESTATE: &str = "tracestate";

/// The provider (`[auth.<name>]` in the manifest) that verified the caller's
/// token. The gateway sets it, and the other `x-nimbus-auth-*` headers, when
/// a route requires a token and the token checks out; a service call carries
/// the original caller's.
pub const AUTH_PROVIDER: &str = "x-nimbus-auth-provider";

/// The verified token's `sub`, when it has one; set by the gateway.
pub const AUTH_SUBJECT: &str = "x-nimbus-auth-subject";

/// The verified token's scopes, space-separated; set by the gateway.
pub const AUTH_SCOPES: &str = "x-nimbus-auth-scopes";

/// The verified token's roles, space-separated; set by the gateway.
pub const AUTH_ROLES: &str = "x-nimbus-auth-roles";

/// Every claim of the verified token, as a JSON object with non-ASCII
/// escaped (`\uXXXX`) so it fits a header value; set by the gateway.
pub const AUTH_CLAIMS: &str = "x-nimbus-auth-claims";

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [&str; 15] = [
        PREFIX,
        FUNCTION,
        ROUTE,
        PATH_INFO,
        PARAM_PREFIX,
        CLIENT_ADDR,
        CALLER,
        REQUEST_ID,
        TRACEPARENT,
        TRACESTATE,
        AUTH_PROVIDER,
        AUTH_SUBJECT,
        AUTH_SCOPES,
        AUTH_ROLES,
        AUTH_CLAIMS,
    ];

    /// What `HeaderName::from_static` accepts: lowercase RFC 9110 tokens.
    #[test]
    fn every_name_is_a_lowercase_token() {
        for name in ALL {
            assert!(!name.is_empty());
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{name}"
            );
        }
    }

    #[test]
    fn the_hosts_own_headers_share_the_prefix() {
        for name in [
            FUNCTION,
            ROUTE,
            PATH_INFO,
            PARAM_PREFIX,
            CLIENT_ADDR,
            CALLER,
            AUTH_PROVIDER,
            AUTH_SUBJECT,
            AUTH_SCOPES,
            AUTH_ROLES,
            AUTH_CLAIMS,
        ] {
            assert!(name.starts_with(PREFIX), "{name}");
        }
        for name in [REQUEST_ID, TRACEPARENT, TRACESTATE] {
            assert!(!name.starts_with(PREFIX), "{name}");
        }
    }
}
