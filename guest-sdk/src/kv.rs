//! Key-value stores: named buckets of byte values, kept by the host across
//! requests (`wasi:keyvalue`).
//!
//! A function may open only the stores its manifest grants, e.g.
//! `kv = ["carts"]` under `[functions.shop]`; opening any other is
//! [`Error::AccessDenied`]. Stores belong to the app, so every function of an
//! app that is granted `carts` sees the same data. Keys are non-empty strings;
//! keys and values are capped by the function's `limits.kv_key_size` and
//! `limits.kv_value_size`, and going over is an [`Error::Other`] whose message
//! starts with `too large`.
//!
//! ```no_run
//! use nimbus_sdk::{Error, http_handler, kv};
//!
//! #[http_handler]
//! fn visit() -> Result<String, Error> {
//!     let store = kv::Store::open("counters")?;
//!     let visits = store.increment("visits", 1)?;
//!     Ok(format!("visit number {visits}\n"))
//! }
//! # fn main() {}
//! ```

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::nimbus::function::keyvalue_ext;
use crate::bindings::wasi::keyvalue::atomics::{self, Cas, CasError};
use crate::bindings::wasi::keyvalue::store::{self, Bucket, KeyResponse};

/// Why a key-value operation failed.
///
/// Converts into [`crate::Error`] for `?` in handlers: `NoSuchStore` is a
/// `404 no_such_store`, `AccessDenied` a `403 access_denied`, `Other` a
/// `500 internal` carrying the host's message.
///
/// ```
/// use nimbus_sdk::kv;
///
/// let error = kv::Error::Other("too large: the value is 2 MiB".into());
/// assert_eq!(error.to_string(), "key-value store error: too large: the value is 2 MiB");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The store does not exist.
    NoSuchStore,
    /// The function may not use the store: the manifest's `kv` does not list it.
    AccessDenied,
    /// Anything else, as the host explained it.
    Other(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoSuchStore => f.write_str("no such key-value store"),
            Error::AccessDenied => f.write_str(
                "access to the key-value store is denied (the manifest's `kv` does not grant it)",
            ),
            Error::Other(message) => write!(f, "key-value store error: {message}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<store::Error> for Error {
    fn from(err: store::Error) -> Error {
        match err {
            store::Error::NoSuchStore => Error::NoSuchStore,
            store::Error::AccessDenied => Error::AccessDenied,
            store::Error::Other(message) => Error::Other(message),
        }
    }
}

/// An open key-value store.
///
/// Every method is one call to the host, except [`keys`](Store::keys) and
/// [`keys_with_prefix`](Store::keys_with_prefix), which fetch every page.
///
/// ```no_run
/// use nimbus_sdk::kv::Store;
///
/// let store = Store::open("sessions")?;
/// store.set("s-1", "alice")?;
/// assert_eq!(store.get("s-1")?.as_deref(), Some(&b"alice"[..]));
/// store.delete("s-1")?;
/// assert!(!store.exists("s-1")?);
/// # Ok::<(), nimbus_sdk::kv::Error>(())
/// ```
pub struct Store {
    name: String,
    bucket: Bucket,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").field("name", &self.name).finish()
    }
}

impl Store {
    /// Opens the store called `name`.
    ///
    /// ```no_run
    /// let store = nimbus_sdk::kv::Store::open("carts")?;
    /// # Ok::<(), nimbus_sdk::kv::Error>(())
    /// ```
    pub fn open(name: &str) -> Result<Store, Error> {
        let bucket = store::open(name)?;
        Ok(Store {
            name: name.to_owned(),
            bucket,
        })
    }

