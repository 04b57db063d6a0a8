//! The routing table: method + path to a function and its path parameters.
//!
//! Precedence, checked segment by segment: a literal segment beats a
//! `:param`, which beats a trailing `/...`; among wildcards, the longer
//! prefix wins. A path that matches but not for the request's method is a
//! 405 listing the methods that would match. `HEAD` falls back to `GET`.

use crate::manifest::{Route, Segment};
use http::Method;
use std::collections::HashMap;
use std::sync::Arc;

/// Where a route leads.
#[derive(Debug)]
pub struct Target {
    /// Index of the function in the app.
    pub function: usize,
    /// Index of the route among that function's routes, in the order given
    /// to [`Router::new`] (manifest order): the key to its gateway policy.
    pub route: usize,
    /// The route's path as written in the manifest (`/hello/:name`).
    pub pattern: Arc<str>,
    /// `pattern` as the guest's `x-nimbus-route` header, made once.
    pub pattern_header: Option<http::HeaderValue>,
    /// Parameter names in path order.
    pub params: Box<[Box<str>]>,
}

/// The outcome of routing one request.
#[derive(Debug)]
pub enum Match<'r, 'p> {
    /// A route takes this request.
    Found {
        /// Where it goes.
        target: &'r Target,
        /// `(name, value)` of each parameter, values as they appear in the URL.
        params: Vec<(&'r str, &'p str)>,
        /// The part of the path matched by a trailing `/...`, with its
        /// leading `/` (`/` when it matched nothing); `None` for other routes.
        path_info: Option<String>,
    },
    /// The path exists, but not for this method.
    MethodNotAllowed {
        /// Methods that would match.
        allow: Vec<Method>,
    },
    /// No route matches the path.
    NotFound,
}

/// The routing table, a trie of path segments.
#[derive(Debug, Default)]
pub struct Router {
    root: Node,
    len: usize,
}

#[derive(Debug, Default)]
struct Node {
    literals: HashMap<Box<str>, Node>,
    param: Option<Box<Node>>,
    /// Routes ending here.
    exact: Endpoints,
    /// Routes ending here in `/...`.
    wildcard: Endpoints,
}

#[derive(Debug, Default)]
struct Endpoints {
    any: Option<Arc<Target>>,
    methods: Vec<(Method, Arc<Target>)>,
}

impl Endpoints {
    fn is_empty(&self) -> bool {
        self.any.is_none() && self.methods.is_empty()
    }

    fn get(&self, method: &Method) -> Option<&Target> {
        let find = |m: &Method| self.methods.iter().find(|(x, _)| x == m).map(|(_, t)| &**t);
        find(method)
            .or_else(|| {
                (*method == Method::HEAD)
                    .then(|| find(&Method::GET))
                    .flatten()
            })
            .or(self.any.as_deref())
    }

    fn allowed(&self) -> Vec<Method> {
        let mut allow: Vec<Method> = self.methods.iter().map(|(m, _)| m.clone()).collect();
        if allow.contains(&Method::GET) && !allow.contains(&Method::HEAD) {
            allow.push(Method::HEAD);
        }
        allow
    }
}

impl Router {
    /// Builds the table from `(function index, route)` pairs. Conflicts were
    /// rejected when the manifest loaded; a later duplicate is ignored.
    pub fn new<'a>(routes: impl IntoIterator<Item = (usize, &'a Route)>) -> Router {
        let mut router = Router::default();
        let mut counts: HashMap<usize, usize> = HashMap::new();
        for (function, route) in routes {
            let count = counts.entry(function).or_default();
            router.insert(function, *count, route);
            *count += 1;
        }
        router
    }

    /// Number of routes in the table.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no route is defined.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn insert(&mut self, function: usize, index: usize, route: &Route) {
        let mut node = &mut self.root;
        for seg in &route.pattern.segments {
            node = match seg {
                Segment::Literal(s) => node.literals.entry(s.clone()).or_default(),
                Segment::Param(_) => node.param.get_or_insert_with(Default::default),
            };
        }
        let endpoints = if route.pattern.wildcard {
            &mut node.wildcard
        } else {
            &mut node.exact
        };
        let target = Arc::new(Target {
            function,
            route: index,
            pattern: route.pattern.as_str().into(),
            pattern_header: http::HeaderValue::from_str(route.pattern.as_str()).ok(),
            params: route.pattern.param_names().map(Into::into).collect(),
        });
        match &route.method {
            None if endpoints.any.is_none() => endpoints.any = Some(target),
            Some(m) if !endpoints.methods.iter().any(|(x, _)| x == m) => {
                endpoints.methods.push((m.clone(), target))
            }
            _ => return,
        }
        self.len += 1;
    }

    /// Routes a request path (without the query string).
    pub fn route<'r, 'p>(&'r self, method: &Method, path: &'p str) -> Match<'r, 'p> {
        // Empty segments (`//`, a trailing `/`) carry no meaning for routing.
        let segments: Vec<&'p str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let mut search = Search {
            method,
            segments: &segments,
            captures: Vec::new(),
            first_path_match: None,
        };
        match search.find(&self.root, 0) {
            Some((target, rest)) => {
                let params = target
                    .params
                    .iter()
                    .map(|n| &**n)
                    .zip(search.captures.iter().copied())
                    .collect();
                let path_info = rest.map(|i| format!("/{}", segments[i..].join("/")));
                Match::Found {
                    target,
                    params,
                    path_info,
                }
            }
            None => match search.first_path_match {
                Some(endpoints) => Match::MethodNotAllowed {
                    allow: endpoints.allowed(),
                },
                None => Match::NotFound,
            },
        }
    }
}

