//! Key-value stores (`wasi:keyvalue@0.2.0-draft2` and `nimbus:function/keyvalue-ext`;
//! `kv_draft.rs` adds `wasi:keyvalue@0.2.0-draft` over the same stores).
//!
//! A function may open only the stores its manifest lists in `kv`; anything
//! else is `access-denied`. Stores are namespaced by app, so two apps never
//! share data. Keys and values are checked against the function's limits
//! before they reach the backend.

use super::bindings::nimbus::function::keyvalue_ext;
use super::bindings::wasi::keyvalue::{atomics, store};
use crate::backend::{BackendError, KvBackend, Namespace};
use crate::manifest::{StoreName, format_bytes};
use std::sync::Arc;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable, ResourceTableError};

/// Keys per `list-keys` page: large enough that most listings are one call,
/// small enough that a page of 256-byte keys stays well under a megabyte.
pub const LIST_PAGE_SIZE: usize = 1_000;

/// Per-function key-value policy and the backend it uses.
#[derive(Clone)]
pub struct KvCtx {
    backend: Arc<dyn KvBackend>,
    app: Arc<str>,
    allowed: Arc<[StoreName]>,
    max_key: u64,
    max_value: u64,
}

impl KvCtx {
    /// A context granting `allowed` stores of `app` in `backend`.
    pub fn new(
        backend: Arc<dyn KvBackend>,
        app: &str,
        allowed: &[StoreName],
        max_key: u64,
        max_value: u64,
    ) -> KvCtx {
        KvCtx {
            backend,
            app: app.into(),
            allowed: allowed.into(),
            max_key,
            max_value,
        }
    }
}

/// An open store, the host side of `bucket`.
pub struct Bucket {
    ns: Namespace,
}

/// A compare-and-swap handle, the host side of `cas`.
pub struct Cas {
    ns: Namespace,
    key: String,
    current: Option<Vec<u8>>,
}

/// The host side of `wasi:keyvalue/store.error`.
#[derive(Debug)]
pub enum KvError {
    /// The store was not granted.
    AccessDenied,
    /// Anything else, explained.
    Other(String),
    /// A host failure that should trap the guest.
    Trap(wasmtime::Error),
}

impl From<BackendError> for KvError {
    fn from(e: BackendError) -> Self {
        KvError::Other(e.to_string())
    }
}

impl From<ResourceTableError> for KvError {
    fn from(e: ResourceTableError) -> Self {
        KvError::Trap(e.into())
    }
}

/// How the key-value interfaces find their state in the store data.
pub struct KvView<'a> {
    /// The policy and backend.
    pub ctx: &'a KvCtx,
    /// The instance's resource table.
    pub table: &'a mut ResourceTable,
}

/// The key-value interfaces' view of the store data, for bindgen's linker functions.
pub(super) struct HasKv;

impl HasData for HasKv {
    type Data<'a> = KvView<'a>;
}

/// Adds the key-value interfaces to `linker`.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> KvView<'_>,
) -> wasmtime::Result<()> {
    store::add_to_linker::<T, HasKv>(linker, view)?;
    atomics::add_to_linker::<T, HasKv>(linker, view)?;
    keyvalue_ext::add_to_linker::<T, HasKv>(linker, view)?;
    super::kv_draft::add_to_linker(linker, view)
}

impl KvCtx {
    fn check_key(&self, key: &str) -> Result<(), KvError> {
        if key.is_empty() {
            return Err(KvError::Other("the key is empty".into()));
        }
        if key.len() as u64 > self.max_key {
            return Err(KvError::Other(format!(
                "too large: the key is {} bytes; the limit is {} (limits.kv_key_size)",
                key.len(),
                format_bytes(self.max_key)
            )));
        }
        Ok(())
    }

    fn check_value(&self, value: &[u8]) -> Result<(), KvError> {
        if value.len() as u64 > self.max_value {
            return Err(KvError::Other(format!(
                "too large: the value is {}; the limit is {} (limits.kv_value_size)",
                format_bytes(value.len() as u64),
                format_bytes(self.max_value)
            )));
        }
        Ok(())
    }
}

/// An open store taken out of the resource table: where the key and value
/// limits are checked on the way to the backend, for every draft and for
/// Spin's async key-value, which awaits the backend without holding the
/// store.
pub(super) struct OpenStore {
    ctx: KvCtx,
    ns: Namespace,
}

