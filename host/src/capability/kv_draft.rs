//! `wasi:keyvalue@0.2.0-draft`, the version `wasmtime serve -S keyvalue`
//! provides, over the same stores, grants and limits as 0.2.0-draft2 (see
//! `kv.rs`): a bucket opened through either is the same host resource.
//!
//! Where the drafts differ:
//! - `list-keys` pages by a number, the count of keys already returned, so
//!   each page walks the keys before it (listing is for small stores);
//! - `increment` takes and returns a `u64`: a delta past `i64::MAX`, or a
//!   counter below zero (set through the other draft), is an error;
//! - `batch` runs one operation per key, in order, and stops at the first
//!   error (the draft promises no atomicity).

use super::kv::{Bucket, HasKv, KvError, KvView};
use wasmtime::component::{Linker, Resource};

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/keyvalue-draft",
        world: "wasi:keyvalue/imports",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": crate::capability::kv::Bucket,
        },
        trappable_error_type: {
            "wasi:keyvalue/store.error" => crate::capability::kv::KvError,
        },
    });
}

use bindings::wasi::keyvalue::{atomics, batch, store};

/// Adds the draft's interfaces to `linker`.
pub(super) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> KvView<'_>,
) -> wasmtime::Result<()> {
    store::add_to_linker::<T, HasKv>(linker, view)?;
    atomics::add_to_linker::<T, HasKv>(linker, view)?;
    batch::add_to_linker::<T, HasKv>(linker, view)?;
    Ok(())
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
        cursor: Option<u64>,
    ) -> Result<store::KeyResponse, KvError> {
        // Walk to the key the cursor counts up to, then take one page.
        let mut skip = cursor.unwrap_or(0);
        let mut after: Option<String> = None;
        loop {
            let (mut keys, more) = self.keys_after(&bucket, "", after.as_deref()).await?;
            if skip >= keys.len() as u64 {
                if !more {
                    return Ok(store::KeyResponse {
                        keys: Vec::new(),
                        cursor: None,
                    });
                }
                skip -= keys.len() as u64;
                after = keys.pop();
                continue;
            }
            let page: Vec<String> = keys.split_off(skip as usize);
            let returned = cursor.unwrap_or(0) + page.len() as u64;
            return Ok(store::KeyResponse {
                keys: page,
                cursor: more.then_some(returned),
            });
        }
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.drop_bucket(bucket)
    }
}

impl atomics::Host for KvView<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> Result<u64, KvError> {
        let delta = i64::try_from(delta).map_err(|_| {
            KvError::Other(format!("the delta {delta} is larger than {}", i64::MAX))
        })?;
        let value = self.increment_by(&bucket, &key, delta).await?;
        u64::try_from(value).map_err(|_| {
            KvError::Other(format!(
                "the counter at `{key}` is {value}, below zero, which this draft's u64 cannot hold"
            ))
        })
    }
}

impl batch::Host for KvView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<Vec<Option<(String, Vec<u8>)>>, KvError> {
        let mut pairs = Vec::with_capacity(keys.len());
        for key in keys {
            let value = self.get_value(&bucket, &key).await?;
            pairs.push(value.map(|value| (key, value)));
        }
        Ok(pairs)
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Result<(), KvError> {
        for (key, value) in key_values {
            self.set_value(&bucket, &key, &value).await?;
        }
        Ok(())
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<(), KvError> {
        for key in keys {
            self.delete_key(&bucket, &key).await?;
        }
        Ok(())
    }
}
