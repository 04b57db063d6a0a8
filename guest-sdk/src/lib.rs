//! Write Nimbus functions as ordinary Rust web handlers.
//!
//! ```
//! use nimbus_sdk::{http_handler, Request, RequestExt};
//! #[http_handler]
//! fn hello(req: Request) -> String {
//!     format!("Hello, {}!\n", req.param("name").unwrap_or_else(|| "world".into()))
//! }
//! # fn main() {}
//! ```
//!
//! Build it as a `cdylib` for `wasm32-wasip2`, list it in `nimbus.toml` with a
//! route such as `GET /hello/:name`, and `nimbus up` serves it:
//!
//! ```toml
//! # Cargo.toml
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! nimbus-sdk = { path = "../../../guest-sdk" }   # from functions/samples/NAME
//! ```
//!
//! ```sh
//! cargo build --release --target wasm32-wasip2
//! ```
//!
//! The component exports the standard `wasi:http/incoming-handler`, so it also
//! runs on any other wasi:http host; only the [`kv`], [`config`], [`log`],
//! [`queue`], [`sqlite`] and [`postgres`] calls need Nimbus (or a host with
//! the same interfaces: [`sqlite`] and [`postgres`] are Spin's own
//! `spin:sqlite` and `spin:postgres`).
//!
//! # A guided tour
//!
//! **The handler.** [`#[http_handler]`](http_handler) turns one free function,
//! sync or `async`, into the component's export. Each request runs in a fresh
//! instance, so a handler needs no shared state and no cleanup. It takes
//! nothing, a [`Request`], or anything else [`FromRequest`] (such as
//! [`Json<T>`]); it returns anything [`IntoResponse`]: text, bytes, [`Json`],
//! a [`StatusCode`], `(StatusCode, T)`, an `http::Response`, or a `Result` of
//! those with [`Error`], which renders as the same JSON error body the host uses.
//!
//! ```
//! use nimbus_sdk::{Error, Json, Request, RequestExt, StatusCode, http_handler, kv};
//!
//! #[derive(serde::Deserialize, serde::Serialize)]
//! struct Cart {
//!     items: Vec<String>,
//! }
//!
//! #[http_handler]
//! fn carts(req: Request) -> Result<(StatusCode, Json<Cart>), Error> {
//!     let user = req.param("user").ok_or_else(|| Error::bad_request("no user"))?;
//!     let store = kv::Store::open("carts")?;
//!     match req.method().as_str() {
//!         "PUT" => {
//!             let cart: Cart = req.json()?; // bad JSON: a 400 with serde's message
//!             store.set_json(&user, &cart)?;
//!             Ok((StatusCode::CREATED, Json(cart)))
//!         }
//!         _ => {
//!             let cart = store
//!                 .get_json(&user)?
//!                 .ok_or_else(|| Error::not_found(format!("no cart for {user}")))?;
//!             Ok((StatusCode::OK, Json(cart)))
//!         }
//!     }
//! }
//! # fn main() {}
//! ```
//!
//! **Queue messages.** [`#[queue_handler]`](queue_handler) makes a function the
//! handler of the topic the function subscribes to in the manifest; it gets
//! each message as a [`queue::Message`] and returns `()` or a `Result<(), E>`
//! with any `Display` error, which makes the host retry the message. Delivery
//! is at least once, so queue handlers must be idempotent (see [`queue`]). One
//! crate may have both kinds of handler:
//!
//! ```
//! use nimbus_sdk::{Error, Request, http_handler, kv, queue, queue_handler};
//!
//! #[http_handler]
//! fn signup(req: Request) -> Result<&'static str, Error> {
//!     queue::publish("signups.new", req.body(), &[])?; // 403 if not granted
//!     Ok("welcome\n")
//! }
//!
//! #[queue_handler]
//! fn welcome(message: queue::Message) -> Result<(), kv::Error> {
//!     // Keyed by the message id: a second delivery overwrites, nothing doubles.
//!     kv::Store::open("welcomed")?.set(message.id(), message.payload())
//! }
//! # fn main() {}
//! ```
//!
//! **Reading the request.** [`RequestExt`] adds [`json`](RequestExt::json),
//! [`text`](RequestExt::text), [`param`](RequestExt::param) (route parameters,
//! decoded), [`query`](RequestExt::query), [`request_id`](RequestExt::request_id)
//! and [`info`](RequestExt::info) (everything in the `x-nimbus-*` headers, as a
//! [`RequestInfo`]).
//!
//! **Host capabilities**, each denied unless the function's manifest grants it:
//!
//! - [`kv`]: key-value stores, with atomic increment and compare-and-swap;
//! - [`config`]: configuration values;
//! - [`log`] and the [`info!`]-style macros: the host's structured log;
//! - [`http`]: outbound HTTP requests to allowed hosts;
//! - [`service`]: calls to other functions of the app, in-process;
//! - [`queue`]: publishing messages to topics the manifest's `publish` matches.
//!
//! Every call is synchronous: it blocks the instance (and only it) until the
//! host answers. `async` handlers are run by a tiny `block_on` that polls the
//! future until it is ready; since nothing in this SDK ever returns
//! `Poll::Pending`, an `async fn` handler behaves exactly like a sync one.
//!
//! # Layout
//!
//! | module (file) | what |
//! |---|---|
//! | `request`, `response`, `error` | the handler's types, at the crate root: [`Request`], [`RequestExt`], [`FromRequest`], [`IntoResponse`], [`Json`], [`Error`] |
//! | `runtime` | the glue the macros expand to: wasi:http in, handler, wasi:http out; a wasi:messaging message in, handler, outcome out; `block_on` |
//! | [`kv`], [`config`], [`log`] | host capabilities over the `nimbus:function/imports` world in `guest-sdk/wit/` |
//! | [`queue`] | [`queue::Message`] and publishing, over `wasi:messaging`; the export is the `nimbus:function/queue-function` world |
//! | [`http`], [`service`] | outbound requests over `wasi:http/outgoing-handler` (from the `wasip2` crate) |
//! | `bindings` | generated by `wit-bindgen` at build time; private, none of its types appear in this API |
//! | `info` | the `x-nimbus-*` header contract: [`RequestInfo`] and the `HEADER_*` constants |
//!
//! The attribute macros live in the `nimbus-sdk-macros` crate (`guest-sdk/macros/`)
//! and are re-exported here; the code they generate names only `::nimbus_sdk` paths.