impl OpenStore {
    pub(super) async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.ctx.check_key(key)?;
        Ok(self.ctx.backend.get(&self.ns, key).await?)
    }

    pub(super) async fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.ctx.check_key(key)?;
        self.ctx.check_value(value)?;
        Ok(self.ctx.backend.set(&self.ns, key, value).await?)
    }

    pub(super) async fn delete(&self, key: &str) -> Result<(), KvError> {
        self.ctx.check_key(key)?;
        Ok(self.ctx.backend.delete(&self.ns, key).await?)
    }

    pub(super) async fn exists(&self, key: &str) -> Result<bool, KvError> {
        self.ctx.check_key(key)?;
        Ok(self.ctx.backend.exists(&self.ns, key).await?)
    }

    /// Every key of the store, a page at a time from the backend.
    pub(super) async fn all_keys(&self) -> Result<Vec<String>, KvError> {
        let mut keys: Vec<String> = Vec::new();
        loop {
            let cursor = keys.last().map(String::as_str);
            let page = self
                .ctx
                .backend
                .list(&self.ns, "", cursor, LIST_PAGE_SIZE)
                .await?;
            keys.extend(page.keys);
            if !page.more {
                return Ok(keys);
            }
        }
    }
}

impl KvView<'_> {
    fn check_key(&self, key: &str) -> Result<(), KvError> {
        self.ctx.check_key(key)
    }

    fn check_value(&self, value: &[u8]) -> Result<(), KvError> {
        self.ctx.check_value(value)
    }

    /// The open store behind `bucket`, to use after the view is gone.
    pub(super) fn open_store(&self, bucket: &Resource<Bucket>) -> Result<OpenStore, KvError> {
        Ok(OpenStore {
            ctx: self.ctx.clone(),
            ns: self.ns(bucket)?,
        })
    }

    fn ns(&self, bucket: &Resource<Bucket>) -> Result<Namespace, KvError> {
        Ok(self.table.get(bucket)?.ns.clone())
    }

    async fn page(
        &mut self,
        bucket: &Resource<Bucket>,
        prefix: &str,
        cursor: Option<String>,
    ) -> Result<store::KeyResponse, KvError> {
        let (keys, more) = self.keys_after(bucket, prefix, cursor.as_deref()).await?;
        let cursor = if more { keys.last().cloned() } else { None };
        Ok(store::KeyResponse { keys, cursor })
    }

    /// Opens the store `identifier` if the function was granted it.
    pub(super) fn open_bucket(&mut self, identifier: String) -> Result<Resource<Bucket>, KvError> {
        if !self.ctx.allowed.iter().any(|s| s.as_str() == identifier) {
            tracing::debug!(store = identifier, "key-value store not granted");
            return Err(KvError::AccessDenied);
        }
        let ns = Namespace {
            app: self.ctx.app.to_string(),
            store: identifier,
        };
        Ok(self.table.push(Bucket { ns })?)
    }

    /// Up to [`LIST_PAGE_SIZE`] keys of `bucket` starting with `prefix`,
    /// after `cursor` (a key), and whether more follow.
    pub(super) async fn keys_after(
        &mut self,
        bucket: &Resource<Bucket>,
        prefix: &str,
        cursor: Option<&str>,
    ) -> Result<(Vec<String>, bool), KvError> {
        let ns = self.ns(bucket)?;
        let page = self
            .ctx
            .backend
            .list(&ns, prefix, cursor, LIST_PAGE_SIZE)
            .await?;
        Ok((page.keys, page.more))
    }

    /// `get` of either draft: the value of `key`, if set.
    pub(super) async fn get_value(
        &mut self,
        bucket: &Resource<Bucket>,
        key: &str,
    ) -> Result<Option<Vec<u8>>, KvError> {
        self.open_store(bucket)?.get(key).await
    }

    /// `set` of either draft, within the limits.
    pub(super) async fn set_value(
        &mut self,
        bucket: &Resource<Bucket>,
        key: &str,
        value: &[u8],
    ) -> Result<(), KvError> {
        self.open_store(bucket)?.set(key, value).await
    }

    /// `delete` of either draft.
    pub(super) async fn delete_key(
        &mut self,
        bucket: &Resource<Bucket>,
        key: &str,
    ) -> Result<(), KvError> {
        self.open_store(bucket)?.delete(key).await
    }

    /// `exists` of either draft.
    pub(super) async fn key_exists(
        &mut self,
        bucket: &Resource<Bucket>,
        key: &str,
    ) -> Result<bool, KvError> {
        self.open_store(bucket)?.exists(key).await
    }

    /// `increment` of either draft: adds `delta` to the counter at `key`.
    pub(super) async fn increment_by(
        &mut self,
        bucket: &Resource<Bucket>,
        key: &str,
        delta: i64,
    ) -> Result<i64, KvError> {
        self.check_key(key)?;
        let ns = self.ns(bucket)?;
        Ok(self.ctx.backend.increment(&ns, key, delta).await?)
    }

    /// A bucket handle dropped by the guest, of either draft.
    pub(super) fn drop_bucket(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl store::Host for KvView<'_> {
    async fn open(&mut self, identifier: String) -> Result<Resource<Bucket>, KvError> {
        self.open_bucket(identifier)
    }

    fn convert_error(&mut self, err: KvError) -> wasmtime::Result<store::Error> {
        match err {
            KvError::AccessDenied => Ok(store::Error::AccessDenied),
            KvError::Other(message) => Ok(store::Error::Other(message)),
            KvError::Trap(e) => Err(e),
        }
    }
}

