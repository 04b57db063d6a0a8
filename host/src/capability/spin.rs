//! Spin's own interfaces, for components built with Spin's SDK (spin-sdk 7,
//! a WASI 0.3 component): `spin:key-value@3.0.0` over the same stores,
//! grants and limits as `wasi:keyvalue` (a store label is a store name in
//! the function's `kv`), and `spin:variables@3.0.0` over the function's
//! `config`. Both are async functions of the component model, so only the
//! WASI 0.3 engine links them.

use super::config::{ConfigCtx, HasConfig};
use super::kv::{Bucket, HasKv, KvError, KvView, OpenStore};
use wasmtime::component::{Accessor, FutureReader, Linker, Resource, StreamReader};

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/spin",
        world: "nimbus:spin/imports",
        imports: { default: trappable },
        with: {
            "spin:key-value/key-value.store": crate::capability::kv::Bucket,
        },
    });
}

use bindings::spin::key_value::key_value::{self, Error as KvFault};
use bindings::spin::variables::variables::{self, Error as VariableError};

/// Adds Spin's key-value and variables to `linker`.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    kv: fn(&mut T) -> KvView<'_>,
    config: fn(&mut T) -> &ConfigCtx,
) -> wasmtime::Result<()> {
    key_value::add_to_linker::<T, HasKv>(linker, kv)?;
    variables::add_to_linker::<T, HasConfig>(linker, config)?;
    Ok(())
}

fn fault(e: KvError) -> wasmtime::Result<KvFault> {
    match e {
        KvError::AccessDenied => Ok(KvFault::AccessDenied),
        KvError::Other(message) => Ok(KvFault::Other(message)),
        KvError::Trap(e) => Err(e),
    }
}

/// Runs `op` on the open store behind `store`, outside the store's lock.
async fn with_open<T, R, F>(
    accessor: &Accessor<T, HasKv>,
    store: &Resource<Bucket>,
    op: impl FnOnce(OpenStore) -> F,
) -> wasmtime::Result<Result<R, KvFault>>
where
    F: Future<Output = Result<R, KvError>>,
{
    let open = accessor.with(|mut access| access.get().open_store(store));
    let result = match open {
        Ok(open) => op(open).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(value) => Ok(Ok(value)),
        Err(e) => fault(e).map(Err),
    }
}

impl key_value::Host for KvView<'_> {}

impl key_value::HostStore for KvView<'_> {
    fn drop(&mut self, store: Resource<Bucket>) -> wasmtime::Result<()> {
        self.drop_bucket(store)
    }
}

impl<T> key_value::HostStoreWithStore<T> for HasKv {
    async fn open(
        accessor: &Accessor<T, Self>,
        label: String,
    ) -> wasmtime::Result<Result<Resource<Bucket>, KvFault>> {
        match accessor.with(|mut access| access.get().open_bucket(label)) {
            Ok(store) => Ok(Ok(store)),
            Err(e) => fault(e).map(Err),
        }
    }

    async fn get(
        accessor: &Accessor<T, Self>,
        store: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, KvFault>> {
        with_open(accessor, &store, async |open| open.get(&key).await).await
    }

    async fn set(
        accessor: &Accessor<T, Self>,
        store: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), KvFault>> {
        with_open(accessor, &store, async |open| open.set(&key, &value).await).await
    }

    async fn delete(
        accessor: &Accessor<T, Self>,
        store: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<(), KvFault>> {
        with_open(accessor, &store, async |open| open.delete(&key).await).await
    }

    async fn exists(
        accessor: &Accessor<T, Self>,
        store: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<bool, KvFault>> {
        with_open(accessor, &store, async |open| open.exists(&key).await).await
    }

    /// Every key, as a stream, and the listing's result as a future.
    async fn get_keys(
        accessor: &Accessor<T, Self>,
        store: Resource<Bucket>,
    ) -> wasmtime::Result<(StreamReader<String>, FutureReader<Result<(), KvFault>>)> {
        let (keys, result) =
            match with_open(accessor, &store, async |open| open.all_keys().await).await? {
                Ok(keys) => (keys, Ok(())),
                Err(e) => (Vec::new(), Err(e)),
            };
        accessor.with(|mut access| {
            let keys = StreamReader::new(&mut access, keys)?;
            let result =
                FutureReader::new(&mut access, async move { Ok::<_, wasmtime::Error>(result) })?;
            Ok((keys, result))
        })
    }
}

impl variables::Host for &ConfigCtx {}

impl<T> variables::HostWithStore<T> for HasConfig {
    /// A variable is the function's `config` value of that name. Spin's
    /// names are lowercase ASCII letters, digits and `_`.
    async fn get(
        accessor: &Accessor<T, Self>,
        name: String,
    ) -> wasmtime::Result<Result<String, VariableError>> {
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Ok(Err(VariableError::InvalidName(format!(
                "`{name}`: a variable name is lowercase letters, digits and `_`"
            ))));
        }
        let value = accessor.with(|mut access| access.get().value(&name).map(str::to_owned));
        Ok(value.ok_or_else(|| {
            VariableError::Undefined(format!("no variable `{name}` in the function's config"))
        }))
    }
}
