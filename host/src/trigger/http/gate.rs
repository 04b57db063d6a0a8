//! The gate: everything the gateway decides before a function runs.
//!
//! In order: built-in endpoints under `/.well-known/nimbus/` (health,
//! OpenAPI, docs); CORS preflights, answered here; routing (404, 405); the
//! route's policy: rate limits (429) and JWT authentication (401, 403).
//! What passes goes on to [`super::dispatch`] with its route and call context.

use super::{ConnInfo, HttpError, WELL_KNOWN_PREFIX};
use crate::app::App;
use crate::app::router::{Match, Router, Target};
use crate::call::CallCtx;
use crate::gateway::{Cors, Preflight, Rejection, TokenError};
use crate::wire::{Body, full};
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use std::sync::Arc;

/// What the gate decided.
pub(super) enum Gated<'r, 'p> {
    /// The gateway answered the request itself (a built-in endpoint, a preflight).
    Answered(Response<Body>),
    /// The request goes on to a function.
    Pass {
        /// Its route.
        routed: Routed<'r, 'p>,
        /// Its call context, with the verified claims.
        call: CallCtx,
    },
}

/// The gateway's checks, in order: built-in endpoints, CORS preflights,
/// routing, rate limits and authentication. `path` is the request's, copied
/// out by the caller (the request itself moves on to the function). `out`
/// collects what is known about the request as it goes, for the access log
/// and the CORS headers of whatever response results.
pub(super) async fn check<'a, 'p>(
    app: &'a Arc<App>,
    req: &Request<Incoming>,
    conn: &ConnInfo,
    request_id: &Arc<str>,
    path: &'p str,
    out: &mut Seen<'a>,
) -> Result<Gated<'a, 'p>, HttpError> {
    if let Some(endpoint) = path.strip_prefix(WELL_KNOWN_PREFIX) {
        return well_known(app, req.method(), endpoint).map(Gated::Answered);
    }
    let gateway = &app.gateway;
    if let Some(preflight) = Preflight::of(req.method(), req.headers())
        && let Match::Found { target, .. } = app.router.route(&preflight.method, path)
        && let Some(cors) = gateway.cors(target.function)
    {
        // Answered here: the function never sees a preflight.
        out.function = Some(target.function);
        out.route = Some(&target.pattern);
        let headers = cors
            .preflight(&preflight, std::slice::from_ref(&preflight.method))
            .map_err(HttpError::CorsRejected)?;
        let mut response = Response::new(full(Bytes::new()));
        *response.status_mut() = StatusCode::NO_CONTENT;
        *response.headers_mut() = headers;
        return Ok(Gated::Answered(response));
    }
    let routed = route(&app.router, req.method(), path)?;
    let index = routed.target.function;
    out.function = Some(index);
    out.route = Some(&routed.target.pattern);
    out.cors = gateway.cors(index).map(|c| &**c);
    let mut call = CallCtx::new(request_id.clone(), None, index);
    let policy = gateway.policy(index, routed.target.route).ok_or_else(|| {
        // Policies are built for every route the router holds; a miss is
        // a bug, and serving the route unchecked could expose it.
        HttpError::Internal(format!(
            "no gateway policy for route `{}`",
            routed.target.pattern
        ))
    })?;
    let client = conn.client.ip();
    let realm = || gateway.realm().to_owned();
    let reject = |r: Rejection| match r {
        Rejection::Unauthorized(TokenError::KeysUnavailable) => HttpError::AuthUnavailable,
        Rejection::Unauthorized(reason) => HttpError::Unauthorized {
            reason,
            realm: realm(),
        },
        Rejection::Forbidden(missing) => HttpError::Forbidden {
            missing,
            realm: realm(),
            scopes: policy.required_scopes().to_vec(),
        },
        Rejection::RateLimited(limited) => HttpError::TooManyRequests {
            retry_after: limited.retry_after,
        },
    };
    policy
        .limit_before_auth(req.headers(), client)
        .map_err(reject)?;
    call.claims = match policy.authenticate(req.headers()).await {
        Ok(claims) => claims,
        Err(rejected) => {
            // A failed attempt still counts, against the address.
            policy.limit_failed_auth(client).map_err(reject)?;
            return Err(reject(rejected));
        }
    };
    policy
        .limit_subject(call.claims.as_deref(), client)
        .map_err(reject)?;
    Ok(Gated::Pass { routed, call })
}

/// `GET /.well-known/nimbus/...`: health (liveness), ready (readiness: `503`
/// while the shared state of a cluster is out of reach or its deployments
/// are not applied here), the OpenAPI
/// document, its docs page.
fn well_known(
    app: &App,
    method: &http::Method,
    endpoint: &str,
) -> Result<Response<Body>, HttpError> {
    let gateway = &app.gateway;
    let mut status = http::StatusCode::OK;
    let (body, content_type) = match endpoint {
        "ready" => {
            let backends = app.backends();
            let behind = backends.members.unreachable().or_else(|| {
                backends
                    .deployments
                    .as_ref()
                    .and_then(|deployments| deployments.behind().get())
            });
            let body = match behind {
                None => serde_json::json!({"status": "ready", "app": app.name}),
                Some(why) => {
                    status = http::StatusCode::SERVICE_UNAVAILABLE;
                    serde_json::json!({"status": "not_ready", "app": app.name, "reason": why})
                }
            };
            (Bytes::from(format!("{body}\n")), "application/json")
        }
        "health" => {
            let body = serde_json::json!({
                "status": "ok",
                "app": app.name,
                "functions": app.functions.len(),
            });
            (Bytes::from(format!("{body}\n")), "application/json")
        }
        "openapi.json" => (gateway.openapi().clone(), "application/json"),
        "docs" => (gateway.docs().clone(), "text/html; charset=utf-8"),
        _ => {
            return Err(HttpError::NotFound {
                method: method.clone(),
                path: format!("{WELL_KNOWN_PREFIX}{endpoint}"),
            });
        }
    };
    if method != http::Method::GET && method != http::Method::HEAD {
        return Err(HttpError::MethodNotAllowed {
            method: method.clone(),
            allow: vec![http::Method::GET, http::Method::HEAD],
        });
    }
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(response)
}

/// What the gateway learned about a request, whatever its outcome.
#[derive(Default)]
pub(super) struct Seen<'a> {
    /// The matched function's index.
    pub(super) function: Option<usize>,
    /// The matched route's pattern.
    pub(super) route: Option<&'a Arc<str>>,
    /// The function's CORS rules, applied to the response.
    pub(super) cors: Option<&'a Cors>,
}

/// A request matched to a route.
pub(super) struct Routed<'r, 'p> {
    pub(super) target: &'r Target,
    pub(super) params: Vec<(&'r str, &'p str)>,
    pub(super) path_info: Option<String>,
}

/// Routes `path`, turning a miss into the gateway's error.
pub(super) fn route<'r, 'p>(
    router: &'r Router,
    method: &http::Method,
    path: &'p str,
) -> Result<Routed<'r, 'p>, HttpError> {
    match router.route(method, path) {
        Match::Found {
            target,
            params,
            path_info,
        } => Ok(Routed {
            target,
            params,
            path_info,
        }),
        Match::MethodNotAllowed { allow } => Err(HttpError::MethodNotAllowed {
            method: method.clone(),
            allow,
        }),
        Match::NotFound => Err(HttpError::NotFound {
            method: method.clone(),
            path: path.to_owned(),
        }),
    }
}
