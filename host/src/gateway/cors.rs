//! Cross-origin resource sharing (the Fetch standard's CORS protocol): the
//! gateway answers preflights itself and adds the response headers that let
//! a page on an allowed origin read the answer.

use crate::manifest::CorsSpec;
use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderValue, Method};

/// A function's CORS rules, with header values prepared once.
#[derive(Debug)]
pub struct Cors {
    spec: CorsSpec,
    expose: Option<HeaderValue>,
    max_age: Option<HeaderValue>,
    methods: Option<HeaderValue>,
}

/// Why a preflight is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CorsError {
    /// The origin is not listed.
    #[error("origin `{0}` is not allowed")]
    Origin(String),
    /// The method is not allowed cross-origin.
    #[error("method {0} is not allowed cross-origin")]
    Method(String),
    /// A request header is not allowed.
    #[error("request header `{0}` is not allowed cross-origin")]
    Header(String),
}

/// The parts of a request CORS looks at.
pub struct Preflight<'a> {
    /// `Origin`.
    pub origin: &'a HeaderValue,
    /// `Access-Control-Request-Method`, parsed.
    pub method: Method,
    /// `Access-Control-Request-Headers`, if sent.
    pub headers: Option<&'a HeaderValue>,
}

impl<'a> Preflight<'a> {
    /// The preflight in `headers`, if this `OPTIONS` request is one.
    pub fn of(method: &Method, headers: &'a HeaderMap) -> Option<Preflight<'a>> {
        if method != Method::OPTIONS {
            return None;
        }
        let origin = headers.get(ORIGIN)?;
        let requested = headers.get(ACCESS_CONTROL_REQUEST_METHOD)?;
        Some(Preflight {
            origin,
            method: Method::from_bytes(requested.as_bytes()).ok()?,
            headers: headers.get(ACCESS_CONTROL_REQUEST_HEADERS),
        })
    }
}

impl Cors {
    /// Prepares `spec`.
    pub fn new(spec: CorsSpec) -> Cors {
        let join = |items: Vec<&str>| HeaderValue::from_str(&items.join(", ")).ok();
        Cors {
            expose: (!spec.expose.is_empty())
                .then(|| join(spec.expose.iter().map(|h| h.as_str()).collect()))
                .flatten(),
            max_age: spec.max_age.map(|d| HeaderValue::from(d.as_secs())),
            methods: spec
                .methods
                .as_ref()
                .and_then(|m| join(m.iter().map(Method::as_str).collect())),
            spec,
        }
    }

    fn allows_origin(&self, origin: &HeaderValue) -> bool {
        match &self.spec.origins {
            None => true,
            Some(list) => origin
                .to_str()
                .is_ok_and(|o| list.iter().any(|allowed| allowed == o)),
        }
    }

    /// `Access-Control-Allow-Origin` (and `-Credentials` when allowed) for an
    /// allowed origin, on a preflight answer or any other.
    fn allow(&self, origin: &HeaderValue, headers: &mut HeaderMap) {
        let value = if self.spec.origins.is_none() && !self.spec.credentials {
            HeaderValue::from_static("*")
        } else {
            origin.clone()
        };
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, value);
        if self.spec.credentials {
            headers.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }

    /// Answers a preflight: the headers of a 204, or why it is refused.
    /// `route_methods` are the methods the matched path accepts.
    pub fn preflight(
        &self,
        request: &Preflight<'_>,
        route_methods: &[Method],
    ) -> Result<HeaderMap, CorsError> {
        if !self.allows_origin(request.origin) {
            return Err(CorsError::Origin(
                String::from_utf8_lossy(request.origin.as_bytes()).into_owned(),
            ));
        }
        let method_ok = match &self.spec.methods {
            Some(list) => list.contains(&request.method),
            None => route_methods.contains(&request.method),
        };
        if !method_ok {
            return Err(CorsError::Method(request.method.to_string()));
        }
        if let (Some(allowed), Some(requested)) = (&self.spec.headers, request.headers) {
            let requested = requested
                .to_str()
                .map_err(|_| CorsError::Header("?".into()))?;
            for name in requested
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
            {
                if !allowed
                    .iter()
                    .any(|a| a.as_str().eq_ignore_ascii_case(name))
                {
                    return Err(CorsError::Header(name.to_owned()));
                }
            }
        }
        let mut headers = HeaderMap::new();
        self.allow(request.origin, &mut headers);
        let methods = self.methods.clone().unwrap_or_else(|| {
            let names: Vec<&str> = route_methods.iter().map(Method::as_str).collect();
            HeaderValue::from_str(&names.join(", "))
                .unwrap_or_else(|_| HeaderValue::from_static("GET"))
        });
        headers.insert(ACCESS_CONTROL_ALLOW_METHODS, methods);
        if let Some(requested) = request.headers {
            // Allowed (checked above, or any): echo the list back.
            headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, requested.clone());
        }
        if let Some(max_age) = &self.max_age {
            headers.insert(ACCESS_CONTROL_MAX_AGE, max_age.clone());
        }
        headers.insert(
            VARY,
            HeaderValue::from_static(
                "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
            ),
        );
        Ok(headers)
    }

