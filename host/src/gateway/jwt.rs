//! JWT verification for one provider: its keys (a secret, a PEM public key,
//! or a JWKS file or URL with caching and refresh) and its checks.
//!
//! Verification refuses, in order: a token that is not three base64url parts
//! with a JSON header; an `alg` the provider does not accept (so `none`, and
//! an HMAC token against an RSA key, never reach a verifier); an unknown
//! `kid`; a key of another family than the algorithm; a bad signature; and
//! then `exp`, `nbf`, `iss` and `aud`, with the provider's leeway.

use crate::manifest::{JwtProviderSpec, KeySource};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde_json::{Map, Value};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// A JWKS is fetched again after this long, so rotated keys are picked up
/// even when no token names an unknown `kid`.
pub const JWKS_MAX_AGE: Duration = Duration::from_secs(10 * 60);

/// How long fetching a JWKS URL may take.
pub const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest JWKS document accepted: real ones are a few KiB.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// Why a token was refused; each maps to a 401 (or a 503 when the keys
/// cannot be fetched).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No `Authorization: Bearer` header.
    #[error("missing bearer token")]
    Missing,
    /// Not a JWT.
    #[error("malformed token")]
    Malformed,
    /// The algorithm is `none`, unknown, or not accepted here.
    #[error("algorithm {0} is not accepted")]
    Algorithm(String),
    /// The token names a key the provider does not have.
    #[error("unknown key id `{0}`")]
    UnknownKid(String),
    /// A JWKS with several keys and a token without `kid`.
    #[error("the token has no key id (`kid`) and the provider has several keys")]
    NoKid,
    /// The signature does not verify.
    #[error("invalid signature")]
    Signature,
    /// `exp` has passed.
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// `iss` is wrong.
    #[error("wrong issuer")]
    Issuer,
    /// `aud` is wrong.
    #[error("wrong audience")]
    Audience,
    /// A required claim is absent or of the wrong type.
    #[error("claim `{0}` is missing or invalid")]
    Claim(String),
    /// The provider's keys could not be loaded.
    #[error("the identity provider's keys are unavailable")]
    KeysUnavailable,
}

/// A verified token's claims, with what the gateway reads from them.
#[derive(Debug, Clone)]
pub struct Claims {
    /// The provider that verified it.
    pub provider: Arc<str>,
    /// `sub`, if present.
    pub subject: Option<String>,
    /// The scopes, from the provider's scopes claim.
    pub scopes: Vec<String>,
    /// The roles, from the provider's roles claim.
    pub roles: Vec<String>,
    /// Every claim.
    pub all: Map<String, Value>,
}

/// One key with the algorithms it may verify.
#[derive(Clone)]
struct Key {
    kid: Option<String>,
    key: DecodingKey,
    /// From the JWK's `alg`, when it has one.
    alg: Option<Algorithm>,
}

struct KeySet {
    keys: Vec<Key>,
    /// When the keys were last loaded; `None` before the first load.
    fetched: Option<Instant>,
    /// When a load was last tried, whether it worked or not.
    attempted: Option<Instant>,
}

/// A provider ready to verify tokens.
pub struct JwtProvider {
    spec: JwtProviderSpec,
    name: Arc<str>,
    keys: RwLock<Arc<KeySet>>,
    /// Serializes JWKS refreshes (one at a time, others wait and reuse it).
    refresh: tokio::sync::Mutex<()>,
    client: Option<reqwest::Client>,
}

/// A provider's keys could not be loaded at startup.
#[derive(Debug, thiserror::Error)]
#[error("`auth.{provider}`: {message}")]
pub struct ProviderError {
    /// The provider's name.
    pub provider: String,
    /// What is wrong, naming the file.
    pub message: String,
}

impl JwtProvider {
    /// Loads the provider's keys. A JWKS URL is fetched on first use, so
    /// the gateway starts while the identity provider is down.
    pub fn new(spec: JwtProviderSpec) -> Result<JwtProvider, ProviderError> {
        let err = |message: String| ProviderError {
            provider: spec.name.clone(),
            message,
        };
        let (keys, client) = match &spec.key {
            KeySource::Hmac(secret) => (
                vec![Key {
                    kid: None,
                    key: DecodingKey::from_secret(secret.as_bytes()),
                    alg: None,
                }],
                None,
            ),
            KeySource::PublicKeyPem(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
                let key = DecodingKey::from_rsa_pem(&pem)
                    .or_else(|_| DecodingKey::from_ec_pem(&pem))
                    .or_else(|_| DecodingKey::from_ed_pem(&pem))
                    .map_err(|_| {
                        err(format!(
                            "{} is not a PEM RSA, EC or Ed25519 public key",
                            path.display()
                        ))
                    })?;
                (
                    vec![Key {
                        kid: None,
                        key,
                        alg: None,
                    }],
                    None,
                )
            }
            KeySource::JwksFile(path) => {
                let text = std::fs::read(path)
                    .map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
                (
                    parse_jwks(&text).map_err(|e| err(format!("{}: {e}", path.display())))?,
                    None,
                )
            }
            KeySource::JwksUrl(_) => {
                let client = reqwest::Client::builder()
                    .timeout(JWKS_FETCH_TIMEOUT)
                    .build()
                    .map_err(|e| err(format!("cannot build an HTTP client: {e}")))?;
                (Vec::new(), Some(client))
            }
        };
        // A JWKS URL starts empty: the first request that needs it fetches.
        let loaded = (!keys.is_empty()).then(Instant::now);
        Ok(JwtProvider {
            name: spec.name.as_str().into(),
            spec,
            keys: RwLock::new(Arc::new(KeySet {
                keys,
                fetched: loaded,
                attempted: loaded,
            })),
            refresh: tokio::sync::Mutex::new(()),
            client,
        })
    }

