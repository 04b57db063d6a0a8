//! The [`KvBackend`] implementation on JetStream KV buckets.
//!
//! # Why it is built this way
//!
//! - **One bucket per app and store** (`P_kv_<app>_<store>`), keeping one
//!   revision per key: isolation is the server's, as with the embedded
//!   store's namespaces, and deleting an app's data is deleting its buckets.
//!   Buckets are made on first use, by creating their stream: async-nats's
//!   `create_key_value` reads the account info in a form nats-server 2.9
//!   does not answer, so the stream is created with the configuration a KV
//!   bucket has (the same as `create_key_value` writes), then opened.
//! - **Any key the embedded store takes works.** NATS keys are subject
//!   tokens, so only `[A-Za-z0-9_/-]` pass through as they are; every other
//!   byte of the UTF-8 key (`.`, `=`, spaces, `*`, `>`, anything beyond
//!   ASCII) becomes `=XX`, its two uppercase hex digits. Each byte encodes on
//!   its own and no encoding is the start of another, so a key starts with a
//!   prefix exactly when its encoding starts with the prefix's encoding.
//! - **Listing reads every key of the store.** Subjects filter on whole
//!   tokens only, so a prefix cannot narrow what the server sends; the keys
//!   come in the order they were written, and the page is sorted here. A
//!   page costs time in proportion to the store's keys, not the page's.
//! - **`increment` and compare-and-swap are revision-checked writes**: read
//!   the key with its revision, write only if the revision is still the
//!   latest (JetStream's expected last subject sequence; a deleted key's
//!   revision is its delete marker's), and on a lost race read again. So
//!   every node of a cluster may update one key at once and no update is
//!   lost, as with the embedded store's single writer.
//! - **Durable means stored.** A write returns when the server acknowledged
//!   it; see the module's note on `sync_interval`.

use super::{NatsBackend, fail, name_token};
use crate::backend::kv::{add_counter, parse_counter};
use crate::backend::{BackendError, KeyPage, KvBackend, Namespace};
use async_nats::jetstream::kv::{Entry, Operation, Store, UpdateErrorKind};
use async_nats::jetstream::stream::{self, DiscardPolicy, StorageType};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::TryStreamExt;
use std::fmt::Write as _;
use std::time::Duration;

/// A key's latest state: its value (`None`: never set, or deleted) and the
/// revision a conditional write must name.
struct Current {
    value: Option<Bytes>,
    revision: u64,
}

impl Current {
    fn of(entry: Option<Entry>) -> Current {
        match entry {
            None => Current {
                value: None,
                revision: 0,
            },
            Some(entry) => Current {
                value: matches!(entry.operation, Operation::Put).then_some(entry.value),
                revision: entry.revision,
            },
        }
    }
}

impl NatsBackend {
    /// The bucket of `ns`, created on first use.
    async fn bucket(&self, ns: &Namespace) -> Result<Store, BackendError> {
        self.connected()?;
        if let Some(store) = self
            .buckets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(ns)
        {
            return Ok(store.clone());
        }
        let name = format!(
            "{}_kv_{}_{}",
            self.prefix,
            name_token(&ns.app),
            name_token(&ns.store)
        );
        let what = format!("key-value store `{}` of app `{}`", ns.store, ns.app);
        let store = self.open_bucket(&name, &what, Duration::ZERO).await?;
        self.buckets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ns.clone(), store.clone());
        Ok(store)
    }

    /// Opens the KV bucket `name`, creating it (for `what`) if it is new;
    /// entries older than `max_age` expire (zero: never).
    pub(super) async fn open_bucket(
        &self,
        name: &str,
        what: &str,
        max_age: Duration,
    ) -> Result<Store, BackendError> {
        self.js
            .get_or_create_stream(stream::Config {
                name: format!("KV_{name}"),
                description: Some(format!("Nimbus {what}")),
                subjects: vec![format!("$KV.{name}.>")],
                max_messages_per_subject: 1,
                max_age,
                storage: StorageType::File,
                allow_rollup: true,
                deny_delete: true,
                allow_direct: true,
                discard: DiscardPolicy::New,
                num_replicas: 1,
                ..Default::default()
            })
            .await
            .map_err(|e| fail(&format!("cannot create the bucket of the {what}"), e))?;
        self.js
            .get_key_value(name)
            .await
            .map_err(|e| fail(&format!("cannot open the bucket of the {what}"), e))
    }

    async fn current(&self, store: &Store, key: &str) -> Result<Current, BackendError> {
        let entry = store
            .entry(encode_key(key)?)
            .await
            .map_err(|e| fail(&format!("cannot read `{key}`"), e))?;
        Ok(Current::of(entry))
    }

    /// Refuses a value the server would refuse, naming its limit.
    fn check_payload(&self, key: &str, value: &[u8]) -> Result<(), BackendError> {
        let max = self.client.server_info().max_payload;
        if max > 0 && value.len() > max {
            return Err(BackendError::Invalid(format!(
                "cannot store `{key}`: the value is {} bytes and the NATS server takes at most {max} (its max_payload)",
                value.len()
            )));
        }
        Ok(())
    }

    /// Writes `value` at `key` if `revision` is still its latest; `false`
    /// when another write came first.
    async fn write_if(
        &self,
        store: &Store,
        key: &str,
        value: &[u8],
        revision: u64,
    ) -> Result<bool, BackendError> {
        self.check_payload(key, value)?;
        let value = Bytes::copy_from_slice(value);
        match store.update(encode_key(key)?, value, revision).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => Ok(false),
            Err(e) => Err(fail(&format!("cannot write `{key}`"), e)),
        }
    }
}