    /// Adds the CORS headers to a response: for an allowed `origin`, the
    /// `Access-Control-*` headers; and `Vary: Origin` whenever the answer
    /// depends on the origin, so a shared cache never serves one origin's
    /// answer to another. A preflight answer, complete already, is left alone.
    pub fn decorate(&self, origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
        if headers.contains_key(ACCESS_CONTROL_ALLOW_ORIGIN) {
            return;
        }
        let allowed = origin.filter(|o| self.allows_origin(o));
        if self.spec.origins.is_some() || self.spec.credentials || allowed.is_some() {
            headers.append(VARY, HeaderValue::from_static("Origin"));
        }
        let Some(origin) = allowed else {
            return;
        };
        self.allow(origin, headers);
        if let Some(expose) = &self.expose {
            headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cors(origins: Option<Vec<&str>>, credentials: bool) -> Cors {
        Cors::new(CorsSpec {
            origins: origins.map(|o| o.into_iter().map(String::from).collect()),
            methods: None,
            headers: Some(vec![
                http::header::AUTHORIZATION,
                http::header::CONTENT_TYPE,
            ]),
            expose: vec![http::HeaderName::from_static("x-request-id")],
            credentials,
            max_age: Some(Duration::from_secs(600)),
        })
    }

    #[test]
    fn preflight_checks_origin_method_and_headers() {
        let c = cors(Some(vec!["https://a.example"]), true);
        let origin = HeaderValue::from_static("https://a.example");
        let requested = HeaderValue::from_static("Content-Type, authorization");
        let ok = c
            .preflight(
                &Preflight {
                    origin: &origin,
                    method: Method::POST,
                    headers: Some(&requested),
                },
                &[Method::GET, Method::POST],
            )
            .unwrap();
        assert_eq!(ok[ACCESS_CONTROL_ALLOW_ORIGIN], "https://a.example");
        assert_eq!(ok[ACCESS_CONTROL_ALLOW_METHODS], "GET, POST");
        assert_eq!(ok[ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(ok[ACCESS_CONTROL_MAX_AGE], "600");

        let other = HeaderValue::from_static("https://evil.example");
        let refused = |origin, method, headers| {
            c.preflight(
                &Preflight {
                    origin,
                    method,
                    headers,
                },
                &[Method::GET, Method::POST],
            )
            .unwrap_err()
        };
        assert!(matches!(
            refused(&other, Method::GET, None),
            CorsError::Origin(_)
        ));
        assert!(matches!(
            refused(&origin, Method::DELETE, None),
            CorsError::Method(_)
        ));
        let x = HeaderValue::from_static("x-secret");
        assert_eq!(
            refused(&origin, Method::GET, Some(&x)),
            CorsError::Header("x-secret".into())
        );
    }

    #[test]
    fn any_origin_without_credentials_answers_star() {
        let c = cors(None, false);
        let mut headers = HeaderMap::new();
        c.decorate(
            Some(&HeaderValue::from_static("https://b.example")),
            &mut headers,
        );
        assert_eq!(headers[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(headers[ACCESS_CONTROL_EXPOSE_HEADERS], "x-request-id");
    }

    #[test]
    fn listed_origins_vary_even_when_refused_or_absent() {
        let c = cors(Some(vec!["https://a.example"]), false);
        for origin in [None, Some(HeaderValue::from_static("https://evil.example"))] {
            let mut headers = HeaderMap::new();
            c.decorate(origin.as_ref(), &mut headers);
            assert_eq!(headers[VARY], "Origin");
            assert!(!headers.contains_key(ACCESS_CONTROL_ALLOW_ORIGIN));
        }
    }
}