struct Search<'r, 'p, 'm> {
    method: &'m Method,
    segments: &'m [&'p str],
    captures: Vec<&'p str>,
    /// The best route whose path matched but whose method did not.
    first_path_match: Option<&'r Endpoints>,
}

impl<'r, 'p> Search<'r, 'p, '_> {
    /// Depth-first in precedence order. Returns the target and, for a
    /// wildcard, the index of the first segment it swallowed.
    fn find(&mut self, node: &'r Node, i: usize) -> Option<(&'r Target, Option<usize>)> {
        if let Some(seg) = self.segments.get(i) {
            if let Some(child) = node.literals.get(*seg)
                && let Some(found) = self.find(child, i + 1)
            {
                return Some(found);
            }
            if let Some(child) = &node.param {
                self.captures.push(seg);
                if let Some(found) = self.find(child, i + 1) {
                    return Some(found);
                }
                self.captures.pop();
            }
        } else if let Some(t) = self.check(&node.exact) {
            return Some((t, None));
        }
        self.check(&node.wildcard).map(|t| (t, Some(i)))
    }

    fn check(&mut self, endpoints: &'r Endpoints) -> Option<&'r Target> {
        if endpoints.is_empty() {
            return None;
        }
        let found = endpoints.get(self.method);
        if found.is_none() && self.first_path_match.is_none() {
            self.first_path_match = Some(endpoints);
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[(usize, &str)]) -> Router {
        let parsed: Vec<(usize, Route)> = routes
            .iter()
            .map(|(f, r)| (*f, Route::parse(r).unwrap()))
            .collect();
        Router::new(parsed.iter().map(|(f, r)| (*f, r)))
    }

    fn found(
        r: &Router,
        method: Method,
        path: &str,
    ) -> (usize, Vec<(String, String)>, Option<String>) {
        match r.route(&method, path) {
            Match::Found {
                target,
                params,
                path_info,
            } => (
                target.function,
                params
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                path_info,
            ),
            other => panic!("{method} {path}: {other:?}"),
        }
    }

    #[test]
    fn literal_beats_param_beats_wildcard() {
        let r = router(&[(0, "/users/me"), (1, "/users/:id"), (2, "/users/...")]);
        assert_eq!(found(&r, Method::GET, "/users/me").0, 0);
        assert_eq!(
            found(&r, Method::GET, "/users/42").1,
            [("id".to_string(), "42".to_string())]
        );
        let (f, params, info) = found(&r, Method::GET, "/users/42/orders");
        assert_eq!(
            (f, params.len(), info.as_deref()),
            (2, 0, Some("/42/orders"))
        );
        assert_eq!(found(&r, Method::GET, "/users").2.as_deref(), Some("/"));
    }

    #[test]
    fn longer_wildcard_prefix_wins() {
        let r = router(&[(0, "/..."), (1, "/static/..."), (2, "/static/img/...")]);
        assert_eq!(found(&r, Method::GET, "/static/img/a.png").0, 2);
        assert_eq!(found(&r, Method::GET, "/static/css/a.css").0, 1);
        assert_eq!(found(&r, Method::GET, "/other").0, 0);
        assert_eq!(found(&r, Method::GET, "/").0, 0);
    }

    #[test]
    fn backtracks_when_a_literal_branch_dead_ends() {
        let r = router(&[(0, "/a/b/c"), (1, "/a/:x/d")]);
        let (f, params, _) = found(&r, Method::GET, "/a/b/d");
        assert_eq!(f, 1);
        assert_eq!(params, [("x".to_string(), "b".to_string())]);
    }

    #[test]
    fn methods_and_405() {
        let r = router(&[
            (0, "GET /items"),
            (1, "POST /items"),
            (2, "DELETE /items/:id"),
        ]);
        assert_eq!(found(&r, Method::GET, "/items").0, 0);
        assert_eq!(found(&r, Method::POST, "/items").0, 1);
        assert_eq!(found(&r, Method::HEAD, "/items").0, 0);
        match r.route(&Method::PUT, "/items") {
            Match::MethodNotAllowed { allow } => {
                assert_eq!(allow, [Method::GET, Method::POST, Method::HEAD])
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(r.route(&Method::GET, "/nothing"), Match::NotFound));
        assert!(matches!(
            r.route(&Method::GET, "/items/1"),
            Match::MethodNotAllowed { .. }
        ));
    }

    #[test]
    fn a_method_match_lower_down_beats_a_405_higher_up() {
        let r = router(&[(0, "GET /users/me"), (1, "POST /users/:id")]);
        assert_eq!(found(&r, Method::POST, "/users/me").0, 1);
    }

    #[test]
    fn root_and_trailing_slashes() {
        let r = router(&[(0, "/"), (1, "/hello/:name")]);
        assert_eq!(found(&r, Method::GET, "/").0, 0);
        assert_eq!(found(&r, Method::GET, "/hello/bob/").1[0].1, "bob");
        assert!(matches!(r.route(&Method::GET, "/hello"), Match::NotFound));
    }
}