#![deny(missing_docs)]

mod bindings;
mod error;
mod info;
mod request;
mod response;
mod rows;
mod runtime;

pub mod auth;
pub mod config;
pub mod http;
pub mod kv;
pub mod log;
pub mod postgres;
pub mod queue;
pub mod service;
pub mod sqlite;
#[cfg(all(feature = "testing", not(target_arch = "wasm32")))]
pub mod testing;

pub use ::http::StatusCode;
pub use bytes::Bytes;

pub use error::Error;
pub use info::{
    HEADER_CALLER, HEADER_CLIENT_ADDR, HEADER_FUNCTION, HEADER_PARAM_PREFIX, HEADER_PATH_INFO,
    HEADER_PREFIX, HEADER_REQUEST_ID, HEADER_ROUTE, RequestInfo, percent_decode,
};
pub use request::{FromRequest, Request, RequestExt};
pub use response::{IntoBody, IntoResponse, Json, Response};

/// Makes a free function the component's HTTP handler
/// (`wasi:http/incoming-handler`).
///
/// The function may be sync or `async`, and takes either nothing or one
/// argument of a [`FromRequest`] type: usually [`Request`], or [`Json<T>`],
/// `String`, [`Bytes`], `Vec<u8>` or [`RequestInfo`]. It returns any
/// [`IntoResponse`] type. The macro keeps the function as written (so unit
/// tests can call it) and adds the export, which, for each request:
///
/// 1. reads the method, the path and query, the headers and the whole body into
///    a [`Request`];
/// 2. makes the argument with [`FromRequest`]; if that fails (say, bad JSON for
///    a `Json<T>` argument) its [`Error`] is the response and the function does
///    not run;
/// 3. calls the function; an `async` one is driven by a minimal `block_on`,
///    which is enough because every SDK call is synchronous underneath;
/// 4. writes the returned response, with a `content-length`.
///
/// One crate has one handler; it dispatches on method and path itself (the
/// manifest's routes decide which requests reach the function at all).
///
/// ```
/// use nimbus_sdk::{Error, Json, http_handler};
///
/// #[derive(serde::Deserialize)]
/// struct Sum {
///     numbers: Vec<i64>,
/// }
///
/// #[http_handler]
/// async fn add(Json(sum): Json<Sum>) -> Result<String, Error> {
///     let total = sum.numbers.iter().try_fold(0i64, |a, b| a.checked_add(*b));
///     let total = total.ok_or_else(|| Error::bad_request("the sum overflows"))?;
///     Ok(format!("{total}\n"))
/// }
/// # fn main() {}
/// ```
///
/// A handler needs no argument at all:
///
/// ```
/// #[nimbus_sdk::http_handler]
/// fn health() -> &'static str {
///     "ok\n"
/// }
/// # fn main() {}
/// ```
///
/// Mistakes in the signature are compile errors that point at the problem.
/// More than one argument:
///
/// ```compile_fail
/// use nimbus_sdk::{Request, http_handler};
///
/// #[http_handler]
/// fn two(req: Request, extra: u32) -> String {
///     String::new()
/// }
/// # fn main() {}
/// ```
///
/// A method:
///
/// ```compile_fail
/// struct Api;
///
/// impl Api {
///     #[nimbus_sdk::http_handler]
///     fn handle(&self) -> String {
///         String::new()
///     }
/// }
/// # fn main() {}
/// ```
///
/// A generic function:
///
/// ```compile_fail
/// #[nimbus_sdk::http_handler]
/// fn generic<T: Default>() -> String {
///     String::new()
/// }
/// # fn main() {}
/// ```
///
/// A return type that is not a response:
///
/// ```compile_fail
/// #[nimbus_sdk::http_handler]
/// fn number() -> u32 {
///     42
/// }
/// # fn main() {}
/// ```
pub use nimbus_sdk_macros::http_handler;

