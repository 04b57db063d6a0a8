//! The gateway's part of the manifest, normalized: JWT providers, who may
//! call each route, rate limits, CORS and the documentation of each route.
//!
//! Everything here is checked at load time, so a misspelled provider, an
//! origin with a path or a schema file that is not JSON stops `nimbus up`
//! with a message naming the key, never a request.

use super::schema::{RawAuthRule, RawCors, RawJwtProvider, RawRateLimit, RawSchema};
use super::units::HumanDuration;
use http::{HeaderName, Method};
use jsonwebtoken::Algorithm;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Clock skew tolerated on `exp` and `nbf` when a provider does not say:
/// enough for hosts kept in sync by NTP, short enough that an expired token
/// stops working promptly.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// At most one JWKS refresh per this interval when tokens name unknown
/// `kid`s, unless a provider says otherwise: a caller sending made-up `kid`s
/// must not turn the gateway into a request flood against the identity
/// provider, and a rotated key is still picked up within half a minute.
pub const DEFAULT_JWKS_MIN_REFRESH: Duration = Duration::from_secs(30);

/// The shortest `jwks_min_refresh` a provider may set.
pub const MIN_JWKS_REFRESH: Duration = Duration::from_millis(100);

/// The claim scopes are read from by default (RFC 8693, OAuth 2.0).
pub const DEFAULT_SCOPES_CLAIM: &str = "scope";

/// The claim roles are read from by default.
pub const DEFAULT_ROLES_CLAIM: &str = "roles";

/// Request headers a cross-origin page may send when `allow_headers` is not
/// given: what a JSON API called with a bearer token needs.
pub const DEFAULT_CORS_HEADERS: [&str; 2] = ["authorization", "content-type"];

/// The rule name that makes a route public.
pub const PUBLIC: &str = "none";

/// A JWT issuer the gateway trusts.
#[derive(Debug, Clone)]
pub struct JwtProviderSpec {
    /// Its name in `[auth.<name>]`.
    pub name: String,
    /// The required `iss`, if any.
    pub issuer: Option<String>,
    /// Accepted `aud` values; empty means `aud` is not checked.
    pub audience: Vec<String>,
    /// Where the verification keys come from.
    pub key: KeySource,
    /// Accepted algorithms; every one fits the key source.
    pub algorithms: Vec<Algorithm>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// Shortest time between JWKS refreshes for unknown `kid`s.
    pub jwks_min_refresh: Duration,
    /// Claim path of the scopes.
    pub scopes_claim: String,
    /// Claim path of the roles.
    pub roles_claim: String,
}

/// Where a provider's keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A shared secret, for HS256, HS384 or HS512.
    Hmac(String),
    /// A PEM public key file (RSA, EC or Ed25519).
    PublicKeyPem(PathBuf),
    /// A JWKS file.
    JwksFile(PathBuf),
    /// A JWKS URL.
    JwksUrl(String),
}

/// Who may call a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthRule {
    /// Anyone.
    Public,
    /// Callers with a valid token from `provider`.
    Jwt {
        /// The provider's name.
        provider: String,
        /// Scopes the token must all carry.
        scopes: Vec<String>,
        /// Roles of which the token must carry at least one (none: no check).
        roles: Vec<String>,
    },
}

/// A token bucket per caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitSpec {
    /// Requests per `per`, on average.
    pub requests: u32,
    /// The period.
    pub per: Duration,
    /// The bucket's size.
    pub burst: u32,
    /// Whose bucket a request draws from.
    pub key: RateKey,
}

/// What identifies a caller to the rate limiter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateKey {
    /// The client's IP address.
    Client,
    /// The verified JWT subject; the IP address when there is none.
    Subject,
    /// A request header's value; the IP address when it is absent.
    Header(HeaderName),
}

/// Cross-origin rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsSpec {
    /// Allowed origins; `None` means any.
    pub origins: Option<Vec<String>>,
    /// Allowed methods; `None` means the methods of the matched routes.
    pub methods: Option<Vec<Method>>,
    /// Allowed request headers; `None` means any.
    pub headers: Option<Vec<HeaderName>>,
    /// Response headers exposed to the page.
    pub expose: Vec<HeaderName>,
    /// Whether credentials may be sent.
    pub credentials: bool,
    /// How long a preflight answer may be cached.
    pub max_age: Option<Duration>,
}