    /// The name the store was opened with.
    ///
    /// ```no_run
    /// let store = nimbus_sdk::kv::Store::open("carts")?;
    /// assert_eq!(store.name(), "carts");
    /// # Ok::<(), nimbus_sdk::kv::Error>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value of `key`, or `None` if it is not set.
    ///
    /// ```no_run
    /// let store = nimbus_sdk::kv::Store::open("carts")?;
    /// let cart: Option<Vec<u8>> = store.get("alice")?;
    /// # Ok::<(), nimbus_sdk::kv::Error>(())
    /// ```
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.bucket.get(key)?)
    }

    /// Sets `key` to `value`, replacing any value it had.
    ///
    /// ```no_run
    /// let store = nimbus_sdk::kv::Store::open("carts")?;
    /// store.set("alice", b"\x01\x02")?;
    /// store.set("bob", "text works too")?;
    /// # Ok::<(), nimbus_sdk::kv::Error>(())
    /// ```
    pub fn set(&self, key: &str, value: impl AsRef<[u8]>) -> Result<(), Error> {
        Ok(self.bucket.set(key, value.as_ref())?)
    }

    /// Removes `key`; removing a key that is not set is not an error.
    ///
    /// ```no_run
    /// let store = nimbus_sdk::kv::Store::open("carts")?;
    /// store.delete("alice")?;
    /// # Ok::<(), nimbus_sdk::kv::Error>(())
    /// ```
    pub fn delete(&self, key: &str) -> Result<(), Error> {
        Ok(self.bucket.delete(key)?)
    }

    /// Whether `key` is set.
    ///
    /// ```no_run
    /// let store = nimbus_sdk::kv::Store::open("carts")?;
    /// if !store.exists("alice")? {
    ///     store.set("alice", "[]")?;
    /// }
    /// # Ok::<(), nimbus_sdk::kv::Error>(())
    /// ```
    pub fn exists(&self, key: &str) -> Result<bool, Error> {
        Ok(self.bucket.exists(key)?)
    }

    /// Every key in the store, in the order the host lists them (key order for
    /// Nimbus's own backend). Fetches all pages, so it is bounded by the store's
    /// size, not by one page.
    ///
    /// ```no_run
    /// let store = nimbus_sdk::kv::Store::open("carts")?;
    /// for key in store.keys()? {
    ///     println!("{key}");
    /// }
    /// # Ok::<(), nimbus_sdk::kv::Error>(())
    /// ```
    pub fn keys(&self) -> Result<Vec<String>, Error> {
        all_pages(|cursor| self.bucket.list_keys(cursor))
    }

    /// Every key that starts with `prefix`, in key order, all pages.
    ///
    /// ```no_run
    /// let store = nimbus_sdk::kv::Store::open("carts")?;
    /// let alices = store.keys_with_prefix("alice/")?;
    /// # Ok::<(), nimbus_sdk::kv::Error>(())
    /// ```
    pub fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, Error> {
        all_pages(|cursor| keyvalue_ext::list_keys_with_prefix(&self.bucket, prefix, cursor))
    }

    /// Adds `delta` to the integer at `key` atomically and returns the new value.
    /// A key that is not set counts as 0.
    ///
    /// ```no_run
    /// let store = nimbus_sdk::kv::Store::open("counters")?;
    /// let hits = store.increment("hits", 1)?;
    /// let left = store.increment("stock", -3)?;
    /// # Ok::<(), nimbus_sdk::kv::Error>(())
    /// ```
    pub fn increment(&self, key: &str, delta: i64) -> Result<i64, Error> {
        Ok(atomics::increment(&self.bucket, key, delta)?)
    }

    /// Sets `key` to `new` only if its value is still `expected` (`None`: not
    /// set). Returns whether it did: `false` when the value was different, or
    /// changed between the read and the write (another request won the race).
    ///
    /// Retry on `false` with a fresh read to make an update atomic:
    ///
    /// ```no_run
    /// let store = nimbus_sdk::kv::Store::open("counters")?;
    /// loop {
    ///     let old = store.get("total")?;
    ///     let total: u64 = old
    ///         .as_deref()
    ///         .map(|bytes| String::from_utf8_lossy(bytes).parse().unwrap_or(0))
    ///         .unwrap_or(0);
    ///     let new = (total * 2).to_string();
    ///     if store.compare_and_swap("total", old.as_deref(), new.as_bytes())? {
    ///         break;
    ///     }
    /// }
    /// # Ok::<(), nimbus_sdk::kv::Error>(())
    /// ```
    pub fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: impl AsRef<[u8]>,
    ) -> Result<bool, Error> {
        // The handle remembers the value when it is made; the swap succeeds only
        // if the value is still that one.
        let cas = Cas::new(&self.bucket, key)?;
        if cas.current()?.as_deref() != expected {
            return Ok(false);
        }
        match atomics::swap(cas, new.as_ref()) {
            Ok(()) => Ok(true),
            Err(CasError::CasFailed(_fresh)) => Ok(false),
            Err(CasError::StoreError(err)) => Err(err.into()),
        }
    }

    /// The value of `key` parsed as JSON, or `None` if it is not set. A value
    /// that is not valid JSON for `T` is an [`Error::Other`].
    ///
    /// ```no_run
    /// use std::collections::BTreeMap;
    ///
    /// let store = nimbus_sdk::kv::Store::open("carts")?;
    /// let cart: BTreeMap<String, u32> = store.get_json("alice")?.unwrap_or_default();
    /// # Ok::<(), nimbus_sdk::kv::Error>(())
    /// ```
    pub fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        let Some(bytes) = self.get(key)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|err| Error::Other(format!("the value of `{key}` is not valid JSON: {err}")))
    }

    /// Sets `key` to `value` serialized as JSON.
    ///
    /// ```no_run
    /// let store = nimbus_sdk::kv::Store::open("carts")?;
    /// store.set_json("alice", &["tea", "milk"])?;
    /// # Ok::<(), nimbus_sdk::kv::Error>(())
    /// ```
    pub fn set_json<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<(), Error> {
        let bytes = serde_json::to_vec(value)
            .map_err(|err| Error::Other(format!("the value for `{key}` cannot be JSON: {err}")))?;
        self.set(key, bytes)
    }
}

