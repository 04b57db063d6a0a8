//! Route syntax: `"[METHOD ]/path/:param/..."`.
//!
//! - an optional method (`GET`, `POST`, ...; uppercase); without one the route
//!   takes every method;
//! - a path of `/`-separated segments: a literal (`users`), a parameter
//!   (`:id`, lowercase letters, digits and `_`), or a trailing `...` that
//!   matches the rest of the path, including nothing.

use http::Method;
use serde::{Deserialize, Deserializer};
use std::fmt;

/// One segment of a route's path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// Matches exactly this text.
    Literal(Box<str>),
    /// Matches any one non-empty segment and captures it under this name.
    Param(Box<str>),
}

/// The path part of a route, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePattern {
    /// Segments before any wildcard.
    pub segments: Vec<Segment>,
    /// True when the path ends in `/...`.
    pub wildcard: bool,
    text: Box<str>,
}

impl RoutePattern {
    /// The path as written in the manifest, e.g. `/hello/:name`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The parameter names in order of appearance.
    pub fn param_names(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(name) => Some(&**name),
            Segment::Literal(_) => None,
        })
    }

    /// The pattern with parameter names erased: two routes with the same shape
    /// match exactly the same paths (`/a/:x` and `/a/:y` do).
    pub fn shape(&self) -> String {
        let mut out = String::new();
        for seg in &self.segments {
            out.push('/');
            match seg {
                Segment::Literal(s) => out.push_str(s),
                Segment::Param(_) => out.push(':'),
            }
        }
        if self.wildcard {
            out.push_str("/...");
        }
        if out.is_empty() {
            out.push('/');
        }
        out
    }
}

/// A route: an optional method and a path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `None` matches every method.
    pub method: Option<Method>,
    /// The path pattern.
    pub pattern: RoutePattern,
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.method {
            Some(m) => write!(f, "{m} {}", self.pattern.as_str()),
            None => f.write_str(self.pattern.as_str()),
        }
    }
}

impl Route {
    /// Parses `"GET /users/:id"`, `"/static/..."` and the like.
    pub fn parse(text: &str) -> Result<Route, String> {
        let trimmed = text.trim();
        let (method, path) = match trimmed.split_once(char::is_whitespace) {
            Some((m, p)) => (Some(parse_method(m, text)?), p.trim()),
            None => (None, trimmed),
        };
        let pattern = parse_path(path, text)?;
        Ok(Route { method, pattern })
    }
}

fn parse_method(m: &str, route: &str) -> Result<Method, String> {
    if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "invalid route `{route}`: `{m}` is not a method; write `GET /path`, or just `/path` for every method"
        ));
    }
    Method::from_bytes(m.as_bytes())
        .map_err(|_| format!("invalid route `{route}`: bad method `{m}`"))
}

fn parse_path(path: &str, route: &str) -> Result<RoutePattern, String> {
    let bad = |why: &str| format!("invalid route `{route}`: {why}");
    let Some(rest) = path.strip_prefix('/') else {
        return Err(bad("the path must start with `/`"));
    };
    if path.contains(['?', '#']) {
        return Err(bad("a route has no query string or fragment"));
    }
    // A trailing slash names the same path: `/users/` is `/users`.
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let mut segments = Vec::new();
    let mut wildcard = false;
    if !rest.is_empty() {
        let parts: Vec<&str> = rest.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            if wildcard {
                return Err(bad("`...` may only be the last segment"));
            }
            match *part {
                "" => return Err(bad("empty segment (`//`)")),
                "..." => {
                    if i + 1 != parts.len() {
                        return Err(bad("`...` may only be the last segment"));
                    }
                    wildcard = true;
                }
                p if p.starts_with(':') => {
                    let name = &p[1..];
                    if name.is_empty()
                        || !name
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                    {
                        return Err(bad(&format!(
                            "parameter `{p}` must be `:` then lowercase letters, digits or `_`"
                        )));
                    }
                    if segments.contains(&Segment::Param(name.into())) {
                        return Err(bad(&format!("parameter `:{name}` appears twice")));
                    }
                    segments.push(Segment::Param(name.into()));
                }
                p if p.contains(['*', '{', '}', ':']) => {
                    return Err(bad(&format!(
                        "segment `{p}` has `*`, `{{`, `}}` or `:` inside; use `:name` for a parameter or a trailing `/...`"
                    )));
                }
                p => segments.push(Segment::Literal(p.into())),
            }
        }
    }
    Ok(RoutePattern {
        segments,
        wildcard,
        text: path.into(),
    })
}

impl<'de> Deserialize<'de> for Route {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Route::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_methods_params_and_wildcards() {
        let r = Route::parse("GET /hello/:name").unwrap();
        assert_eq!(r.method, Some(Method::GET));
        assert_eq!(r.pattern.param_names().collect::<Vec<_>>(), ["name"]);
        assert_eq!(r.pattern.shape(), "/hello/:");

        let r = Route::parse("/static/...").unwrap();
        assert_eq!(r.method, None);
        assert!(r.pattern.wildcard);
        assert_eq!(r.pattern.shape(), "/static/...");

        assert_eq!(Route::parse("/").unwrap().pattern.shape(), "/");
        assert_eq!(Route::parse("/...").unwrap().pattern.shape(), "/...");
        assert_eq!(
            Route::parse("POST /users/").unwrap().pattern.shape(),
            "/users"
        );
    }

    #[test]
    fn rejects_bad_routes_with_a_reason() {
        for (route, reason) in [
            ("users", "must start with `/`"),
            ("get /users", "not a method"),
            ("/a//b", "empty segment"),
            ("/a/.../b", "last segment"),
            ("/a/:", "parameter"),
            ("/a/:Id", "parameter"),
            ("/a/:id/:id", "twice"),
            ("/a/*", "`*`"),
            ("/a?x=1", "query"),
        ] {
            let err = Route::parse(route).unwrap_err();
            assert!(err.contains(reason), "{route}: {err}");
        }
    }
}