impl store::HostBucket for KvView<'_> {
    async fn get(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> Result<Option<Vec<u8>>, KvError> {
        self.get_value(&bucket, &key).await
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), KvError> {
        self.set_value(&bucket, &key, &value).await
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> Result<(), KvError> {
        self.delete_key(&bucket, &key).await
    }

    async fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> Result<bool, KvError> {
        self.key_exists(&bucket, &key).await
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<String>,
    ) -> Result<store::KeyResponse, KvError> {
        self.page(&bucket, "", cursor).await
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.drop_bucket(bucket)
    }
}

impl keyvalue_ext::Host for KvView<'_> {
    async fn list_keys_with_prefix(
        &mut self,
        bucket: Resource<Bucket>,
        prefix: String,
        cursor: Option<String>,
    ) -> Result<store::KeyResponse, KvError> {
        self.page(&bucket, &prefix, cursor).await
    }
}

impl atomics::Host for KvView<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: i64,
    ) -> Result<i64, KvError> {
        self.increment_by(&bucket, &key, delta).await
    }

    async fn swap(
        &mut self,
        cas: Resource<Cas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), atomics::CasError>> {
        if let Err(e) = self.check_value(&value) {
            self.table.delete(cas)?;
            return Ok(Err(atomics::CasError::StoreError(self.convert(e)?)));
        }
        let handle = self.table.delete(cas)?;
        match self
            .ctx
            .backend
            .compare_and_swap(&handle.ns, &handle.key, handle.current.as_deref(), &value)
            .await
        {
            Ok(true) => Ok(Ok(())),
            Ok(false) => {
                // Hand back a fresh handle holding the value as it is now.
                let current = match self.ctx.backend.get(&handle.ns, &handle.key).await {
                    Ok(v) => v,
                    Err(e) => {
                        return Ok(Err(atomics::CasError::StoreError(self.convert(e.into())?)));
                    }
                };
                let fresh = self.table.push(Cas { current, ..handle })?;
                Ok(Err(atomics::CasError::CasFailed(fresh)))
            }
            Err(e) => Ok(Err(atomics::CasError::StoreError(self.convert(e.into())?))),
        }
    }
}

impl KvView<'_> {
    fn convert(&mut self, e: KvError) -> wasmtime::Result<store::Error> {
        <Self as store::Host>::convert_error(self, e)
    }
}

impl atomics::HostCas for KvView<'_> {
    async fn new(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> Result<Resource<Cas>, KvError> {
        self.check_key(&key)?;
        let ns = self.ns(&bucket)?;
        let current = self.ctx.backend.get(&ns, &key).await?;
        Ok(self.table.push(Cas { ns, key, current })?)
    }

    async fn current(&mut self, cas: Resource<Cas>) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.table.get(&cas)?.current.clone())
    }

    async fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}
