//! The API gateway's policies: who may call a route (JWT), how often (rate
//! limits), from which web origins (CORS), and the app's API documentation
//! (OpenAPI). Everything is resolved from the manifest once, at load; per
//! request the HTTP trigger asks the matched route's [`RoutePolicy`].
//!
//! A rule on a route replaces the function's, which replaces the app's.
//! These checks guard the edge: a service call between functions of the app
//! is authorized by the caller's `services` grant and carries the original
//! caller's verified claims.

pub mod cors;
pub mod jwt;
pub mod openapi;
pub mod ratelimit;

pub use cors::{Cors, CorsError, Preflight};
pub use jwt::{Claims, JwtProvider, ProviderError, TokenError};
pub use ratelimit::{Limited, RateLimiter};

use crate::manifest::{AuthRule, Manifest, RateKey};
use crate::wire::{
    HEADER_AUTH_CLAIMS, HEADER_AUTH_PROVIDER, HEADER_AUTH_ROLES, HEADER_AUTH_SCOPES,
    HEADER_AUTH_SUBJECT,
};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// The gateway's rules for every route of an app.
pub struct Gateway {
    /// The JWT providers by name, with their key caches.
    providers: HashMap<String, Arc<JwtProvider>>,
    /// `[function][route]`, in manifest order.
    routes: Vec<Vec<RoutePolicy>>,
    /// `[function]`.
    cors: Vec<Option<Arc<Cors>>>,
    /// The OpenAPI document, serialized.
    openapi: Bytes,
    /// The documentation page, with the document inside.
    docs: Bytes,
    /// The app's name, the `realm` of `WWW-Authenticate`.
    realm: Arc<str>,
}

/// What the gateway checks before one route's function runs.
#[derive(Clone)]
pub struct RoutePolicy {
    auth: Auth,
    rate_limit: Option<(RateKey, Arc<RateLimiter>)>,
}

#[derive(Clone)]
enum Auth {
    Public,
    Jwt {
        provider: Arc<JwtProvider>,
        scopes: Vec<String>,
        roles: Vec<String>,
    },
}

/// A request the gateway refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// No valid token: 401.
    #[error("{0}")]
    Unauthorized(TokenError),
    /// A valid token without what the route requires: 403.
    #[error("the token lacks {0}")]
    Forbidden(String),
    /// Over the rate limit: 429.
    #[error("rate limit exceeded; retry in {} s", .0.retry_after.as_secs_f64().ceil())]
    RateLimited(Limited),
}

impl Gateway {
    /// Resolves every route's policy from `manifest`: providers' keys are
    /// loaded now (PEM and JWKS files read, so a bad file stops startup).
    pub fn new(manifest: &Manifest) -> Result<Gateway, ProviderError> {
        let mut providers = HashMap::new();
        for spec in &manifest.auth_providers {
            providers.insert(spec.name.clone(), Arc::new(JwtProvider::new(spec.clone())?));
        }
        Self::build(manifest, providers, &[])
    }

    /// The gateway for `manifest`, which is this gateway's manifest with
    /// functions appended (added through the admin API): the existing
    /// routes keep their rate-limit buckets, and the providers their key
    /// caches.
    pub fn extended(&self, manifest: &Manifest) -> Result<Gateway, ProviderError> {
        Self::build(manifest, self.providers.clone(), &self.routes)
    }

