//! Queue topics: dot-separated tokens (`orders.created`), and patterns with
//! NATS-style wildcards: `*` matches one token, a final `>` one or more.

use serde::{Deserialize, Deserializer};
use std::fmt;

/// Longest topic name; also a NATS subject limit in practice.
pub const MAX_TOPIC_LEN: usize = 255;

/// A topic pattern such as `orders.*` or `orders.>`; a pattern without
/// wildcards names exactly one topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TopicPattern(Box<str>);

impl TopicPattern {
    /// Parses a pattern; the error says what is wrong.
    pub fn parse(s: &str) -> Result<TopicPattern, String> {
        validate(s, true).map(|()| TopicPattern(s.into()))
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the pattern has wildcards.
    pub fn is_wildcard(&self) -> bool {
        self.0.split('.').any(|t| t == "*" || t == ">")
    }

    /// Whether `topic` (a concrete topic) matches.
    pub fn matches(&self, topic: &str) -> bool {
        let mut pattern = self.0.split('.');
        let mut tokens = topic.split('.');
        loop {
            match (pattern.next(), tokens.next()) {
                (Some(">"), Some(_)) => return true,
                (Some("*"), Some(_)) => {}
                (Some(p), Some(t)) if p == t => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }
}

/// Checks a concrete topic (no wildcards), as a publisher names it.
pub fn validate_topic(s: &str) -> Result<(), String> {
    validate(s, false)
}

fn validate(s: &str, wildcards: bool) -> Result<(), String> {
    let bad = |why: &str| Err(format!("invalid topic `{s}`: {why}"));
    if s.is_empty() {
        return bad("it is empty");
    }
    if s.len() > MAX_TOPIC_LEN {
        return bad("it is longer than 255 characters");
    }
    let tokens: Vec<&str> = s.split('.').collect();
    for (i, token) in tokens.iter().enumerate() {
        match *token {
            "" => return bad("it has an empty token (`..`, or a leading or trailing `.`)"),
            "*" | ">" if !wildcards => return bad("a topic to publish to has no wildcards"),
            ">" if i + 1 != tokens.len() => return bad("`>` may only be the last token"),
            "*" | ">" => {}
            t if !t
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
            {
                return bad("tokens may hold letters, digits, `_` and `-`, separated by `.`");
            }
            _ => {}
        }
    }
    Ok(())
}

impl fmt::Display for TopicPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TopicPattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        TopicPattern::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(p: &str, t: &str) -> bool {
        TopicPattern::parse(p).unwrap().matches(t)
    }

    #[test]
    fn wildcards_match_like_nats() {
        assert!(matches("orders.created", "orders.created"));
        assert!(!matches("orders.created", "orders.created.eu"));
        assert!(matches("orders.*", "orders.created"));
        assert!(!matches("orders.*", "orders.created.eu"));
        assert!(!matches("orders.*", "orders"));
        assert!(matches("orders.>", "orders.created.eu"));
        assert!(!matches("orders.>", "orders"));
        assert!(matches("*.created", "users.created"));
    }

    #[test]
    fn bad_topics_say_why() {
        for (t, why) in [
            ("", "empty"),
            ("orders..created", "empty token"),
            ("orders.>.x", "last token"),
            ("orders created", "letters, digits"),
        ] {
            let err = TopicPattern::parse(t).unwrap_err();
            assert!(err.contains(why), "{t}: {err}");
        }
        assert!(
            validate_topic("orders.*")
                .unwrap_err()
                .contains("no wildcards")
        );
        assert!(validate_topic("orders.created").is_ok());
    }
}