/// A route's own options, from the table form of a `routes` entry.
#[derive(Debug, Clone, Default)]
pub struct RouteOptions {
    /// Replaces the function's auth rule.
    pub auth: Option<AuthRule>,
    /// Replaces the function's rate limit.
    pub rate_limit: Option<RateLimitSpec>,
    /// One line for the OpenAPI document.
    pub summary: Option<String>,
    /// Longer text for the OpenAPI document.
    pub description: Option<String>,
    /// JSON Schema of the request body.
    pub request_body: Option<serde_json::Value>,
    /// JSON Schema of the success response body.
    pub response: Option<serde_json::Value>,
}

pub(super) fn provider(
    dir: &Path,
    name: &str,
    raw: RawJwtProvider,
    expand: impl Fn(&str) -> Result<String, String>,
) -> Result<JwtProviderSpec, String> {
    let mut sources = Vec::new();
    let mut hmac_alg = None;
    for (key, alg, secret) in [
        ("hs256_secret", Algorithm::HS256, raw.hs256_secret),
        ("hs384_secret", Algorithm::HS384, raw.hs384_secret),
        ("hs512_secret", Algorithm::HS512, raw.hs512_secret),
    ] {
        if let Some(secret) = secret {
            let secret = expand(&secret).map_err(|e| format!("`{key}`: {e}"))?;
            if secret.is_empty() {
                return Err(format!("`{key}` is empty"));
            }
            hmac_alg = Some(alg);
            sources.push((key, KeySource::Hmac(secret)));
        }
    }
    if let Some(file) = raw.public_key_pem {
        sources.push(("public_key_pem", KeySource::PublicKeyPem(dir.join(file))));
    }
    if let Some(jwks) = raw.jwks {
        let source = if jwks.starts_with("http://") || jwks.starts_with("https://") {
            if jwks.starts_with("http://") && !is_loopback_url(&jwks) {
                return Err(format!(
                    "`jwks`: `{jwks}` is plain HTTP; anyone on the path could swap the keys, so use https:// (plain http is allowed on loopback only)"
                ));
            }
            KeySource::JwksUrl(jwks)
        } else {
            KeySource::JwksFile(dir.join(jwks))
        };
        sources.push(("jwks", source));
    }
    let (_, key) = match sources.len() {
        1 => sources.pop().expect("one source"),
        0 => {
            return Err(
                "has no key; give one of `hs256_secret`, `hs384_secret`, `hs512_secret`, `public_key_pem` or `jwks`"
                    .into(),
            );
        }
        _ => {
            let names: Vec<&str> = sources.iter().map(|(k, _)| *k).collect();
            return Err(format!(
                "has several keys ({}); give exactly one",
                names.join(", ")
            ));
        }
    };
    // What `algorithms` may list, and what is accepted when it is absent.
    // A JWKS is usually public, so its symmetric (`oct`) keys are used only
    // when `algorithms` asks for HMAC explicitly.
    let (allowed_by_key, default): (Vec<Algorithm>, Vec<Algorithm>) = match (&key, hmac_alg) {
        (KeySource::Hmac(_), Some(alg)) => (vec![alg], vec![alg]),
        (KeySource::Hmac(_), None) => unreachable!("an HMAC source has its algorithm"),
        (KeySource::PublicKeyPem(_), _) => (ASYMMETRIC.to_vec(), ASYMMETRIC.to_vec()),
        (KeySource::JwksFile(_) | KeySource::JwksUrl(_), _) => (
            ASYMMETRIC.iter().chain(&HMAC).copied().collect(),
            ASYMMETRIC.to_vec(),
        ),
    };
    let algorithms = match raw.algorithms {
        None => default,
        Some(names) => {
            if names.is_empty() {
                return Err("`algorithms` is empty".into());
            }
            let mut algorithms = Vec::with_capacity(names.len());
            for name in names {
                let alg = parse_algorithm(&name)?;
                if !allowed_by_key.contains(&alg) {
                    return Err(format!(
                        "`algorithms`: `{name}` does not fit this provider's key (it allows {})",
                        algorithm_list(&allowed_by_key)
                    ));
                }
                algorithms.push(alg);
            }
            algorithms
        }
    };
    let claim = |value: Option<String>, default: &str, key: &str| match value {
        Some(v) if v.is_empty() || v.split('.').any(str::is_empty) => {
            Err(format!("`{key}`: `{v}` is not a claim name or dotted path"))
        }
        Some(v) => Ok(v),
        None => Ok(default.to_owned()),
    };
    Ok(JwtProviderSpec {
        name: name.to_owned(),
        issuer: raw.issuer,
        audience: raw.audience.map(|a| a.into_vec()).unwrap_or_default(),
        key,
        algorithms,
        leeway: raw.leeway.map_or(DEFAULT_LEEWAY, |d| d.0),
        jwks_min_refresh: match raw.jwks_min_refresh {
            None => DEFAULT_JWKS_MIN_REFRESH,
            Some(HumanDuration(d)) if d < MIN_JWKS_REFRESH => {
                return Err(format!(
                    "`jwks_min_refresh`: {d:?} is too short; at least {MIN_JWKS_REFRESH:?}, so tokens with made-up `kid`s cannot make the gateway fetch in a loop"
                ));
            }
            Some(HumanDuration(d)) => d,
        },
        scopes_claim: claim(raw.scopes_claim, DEFAULT_SCOPES_CLAIM, "scopes_claim")?,
        roles_claim: claim(raw.roles_claim, DEFAULT_ROLES_CLAIM, "roles_claim")?,
    })
}

