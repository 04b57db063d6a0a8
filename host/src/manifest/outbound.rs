//! `allowed_outbound_hosts` patterns: `scheme://host[:port]`, where the
//! scheme, the host, a leading `*.` of the host, or the port may be `*`.
//!
//! Examples: `https://api.example.com` (port 443 only),
//! `http://127.0.0.1:*`, `https://*.example.com:8443`, `*://*:*` (anything).

use serde::{Deserialize, Deserializer};
use std::fmt;

/// A parsed outbound host pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    scheme: Option<Box<str>>,
    host: HostMatch,
    port: Option<u16>,
    text: Box<str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    Any,
    Exact(Box<str>),
    /// `*.example.com`: any subdomain, not the bare domain.
    Suffix(Box<str>),
}

impl HostPattern {
    /// Parses a pattern; the error says what is wrong.
    pub fn parse(text: &str) -> Result<HostPattern, String> {
        let bad = |why: &str| format!("invalid outbound host `{text}`: {why}");
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| bad("write it as scheme://host[:port], e.g. https://api.example.com"))?;
        let scheme = match scheme {
            "*" => None,
            "http" | "https" => Some(scheme.into()),
            _ => return Err(bad("the scheme must be http, https or *")),
        };
        if rest.contains(['/', '?', '#', '@']) {
            return Err(bad("give only the scheme, host and port; no path"));
        }
        let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
            // An IPv6 literal: `[::1]` or `[::1]:8080`.
            let (addr, tail) = inner.split_once(']').ok_or_else(|| bad("unclosed `[`"))?;
            match tail {
                "" => (&rest[..addr.len() + 2], None),
                t => match t.strip_prefix(':') {
                    Some(p) => (&rest[..addr.len() + 2], Some(p)),
                    None => return Err(bad("expected `:port` after `]`")),
                },
            }
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(bad("the host is empty"));
        }
        let host = match host {
            "*" => HostMatch::Any,
            h if h.starts_with("*.") && h.len() > 2 && !h[2..].contains('*') => {
                HostMatch::Suffix(h[1..].to_ascii_lowercase().into())
            }
            h if h.contains('*') => {
                return Err(bad(
                    "`*` may only be the whole host or its first label (`*.example.com`)",
                ));
            }
            h => HostMatch::Exact(h.to_ascii_lowercase().into()),
        };
        let port = match port {
            None => match scheme.as_deref() {
                Some("http") => Some(80),
                Some("https") => Some(443),
                _ => return Err(bad("with scheme `*`, give a port or `:*`")),
            },
            Some("*") => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .map_err(|_| bad("the port must be a number or `*`"))?,
            ),
        };
        Ok(HostPattern {
            scheme,
            host,
            port,
            text: text.into(),
        })
    }

    /// Whether a request to `scheme://host:port` is allowed by this pattern.
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        let host = host.to_ascii_lowercase();
        self.scheme.as_deref().is_none_or(|s| s == scheme)
            && self.port.is_none_or(|p| p == port)
            && match &self.host {
                HostMatch::Any => true,
                HostMatch::Exact(h) => **h == host,
                HostMatch::Suffix(suffix) => host.ends_with(&**suffix),
            }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for HostPattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        HostPattern::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::HostPattern;

    fn allows(pattern: &str, scheme: &str, host: &str, port: u16) -> bool {
        HostPattern::parse(pattern)
            .unwrap()
            .allows(scheme, host, port)
    }

    #[test]
    fn exact_hosts_use_the_scheme_default_port() {
        assert!(allows(
            "https://api.example.com",
            "https",
            "api.example.com",
            443
        ));
        assert!(allows(
            "https://api.example.com",
            "https",
            "API.example.com",
            443
        ));
        assert!(!allows(
            "https://api.example.com",
            "https",
            "api.example.com",
            8443
        ));
        assert!(!allows(
            "https://api.example.com",
            "http",
            "api.example.com",
            443
        ));
        assert!(!allows("https://api.example.com", "https", "evil.com", 443));
    }

    #[test]
    fn wildcards() {
        assert!(allows("http://127.0.0.1:*", "http", "127.0.0.1", 4000));
        assert!(!allows("http://127.0.0.1:*", "http", "127.0.0.2", 4000));
        assert!(allows(
            "https://*.example.com",
            "https",
            "a.b.example.com",
            443
        ));
        assert!(!allows(
            "https://*.example.com",
            "https",
            "example.com",
            443
        ));
        assert!(!allows(
            "https://*.example.com",
            "https",
            "badexample.com",
            443
        ));
        assert!(allows("*://*:*", "http", "anything", 1));
        assert!(allows("http://[::1]:8080", "http", "[::1]", 8080));
    }

    #[test]
    fn bad_patterns_say_why() {
        for (p, why) in [
            ("api.example.com", "scheme://host"),
            ("ftp://x", "scheme must be"),
            ("https://x/path", "no path"),
            ("https://x:http", "port must be"),
            ("https://a*b.com", "first label"),
            ("*://x", "give a port"),
        ] {
            let err = HostPattern::parse(p).unwrap_err();
            assert!(err.contains(why), "{p}: {err}");
        }
    }
}