/// Makes a free function the component's queue handler
/// (`wasi:messaging/incoming-handler`): the host calls it with each message on
/// the topic the function subscribes to in the manifest
/// (`queue = { topic = "orders.created" }`).
///
/// The function may be sync or `async`, and takes either nothing or one
/// [`queue::Message`]. It returns `()` or a `Result<(), E>` where `E`
/// implements `Display` (see [`queue::Outcome`]): `Ok` (or `()`) accepts the
/// message; `Err` is sent to the host as `error::other` with the error's text,
/// and the host delivers the message again later, until `max_attempts`, after
/// which it keeps it as a dead letter with that text. A panic, or running past
/// the function's `timeout`, is retried the same way. Delivery is at least
/// once, so the handler must be idempotent: see [`queue`].
///
/// The macro keeps the function as written, so unit tests can call it with a
/// [`queue::Message::new`].
///
/// ```
/// use nimbus_sdk::{kv, queue, queue_handler};
///
/// #[queue_handler]
/// fn order_created(message: queue::Message) -> Result<(), Box<dyn std::error::Error>> {
///     let order: serde_json::Value = message.json()?;
///     let store = kv::Store::open("ledger")?;
///     // Setting the same value again is harmless: redelivery is idempotent.
///     store.set(&format!("order/{}", order["id"]), message.payload())?;
///     Ok(())
/// }
/// # fn main() {}
/// ```
///
/// One crate has at most one queue handler, and may have an
/// [`#[http_handler]`](http_handler) too; the component then exports both
/// interfaces, and the manifest decides which requests and messages reach it:
///
/// ```
/// use nimbus_sdk::{Error, http_handler, kv, queue, queue_handler};
///
/// #[queue_handler]
/// async fn count(message: queue::Message) -> Result<(), kv::Error> {
///     kv::Store::open("counts")?.increment(message.topic(), 1)?;
///     Ok(())
/// }
///
/// #[http_handler]
/// fn total() -> Result<String, Error> {
///     let count = kv::Store::open("counts")?.increment("orders.created", 0)?;
///     Ok(format!("{count}\n"))
/// }
/// # fn main() {}
/// ```
///
/// A handler needs no argument, and need not fail:
///
/// ```
/// #[nimbus_sdk::queue_handler]
/// fn tick() {
///     nimbus_sdk::log::info("tick");
/// }
/// # fn main() {}
/// ```
///
/// Mistakes in the signature are compile errors that point at the problem.
/// An argument that is not a message:
///
/// ```compile_fail
/// #[nimbus_sdk::queue_handler]
/// fn handle(payload: Vec<u8>) {}
/// # fn main() {}
/// ```
///
/// More than one argument:
///
/// ```compile_fail
/// use nimbus_sdk::queue::Message;
///
/// #[nimbus_sdk::queue_handler]
/// fn handle(message: Message, extra: u32) {}
/// # fn main() {}
/// ```
///
/// A method:
///
/// ```compile_fail
/// struct Worker;
///
/// impl Worker {
///     #[nimbus_sdk::queue_handler]
///     fn handle(&self) {}
/// }
/// # fn main() {}
/// ```
///
/// A return type that is not an outcome (an error must be `Display`):
///
/// ```compile_fail
/// #[derive(Debug)]
/// struct Opaque;
///
/// #[nimbus_sdk::queue_handler]
/// fn handle() -> Result<(), Opaque> {
///     Ok(())
/// }
/// # fn main() {}
/// ```
///
/// An HTTP response is not an outcome either:
///
/// ```compile_fail
/// #[nimbus_sdk::queue_handler]
/// fn handle() -> String {
///     String::new()
/// }
/// # fn main() {}
/// ```
pub use nimbus_sdk_macros::queue_handler;

/// What the attribute macros expand to; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::runtime::{
        QueueArgument, block_on, handle_message, into_outcome, into_response, serve,
    };
    pub use wasip2;
    pub use wasip2::exports::http::incoming_handler::Guest;
    pub use wasip2::http::types::{IncomingRequest, ResponseOutparam};

    /// The paths wit-bindgen's export macro for `wasi:messaging/incoming-handler`
    /// expects below its "types root".
    pub mod bindings {
        pub use crate::bindings::__export_queue_function;
        pub use crate::bindings::exports;
    }
    pub use crate::bindings::exports::wasi::messaging::incoming_handler::{
        Error as MessagingError, Guest as QueueGuest, Message as WasiMessage,
    };
}
