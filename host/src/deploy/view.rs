//! What the admin API says about functions, as types: the admin API
//! serializes them, its client and the CLI read them back. Digests are hex blake3 hashes of the component's bytes; times
//! are RFC 3339 with milliseconds; sizes and durations are written as in
//! nimbus.toml (`128 MiB`, `30s`).

use crate::app::{Canary, Function};
use crate::manifest::{Limits, format_bytes};
use serde::{Deserialize, Serialize};
use std::time::SystemTime;

/// A function as `GET /v1/functions` and `GET /v1/functions/{id}` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionView {
    /// The function's id.
    pub id: String,
    /// Its routes, as the manifest writes them (`GET /hello`).
    pub routes: Vec<String>,
    /// What makes it run.
    pub triggers: Vec<TriggerKind>,
    /// The topic its queue trigger consumes, if it has one.
    pub topic: Option<String>,
    /// Whether it was removed; then `version` and `deployed_at` are `None`.
    pub removed: bool,
    /// The stable version's digest.
    pub version: Option<String>,
    /// When the stable version started serving.
    pub deployed_at: Option<String>,
    /// The digest of the manifest's component (for a function added through
    /// the API: of the component it was added with).
    pub manifest_version: String,
    /// The canary, if one runs.
    pub canary: Option<CanaryView>,
    /// How many earlier versions are kept for rollback.
    pub history: usize,
    /// Instances running now.
    pub in_flight: i64,
    /// The limits it runs under.
    pub limits: LimitsView,
}

/// What makes a function run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    /// Its routes (or, without routes and without a queue, the catch-all).
    Http,
    /// Its queue trigger.
    Queue,
}

/// A canary next to the stable version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanaryView {
    /// The canary's digest.
    pub version: String,
    /// Its share of the invocations, in percent.
    pub percent: u8,
    /// When it started serving.
    pub deployed_at: String,
}

/// A function's limits, written as in nimbus.toml.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitsView {
    /// Wall-clock time per invocation (`30s`).
    pub timeout: String,
    /// Cap on each linear memory (`128 MiB`).
    pub memory: String,
    /// Instances running at once.
    pub concurrency: u32,
    /// How long an invocation waits for a free instance.
    pub queue_timeout: String,
    /// Request body cap.
    pub max_body: String,
}

/// The answer to a change (deploy, rollback, canary, promote, abort,
/// remove, add): the function as it is now, what was done and what it
/// replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeView {
    /// The function after the change.
    #[serde(flatten)]
    pub function: FunctionView,
    /// What the change did.
    pub action: Action,
    /// The digest of the version it replaced: the stable version for a
    /// deploy, a rollback, a promotion or a removal; the replaced canary for
    /// a canary; the dropped canary for an abort; the serving version when
    /// nothing changed; `None` otherwise.
    pub previous: Option<String>,
}

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// A new stable version.
    Deploy,
    /// The newest version of the history serves again.
    Rollback,
    /// A canary started (or replaced the running one).
    Canary,
    /// The running canary's share changed.
    CanaryPercent,
    /// The canary became the stable version.
    Promote,
    /// The canary was dropped.
    Abort,
    /// The function stopped serving.
    Remove,
    /// A function was added.
    Add,
    /// The version sent already serves; nothing changed.
    Unchanged,
}

impl Action {
    /// The name the API, the log and the `nimbus_deployments_total` metric
    /// use.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Deploy => "deploy",
            Action::Rollback => "rollback",
            Action::Canary => "canary",
            Action::CanaryPercent => "canary_percent",
            Action::Promote => "promote",
            Action::Abort => "abort",
            Action::Remove => "remove",
            Action::Add => "add",
            Action::Unchanged => "unchanged",
        }
    }
}

