//! The embedded backend's key-value stores: every pair of every app in the
//! `kv` table, keyed `app \0 store \0 key`, so one store is one range scan.

use super::{EmbeddedBackend, KV, storage};
use crate::backend::kv::{add_counter, parse_counter};
use crate::backend::{BackendError, KeyPage, KvBackend, Namespace};
use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable};

impl EmbeddedBackend {
    /// Reads the value at `key` and, in the same write transaction, stores
    /// what `f` returns for it (if anything): an atomic read-modify-write.
    /// `f` refuses (an `Invalid` error) before anything is written.
    async fn update<T, F>(&self, key: String, bytes: usize, mut f: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: FnMut(Option<&[u8]>) -> Result<(Option<Vec<u8>>, T), BackendError> + Send + 'static,
    {
        self.write(key.len() + bytes, move |tx| {
            let mut table = tx.open_table(KV).map_err(storage)?;
            let current = table.get(key.as_str()).map_err(storage)?;
            let (write, result) = f(current.as_ref().map(|v| v.value()))?;
            drop(current);
            if let Some(value) = &write {
                table
                    .insert(key.as_str(), value.as_slice())
                    .map_err(storage)?;
            }
            Ok(result)
        })
        .await
    }
}

fn full_key(ns: &Namespace, key: &str) -> String {
    format!("{}\0{}\0{key}", ns.app, ns.store)
}

fn read(db: &Database, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
    let tx = db.begin_read().map_err(storage)?;
    let table = tx.open_table(KV).map_err(storage)?;
    Ok(table.get(key).map_err(storage)?.map(|v| v.value().to_vec()))
}

#[async_trait]
impl KvBackend for EmbeddedBackend {
    async fn get(&self, ns: &Namespace, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        let key = full_key(ns, key);
        self.blocking(move |db| read(db, &key)).await
    }

    async fn set(&self, ns: &Namespace, key: &str, value: &[u8]) -> Result<(), BackendError> {
        let key = full_key(ns, key);
        let value = value.to_vec();
        self.write(key.len() + value.len(), move |tx| {
            tx.open_table(KV)
                .map_err(storage)?
                .insert(key.as_str(), value.as_slice())
                .map_err(storage)?;
            Ok(())
        })
        .await
    }

    async fn delete(&self, ns: &Namespace, key: &str) -> Result<(), BackendError> {
        self.remove(KV, full_key(ns, key)).await
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
        let base = full_key(ns, "");
        let start = match after {
            // Strictly after the cursor: the cursor key plus the smallest suffix.
            Some(after) if after >= prefix => format!("{base}{after}\0"),
            _ => format!("{base}{prefix}"),
        };
        let full_prefix = format!("{base}{prefix}");
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(storage)?;
            let table = tx.open_table(KV).map_err(storage)?;
            let mut keys = Vec::new();
            let mut more = false;
            for entry in table.range(start.as_str()..).map_err(storage)? {
                let (k, _) = entry.map_err(storage)?;
                let k = k.value();
                if !k.starts_with(&full_prefix) {
                    break;
                }
                if keys.len() == limit {
                    more = true;
                    break;
                }
                keys.push(k[base.len()..].to_owned());
            }
            Ok(KeyPage { keys, more })
        })
        .await
    }

    async fn increment(&self, ns: &Namespace, key: &str, delta: i64) -> Result<i64, BackendError> {
        let name = key.to_owned();
        self.update(full_key(ns, key), 20, move |current| {
            let next = add_counter(&name, parse_counter(&name, current)?, delta)?;
            Ok((Some(next.to_string().into_bytes()), next))
        })
        .await
    }

    async fn compare_and_swap(
        &self,
        ns: &Namespace,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, BackendError> {
        let expected = expected.map(<[u8]>::to_vec);
        let new = new.to_vec();
        self.update(full_key(ns, key), new.len(), move |current| {
            Ok(if current == expected.as_deref() {
                (Some(new.clone()), true)
            } else {
                (None, false)
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(app: &str, store: &str) -> Namespace {
        Namespace {
            app: app.into(),
            store: store.into(),
        }
    }

    #[tokio::test]
    async fn round_trip_isolation_listing_and_atomics() {
        let dir = tempfile::tempdir().unwrap();
        let db = EmbeddedBackend::open(&dir.path().join("state.redb")).unwrap();
        let a = ns("shop", "catalog");
        db.set(&a, "p/1", b"one").await.unwrap();
        db.set(&a, "p/2", b"two").await.unwrap();
        db.set(&a, "q/1", b"other").await.unwrap();
        db.set(&ns("shop", "catalogue"), "p/9", b"x").await.unwrap();
        db.set(&ns("other", "catalog"), "p/1", b"theirs")
            .await
            .unwrap();

        assert_eq!(
            db.get(&a, "p/1").await.unwrap().as_deref(),
            Some(&b"one"[..])
        );
        assert!(!db.exists(&a, "p/3").await.unwrap());
        let page = db.list(&a, "p/", None, 10).await.unwrap();
        assert_eq!(page.keys, ["p/1", "p/2"]);
        assert!(!page.more);
        let page = db.list(&a, "", None, 2).await.unwrap();
        assert_eq!(
            (page.keys.as_slice(), page.more),
            (&["p/1".to_string(), "p/2".into()][..], true)
        );
        let page = db.list(&a, "", Some("p/2"), 2).await.unwrap();
        assert_eq!(page.keys, ["q/1"]);

        assert_eq!(db.increment(&a, "n", 5).await.unwrap(), 5);
        assert_eq!(db.increment(&a, "n", -2).await.unwrap(), 3);
        assert!(db.increment(&a, "p/1", 1).await.is_err());

        assert!(db.compare_and_swap(&a, "c", None, b"1").await.unwrap());
        assert!(!db.compare_and_swap(&a, "c", None, b"2").await.unwrap());
        assert!(
            db.compare_and_swap(&a, "c", Some(b"1"), b"2")
                .await
                .unwrap()
        );
        db.delete(&a, "c").await.unwrap();
        assert_eq!(db.get(&a, "c").await.unwrap(), None);
    }

    #[tokio::test]
    async fn data_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let a = ns("app", "s");
        {
            let db = EmbeddedBackend::open(&path).unwrap();
            db.set(&a, "k", b"v").await.unwrap();
        }
        let db = EmbeddedBackend::open(&path).unwrap();
        assert_eq!(db.get(&a, "k").await.unwrap().as_deref(), Some(&b"v"[..]));
    }
}
