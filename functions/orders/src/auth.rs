//! Bearer tokens: the HS256 JWTs that `users` issues, checked on every request.
//!
//! A request must carry `Authorization: Bearer <token>` whose token
//!
//! 1. has the header `alg` `HS256` (any other algorithm, `none` included, is refused);
//! 2. is signed with the config `signing_key` (compared in constant time);
//! 3. has not expired (`exp`) and is already valid (`nbf`, if present);
//! 4. was issued by `shop-users` (`iss`) for `shop` (`aud`, a string or an array);
//! 5. names a user (`sub`) and grants the `orders:write` scope.
//!
//! Failing 1 to 4, or having no token, is a `401` with `WWW-Authenticate: Bearer`
//! (RFC 6750); failing the scope is a `403`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use nimbus_sdk::http::{HeaderValue, header};
use nimbus_sdk::{Error, IntoResponse, Request, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use sha2::Sha256;

/// The only signature algorithm accepted.
const ALGORITHM: &str = "HS256";
/// Who must have issued the token.
const ISSUER: &str = "shop-users";
/// Whom the token must be for.
const AUDIENCE: &str = "shop";
/// The scope every endpoint of this function needs.
pub const REQUIRED_SCOPE: &str = "orders:write";
/// The `realm` of the challenges, naming the protected space.
const REALM: &str = "shop";

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The username, from the token's `sub`.
    pub name: String,
}

/// Why a request is not let in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No `Authorization` header: `401`.
    NoToken,
    /// A token that is malformed, forged, expired or not meant for us: `401`.
    InvalidToken(String),
    /// A valid token without the scope: `403`.
    InsufficientScope,
}

impl IntoResponse for Denied {
    /// The SDK's JSON error with an RFC 6750 challenge in `WWW-Authenticate`.
    fn into_response(self) -> Response {
        let (error, challenge) = match self {
            Denied::NoToken => (
                Error::unauthorized("send `Authorization: Bearer <token>`; log in to get a token"),
                format!(r#"Bearer realm="{REALM}""#),
            ),
            Denied::InvalidToken(why) => (
                Error::unauthorized(format!("invalid token: {why}")).with_code("invalid_token"),
                format!(r#"Bearer realm="{REALM}", error="invalid_token""#),
            ),
            Denied::InsufficientScope => (
                Error::forbidden(format!("the token does not grant `{REQUIRED_SCOPE}`"))
                    .with_code("insufficient_scope"),
                format!(
                    r#"Bearer realm="{REALM}", error="insufficient_scope", scope="{REQUIRED_SCOPE}""#
                ),
            ),
        };
        let mut response = error.into_response();
        // Made of constants and fixed text only, so always a valid value.
        if let Ok(challenge) = HeaderValue::try_from(challenge) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

/// The caller of `req`, whose bearer token is checked with `key` at `now`
/// (seconds since the epoch).
pub fn authenticate(req: &Request, key: &[u8], now: u64) -> Result<User, Denied> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or(Denied::NoToken)?;
    let token = value
        .to_str()
        .ok()
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
        .ok_or_else(|| invalid("the Authorization header is not `Bearer <token>`"))?;
    verify(token, key, now)
}

/// The JOSE header fields this function looks at.
#[derive(Deserialize)]
struct JoseHeader {
    alg: String,
}

/// The claims this function looks at.
#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default)]
    nbf: Option<u64>,
    iss: String,
    aud: Audience,
    #[serde(default)]
    scope: String,
}

/// `aud` is one string or an array of them (RFC 7519, section 4.1.3).
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, audience: &str) -> bool {
        match self {
            Audience::One(one) => one == audience,
            Audience::Many(many) => many.iter().any(|one| one == audience),
        }
    }
}

