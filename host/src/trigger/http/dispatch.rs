//! Dispatch: a request that passed the gate, into its function.
//!
//! The guest's header set (the caller's headers minus any `x-nimbus-*`,
//! plus what Nimbus knows: function, route, parameters, caller, request id,
//! verified claims, its own trace span), the body cap (413), then the
//! executor. Service calls from one function to another come in here too,
//! routed on the callee's own routes.

use super::gate::Routed;
use super::{ConnInfo, HttpError, HttpTrigger};
use crate::app::{App, Function};
use crate::call::CallCtx;
use crate::capability::outbound::Services;
use crate::telemetry::otlp::{Kind, Span, SpanWriter, Value};
use crate::wire::{
    Body, HEADER_CALLER, HEADER_CLIENT_ADDR, HEADER_FUNCTION, HEADER_PARAM_PREFIX,
    HEADER_PATH_INFO, HEADER_ROUTE, NIMBUS_HEADER_PREFIX, REQUEST_ID, TRACEPARENT,
};
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Limited};
use std::sync::Arc;

/// Where a request came from.
#[derive(Debug, Clone, Copy)]
pub enum Origin<'a> {
    /// A caller over the network.
    Client(&'a ConnInfo),
    /// Another function of the app, by id.
    Service(&'a str),
}

/// Runs a routed request through `app.functions[index]`: the guest's
/// `x-nimbus-*` headers, its trace span (exported when traces are on), the
/// body cap, then the executor.
pub(super) async fn invoke<B>(
    trigger: &Arc<HttpTrigger>,
    app: &Arc<App>,
    index: usize,
    routed: Routed<'_, '_>,
    req: Request<B>,
    origin: Origin<'_>,
    mut call: CallCtx,
) -> Result<Response<Body>, HttpError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let function = &app.functions[index];
    let mut headers = guest_headers(function, &routed, &req, origin, &call)?;
    // The invocation is a span of the caller's trace, or starts one; the
    // guest sees its own span, and service calls it makes are its children.
    let incoming_trace = req.headers().get(TRACEPARENT).and_then(|v| v.to_str().ok());
    let traceparent = crate::telemetry::trace::child_of(incoming_trace);
    let span = Span::begin(Kind::Server, &traceparent, incoming_trace, |span| {
        describe(span, function, &routed, &req, origin, &call)
    });
    call.span = span.as_ref().map(Span::notes);
    headers.insert(TRACEPARENT, traceparent.clone());
    call.traceparent = Some(traceparent);
    let result = run(trigger, app, index, req, headers, call).await;
    if let Some(span) = span {
        let status = match &result {
            Ok(response) => response.status(),
            Err(e) => e.status(),
        };
        let error = match &result {
            Err(e) if status.is_server_error() => Some(e.to_string()),
            _ if status.is_server_error() => Some(format!("status {status}")),
            _ => None,
        };
        let status = Value::Int(i64::from(status.as_u16()));
        span.end(&[("http.response.status_code", status)], error);
    }
    result
}

/// The name and attributes of an HTTP invocation's span (OpenTelemetry's
/// HTTP server conventions, plus Nimbus's own).
fn describe<B>(
    span: &mut SpanWriter,
    function: &Function,
    routed: &Routed<'_, '_>,
    req: &Request<B>,
    origin: Origin<'_>,
    call: &CallCtx,
) {
    let (route, method) = (&routed.target.pattern, req.method().as_str());
    span.name(&[method, " ", route]);
    span.attribute("nimbus.function", Value::Str(&function.id_str));
    span.attribute("http.request.method", Value::Str(method));
    span.attribute("http.route", Value::Str(route));
    span.attribute("url.path", Value::Str(req.uri().path()));
    span.attribute("nimbus.request_id", Value::Str(&call.request_id));
    if let Origin::Service(caller) = origin {
        span.attribute("nimbus.caller", Value::Str(caller));
    }
}

