//! An in-memory backend: for `nimbus check`, which runs no guest code and
//! must not lock a running app's state file, and for tests of the traits.
//! Nothing survives the process.

use super::{BackendError, KeyPage, KvBackend, Namespace, add_counter, parse_counter};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Keys are `(app, store, key)`, so a range over one store is contiguous.
type Key = (String, String, String);

/// Key-value pairs in a map behind a lock.
#[derive(Default)]
pub struct MemoryBackend {
    map: Mutex<BTreeMap<Key, Vec<u8>>>,
}

fn key(ns: &Namespace, key: &str) -> Key {
    (ns.app.clone(), ns.store.clone(), key.to_owned())
}

impl MemoryBackend {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<Key, Vec<u8>>> {
        // A panic while holding the lock cannot leave a half-written entry:
        // every operation is one map call.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl KvBackend for MemoryBackend {
    async fn get(&self, ns: &Namespace, k: &str) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(self.map().get(&key(ns, k)).cloned())
    }

    async fn set(&self, ns: &Namespace, k: &str, value: &[u8]) -> Result<(), BackendError> {
        self.map().insert(key(ns, k), value.to_vec());
        Ok(())
    }

    async fn delete(&self, ns: &Namespace, k: &str) -> Result<(), BackendError> {
        self.map().remove(&key(ns, k));
        Ok(())
    }

    async fn exists(&self, ns: &Namespace, k: &str) -> Result<bool, BackendError> {
        Ok(self.map().contains_key(&key(ns, k)))
    }

    async fn list(
        &self,
        ns: &Namespace,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<KeyPage, BackendError> {
        let map = self.map();
        let mut keys = Vec::new();
        let mut more = false;
        for ((app, store, k), _) in map.range(key(ns, prefix)..) {
            if *app != ns.app || *store != ns.store || !k.starts_with(prefix) {
                break;
            }
            if after.is_some_and(|a| k.as_str() <= a) {
                continue;
            }
            if keys.len() == limit {
                more = true;
                break;
            }
            keys.push(k.clone());
        }
        Ok(KeyPage { keys, more })
    }

    async fn increment(&self, ns: &Namespace, k: &str, delta: i64) -> Result<i64, BackendError> {
        let mut map = self.map();
        let entry = key(ns, k);
        let next = add_counter(
            k,
            parse_counter(k, map.get(&entry).map(Vec::as_slice))?,
            delta,
        )?;
        map.insert(entry, next.to_string().into_bytes());
        Ok(next)
    }

    async fn compare_and_swap(
        &self,
        ns: &Namespace,
        k: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, BackendError> {
        let mut map = self.map();
        let entry = key(ns, k);
        if map.get(&entry).map(Vec::as_slice) != expected {
            return Ok(false);
        }
        map.insert(entry, new.to_vec());
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn listing_stays_inside_one_store() {
        let db = MemoryBackend::default();
        let ns = |s: &str| Namespace {
            app: "app".into(),
            store: s.into(),
        };
        db.set(&ns("a"), "k1", b"1").await.unwrap();
        db.set(&ns("b"), "k2", b"2").await.unwrap();
        assert_eq!(db.list(&ns("a"), "", None, 10).await.unwrap().keys, ["k1"]);
        assert_eq!(db.increment(&ns("a"), "n", 2).await.unwrap(), 2);
        assert!(
            db.compare_and_swap(&ns("a"), "n", Some(b"2"), b"5")
                .await
                .unwrap()
        );
        assert!(
            !db.compare_and_swap(&ns("a"), "n", Some(b"2"), b"6")
                .await
                .unwrap()
        );
    }
}