/// Checks `token` as the module docs say; the user it names if it passes.
pub fn verify(token: &str, key: &[u8], now: u64) -> Result<User, Denied> {
    if key.is_empty() {
        // Never accept a signature anyone could make. A deployment fault, but
        // refusing every token is the only safe answer.
        return Err(invalid("the service has no signing key"));
    }
    let mut parts = token.split('.');
    let (Some(header_part), Some(claims_part), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("not a JWT (three base64url parts joined by `.`)"));
    };
    // `header.claims`, exactly as sent: what the signature covers.
    let signed = &token[..header_part.len() + 1 + claims_part.len()];

    let header: JoseHeader = decode_json(header_part, "header")?;
    if header.alg != ALGORITHM {
        return Err(invalid(format!(
            "the algorithm is `{}`, not `{ALGORITHM}`",
            header.alg
        )));
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| invalid("the signature is not base64url"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(key)
        .map_err(|_| invalid("the service's signing key is unusable"))?;
    mac.update(signed.as_bytes());
    mac.verify_slice(&signature)
        .map_err(|_| invalid("the signature does not match"))?;

    // Signed by us: the claims can be trusted to mean what they say.
    let claims: Claims = decode_json(claims_part, "claims")?;
    if now >= claims.exp {
        return Err(invalid("the token has expired"));
    }
    if claims.nbf.is_some_and(|nbf| now < nbf) {
        return Err(invalid("the token is not valid yet"));
    }
    if claims.iss != ISSUER {
        return Err(invalid(format!("the issuer is not `{ISSUER}`")));
    }
    if !claims.aud.contains(AUDIENCE) {
        return Err(invalid(format!("the token is not for `{AUDIENCE}`")));
    }
    if !is_username(&claims.sub) {
        return Err(invalid("the subject is not a username"));
    }
    if !claims
        .scope
        .split_ascii_whitespace()
        .any(|scope| scope == REQUIRED_SCOPE)
    {
        return Err(Denied::InsufficientScope);
    }
    Ok(User { name: claims.sub })
}

/// One base64url part of the token, as JSON.
fn decode_json<T: DeserializeOwned>(part: &str, what: &str) -> Result<T, Denied> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| invalid(format!("invalid {what}: not base64url")))?;
    serde_json::from_slice(&bytes).map_err(|err| invalid(format!("invalid {what}: {err}")))
}