    /// The provider's settings.
    pub fn spec(&self) -> &JwtProviderSpec {
        &self.spec
    }

    /// Verifies `token` and returns its claims.
    pub async fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            // `alg: none` and made-up names fail to parse as an algorithm.
            match alg_of(token) {
                Some(alg) if alg.parse::<Algorithm>().is_err() => TokenError::Algorithm(alg),
                _ => TokenError::Malformed,
            }
        })?;
        let alg = header.alg;
        if !self.spec.algorithms.contains(&alg) {
            return Err(TokenError::Algorithm(format!("{alg:?}")));
        }
        let keys = self.keys_for(header.kid.as_deref()).await?;
        let key = pick_key(&keys, header.kid.as_deref(), alg)?;
        let mut validation = Validation::new(alg);
        validation.algorithms = vec![alg];
        validation.leeway = self.spec.leeway.as_secs();
        validation.validate_nbf = true;
        // `iss` and `aud` are checked only when present, unless required:
        // a provider that names them requires them.
        let mut required = vec!["exp"];
        if self.spec.issuer.is_some() {
            required.push("iss");
        }
        if !self.spec.audience.is_empty() {
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        if let Some(issuer) = &self.spec.issuer {
            validation.set_issuer(&[issuer]);
        }
        if self.spec.audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&self.spec.audience);
        }
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation).map_err(
            |e| match e.into_kind() {
                ErrorKind::InvalidSignature => TokenError::Signature,
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                ErrorKind::InvalidIssuer => TokenError::Issuer,
                ErrorKind::InvalidAudience => TokenError::Audience,
                ErrorKind::MissingRequiredClaim(c) | ErrorKind::InvalidClaimFormat(c) => {
                    TokenError::Claim(c)
                }
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    TokenError::Algorithm(format!("{alg:?}"))
                }
                ErrorKind::InvalidEcdsaKey
                | ErrorKind::InvalidEddsaKey
                | ErrorKind::InvalidRsaKey(_)
                | ErrorKind::InvalidKeyFormat => TokenError::Signature,
                _ => TokenError::Malformed,
            },
        )?;
        let all = data.claims;
        Ok(Claims {
            provider: self.name.clone(),
            subject: all.get("sub").and_then(Value::as_str).map(str::to_owned),
            scopes: string_list(claim_at(&all, &self.spec.scopes_claim)),
            roles: string_list(claim_at(&all, &self.spec.roles_claim)),
            all,
        })
    }

    /// The current keys, refreshed first when they are a JWKS that is stale,
    /// empty, or lacks `kid`; at most one attempt per `jwks_min_refresh`,
    /// failed or not, so neither callers nor a down identity provider make
    /// the gateway fetch in a loop.
    async fn keys_for(&self, kid: Option<&str>) -> Result<Arc<KeySet>, TokenError> {
        let current = self.keys.read().expect("key set lock").clone();
        let lacks = |set: &KeySet| {
            set.keys.is_empty()
                || kid.is_some_and(|kid| !set.keys.iter().any(|k| k.kid.as_deref() == Some(kid)))
        };
        let may_attempt = current
            .attempted
            .is_none_or(|at| at.elapsed() >= self.spec.jwks_min_refresh);
        let stale = matches!(self.spec.key, KeySource::JwksUrl(_))
            && current
                .fetched
                .is_none_or(|at| at.elapsed() >= JWKS_MAX_AGE);
        let refreshable = matches!(
            self.spec.key,
            KeySource::JwksUrl(_) | KeySource::JwksFile(_)
        );
        if !refreshable || !may_attempt || !(stale || lacks(&current)) {
            return if current.keys.is_empty() {
                Err(TokenError::KeysUnavailable)
            } else {
                Ok(current)
            };
        }
        let _guard = self.refresh.lock().await;
        // Another request may have refreshed while this one waited.
        let latest = self.keys.read().expect("key set lock").clone();
        if latest.attempted != current.attempted {
            return Ok(latest);
        }
        let fetched = match (&self.spec.key, &self.client) {
            (KeySource::JwksUrl(url), Some(client)) => fetch_jwks(client, url).await,
            (KeySource::JwksFile(path), _) => match tokio::fs::read(path).await {
                Ok(bytes) => parse_jwks(&bytes),
                Err(e) => Err(format!("cannot read {}: {e}", path.display())),
            },
            _ => return Ok(current),
        };
        let now = Some(Instant::now());
        let set = match fetched {
            Ok(keys) => KeySet {
                keys,
                fetched: now,
                attempted: now,
            },
            Err(message) => {
                tracing::warn!(provider = %self.name, %message, "cannot load the JWKS; keeping the keys we have");
                KeySet {
                    keys: current.keys.clone(),
                    fetched: current.fetched,
                    attempted: now,
                }
            }
        };
        let set = Arc::new(set);
        *self.keys.write().expect("key set lock") = set.clone();
        if set.keys.is_empty() {
            Err(TokenError::KeysUnavailable)
        } else {
            Ok(set)
        }
    }
}

