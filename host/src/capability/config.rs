//! Configuration values (`wasi:config/store@0.2.0-rc.1`): the function's
//! `[functions.<id>.config]` table, templates resolved when the app loaded.

use super::bindings::wasi::config::store;
use std::sync::Arc;
use wasmtime::component::{HasData, Linker};

/// A function's configuration.
#[derive(Clone, Default)]
pub struct ConfigCtx {
    values: Arc<[(String, String)]>,
}

impl ConfigCtx {
    /// Configuration holding `values`, sorted by key.
    pub fn new(values: Arc<[(String, String)]>) -> ConfigCtx {
        ConfigCtx { values }
    }
}

pub(super) struct HasConfig;

impl HasData for HasConfig {
    type Data<'a> = &'a ConfigCtx;
}

/// Adds `wasi:config/store` to `linker`.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> &ConfigCtx,
) -> wasmtime::Result<()> {
    store::add_to_linker::<T, HasConfig>(linker, view)
}

impl ConfigCtx {
    /// The value of `key`, if the function's configuration has one.
    pub(super) fn value(&self, key: &str) -> Option<&str> {
        self.values
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| self.values[i].1.as_str())
    }
}

impl store::Host for &ConfigCtx {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, store::Error>> {
        Ok(Ok(self.value(&key).map(str::to_owned)))
    }

    async fn get_all(&mut self) -> wasmtime::Result<Result<Vec<(String, String)>, store::Error>> {
        Ok(Ok(self.values.to_vec()))
    }
}
