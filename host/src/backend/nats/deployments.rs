//! The [`DeploymentsBackend`] implementation: function records in one KV
//! bucket per cluster (`P_deploy`, a key per function id, one revision
//! kept), components in one object store (`P_components`, an object per
//! digest, chunked by the server's object store protocol so a component may
//! be larger than a NATS message).
//!
//! Writes are revision-checked: `create` for a function with no record yet,
//! `update` naming the revision the writer saw otherwise; a lost race is
//! `Ok(None)`, never an overwrite. A function's record is never deleted: a
//! function back on its manifest's component gets an empty record, so the
//! next write still names a revision.

use super::kv::all_keys;
use super::{NatsBackend, fail};
use crate::backend::BackendError;
use crate::backend::deployments::{Behind, DeploymentsBackend, Stored};
use async_nats::jetstream::kv::{CreateErrorKind, Entry, Operation, Store, UpdateErrorKind};
use async_nats::jetstream::object_store::{self, ObjectStore};
use async_nats::jetstream::stream::StorageType;
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use std::time::Duration;
use tokio::io::AsyncReadExt as _;

impl NatsBackend {
    async fn deploy_bucket(&self) -> Result<&Store, BackendError> {
        self.connected()?;
        self.deployments
            .get_or_try_init(|| {
                let name = format!("{}_deploy", self.prefix);
                async move { self.open_bucket(&name, "deployments", Duration::ZERO).await }
            })
            .await
    }

    async fn components(&self) -> Result<&ObjectStore, BackendError> {
        self.connected()?;
        self.components
            .get_or_try_init(|| async {
                let name = format!("{}_components", self.prefix);
                if let Ok(store) = self.js.get_object_store(&name).await {
                    return Ok(store);
                }
                let created = self
                    .js
                    .create_object_store(object_store::Config {
                        bucket: name.clone(),
                        description: Some("Nimbus deployed components, by digest".into()),
                        storage: StorageType::File,
                        num_replicas: 1,
                        ..Default::default()
                    })
                    .await;
                match created {
                    Ok(store) => Ok(store),
                    // Another node created it first.
                    Err(e) => self
                        .js
                        .get_object_store(&name)
                        .await
                        .map_err(|_| fail("cannot create the components' object store", e)),
                }
            })
            .await
    }
}

fn stored(entry: Entry) -> Stored {
    Stored {
        value: match entry.operation {
            Operation::Put => entry.value.to_vec(),
            Operation::Delete | Operation::Purge => Vec::new(),
        },
        function: entry.key,
        revision: entry.revision,
    }
}

#[async_trait]
impl DeploymentsBackend for NatsBackend {
    async fn records(&self) -> Result<Vec<Stored>, BackendError> {
        let bucket = self.deploy_bucket().await?;
        let mut records = Vec::new();
        for key in all_keys(bucket, "the deployments").await? {
            let entry = bucket
                .entry(&key)
                .await
                .map_err(|e| fail(&format!("cannot read the deployments of `{key}`"), e))?;
            records.extend(entry.map(stored));
        }
        Ok(records)
    }

    async fn write(
        &self,
        function: &str,
        value: &[u8],
        expected: u64,
    ) -> Result<Option<u64>, BackendError> {
        let bucket = self.deploy_bucket().await?;
        let value = Bytes::copy_from_slice(value);
        let what = || format!("cannot record the deployments of `{function}`");
        if expected == 0 {
            return match bucket.create(function, value).await {
                Ok(revision) => Ok(Some(revision)),
                Err(e) if e.kind() == CreateErrorKind::AlreadyExists => Ok(None),
                Err(e) => Err(fail(&what(), e)),
            };
        }
        match bucket.update(function, value, expected).await {
            Ok(revision) => Ok(Some(revision)),
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => Ok(None),
            Err(e) => Err(fail(&what(), e)),
        }
    }

    async fn put_component(&self, digest: &str, bytes: &[u8]) -> Result<(), BackendError> {
        let store = self.components().await?;
        if store.info(digest).await.is_ok() {
            return Ok(());
        }
        store
            .put(digest, &mut &bytes[..])
            .await
            .map_err(|e| fail(&format!("cannot keep component {digest}"), e))?;
        Ok(())
    }

    async fn get_component(&self, digest: &str) -> Result<Vec<u8>, BackendError> {
        let store = self.components().await?;
        let what = || format!("cannot read component {digest}");
        let mut object = store.get(digest).await.map_err(|e| fail(&what(), e))?;
        let mut bytes = Vec::new();
        object
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| fail(&what(), e))?;
        if blake3::hash(&bytes).to_hex().as_str() != digest {
            return Err(BackendError::Storage(format!(
                "component {digest} in NATS does not match its digest (it was changed or damaged)"
            )));
        }
        Ok(bytes)
    }

    async fn watch(
        &self,
        after: u64,
    ) -> Result<BoxStream<'static, Result<Stored, BackendError>>, BackendError> {
        let bucket = self.deploy_bucket().await?;
        let watch = bucket
            .watch_all_from_revision(after + 1)
            .await
            .map_err(|e| fail("cannot watch the deployments", e))?;
        Ok(watch
            .map(|entry| {
                entry
                    .map(stored)
                    .map_err(|e| fail("watching the deployments", e))
            })
            .boxed())
    }

    fn behind(&self) -> &Behind {
        &self.behind
    }
}
