//! Human-friendly durations (`"5s"`, `"250ms"`) and sizes (`"64MiB"`) in the manifest.

use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// A duration written like `"5s"`, `"250ms"` or `"1m 30s"`, parsed by `humantime`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        humantime::parse_duration(&s)
            .map(HumanDuration)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "invalid duration `{s}` ({e}); write it like \"5s\" or \"250ms\""
                ))
            })
    }
}

/// A byte size written like `"64MiB"`, `"512KiB"`, `"1MB"` or a plain number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Bytes(n) => Ok(ByteSize(n)),
            Raw::Text(s) => s
                .parse::<bytesize::ByteSize>()
                .map(|b| ByteSize(b.as_u64()))
                .map_err(|e| {
                    serde::de::Error::custom(format!(
                        "invalid size `{s}` ({e}); write it like \"64MiB\" or \"512KiB\""
                    ))
                }),
        }
    }
}

/// Formats a byte count the way a manifest would write it: `64 MiB` when
/// exact, else `1.5 MiB`.
pub fn format_bytes(n: u64) -> String {
    for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if n >= size && n.is_multiple_of(size) {
            return format!("{} {unit}", n / size);
        }
    }
    bytesize::ByteSize(n).display().iec().to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn exact_sizes_print_whole() {
        assert_eq!(super::format_bytes(64 << 20), "64 MiB");
        assert_eq!(super::format_bytes(1024), "1 KiB");
        assert_eq!(super::format_bytes(1536 << 10), "1536 KiB");
        assert_eq!(super::format_bytes(1500), "1.5 KiB");
        assert_eq!(super::format_bytes(100), "100 B");
    }
}