/// The rest of [`invoke`]: the body cap, then the executor.
async fn run<B>(
    trigger: &Arc<HttpTrigger>,
    app: &Arc<App>,
    index: usize,
    req: Request<B>,
    headers: HeaderMap,
    call: CallCtx,
) -> Result<Response<Body>, HttpError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let function = &app.functions[index];
    let max_body = function.limits.max_body;

    let declared_len = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared_len.is_some_and(|n| n > max_body) {
        return Err(HttpError::PayloadTooLarge { limit: max_body });
    }
    let (mut parts, body) = req.into_parts();
    parts.headers = headers;
    let services: Arc<dyn Services> = trigger.clone();
    let executor = &trigger.executor;
    let invocation_error = |error| HttpError::Invocation {
        function: function.id.to_string(),
        error,
    };
    if declared_len.is_some() {
        // The declared length was checked; the cap still guards the stream.
        let body = Limited::new(body, max_body as usize)
            .map_err(move |_| wasmtime_wasi_http::Error::HttpRequestBodySize(Some(max_body)));
        let request = Request::from_parts(parts, body);
        executor
            .invoke_http(app, index, request, call, &services)
            .await
            .map_err(invocation_error)
    } else {
        // No declared length (chunked): read up to the cap first, so an
        // oversized body is a clean 413 before any guest code runs.
        let body = match Limited::new(body, max_body as usize).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(HttpError::PayloadTooLarge { limit: max_body });
            }
            Err(e) => return Err(HttpError::BadRequest(format!("reading the body: {e}"))),
        };
        let body = http_body_util::Full::new(body)
            .map_err(|never| -> wasmtime_wasi_http::Error { match never {} });
        let request = Request::from_parts(parts, body);
        executor
            .invoke_http(app, index, request, call, &services)
            .await
            .map_err(invocation_error)
    }
}

/// The guest's header set: the caller's, minus anything that pretends to
/// come from Nimbus, plus what Nimbus knows.
fn guest_headers<B>(
    function: &Function,
    routed: &Routed<'_, '_>,
    req: &Request<B>,
    origin: Origin<'_>,
    call: &CallCtx,
) -> Result<HeaderMap, HttpError> {
    let Routed {
        target,
        params,
        path_info,
    } = routed;
    let mut headers = HeaderMap::with_capacity(req.headers().len() + 4 + params.len());
    for (name, value) in req.headers() {
        if !name.as_str().starts_with(NIMBUS_HEADER_PREFIX) {
            headers.append(name.clone(), value.clone());
        }
    }
    let bad =
        |what: &str| HttpError::BadRequest(format!("{what} cannot be passed to the function"));
    let id = function
        .id_header
        .clone()
        .ok_or_else(|| bad("function id"))?;
    headers.insert(HEADER_FUNCTION, id);
    let route = target.pattern_header.clone().ok_or_else(|| bad("route"))?;
    headers.insert(HEADER_ROUTE, route);
    match origin {
        Origin::Client(conn) => {
            let client = conn.client_header.clone();
            headers.insert(
                HEADER_CLIENT_ADDR,
                client.ok_or_else(|| bad("client address"))?,
            );
            if req.uri().authority().is_none() && !headers.contains_key(HOST) {
                // HTTP/1.0 callers may omit Host; wasi:http needs an authority.
                if let Ok(v) = HeaderValue::from_str(&conn.local.to_string()) {
                    headers.insert(HOST, v);
                }
            }
        }
        Origin::Service(caller) => {
            let caller = HeaderValue::from_str(caller).map_err(|_| bad("caller"))?;
            headers.insert(HEADER_CALLER, caller);
        }
    }
    for (name, value) in params {
        let header = HeaderName::try_from(format!("{HEADER_PARAM_PREFIX}{name}"))
            .map_err(|_| bad("parameter name"))?;
        let value = HeaderValue::from_str(value).map_err(|_| bad("path parameter"))?;
        headers.insert(header, value);
    }
    if let Some(info) = path_info {
        let info = HeaderValue::from_str(info).map_err(|_| bad("path"))?;
        headers.insert(HEADER_PATH_INFO, info);
    }
    if let Ok(v) = HeaderValue::from_str(&call.request_id) {
        headers.insert(REQUEST_ID, v);
    }
    if let Some(claims) = &call.claims {
        crate::gateway::insert_claim_headers(&mut headers, claims);
    }
    Ok(headers)
}