/// Follows the cursor from page to page and gathers every key.
fn all_pages(
    mut page: impl FnMut(Option<&str>) -> Result<KeyResponse, store::Error>,
) -> Result<Vec<String>, Error> {
    let mut keys = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let response = page(cursor.as_deref())?;
        keys.extend(response.keys);
        match response.cursor {
            // A cursor that does not move would loop forever; stop instead.
            Some(next) if Some(&next) != cursor.as_ref() => cursor = Some(next),
            Some(_) => {
                return Err(Error::Other(
                    "the host returned the same cursor twice while listing keys".into(),
                ));
            }
            None => return Ok(keys),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(keys: &[&str], cursor: Option<&str>) -> Result<KeyResponse, store::Error> {
        Ok(KeyResponse {
            keys: keys.iter().map(|key| key.to_string()).collect(),
            cursor: cursor.map(str::to_owned),
        })
    }

    #[test]
    fn all_pages_follows_the_cursor() {
        let mut seen = Vec::new();
        let keys = all_pages(|cursor| {
            seen.push(cursor.map(str::to_owned));
            match cursor {
                None => page(&["a", "b"], Some("b")),
                Some("b") => page(&["c"], Some("c")),
                _ => page(&[], None),
            }
        })
        .unwrap();
        assert_eq!(keys, ["a", "b", "c"]);
        assert_eq!(seen, [None, Some("b".into()), Some("c".into())]);
    }

    #[test]
    fn all_pages_stops_on_a_stuck_cursor_and_passes_errors() {
        let stuck = all_pages(|_| page(&["a"], Some("a")));
        assert!(matches!(stuck, Err(Error::Other(_))));
        let denied = all_pages(|_| Err(store::Error::AccessDenied));
        assert_eq!(denied, Err(Error::AccessDenied));
    }
}