    fn build(
        manifest: &Manifest,
        providers: HashMap<String, Arc<JwtProvider>>,
        existing: &[Vec<RoutePolicy>],
    ) -> Result<Gateway, ProviderError> {
        let auth_of = |rule: &AuthRule| match rule {
            AuthRule::Public => Ok(Auth::Public),
            AuthRule::Jwt {
                provider,
                scopes,
                roles,
            } => Ok(Auth::Jwt {
                provider: providers
                    .get(provider)
                    .ok_or_else(|| ProviderError {
                        provider: provider.clone(),
                        message: "no such provider in `[auth]`".into(),
                    })?
                    .clone(),
                scopes: scopes.clone(),
                roles: roles.clone(),
            }),
        };
        let mut routes: Vec<Vec<RoutePolicy>> = existing.to_vec();
        for f in &manifest.functions[existing.len().min(manifest.functions.len())..] {
            assert_eq!(
                f.route_options.len(),
                f.routes.len(),
                "a route's options for each route of `{}`",
                f.id
            );
            // The function's own limit is one bucket for all the routes
            // that inherit it, not one per route.
            let shared = f
                .rate_limit
                .as_ref()
                .map(|spec| (spec.key.clone(), Arc::new(RateLimiter::new(spec))));
            let mut policies = Vec::with_capacity(f.route_options.len());
            for o in &f.route_options {
                let auth = match o
                    .auth
                    .as_ref()
                    .or(f.auth.as_ref())
                    .or(manifest.auth.as_ref())
                {
                    Some(rule) => auth_of(rule)?,
                    None => Auth::Public,
                };
                let rate_limit = match &o.rate_limit {
                    Some(spec) => Some((spec.key.clone(), Arc::new(RateLimiter::new(spec)))),
                    None => shared.clone(),
                };
                policies.push(RoutePolicy { auth, rate_limit });
            }
            routes.push(policies);
        }
        let cors = manifest
            .functions
            .iter()
            .map(|f| {
                f.cors
                    .as_ref()
                    .or(manifest.cors.as_ref())
                    .map(|spec| Arc::new(Cors::new(spec.clone())))
            })
            .collect();
        let document = openapi::document(manifest);
        let openapi = Bytes::from(format!("{document:#}\n"));
        // `</` would end the script element early; `<\/` is the same JSON.
        let embedded = document.to_string().replace("</", "<\\/");
        let docs = Bytes::from(
            include_str!("docs.html")
                .replacen("/*OPENAPI*/null", &embedded, 1)
                .replacen(
                    "<title>API</title>",
                    &format!("<title>{} API</title>", html_escape(&manifest.name)),
                    1,
                ),
        );
        Ok(Gateway {
            providers,
            routes,
            cors,
            openapi,
            docs,
            realm: manifest.name.as_str().into(),
        })
    }

    /// The policy of route `route` of function `function`. Routes the
    /// manifest does not list (a function's internal catch-all) are public.
    pub fn policy(&self, function: usize, route: usize) -> Option<&RoutePolicy> {
        self.routes.get(function)?.get(route)
    }

    /// The function's CORS rules, if it has any.
    pub fn cors(&self, function: usize) -> Option<&Arc<Cors>> {
        self.cors.get(function)?.as_ref()
    }

    /// The OpenAPI document as JSON.
    pub fn openapi(&self) -> &Bytes {
        &self.openapi
    }

    /// The HTML documentation page.
    pub fn docs(&self) -> &Bytes {
        &self.docs
    }

    /// The realm named in `WWW-Authenticate`.
    pub fn realm(&self) -> &str {
        &self.realm
    }
}

impl RoutePolicy {
    /// True when the route needs a token.
    pub fn requires_auth(&self) -> bool {
        matches!(self.auth, Auth::Jwt { .. })
    }

    /// Checks the rate limit for keys known before authentication (client
    /// address, header). Subject-keyed limits wait for [`Self::limit_subject`].
    pub fn limit_before_auth(&self, headers: &HeaderMap, client: IpAddr) -> Result<(), Rejection> {
        match &self.rate_limit {
            Some((RateKey::Client, limiter)) => check(limiter, &client_key(client)),
            Some((RateKey::Header(name), limiter)) => match headers.get(name) {
                Some(v) => check(
                    limiter,
                    &format!("h:{}", String::from_utf8_lossy(v.as_bytes())),
                ),
                None => check(limiter, &client_key(client)),
            },
            _ => Ok(()),
        }
    }

    /// After a failed authentication on a subject-keyed route: the attempt
    /// counts against the client's address, so guessing tokens is limited too.
    pub fn limit_failed_auth(&self, client: IpAddr) -> Result<(), Rejection> {
        match &self.rate_limit {
            Some((RateKey::Subject, limiter)) => check(limiter, &client_key(client)),
            _ => Ok(()),
        }
    }

