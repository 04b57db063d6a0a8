//! Validated names: a function id or an app name, checked once at parse time.

use serde::{Deserialize, Deserializer};
use std::fmt;

/// Longest id we accept. Ids become DNS labels in service calls
/// (`http://<id>.internal/`), and a DNS label is at most 63 bytes.
pub const MAX_ID_LEN: usize = 63;

/// A function id: lowercase ASCII letters, digits and `-`, starting with a
/// letter, not ending with `-`, at most [`MAX_ID_LEN`] bytes.
///
/// Example: `users`, `order-processor`, `catalog2`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FunctionId(Box<str>);

impl FunctionId {
    /// Checks `s` against the id rules; the error says which rule it broke.
    pub fn parse(s: &str) -> Result<Self, String> {
        validate_id(s).map(|()| Self(s.into()))
    }

    /// The id as written in the manifest.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FunctionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for FunctionId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        FunctionId::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A key-value store name: the same rules as a function id.
///
/// Example: `catalog`, `sessions`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StoreName(Box<str>);

impl StoreName {
    /// Checks `s` against the naming rules.
    pub fn parse(s: &str) -> Result<Self, String> {
        validate_id(s)
            .map(|()| Self(s.into()))
            .map_err(|e| e.replacen("invalid id", "invalid store name", 1))
    }

    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StoreName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for StoreName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        StoreName::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The same rules as a function id: app names end up in paths and metric labels.
pub(crate) fn validate_id(s: &str) -> Result<(), String> {
    let problem = if s.is_empty() {
        Some("is empty")
    } else if s.len() > MAX_ID_LEN {
        Some("is longer than 63 characters")
    } else if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        Some("must start with a lowercase letter")
    } else if s.ends_with('-') {
        Some("must not end with `-`")
    } else if s.contains("--") {
        Some("must not contain `--`")
    } else if !s
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        Some("may only contain lowercase letters, digits and `-`")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(format!("invalid id `{s}`: it {problem}")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_good_ids() {
        for id in ["a", "users", "order-processor", "catalog2", "a-b-c"] {
            assert!(FunctionId::parse(id).is_ok(), "{id}");
        }
    }

    #[test]
    fn rejects_bad_ids_with_a_reason() {
        for (id, reason) in [
            ("", "is empty"),
            ("Users", "lowercase letter"),
            ("2fast", "lowercase letter"),
            ("users-", "end with"),
            ("a--b", "`--`"),
            ("user_service", "may only contain"),
            ("héllo", "may only contain"),
        ] {
            let err = FunctionId::parse(id).unwrap_err();
            assert!(err.contains(reason), "{id}: {err}");
        }
        assert!(FunctionId::parse(&"a".repeat(64)).is_err());
    }
}