/// The raw `alg` of a token whose header did not parse, for the message.
fn alg_of(token: &str) -> Option<String> {
    use base64::Engine;
    let header = token.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    value.get("alg")?.as_str().map(str::to_owned)
}

fn pick_key<'k>(
    keys: &'k KeySet,
    kid: Option<&str>,
    alg: Algorithm,
) -> Result<&'k DecodingKey, TokenError> {
    let key = match kid {
        Some(kid) if keys.keys.iter().any(|k| k.kid.is_some()) => keys
            .keys
            .iter()
            .find(|k| k.kid.as_deref() == Some(kid))
            .ok_or_else(|| TokenError::UnknownKid(kid.to_owned()))?,
        // A single key without a kid (a secret or a PEM file) verifies any token.
        _ if keys.keys.len() == 1 => &keys.keys[0],
        Some(kid) => return Err(TokenError::UnknownKid(kid.to_owned())),
        None if keys.keys.is_empty() => return Err(TokenError::KeysUnavailable),
        None => return Err(TokenError::NoKid),
    };
    // An HMAC token checked against an RSA public key used as a secret is the
    // classic confusion attack: the key's family must be the algorithm's.
    if key.key.family() != alg.family() || key.alg.is_some_and(|a| a != alg) {
        return Err(TokenError::Algorithm(format!("{alg:?}")));
    }
    Ok(&key.key)
}

async fn fetch_jwks(client: &reqwest::Client, url: &str) -> Result<Vec<Key>, String> {
    let mut response = client.get(url).send().await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status()));
    }
    let too_large = || format!("the JWKS at {url} is larger than 1 MiB");
    if response
        .content_length()
        .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    parse_jwks(&body)
}

/// Parses a JWKS, keeping the keys meant for signatures that this gateway
/// can use; a key it cannot use is skipped with a warning, not fatal.
fn parse_jwks(bytes: &[u8]) -> Result<Vec<Key>, String> {
    let set: JwkSet = serde_json::from_slice(bytes).map_err(|e| format!("not a JWKS: {e}"))?;
    let mut keys = Vec::with_capacity(set.keys.len());
    for jwk in &set.keys {
        match key_from_jwk(jwk) {
            Ok(Some(key)) => keys.push(key),
            Ok(None) => {}
            Err(e) => tracing::warn!(kid = ?jwk.common.key_id, "skipping JWKS key: {e}"),
        }
    }
    if keys.is_empty() {
        return Err("the JWKS has no usable signature keys".into());
    }
    Ok(keys)
}

fn key_from_jwk(jwk: &Jwk) -> Result<Option<Key>, String> {
    use jsonwebtoken::jwk::PublicKeyUse;
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return Ok(None);
    }
    let alg = match &jwk.common.key_algorithm {
        None => None,
        Some(ka) => match format!("{ka:?}").parse::<Algorithm>() {
            Ok(alg) => Some(alg),
            // An encryption algorithm (RSA-OAEP...) marks a key we never use.
            Err(_) => return Ok(None),
        },
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    Ok(Some(Key {
        kid: jwk.common.key_id.clone(),
        key,
        alg,
    }))
}

/// The value at a dotted claim path (`realm_access.roles`).
fn claim_at<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    // A namespaced claim (`https://example.com/roles`) is a key with dots.
    if let Some(value) = claims.get(path) {
        return Some(value);
    }
    let mut parts = path.split('.');
    let mut value = claims.get(parts.next()?)?;
    for part in parts {
        value = value.get(part)?;
    }
    Some(value)
}

/// A claim holding a space-separated string or a list of strings.
fn string_list(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claims_paths_and_lists() {
        let claims = json!({"scope": "a b", "realm_access": {"roles": ["x", "y"]}});
        let claims = claims.as_object().unwrap();
        assert_eq!(string_list(claim_at(claims, "scope")), ["a", "b"]);
        assert_eq!(
            string_list(claim_at(claims, "realm_access.roles")),
            ["x", "y"]
        );
        assert!(string_list(claim_at(claims, "missing.path")).is_empty());
    }

    #[test]
    fn alg_of_reads_unparseable_headers() {
        // {"alg":"none","typ":"JWT"}
        assert_eq!(
            alg_of("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.e30.").as_deref(),
            Some("none")
        );
        assert_eq!(alg_of("garbage"), None);
    }
}
