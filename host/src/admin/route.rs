//! The admin API's routing table: a method and a path to the endpoint they
//! name, with the path's parameters. Pure, so it is tested without a
//! server; the handlers are in `functions.rs` and `queues.rs`.

use http::Method;

/// What an admin request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Endpoint {
    /// `GET /v1/health`
    Health,
    /// `GET /metrics`
    Metrics,
    /// `GET /` or `GET /ui`: the dashboard page
    Dashboard,
    /// `GET /v1/stats[?window=SECONDS]`
    Stats,
    /// `GET /v1/nodes`
    Nodes,
    /// `GET /v1/queues`
    Queues,
    /// `POST /v1/topics/{topic}/messages`
    Publish { topic: String },
    /// `GET /v1/queues/{function}/dead-letters`
    DeadLetters { function: String },
    /// `POST /v1/queues/{function}/dead-letters/replay`
    Replay { function: String },
    /// `DELETE /v1/queues/{function}/dead-letters`
    Purge { function: String },
    /// `GET /v1/functions`
    Functions,
    /// `GET /v1/functions/{id}`
    Function { id: String },
    /// `PUT /v1/functions/{id}`
    Deploy { id: String },
    /// `DELETE /v1/functions/{id}`
    Remove { id: String },
    /// `POST /v1/functions/{id}/rollback`
    Rollback { id: String },
    /// `PUT /v1/functions/{id}/canary`
    Canary { id: String },
    /// `POST /v1/functions/{id}/canary/promote`
    Promote { id: String },
    /// `POST /v1/functions/{id}/canary/abort` or `DELETE /v1/functions/{id}/canary`
    Abort { id: String },
    /// `POST /v1/functions/{id}/sql/{database}` (or `.../sqlite/...`,
    /// its first name)
    Sql { id: String, database: String },
}

impl Endpoint {
    /// The endpoint `method` and `path` name, or `None`. Slashes at either
    /// end of the path do not matter.
    pub(super) fn find(method: &Method, path: &str) -> Option<Endpoint> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let owned = |s: &str| s.to_owned();
        let endpoint = match (method.as_str(), segments.as_slice()) {
            ("GET", ["v1", "health"]) => Endpoint::Health,
            ("GET", ["metrics"]) => Endpoint::Metrics,
            ("GET", [""] | ["ui"]) => Endpoint::Dashboard,
            ("GET", ["v1", "stats"]) => Endpoint::Stats,
            ("GET", ["v1", "nodes"]) => Endpoint::Nodes,
            ("GET", ["v1", "queues"]) => Endpoint::Queues,
            ("POST", ["v1", "topics", topic, "messages"]) => Endpoint::Publish {
                topic: owned(topic),
            },
            ("GET", ["v1", "queues", function, "dead-letters"]) => Endpoint::DeadLetters {
                function: owned(function),
            },
            ("POST", ["v1", "queues", function, "dead-letters", "replay"]) => Endpoint::Replay {
                function: owned(function),
            },
            ("DELETE", ["v1", "queues", function, "dead-letters"]) => Endpoint::Purge {
                function: owned(function),
            },
            ("GET", ["v1", "functions"]) => Endpoint::Functions,
            ("GET", ["v1", "functions", id]) => Endpoint::Function { id: owned(id) },
            ("PUT", ["v1", "functions", id]) => Endpoint::Deploy { id: owned(id) },
            ("DELETE", ["v1", "functions", id]) => Endpoint::Remove { id: owned(id) },
            ("POST", ["v1", "functions", id, "rollback"]) => Endpoint::Rollback { id: owned(id) },
            ("PUT", ["v1", "functions", id, "canary"]) => Endpoint::Canary { id: owned(id) },
            ("POST", ["v1", "functions", id, "canary", "promote"]) => {
                Endpoint::Promote { id: owned(id) }
            }
            ("POST", ["v1", "functions", id, "canary", "abort"])
            | ("DELETE", ["v1", "functions", id, "canary"]) => Endpoint::Abort { id: owned(id) },
            ("POST", ["v1", "functions", id, "sql" | "sqlite", database]) => Endpoint::Sql {
                id: owned(id),
                database: owned(database),
            },
            _ => return None,
        };
        Some(endpoint)
    }
}