/// Usernames as `users` allows them (`^[a-z0-9_]{3,32}$`): they become part of
/// store keys here, so nothing else may pass even in a validly signed token.
fn is_username(name: &str) -> bool {
    (3..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn invalid(why: impl Into<String>) -> Denied {
    Denied::InvalidToken(why.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY: &[u8] = b"test-key";
    const NOW: u64 = 1_700_000_000;

    fn sign(header: &serde_json::Value, claims: &serde_json::Value, key: &[u8]) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(input.as_bytes());
        format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    fn header() -> serde_json::Value {
        json!({"alg": "HS256", "typ": "JWT"})
    }

    fn claims() -> serde_json::Value {
        json!({
            "sub": "alice", "iat": NOW - 10, "exp": NOW + 3600, "iss": "shop-users",
            "aud": "shop", "scope": "profile orders:write",
        })
    }

    fn with(change: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut claims = claims();
        change(&mut claims);
        sign(&header(), &claims, KEY)
    }

    fn reason(result: Result<User, Denied>) -> String {
        match result {
            Err(Denied::InvalidToken(why)) => why,
            other => panic!("expected an invalid token, got {other:?}"),
        }
    }

    #[test]
    fn a_good_token_names_its_user() {
        let token = sign(&header(), &claims(), KEY);
        assert_eq!(verify(&token, KEY, NOW).unwrap().name, "alice");
        let many = with(|c| c["aud"] = json!(["billing", "shop"]));
        assert!(verify(&many, KEY, NOW).is_ok());
    }

    #[test]
    fn forged_or_tampered_tokens_are_refused() {
        let token = sign(&header(), &claims(), KEY);
        assert!(reason(verify(&token, b"other-key", NOW)).contains("signature"));
        assert!(reason(verify(&token, b"", NOW)).contains("signing key"));

        // Claims swapped for another user's, signature kept.
        let (head, rest) = token.split_once('.').unwrap();
        let (_, signature) = rest.split_once('.').unwrap();
        let mallory = URL_SAFE_NO_PAD.encode(claims().to_string().replace("alice", "mallo"));
        let tampered = format!("{head}.{mallory}.{signature}");
        assert!(reason(verify(&tampered, KEY, NOW)).contains("signature"));

        // alg=none with no signature, and an HS512 header.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(claims().to_string())
        );
        assert!(reason(verify(&none, KEY, NOW)).contains("algorithm"));
        let hs512 = sign(&json!({"alg": "HS512"}), &claims(), KEY);
        assert!(reason(verify(&hs512, KEY, NOW)).contains("algorithm"));

        for junk in ["", "a.b", "a.b.c.d", "!!.??.**", &format!("{token}x")] {
            reason(verify(junk, KEY, NOW));
        }
    }

    #[test]
    fn claims_are_checked() {
        let expired = with(|c| c["exp"] = json!(NOW));
        assert!(reason(verify(&expired, KEY, NOW)).contains("expired"));
        let early = with(|c| c["nbf"] = json!(NOW + 60));
        assert!(reason(verify(&early, KEY, NOW)).contains("not valid yet"));
        let issuer = with(|c| c["iss"] = json!("someone-else"));
        assert!(reason(verify(&issuer, KEY, NOW)).contains("issuer"));
        let audience = with(|c| c["aud"] = json!(["billing"]));
        assert!(reason(verify(&audience, KEY, NOW)).contains("shop"));
        let subject = with(|c| c["sub"] = json!("../admin"));
        assert!(reason(verify(&subject, KEY, NOW)).contains("subject"));
        let no_exp = with(|c| {
            c.as_object_mut().unwrap().remove("exp");
        });
        assert!(reason(verify(&no_exp, KEY, NOW)).contains("exp"));
    }

    #[test]
    fn the_scope_must_be_granted_as_a_whole_word() {
        for scope in [json!("orders:read"), json!("orders:writer"), json!("")] {
            let token = with(|c| c["scope"] = scope);
            assert_eq!(verify(&token, KEY, NOW), Err(Denied::InsufficientScope));
        }
        let none = with(|c| {
            c.as_object_mut().unwrap().remove("scope");
        });
        assert_eq!(verify(&none, KEY, NOW), Err(Denied::InsufficientScope));
    }

    #[test]
    fn the_authorization_header_must_be_bearer() {
        let request = |value: Option<&str>| {
            let mut builder = nimbus_sdk::http::Request::builder();
            if let Some(value) = value {
                builder = builder.header("authorization", value);
            }
            builder.body(Default::default()).unwrap()
        };
        let token = sign(&header(), &claims(), KEY);
        assert_eq!(authenticate(&request(None), KEY, NOW), Err(Denied::NoToken));
        for bad in ["Basic YWxpY2U6cHc=", "Bearer", "Bearer ", &token] {
            reason(authenticate(&request(Some(bad)), KEY, NOW));
        }
        let user = authenticate(&request(Some(&format!("bearer {token}"))), KEY, NOW);
        assert_eq!(user.unwrap().name, "alice");
    }

    #[test]
    fn denials_carry_a_bearer_challenge() {
        let cases = [
            (Denied::NoToken, 401, r#"Bearer realm="shop""#),
            (
                Denied::InvalidToken("x".into()),
                401,
                r#"Bearer realm="shop", error="invalid_token""#,
            ),
            (
                Denied::InsufficientScope,
                403,
                r#"Bearer realm="shop", error="insufficient_scope", scope="orders:write""#,
            ),
        ];
        for (denied, status, challenge) in cases {
            let response = denied.into_response();
            assert_eq!(response.status(), status);
            assert_eq!(response.headers()["www-authenticate"], challenge);
        }
    }
}
