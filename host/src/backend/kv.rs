//! The key-value backend trait, and the counter arithmetic every key-value
//! backend shares so `increment` fails alike on all of them.

use super::{BackendError, Namespace};
use async_trait::async_trait;

/// One page of keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPage {
    /// Keys in key order.
    pub keys: Vec<String>,
    /// Whether more keys follow the last one.
    pub more: bool,
}

/// Key-value storage.
#[async_trait]
pub trait KvBackend: Send + Sync + 'static {
    /// The value at `key`.
    async fn get(&self, ns: &Namespace, key: &str) -> Result<Option<Vec<u8>>, BackendError>;
    /// Sets `key`; durable when this returns.
    async fn set(&self, ns: &Namespace, key: &str, value: &[u8]) -> Result<(), BackendError>;
    /// Removes `key`; a missing key is not an error.
    async fn delete(&self, ns: &Namespace, key: &str) -> Result<(), BackendError>;
    /// Whether `key` is set.
    async fn exists(&self, ns: &Namespace, key: &str) -> Result<bool, BackendError>;
    /// Up to `limit` keys starting with `prefix` and sorting after `after`.
    async fn list(
        &self,
        ns: &Namespace,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<KeyPage, BackendError>;
    /// Adds `delta` to the decimal integer at `key` (missing is 0), atomically.
    async fn increment(&self, ns: &Namespace, key: &str, delta: i64) -> Result<i64, BackendError>;
    /// Sets `key` to `new` only if its value is still `expected` (`None`:
    /// still unset), atomically. Returns whether it swapped.
    async fn compare_and_swap(
        &self,
        ns: &Namespace,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, BackendError>;
}

/// Parses the decimal integer an `increment` works on.
pub(crate) fn parse_counter(key: &str, value: Option<&[u8]>) -> Result<i64, BackendError> {
    match value {
        None => Ok(0),
        Some(bytes) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .ok_or_else(|| {
                BackendError::Invalid(format!(
                    "cannot increment `{key}`: its value is not a decimal integer"
                ))
            }),
    }
}

/// The counter after adding `delta`, or an error on overflow.
pub(crate) fn add_counter(key: &str, current: i64, delta: i64) -> Result<i64, BackendError> {
    current.checked_add(delta).ok_or_else(|| {
        BackendError::Invalid(format!(
            "cannot increment `{key}`: the result overflows a 64-bit integer"
        ))
    })
}