#[async_trait]
impl KvBackend for NatsBackend {
    async fn get(&self, ns: &Namespace, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        let store = self.bucket(ns).await?;
        Ok(self.current(&store, key).await?.value.map(Vec::from))
    }

    async fn set(&self, ns: &Namespace, key: &str, value: &[u8]) -> Result<(), BackendError> {
        self.check_payload(key, value)?;
        let store = self.bucket(ns).await?;
        store
            .put(encode_key(key)?, Bytes::copy_from_slice(value))
            .await
            .map_err(|e| fail(&format!("cannot write `{key}`"), e))?;
        Ok(())
    }

    async fn delete(&self, ns: &Namespace, key: &str) -> Result<(), BackendError> {
        let store = self.bucket(ns).await?;
        store
            .delete(encode_key(key)?)
            .await
            .map_err(|e| fail(&format!("cannot delete `{key}`"), e))
    }

    async fn exists(&self, ns: &Namespace, key: &str) -> Result<bool, BackendError> {
        Ok(self.get(ns, key).await?.is_some())
    }

    async fn list(
        &self,
        ns: &Namespace,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<KeyPage, BackendError> {
        let store = self.bucket(ns).await?;
        let encoded = all_keys(&store, &format!("store `{}`", ns.store)).await?;
        let mut keys: Vec<String> = encoded
            .iter()
            .filter_map(|k| decode_key(k))
            .filter(|k| k.starts_with(prefix) && after.is_none_or(|a| k.as_str() > a))
            .collect();
        keys.sort_unstable();
        let more = keys.len() > limit;
        keys.truncate(limit);
        Ok(KeyPage { keys, more })
    }

    async fn increment(&self, ns: &Namespace, key: &str, delta: i64) -> Result<i64, BackendError> {
        let store = self.bucket(ns).await?;
        loop {
            let current = self.current(&store, key).await?;
            let value = add_counter(key, parse_counter(key, current.value.as_deref())?, delta)?;
            let text = value.to_string();
            if self
                .write_if(&store, key, text.as_bytes(), current.revision)
                .await?
            {
                return Ok(value);
            }
        }
    }

    async fn compare_and_swap(
        &self,
        ns: &Namespace,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, BackendError> {
        let store = self.bucket(ns).await?;
        loop {
            let current = self.current(&store, key).await?;
            if current.value.as_deref() != expected {
                return Ok(false);
            }
            // A lost race may have written the expected value again: read
            // once more rather than report a swap that did not happen.
            if self.write_if(&store, key, new, current.revision).await? {
                return Ok(true);
            }
        }
    }
}

/// Every key of the bucket `store` (of `what`), as the server holds them,
/// in the order they were last written.
pub(super) async fn all_keys(store: &Store, what: &str) -> Result<Vec<String>, BackendError> {
    let listing = |e: &dyn std::fmt::Display| fail(&format!("cannot list the keys of {what}"), e);
    let keys = store.keys().await.map_err(|e| listing(&e))?;
    keys.try_collect().await.map_err(|e| listing(&e))
}

/// Whether `byte` stands for itself in a NATS key.
fn plain(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'/')
}

/// `key` as a NATS KV key: see the module documentation.
fn encode_key(key: &str) -> Result<String, BackendError> {
    if key.is_empty() {
        return Err(BackendError::Invalid("the key is empty".into()));
    }
    let mut out = String::with_capacity(key.len());
    for byte in key.bytes() {
        if plain(byte) {
            out.push(char::from(byte));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "={byte:02X}");
        }
    }
    Ok(out)
}

/// The key `encoded` stands for; `None` for a key this backend did not write.
fn decode_key(encoded: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(encoded.len());
    let mut rest = encoded.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        if first == b'=' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(first);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::{decode_key, encode_key};

    #[test]
    fn keys_round_trip_and_keep_prefixes() {
        for key in [
            "plain-key_1/2",
            "user.42",
            "a=b",
            "with space",
            "*",
            ">",
            "..",
            "ünïcödé ✓",
            "=41",
            "tab\there",
        ] {
            let encoded = encode_key(key).unwrap();
            assert!(
                encoded
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_/=".contains(&b)),
                "{key:?} -> {encoded}"
            );
            assert_eq!(decode_key(&encoded).as_deref(), Some(key), "{encoded}");
            for cut in (0..key.len()).filter(|&i| key.is_char_boundary(i) && i > 0) {
                let prefix = encode_key(&key[..cut]).unwrap();
                assert!(encoded.starts_with(&prefix), "{key:?} at {cut}");
            }
        }
        assert_eq!(encode_key("user.42").unwrap(), "user=2E42");
        assert!(encode_key("").is_err());
    }

    #[test]
    fn foreign_keys_are_skipped() {
        assert_eq!(decode_key("=4"), None);
        assert_eq!(decode_key("=ZZ"), None);
        assert_eq!(decode_key("=FF"), None);
    }
}
