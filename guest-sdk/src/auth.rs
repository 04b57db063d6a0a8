//! The caller's identity, as verified by the Nimbus gateway.
//!
//! When a route requires a token (`auth = { require = "<provider>" }` in the
//! manifest), the gateway checks it before the function runs: signature,
//! expiry, issuer, audience, and the scopes and roles the route requires. The
//! function then receives the verified claims in `x-nimbus-auth-*` headers,
//! which the gateway always strips from what callers send, so they can be
//! trusted. Service calls pass the original caller's claims along.
//!
//! ```
//! use nimbus_sdk::{Request, RequestExt};
//!
//! let request: Request = nimbus_sdk::http::Request::builder()
//!     .header("x-nimbus-auth-provider", "users")
//!     .header("x-nimbus-auth-subject", "alice")
//!     .header("x-nimbus-auth-scopes", "orders:write orders:read")
//!     .header("x-nimbus-auth-roles", "admin")
//!     .header("x-nimbus-auth-claims", r#"{"sub":"alice","tenant":"acme"}"#)
//!     .body(Default::default())
//!     .unwrap();
//! let claims = request.claims().unwrap();
//! assert_eq!(claims.subject.as_deref(), Some("alice"));
//! assert!(claims.has_scope("orders:write"));
//! assert!(claims.has_role("admin"));
//! assert_eq!(claims.get::<String>("tenant").as_deref(), Some("acme"));
//! ```

use serde::de::DeserializeOwned;

use crate::Error;

/// The provider that verified the token.
pub const HEADER_AUTH_PROVIDER: &str = nimbus_protocol::header::AUTH_PROVIDER;
/// The token's `sub`.
pub const HEADER_AUTH_SUBJECT: &str = nimbus_protocol::header::AUTH_SUBJECT;
/// The token's scopes, space-separated.
pub const HEADER_AUTH_SCOPES: &str = nimbus_protocol::header::AUTH_SCOPES;
/// The token's roles, space-separated.
pub const HEADER_AUTH_ROLES: &str = nimbus_protocol::header::AUTH_ROLES;
/// Every claim of the token, as a JSON object.
pub const HEADER_AUTH_CLAIMS: &str = nimbus_protocol::header::AUTH_CLAIMS;

/// A token's claims, verified by the gateway.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    /// The provider (`[auth.<name>]` in the manifest) that verified it.
    pub provider: String,
    /// `sub`: whom the token is about, usually a user id.
    pub subject: Option<String>,
    /// The scopes, from the provider's scopes claim (`scope` by default).
    pub scopes: Vec<String>,
    /// The roles, from the provider's roles claim (`roles` by default).
    pub roles: Vec<String>,
    /// Every claim, as the token carried them.
    pub all: serde_json::Map<String, serde_json::Value>,
}

impl Claims {
    /// The claims in `headers`, or `None` when the gateway verified no token
    /// (a public route).
    pub fn from_headers(headers: &::http::HeaderMap) -> Option<Claims> {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let provider = text(HEADER_AUTH_PROVIDER)?.to_owned();
        let list = |name: &str| {
            text(name)
                .map(|v| v.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default()
        };
        let all: serde_json::Map<String, serde_json::Value> = text(HEADER_AUTH_CLAIMS)
            .and_then(|v| serde_json::from_str(v).ok())
            .unwrap_or_default();
        // A subject that cannot be a header value on its own (non-ASCII) is
        // still in the claims.
        let subject = text(HEADER_AUTH_SUBJECT)
            .map(str::to_owned)
            .or_else(|| all.get("sub").and_then(|v| v.as_str()).map(str::to_owned));
        Some(Claims {
            provider,
            subject,
            scopes: list(HEADER_AUTH_SCOPES),
            roles: list(HEADER_AUTH_ROLES),
            all,
        })
    }

    /// True when the token carries `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// True when the token carries `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// The claim `name` as a `T`, or `None` when it is absent or of another type.
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Option<T> {
        self.all
            .get(name)
            .and_then(|v| serde_json::from_value(v.clone()).ok())
    }

    /// The subject, or a `401` when the token has none.
    ///
    /// ```
    /// let claims = nimbus_sdk::auth::Claims {
    ///     provider: "users".into(),
    ///     subject: None,
    ///     scopes: vec![],
    ///     roles: vec![],
    ///     all: Default::default(),
    /// };
    /// assert_eq!(claims.require_subject().unwrap_err().status(), 401);
    /// ```
    pub fn require_subject(&self) -> Result<&str, Error> {
        self.subject
            .as_deref()
            .ok_or_else(|| Error::unauthorized("the token names no subject (`sub`)"))
    }
}