    /// Checks a subject-keyed rate limit, after authentication.
    pub fn limit_subject(&self, claims: Option<&Claims>, client: IpAddr) -> Result<(), Rejection> {
        match (&self.rate_limit, claims.and_then(|c| c.subject.as_deref())) {
            (Some((RateKey::Subject, limiter)), Some(subject)) => {
                check(limiter, &format!("s:{subject}"))
            }
            (Some((RateKey::Subject, limiter)), None) => check(limiter, &client_key(client)),
            _ => Ok(()),
        }
    }

    /// Verifies the bearer token when the route needs one, and checks its
    /// scopes and roles.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<Arc<Claims>>, Rejection> {
        let Auth::Jwt {
            provider,
            scopes,
            roles,
        } = &self.auth
        else {
            return Ok(None);
        };
        let token = bearer_token(headers).map_err(Rejection::Unauthorized)?;
        let claims = provider
            .verify(token)
            .await
            .map_err(Rejection::Unauthorized)?;
        let missing: Vec<&str> = scopes
            .iter()
            .filter(|s| !claims.scopes.contains(s))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(Rejection::Forbidden(format!("scope {}", missing.join(" "))));
        }
        if !roles.is_empty() && !roles.iter().any(|r| claims.roles.contains(r)) {
            return Err(Rejection::Forbidden(format!("role {}", roles.join(" or "))));
        }
        Ok(Some(Arc::new(claims)))
    }

    /// The scopes the route requires, for `WWW-Authenticate` on a 403.
    pub fn required_scopes(&self) -> &[String] {
        match &self.auth {
            Auth::Jwt { scopes, .. } => scopes,
            Auth::Public => &[],
        }
    }
}

/// A client's rate-limit key: its IPv4 address, or its IPv6 /64 (one host
/// usually has a whole /64, and could otherwise take a new key per request).
fn client_key(client: IpAddr) -> String {
    match client {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

fn check(limiter: &RateLimiter, key: &str) -> Result<(), Rejection> {
    limiter.check(key).map_err(Rejection::RateLimited)
}

/// The token of `Authorization: Bearer <token>` (the scheme is
/// case-insensitive, RFC 7235).
fn bearer_token(headers: &HeaderMap) -> Result<&str, TokenError> {
    let value = headers
        .get(http::header::AUTHORIZATION)
        .ok_or(TokenError::Missing)?
        .to_str()
        .map_err(|_| TokenError::Malformed)?;
    let (scheme, token) = value.split_once(' ').ok_or(TokenError::Missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(TokenError::Missing);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(TokenError::Missing);
    }
    Ok(token)
}

/// Adds the verified claims to the headers a function receives.
pub fn insert_claim_headers(headers: &mut HeaderMap, claims: &Claims) {
    let mut put = |name: HeaderName, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    };
    put(HEADER_AUTH_PROVIDER, &claims.provider);
    if let Some(subject) = &claims.subject {
        put(HEADER_AUTH_SUBJECT, subject);
    }
    put(HEADER_AUTH_SCOPES, &claims.scopes.join(" "));
    put(HEADER_AUTH_ROLES, &claims.roles.join(" "));
    let json = serde_json::Value::Object(claims.all.clone()).to_string();
    put(HEADER_AUTH_CLAIMS, &ascii_json(&json));
}

/// JSON with every non-ASCII or control character written as `\uXXXX`,
/// so it fits a header value. Outside strings JSON is ASCII, so escaping every such
/// character keeps the document equal.
fn ascii_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() && !c.is_ascii_control() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_json_round_trips() {
        let value = serde_json::json!({"name": "Zoë 🦀", "n": 1});
        let escaped = ascii_json(&value.to_string());
        assert!(escaped.is_ascii());
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&escaped).unwrap(),
            value
        );
    }

    #[test]
    fn bearer_tokens() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer_token(&h), Err(TokenError::Missing));
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc"),
        );
        assert_eq!(bearer_token(&h), Ok("abc"));
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Basic abc"),
        );
        assert_eq!(bearer_token(&h), Err(TokenError::Missing));
    }
}