/// The value of query parameter `name`, as sent (not percent-decoded).
pub(super) fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(method: Method, path: &str) -> Option<Endpoint> {
        Endpoint::find(&method, path)
    }

    #[test]
    fn each_route_names_its_endpoint_and_parameter() {
        let id = || "hello".to_owned();
        let function = || "worker".to_owned();
        let cases = [
            (Method::GET, "/v1/health", Endpoint::Health),
            (Method::GET, "/metrics", Endpoint::Metrics),
            (Method::GET, "/", Endpoint::Dashboard),
            (Method::GET, "/ui", Endpoint::Dashboard),
            (Method::GET, "/v1/stats", Endpoint::Stats),
            (Method::GET, "/v1/nodes", Endpoint::Nodes),
            (Method::GET, "/v1/queues", Endpoint::Queues),
            (
                Method::POST,
                "/v1/topics/jobs.a/messages",
                Endpoint::Publish {
                    topic: "jobs.a".into(),
                },
            ),
            (
                Method::GET,
                "/v1/queues/worker/dead-letters",
                Endpoint::DeadLetters {
                    function: function(),
                },
            ),
            (
                Method::POST,
                "/v1/queues/worker/dead-letters/replay",
                Endpoint::Replay {
                    function: function(),
                },
            ),
            (
                Method::DELETE,
                "/v1/queues/worker/dead-letters",
                Endpoint::Purge {
                    function: function(),
                },
            ),
            (Method::GET, "/v1/functions", Endpoint::Functions),
            (
                Method::GET,
                "/v1/functions/hello",
                Endpoint::Function { id: id() },
            ),
            (
                Method::PUT,
                "/v1/functions/hello",
                Endpoint::Deploy { id: id() },
            ),
            (
                Method::DELETE,
                "/v1/functions/hello",
                Endpoint::Remove { id: id() },
            ),
            (
                Method::POST,
                "/v1/functions/hello/rollback",
                Endpoint::Rollback { id: id() },
            ),
            (
                Method::PUT,
                "/v1/functions/hello/canary",
                Endpoint::Canary { id: id() },
            ),
            (
                Method::POST,
                "/v1/functions/hello/canary/promote",
                Endpoint::Promote { id: id() },
            ),
            (
                Method::POST,
                "/v1/functions/hello/canary/abort",
                Endpoint::Abort { id: id() },
            ),
            (
                Method::DELETE,
                "/v1/functions/hello/canary",
                Endpoint::Abort { id: id() },
            ),
        ];
        for (method, path, endpoint) in cases {
            assert_eq!(
                find(method.clone(), path),
                Some(endpoint),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn other_methods_and_paths_name_no_endpoint() {
        assert_eq!(find(Method::POST, "/v1/functions"), None);
        assert_eq!(find(Method::GET, "/v1/nope"), None);
        assert_eq!(find(Method::PATCH, "/v1/functions/hello"), None);
        assert_eq!(find(Method::GET, "/v1/functions/hello/rollback"), None);
        assert_eq!(find(Method::POST, "/"), None);
        assert_eq!(find(Method::GET, "/dashboard"), None);
        assert_eq!(find(Method::GET, "/v1/health/"), Some(Endpoint::Health));
    }

    #[test]
    fn query_parameters_are_found_by_name() {
        assert_eq!(
            query_param(Some("percent=20"), "percent").as_deref(),
            Some("20")
        );
        assert_eq!(query_param(Some("a=1&id=x"), "id").as_deref(), Some("x"));
        assert_eq!(query_param(Some("ids=x"), "id"), None);
        assert_eq!(query_param(None, "id"), None);
    }
}