/// Every asymmetric algorithm the gateway verifies.
const ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// The HMAC algorithms.
const HMAC: [Algorithm; 3] = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];

fn parse_algorithm(name: &str) -> Result<Algorithm, String> {
    if name.eq_ignore_ascii_case("none") {
        return Err("`algorithms`: `none` (unsigned tokens) is never accepted".into());
    }
    name.parse::<Algorithm>().map_err(|_| {
        format!(
            "`algorithms`: unknown algorithm `{name}` (known: {})",
            algorithm_list(&ASYMMETRIC.iter().chain(&HMAC).copied().collect::<Vec<_>>())
        )
    })
}

fn algorithm_list(algorithms: &[Algorithm]) -> String {
    algorithms
        .iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn auth_rule(raw: RawAuthRule, providers: &[String]) -> Result<AuthRule, String> {
    if raw.require == PUBLIC {
        if !raw.scopes.is_empty() || !raw.roles.is_empty() {
            return Err(
                "`require = \"none\"` makes the route public; `scopes` and `roles` need a provider"
                    .into(),
            );
        }
        return Ok(AuthRule::Public);
    }
    if !providers.contains(&raw.require) {
        let known = if providers.is_empty() {
            "no `[auth.<name>]` providers are defined".to_string()
        } else {
            format!("providers: {}", providers.join(", "))
        };
        return Err(format!(
            "`require`: there is no provider `{}` ({known}); use a provider name or \"none\"",
            raw.require
        ));
    }
    for value in raw.scopes.iter().chain(&raw.roles) {
        if value.is_empty() || value.contains(char::is_whitespace) {
            return Err(format!(
                "`{value}` is not a scope or role name (empty or contains spaces)"
            ));
        }
    }
    Ok(AuthRule::Jwt {
        provider: raw.require,
        scopes: raw.scopes,
        roles: raw.roles,
    })
}

pub(super) fn rate_limit(raw: RawRateLimit) -> Result<RateLimitSpec, String> {
    if raw.requests == 0 {
        return Err("`requests` must be at least 1".into());
    }
    let per: Duration = raw.per.0;
    if per.is_zero() {
        return Err("`per` must be more than zero".into());
    }
    let burst = raw.burst.unwrap_or(raw.requests);
    if burst == 0 {
        return Err("`burst` must be at least 1".into());
    }
    let key = match raw.key.as_deref() {
        None | Some("client") => RateKey::Client,
        Some("subject") => RateKey::Subject,
        Some(other) => match other.strip_prefix("header:") {
            Some(name) => RateKey::Header(
                HeaderName::try_from(name.trim())
                    .map_err(|_| format!("`key`: `{name}` is not a header name"))?,
            ),
            None => {
                return Err(format!(
                    "`key`: `{other}` is not a rate-limit key; use \"client\", \"subject\" or \"header:<name>\""
                ));
            }
        },
    };
    Ok(RateLimitSpec {
        requests: raw.requests,
        per,
        burst,
        key,
    })
}

pub(super) fn cors(raw: RawCors) -> Result<CorsSpec, String> {
    if raw.allow_origins.is_empty() {
        return Err("`allow_origins` is empty; list origins or use [\"*\"]".into());
    }
    let origins = if raw.allow_origins.iter().any(|o| o == "*") {
        if raw.allow_origins.len() > 1 {
            return Err("`allow_origins`: `*` already allows every origin; list it alone".into());
        }
        if raw.allow_credentials {
            return Err(
                "`allow_origins = [\"*\"]` cannot be combined with `allow_credentials = true` (browsers refuse it); list the origins"
                    .into(),
            );
        }
        None
    } else {
        for origin in &raw.allow_origins {
            check_origin(origin)?;
        }
        Some(raw.allow_origins)
    };
    let methods = match raw.allow_methods {
        None => None,
        Some(names) => Some(
            names
                .iter()
                .map(|m| {
                    if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
                        return Err(format!(
                            "`allow_methods`: `{m}` is not a method (write it in capitals)"
                        ));
                    }
                    Method::from_bytes(m.as_bytes())
                        .map_err(|_| format!("`allow_methods`: `{m}` is not a method"))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let header = |h: &String, key: &str| {
        HeaderName::try_from(h.as_str()).map_err(|_| format!("`{key}`: `{h}` is not a header name"))
    };
    let headers = match raw.allow_headers {
        Some(list) if list.iter().any(|h| h == "*") => None,
        Some(list) => Some(
            list.iter()
                .map(|h| header(h, "allow_headers"))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None => Some(
            DEFAULT_CORS_HEADERS
                .iter()
                .map(|h| HeaderName::from_static(h))
                .collect(),
        ),
    };
    let expose = raw
        .expose_headers
        .iter()
        .map(|h| header(h, "expose_headers"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CorsSpec {
        origins,
        methods,
        headers,
        expose,
        credentials: raw.allow_credentials,
        max_age: raw.max_age.map(|HumanDuration(d)| d),
    })
}

/// True for `http://localhost...`, `http://127.x.x.x...` and `http://[::1]...`.
fn is_loopback_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// An origin is `scheme://host[:port]`, exactly as a browser sends it.
fn check_origin(origin: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "`allow_origins`: `{origin}` is not an origin ({why}); write it like \"https://shop.example\" or \"http://localhost:8080\""
        ))
    };
    let Some((scheme, rest)) = origin.split_once("://") else {
        return bad("no scheme");
    };
    if scheme.is_empty() || !scheme.bytes().all(|b| b.is_ascii_lowercase()) {
        return bad("the scheme must be lowercase letters");
    }
    if rest.is_empty() {
        return bad("no host");
    }
    if rest.contains(['/', '?', '#']) {
        return bad("an origin has no path");
    }
    if rest.bytes().any(|b| b.is_ascii_uppercase()) {
        return bad("browsers send the host in lowercase");
    }
    Ok(())
}

pub(super) fn schema(dir: &Path, raw: RawSchema) -> Result<serde_json::Value, String> {
    match raw {
        RawSchema::Inline(table) => serde_json::to_value(&table)
            .map_err(|e| format!("cannot be turned into JSON Schema: {e}")),
        RawSchema::File(name) => {
            let path = dir.join(&name);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let value: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
            if !value.is_object() && !value.is_boolean() {
                return Err(format!(
                    "{} is not a JSON Schema (an object or a boolean)",
                    path.display()
                ));
            }
            Ok(value)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_must_be_bare_origins() {
        assert!(check_origin("https://shop.example").is_ok());
        assert!(check_origin("http://localhost:8080").is_ok());
        for (bad, why) in [
            ("shop.example", "no scheme"),
            ("https://shop.example/", "no path"),
            ("https://Shop.example", "lowercase"),
            ("https://", "no host"),
        ] {
            let err = check_origin(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn plain_http_jwks_only_on_loopback() {
        assert!(is_loopback_url("http://127.0.0.1:8080/jwks.json"));
        assert!(is_loopback_url("http://localhost/jwks"));
        assert!(is_loopback_url("http://[::1]:9/x"));
        assert!(!is_loopback_url("http://id.example.com/jwks"));
        assert!(!is_loopback_url("http://127.0.0.1.evil.example/jwks"));
    }

    #[test]
    fn none_is_never_an_algorithm() {
        assert!(parse_algorithm("none").unwrap_err().contains("never"));
        assert!(parse_algorithm("HS999").unwrap_err().contains("unknown"));
        assert_eq!(parse_algorithm("EdDSA").unwrap(), Algorithm::EdDSA);
    }
}
