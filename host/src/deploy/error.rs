//! Why a deployment operation was refused, and the HTTP status each reason
//! maps to.

use super::store::StoreError;
use super::{MANIFEST_HEADER, MAX_PERCENT};
use crate::app::LoadError;
use crate::backend::BackendError;
use http::StatusCode;

/// Why a deployment operation was refused. Nothing changed when one is
/// returned: the function serves what it served before.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeployError {
    /// The app has no such function.
    #[error(
        "no function `{0}` in this app; to add it, send its manifest entry in a `{MANIFEST_HEADER}` header, e.g. `routes = [\"GET /path\"]`"
    )]
    UnknownFunction(String),
    /// A manifest entry came for a function that already exists.
    #[error(
        "function `{0}` already exists; a deploy replaces its component only (change its manifest entry in nimbus.toml)"
    )]
    Exists(String),
    /// A new function's manifest entry is not valid.
    #[error("the manifest entry of new function `{function}`: {message}")]
    Manifest {
        /// The function.
        function: String,
        /// What is wrong, naming the key.
        message: String,
    },
    /// The function was removed, and the operation needs it serving.
    #[error("function `{0}` was removed; deploy a component or roll back to bring it back")]
    Removed(String),
    /// The component failed the checks.
    #[error(transparent)]
    Rejected(#[from] LoadError),
    /// There is nothing to roll back to.
    #[error("function `{0}` has no earlier version to roll back to")]
    NoHistory(String),
    /// A canary is running and must be settled first.
    #[error(
        "function `{function}` has a canary running (version {digest}); promote or abort it first"
    )]
    CanaryRunning {
        /// The function.
        function: String,
        /// The canary's short digest.
        digest: String,
    },
    /// No canary is running.
    #[error("function `{0}` has no canary running")]
    NoCanary(String),
    /// The canary would be the stable version.
    #[error("version {digest} already is the stable version of `{function}`")]
    CanaryIsStable {
        /// The function.
        function: String,
        /// The short digest.
        digest: String,
    },
    /// The percentage is out of range.
    #[error("canary percent {0} is out of range; give a whole number from 0 to 100")]
    Percent(String),
    /// A queue function cannot be removed while its consumer runs.
    #[error(
        "function `{function}` consumes topic `{topic}`; remove it from nimbus.toml to stop it (removing it here would send its messages to dead letters)"
    )]
    QueueFunction {
        /// The function.
        function: String,
        /// Its topic.
        topic: String,
    },
    /// A version in the history can no longer be loaded.
    #[error("version {digest} of `{function}` cannot be loaded again: {message}")]
    Unavailable {
        /// The function.
        function: String,
        /// The short digest.
        digest: String,
        /// Why.
        message: String,
    },
    /// The state folder could not be written; nothing changed.
    #[error("cannot record the deployment: {0}")]
    Store(#[from] StoreError),
    /// Another node of the cluster changed the function first; its change
    /// serves now, and this one was not made.
    #[error(
        "function `{0}` was changed through another node at the same moment; that change won and serves now, so look at the function again and retry"
    )]
    Conflict(String),
    /// The cluster's deployments could not be read or written; nothing
    /// changed.
    #[error("cannot record the deployment in the cluster: {0}")]
    Shared(BackendError),
}

impl DeployError {
    /// The HTTP status the admin API answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            DeployError::UnknownFunction(_) => StatusCode::NOT_FOUND,
            DeployError::Rejected(_) | DeployError::Manifest { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            DeployError::Exists(_) => StatusCode::CONFLICT,
            DeployError::Percent(_) => StatusCode::BAD_REQUEST,
            DeployError::Removed(_)
            | DeployError::NoHistory(_)
            | DeployError::CanaryRunning { .. }
            | DeployError::NoCanary(_)
            | DeployError::CanaryIsStable { .. }
            | DeployError::QueueFunction { .. } => StatusCode::CONFLICT,
            DeployError::Unavailable { .. } | DeployError::Store(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            DeployError::Conflict(_) => StatusCode::CONFLICT,
            DeployError::Shared(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A stable machine-readable name for the refusal, the `error` field of
    /// the admin API's answer.
    pub fn code(&self) -> &'static str {
        match self {
            DeployError::UnknownFunction(_) => "unknown_function",
            DeployError::Exists(_) => "function_exists",
            DeployError::Manifest { .. } => "invalid_manifest_entry",
            DeployError::Removed(_) => "removed",
            DeployError::Rejected(_) => "rejected",
            DeployError::NoHistory(_) => "no_history",
            DeployError::CanaryRunning { .. } => "canary_running",
            DeployError::NoCanary(_) => "no_canary",
            DeployError::CanaryIsStable { .. } => "canary_is_stable",
            DeployError::Percent(_) => "invalid_percent",
            DeployError::QueueFunction { .. } => "queue_function",
            DeployError::Unavailable { .. } => "version_unavailable",
            DeployError::Store(_) => "store",
            DeployError::Conflict(_) => "conflict",
            DeployError::Shared(_) => "deployments_unavailable",
        }
    }
}

/// Parses a canary percentage: a whole number from 0 to [`MAX_PERCENT`].
pub fn parse_percent(text: &str) -> Result<u8, DeployError> {
    text.trim()
        .parse::<u8>()
        .ok()
        .filter(|p| *p <= MAX_PERCENT)
        .ok_or_else(|| DeployError::Percent(text.to_owned()))
}

/// Refuses a percentage over [`MAX_PERCENT`].
pub(super) fn check_percent(percent: u8) -> Result<(), DeployError> {
    if percent > MAX_PERCENT {
        return Err(DeployError::Percent(percent.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_are_whole_numbers_up_to_100() {
        assert_eq!(parse_percent("20").unwrap(), 20);
        assert_eq!(parse_percent("0").unwrap(), 0);
        assert_eq!(parse_percent("100").unwrap(), 100);
        for bad in ["101", "-1", "12.5", "", "x"] {
            let e = parse_percent(bad).unwrap_err();
            assert_eq!(e.status(), StatusCode::BAD_REQUEST);
            assert!(e.to_string().contains("0 to 100"), "{e}");
        }
    }
}