impl FunctionView {
    /// `function` as it serves now; `manifest_version` and `history` come
    /// from the deployer's bookkeeping.
    pub(super) fn of(function: &Function, manifest_version: &str, history: usize) -> FunctionView {
        let traffic = function.traffic();
        let mut triggers = Vec::new();
        if !function.spec.routes.is_empty() || function.queue.is_none() {
            triggers.push(TriggerKind::Http);
        }
        if function.queue.is_some() {
            triggers.push(TriggerKind::Queue);
        }
        let in_flight = crate::telemetry::metrics()
            .in_flight
            .get_or_create(&crate::telemetry::function(function.id.as_str()))
            .get();
        FunctionView {
            id: function.id.to_string(),
            routes: function
                .spec
                .routes
                .iter()
                .map(ToString::to_string)
                .collect(),
            triggers,
            topic: function.queue.as_ref().map(|q| q.spec.topic.to_string()),
            removed: traffic.is_none(),
            version: traffic.as_ref().map(|t| t.stable.digest.clone()),
            deployed_at: traffic.as_ref().map(|t| rfc3339(t.stable.deployed_at)),
            manifest_version: manifest_version.to_owned(),
            canary: traffic
                .as_ref()
                .and_then(|t| t.canary.as_ref())
                .map(CanaryView::of),
            history,
            in_flight,
            limits: LimitsView::of(&function.limits),
        }
    }
}

impl CanaryView {
    fn of(canary: &Canary) -> CanaryView {
        CanaryView {
            version: canary.version.digest.clone(),
            percent: canary.percent,
            deployed_at: rfc3339(canary.version.deployed_at),
        }
    }
}

impl LimitsView {
    fn of(limits: &Limits) -> LimitsView {
        LimitsView {
            timeout: humantime::format_duration(limits.timeout).to_string(),
            memory: format_bytes(limits.memory),
            concurrency: limits.concurrency,
            queue_timeout: humantime::format_duration(limits.queue_timeout).to_string(),
            max_body: format_bytes(limits.max_body),
        }
    }
}

/// `t` as the admin API writes times: RFC 3339, UTC, to the millisecond.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn function() -> FunctionView {
        FunctionView {
            id: "hello".into(),
            routes: vec!["GET /hello".into()],
            triggers: vec![TriggerKind::Http, TriggerKind::Queue],
            topic: Some("jobs.*".into()),
            removed: false,
            version: Some("ab".into()),
            deployed_at: Some("2026-01-01T00:00:00.000Z".into()),
            manifest_version: "cd".into(),
            canary: Some(CanaryView {
                version: "ef".into(),
                percent: 20,
                deployed_at: "2026-01-02T00:00:00.000Z".into(),
            }),
            history: 1,
            in_flight: 0,
            limits: LimitsView {
                timeout: "30s".into(),
                memory: "128 MiB".into(),
                concurrency: 100,
                queue_timeout: "1s".into(),
                max_body: "1 MiB".into(),
            },
        }
    }

    fn keys(value: &Value) -> Vec<&str> {
        let mut keys: Vec<&str> = value
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        keys
    }

    /// The admin API's field names are a contract: clients, the README and
    /// the tests read them.
    #[test]
    fn views_have_the_api_field_names() {
        let shown = serde_json::to_value(function()).unwrap();
        let fields = [
            "canary",
            "deployed_at",
            "history",
            "id",
            "in_flight",
            "limits",
            "manifest_version",
            "removed",
            "routes",
            "topic",
            "triggers",
            "version",
        ];
        assert_eq!(keys(&shown), fields);
        assert_eq!(shown["triggers"], serde_json::json!(["http", "queue"]));
        assert_eq!(
            keys(&shown["canary"]),
            ["deployed_at", "percent", "version"]
        );
        assert_eq!(
            keys(&shown["limits"]),
            [
                "concurrency",
                "max_body",
                "memory",
                "queue_timeout",
                "timeout"
            ]
        );

        let change = ChangeView {
            function: function(),
            action: Action::CanaryPercent,
            previous: None,
        };
        let answer = serde_json::to_value(&change).unwrap();
        let mut with_change: Vec<&str> = fields.to_vec();
        with_change.extend(["action", "previous"]);
        with_change.sort_unstable();
        assert_eq!(keys(&answer), with_change);
        assert_eq!(answer["action"], "canary_percent");
        assert_eq!(answer["previous"], Value::Null);
        assert_eq!(
            serde_json::from_value::<ChangeView>(answer).unwrap(),
            change
        );
    }

    #[test]
    fn action_names_match_their_serialized_form() {
        for action in [
            Action::Deploy,
            Action::Rollback,
            Action::Canary,
            Action::CanaryPercent,
            Action::Promote,
            Action::Abort,
            Action::Remove,
            Action::Add,
            Action::Unchanged,
        ] {
            assert_eq!(serde_json::to_value(action).unwrap(), action.as_str());
        }
    }
}
