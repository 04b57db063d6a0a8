//! Configuration values from the manifest (`wasi:config`).
//!
//! A function sees the keys of its `[functions.<id>.config]` table, read-only;
//! the host fills `{{ env.NAME }}` templates from its own environment, which
//! keeps secrets out of the manifest:
//!
//! ```toml
//! [functions.shop.config]
//! currency = "EUR"
//! signing_key = "{{ env.SHOP_SIGNING_KEY }}"
//! ```
//!
//! ```no_run
//! use nimbus_sdk::{Error, http_handler, config};
//!
//! #[http_handler]
//! fn price() -> Result<String, Error> {
//!     // A missing key is a 500 `missing_config` naming the key.
//!     let currency = config::get("currency")?;
//!     let discount = config::try_get("discount")?.unwrap_or_else(|| "0".into());
//!     Ok(format!("10 {currency} less {discount}%\n"))
//! }
//! # fn main() {}
//! ```

use std::collections::BTreeMap;
use std::fmt;

use crate::bindings::wasi::config::store;

/// Why a configuration value could not be read.
///
/// Converts into [`crate::Error`] for `?` in handlers: `Missing` is a
/// `500 missing_config` (the deployment lacks a value the code needs), the
/// others a `500 internal`.
///
/// ```
/// use nimbus_sdk::config;
///
/// let error = config::Error::Missing("api_url".into());
/// assert_eq!(error.to_string(), "config key `api_url` is not set");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The key is not configured; holds the key.
    Missing(String),
    /// The configuration source failed.
    Upstream(String),
    /// An I/O error while reading configuration.
    Io(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Missing(key) => write!(f, "config key `{key}` is not set"),
            Error::Upstream(message) => write!(f, "config source failed: {message}"),
            Error::Io(message) => write!(f, "config I/O error: {message}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<store::Error> for Error {
    fn from(err: store::Error) -> Error {
        match err {
            store::Error::Upstream(message) => Error::Upstream(message),
            store::Error::Io(message) => Error::Io(message),
        }
    }
}

/// The value of `key`; a key that is not configured is [`Error::Missing`].
///
/// ```no_run
/// let url = nimbus_sdk::config::get("api_url")?;
/// # Ok::<(), nimbus_sdk::config::Error>(())
/// ```
pub fn get(key: &str) -> Result<String, Error> {
    try_get(key)?.ok_or_else(|| Error::Missing(key.to_owned()))
}

/// The value of `key`, or `None` if it is not configured.
///
/// ```no_run
/// let retries: u32 = nimbus_sdk::config::try_get("retries")?
///     .and_then(|value| value.parse().ok())
///     .unwrap_or(3);
/// # Ok::<(), nimbus_sdk::config::Error>(())
/// ```
pub fn try_get(key: &str) -> Result<Option<String>, Error> {
    Ok(store::get(key)?)
}

/// Every configured key and its value, sorted by key.
///
/// ```no_run
/// for (key, value) in nimbus_sdk::config::all()? {
///     println!("{key} = {value}");
/// }
/// # Ok::<(), nimbus_sdk::config::Error>(())
/// ```
pub fn all() -> Result<BTreeMap<String, String>, Error> {
    Ok(store::get_all()?.into_iter().collect())
}
