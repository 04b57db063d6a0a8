//! Login tokens: HS256 JSON Web Tokens (RFC 7519), signed with the config
//! `signing_key`.
//!
//! A token is `base64url(header) "." base64url(claims) "." base64url(HMAC-SHA256)`,
//! unpadded, with the header `{"alg":"HS256","typ":"JWT"}` and the claims
//!
//! ```json
//! {"sub": "alice", "iat": 1700000000, "exp": 1700003600, "iss": "shop-users",
//!  "aud": "shop", "scope": "orders:write", "roles": ["admin"]}
//! ```
//!
//! where `roles` appears only for a user listed in the config `admins`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use nimbus_sdk::Error;
use serde::Serialize;
use sha2::Sha256;

/// How long a token is valid, in seconds: an hour, so a stolen token is
/// short-lived and a user logs in about once a session.
pub const LIFETIME_SECS: u64 = 60 * 60;
/// Who issues the token (`iss`); `orders` checks it.
const ISSUER: &str = "shop-users";
/// Whom the token is for (`aud`); `orders` checks it.
const AUDIENCE: &str = "shop";
/// What every user may do, as space-separated OAuth scopes.
const SCOPE: &str = "orders:write";
/// The role of a user listed in the config `admins`.
const ADMIN_ROLE: &str = "admin";
/// The JOSE header of every token.
const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// The claims of a token.
#[derive(Debug, Serialize)]
pub struct Claims<'a> {
    sub: &'a str,
    iat: u64,
    exp: u64,
    iss: &'static str,
    aud: &'static str,
    scope: &'static str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    roles: Vec<&'static str>,
}

impl<'a> Claims<'a> {
    /// The claims for `username`, issued at `now` (seconds since the epoch).
    pub fn new(username: &'a str, is_admin: bool, now: u64) -> Claims<'a> {
        Claims {
            sub: username,
            iat: now,
            exp: now + LIFETIME_SECS,
            iss: ISSUER,
            aud: AUDIENCE,
            scope: SCOPE,
            roles: if is_admin {
                vec![ADMIN_ROLE]
            } else {
                Vec::new()
            },
        }
    }
}

/// The signed token for `claims`. An empty key is refused: anyone could
/// forge tokens signed with it.
pub fn sign(claims: &Claims<'_>, key: &[u8]) -> Result<String, Error> {
    if key.is_empty() {
        return Err(
            Error::internal("the config `signing_key` is empty").with_code("missing_config")
        );
    }
    let claims = serde_json::to_vec(claims)
        .map_err(|err| Error::internal(format!("cannot encode the claims: {err}")))?;
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(HEADER),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(key)
        .map_err(|err| Error::internal(format!("the signing key is unusable: {err}")))?;
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    Ok(format!("{signing_input}.{signature}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(part: &str) -> serde_json::Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn tokens_carry_the_claims_and_a_verifiable_signature() {
        let token = sign(&Claims::new("alice", false, 1_000), b"key").unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(
            decode(parts[0]),
            serde_json::json!({"alg": "HS256", "typ": "JWT"})
        );
        assert_eq!(
            decode(parts[1]),
            serde_json::json!({
                "sub": "alice", "iat": 1_000, "exp": 4_600, "iss": "shop-users",
                "aud": "shop", "scope": "orders:write",
            })
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(b"key").unwrap();
        mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
        mac.verify_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap())
            .unwrap();
    }

    #[test]
    fn admins_get_the_role_and_empty_keys_are_refused() {
        let token = sign(&Claims::new("root", true, 0), b"key").unwrap();
        let claims = decode(token.split('.').nth(1).unwrap());
        assert_eq!(claims["roles"], serde_json::json!(["admin"]));
        let error = sign(&Claims::new("root", true, 0), b"").unwrap_err();
        assert_eq!(error.status(), 500);
    }
}
