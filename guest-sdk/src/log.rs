//! Structured logging to the host's log (`wasi:logging`).
//!
//! The host writes each message to its own log with the function's id and the
//! request id, at the message's level, so guest logs sit next to the access log
//! and can be filtered like it (`NIMBUS_LOG=guest=debug`). Anything the guest
//! prints to stdout or stderr reaches the same log, at `info` and `warn`, without
//! a level of its own: prefer these functions.
//!
//! The macros ([`info!`](crate::info), [`warn!`](crate::warn), ...) take
//! `format!` arguments and pass the calling module's path (`my_function::cart`)
//! as the context; the functions take a ready message and pass an empty context.
//!
//! ```no_run
//! use nimbus_sdk::log;
//!
//! log::info("cart emptied");
//! let items = 3;
//! nimbus_sdk::warn!("cart has {items} items but no owner");
//! log::log(log::Level::Critical, "payments", "the signing key is invalid");
//! ```

use crate::bindings::wasi::logging::logging;

/// How severe a message is, from least to most.
///
/// ```
/// use nimbus_sdk::log::Level;
///
/// assert!(Level::Debug < Level::Error);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very fine detail, off unless asked for.
    Trace,
    /// Detail useful when debugging.
    Debug,
    /// Something normal worth noting.
    Info,
    /// Something unexpected that the function handled.
    Warn,
    /// Something failed.
    Error,
    /// Something failed and needs attention now.
    Critical,
}

impl From<Level> for logging::Level {
    fn from(level: Level) -> logging::Level {
        match level {
            Level::Trace => logging::Level::Trace,
            Level::Debug => logging::Level::Debug,
            Level::Info => logging::Level::Info,
            Level::Warn => logging::Level::Warn,
            Level::Error => logging::Level::Error,
            Level::Critical => logging::Level::Critical,
        }
    }
}

/// Logs `message` at `level`; `context` groups related messages (the macros
/// pass the module path).
///
/// ```no_run
/// use nimbus_sdk::log::{self, Level};
///
/// log::log(Level::Info, "checkout", "order placed");
/// ```
pub fn log(level: Level, context: &str, message: &str) {
    logging::log(level.into(), context, message);
}

/// Logs `message` at [`Level::Trace`].
///
/// ```no_run
/// nimbus_sdk::log::trace("entering checkout");
/// ```
pub fn trace(message: &str) {
    log(Level::Trace, "", message);
}

/// Logs `message` at [`Level::Debug`].
///
/// ```no_run
/// nimbus_sdk::log::debug("cart loaded");
/// ```
pub fn debug(message: &str) {
    log(Level::Debug, "", message);
}

/// Logs `message` at [`Level::Info`].
///
/// ```no_run
/// nimbus_sdk::log::info("order placed");
/// ```
pub fn info(message: &str) {
    log(Level::Info, "", message);
}

/// Logs `message` at [`Level::Warn`].
///
/// ```no_run
/// nimbus_sdk::log::warn("retrying the payment provider");
/// ```
pub fn warn(message: &str) {
    log(Level::Warn, "", message);
}

/// Logs `message` at [`Level::Error`].
///
/// ```no_run
/// nimbus_sdk::log::error("the payment provider refused the card");
/// ```
pub fn error(message: &str) {
    log(Level::Error, "", message);
}

/// Logs a `format!`-style message at [`Level::Trace`](crate::log::Level::Trace),
/// with the calling module's path as the context.
///
/// ```no_run
/// let key = "cart/alice";
/// nimbus_sdk::trace!("reading {key}");
/// ```
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => {
        $crate::log::log(
            $crate::log::Level::Trace,
            ::core::module_path!(),
            &::std::format!($($arg)+),
        )
    };
}

/// Logs a `format!`-style message at [`Level::Debug`](crate::log::Level::Debug),
/// with the calling module's path as the context.
///
/// ```no_run
/// let items = 3;
/// nimbus_sdk::debug!("cart has {items} items");
/// ```
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => {
        $crate::log::log(
            $crate::log::Level::Debug,
            ::core::module_path!(),
            &::std::format!($($arg)+),
        )
    };
}

/// Logs a `format!`-style message at [`Level::Info`](crate::log::Level::Info),
/// with the calling module's path as the context.
///
/// ```no_run
/// let order = 42;
/// nimbus_sdk::info!("order {order} placed");
/// ```
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => {
        $crate::log::log(
            $crate::log::Level::Info,
            ::core::module_path!(),
            &::std::format!($($arg)+),
        )
    };
}

/// Logs a `format!`-style message at [`Level::Warn`](crate::log::Level::Warn),
/// with the calling module's path as the context.
///
/// ```no_run
/// let attempt = 2;
/// nimbus_sdk::warn!("payment retry {attempt}");
/// ```
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => {
        $crate::log::log(
            $crate::log::Level::Warn,
            ::core::module_path!(),
            &::std::format!($($arg)+),
        )
    };
}

/// Logs a `format!`-style message at [`Level::Error`](crate::log::Level::Error),
/// with the calling module's path as the context.
///
/// ```no_run
/// let status = 503;
/// nimbus_sdk::error!("the payment provider answered {status}");
/// ```
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => {
        $crate::log::log(
            $crate::log::Level::Error,
            ::core::module_path!(),
            &::std::format!($($arg)+),
        )
    };
}
