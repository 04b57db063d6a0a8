//! Queue messages: handling the ones a function is subscribed to, and
//! publishing new ones (`wasi:messaging`).
//!
//! A function subscribes to one topic in the manifest, and may publish to the
//! topics its `publish` patterns match (NATS-style: `*` is one `.`-separated
//! token, `>` the rest):
//!
//! ```toml
//! [functions.mailer]
//! source = "../../target/wasm32-wasip2/release/mailer.wasm"
//! queue = { topic = "orders.created", max_attempts = 5, backoff = "200ms" }
//! publish = ["mail.*"]
//! ```
//!
//! [`#[queue_handler]`](crate::queue_handler) makes a free function the handler
//! of the subscribed topic; it gets each message as a [`Message`]. The same crate
//! may also have an [`#[http_handler]`](crate::http_handler): the component then
//! serves both.
//!
//! ```no_run
//! use nimbus_sdk::{kv, queue, queue_handler};
//!
//! #[derive(serde::Deserialize, serde::Serialize)]
//! struct Order {
//!     id: u64,
//!     user: String,
//! }
//!
//! #[queue_handler]
//! fn order_created(message: queue::Message) -> Result<(), Box<dyn std::error::Error>> {
//!     let order: Order = message.json()?;
//!     let store = kv::Store::open("mail")?;
//!     // A marker makes a second delivery of the same order a no-op.
//!     if store.compare_and_swap(&format!("sent/{}", order.id), None, "1")? {
//!         queue::publish_json("mail.welcome", &order)?;
//!     }
//!     Ok(())
//! }
//! # fn main() {}
//! ```
//!
//! # Delivery: at least once
//!
//! The host stores every published message before [`publish`] returns, and
//! delivers it until a handler accepts it: a handler that returns an error,
//! panics (traps) or runs past its `timeout` gets the message again later, with
//! [`Message::attempt`] one higher, after an exponential backoff. After
//! `max_attempts` the message is put aside as a *dead letter* together with the
//! last error's text, for an operator to inspect and replay.
//!
//! So a message can be handled **more than once**: a handler may fail after it
//! has done part of its work, or succeed while its answer is lost. Handlers must
//! be **idempotent**: key their effects by [`Message::id`] (or by an id in the
//! payload, such as an order id), prefer writes that can be repeated
//! ([`kv::Store::set`](crate::kv::Store::set) of the same value) over ones that
//! cannot ([`increment`](crate::kv::Store::increment)), and guard the latter
//! with a marker claimed by [`compare_and_swap`](crate::kv::Store::compare_and_swap).
//! Messages on one topic may also be handled concurrently (the subscription's
//! `concurrency`) and out of order.
//!
//! # Publishing
//!
//! [`publish`] and [`publish_json`] work from any handler, HTTP or queue, and
//! return once the host has stored the message durably; topics the manifest's
//! `publish` does not match are refused with [`Error::PermissionDenied`]. A
//! queue handler that publishes is retried as a whole on failure, so what it
//! publishes may be published twice: the receivers must be idempotent too.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::wasi::messaging::producer;
use crate::bindings::wasi::messaging::types::{Client, Error as WasiError, Message as WasiMessage};

/// The prefix of the metadata entries the host adds to each delivered message.
/// Publishers may not set entries with it, and [`Message::headers`] leaves
/// them out.
///
/// ```
/// assert!(nimbus_sdk::queue::METADATA_ATTEMPT.starts_with(nimbus_sdk::queue::METADATA_PREFIX));
/// ```
pub const METADATA_PREFIX: &str = "nimbus-";
/// The metadata entry that holds the message's id, the same on every delivery
/// of one message: [`Message::id`].
///
/// ```
/// assert_eq!(nimbus_sdk::queue::METADATA_MESSAGE_ID, "nimbus-message-id");
/// ```
pub const METADATA_MESSAGE_ID: &str = "nimbus-message-id";
/// The metadata entry that counts deliveries of the message, in decimal, `1` on
/// the first: [`Message::attempt`].
///
/// ```
/// assert_eq!(nimbus_sdk::queue::METADATA_ATTEMPT, "nimbus-attempt");
/// ```
pub const METADATA_ATTEMPT: &str = "nimbus-attempt";

/// The content type [`publish_json`] sets.
const JSON: &str = "application/json";
/// The header [`publish`] turns into the message's content type.
const CONTENT_TYPE: &str = "content-type";

/// The broker [`publish`] connects to. Nimbus has exactly one broker per app
/// and accepts any name; this one says so in the host's logs.
const BROKER: &str = "nimbus";

/// One message, as a `#[queue_handler]` receives it.
///
/// The host delivers the payload and the publisher's headers unchanged, and
/// adds two metadata entries: [`METADATA_MESSAGE_ID`] ([`id`](Message::id)) and
/// [`METADATA_ATTEMPT`] ([`attempt`](Message::attempt)).
///
/// [`Message::new`] makes one by hand, to unit-test a handler natively:
///
/// ```
/// use nimbus_sdk::queue::Message;
///
/// let message = Message::new("orders.created", r#"{"id": 7}"#)
///     .with_metadata("nimbus-message-id", "m-1")
///     .with_metadata("nimbus-attempt", "2")
///     .with_metadata("x-tenant", "acme");
/// assert_eq!(message.topic(), "orders.created");
/// assert_eq!(message.id(), "m-1");
/// assert_eq!(message.attempt(), 2);
/// assert_eq!(message.header("X-Tenant"), Some("acme"));
/// let order: serde_json::Value = message.json().unwrap();
/// assert_eq!(order["id"], 7);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    topic: String,
    payload: Vec<u8>,
    content_type: Option<String>,
    metadata: Vec<(String, String)>,
}

impl Message {
    /// A message on `topic` holding `payload`, with no metadata: for tests, or
    /// to build the argument of a handler called directly.
    ///
    /// ```
    /// let message = nimbus_sdk::queue::Message::new("orders.created", b"{}".to_vec());
    /// assert_eq!(message.payload(), b"{}");
    /// assert_eq!(message.attempt(), 1);
    /// ```
    pub fn new(topic: impl Into<String>, payload: impl Into<Vec<u8>>) -> Message {
        Message {
            topic: topic.into(),
            payload: payload.into(),
            content_type: None,
            metadata: Vec::new(),
        }
    }

    /// Adds a metadata entry (a header, or one of the `nimbus-` entries).
    ///
    /// ```
    /// use nimbus_sdk::queue::Message;
    ///
    /// let message = Message::new("t", "").with_metadata("x-trace", "abc");
    /// assert_eq!(message.header("x-trace"), Some("abc"));
    /// ```
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Message {
        self.metadata.push((key.into(), value.into()));
        self
    }

    /// Sets the content type.
    ///
    /// ```
    /// use nimbus_sdk::queue::Message;
    ///
    /// let message = Message::new("t", "{}").with_content_type("application/json");
    /// assert_eq!(message.content_type(), Some("application/json"));
    /// ```
    pub fn with_content_type(mut self, content_type: impl Into<String>) -> Message {
        self.content_type = Some(content_type.into());
        self
    }

    /// The message's id ([`METADATA_MESSAGE_ID`]): the same on every delivery of
    /// one message, and different for every published message, so it is the key
    /// to make a handler idempotent. Empty if the host sent none (Nimbus always
    /// does).
    ///
    /// ```
    /// use nimbus_sdk::queue::Message;
    ///
    /// let message = Message::new("t", "").with_metadata("nimbus-message-id", "01J0");
    /// assert_eq!(message.id(), "01J0");
    /// assert_eq!(Message::new("t", "").id(), "");
    /// ```
    pub fn id(&self) -> &str {
        self.metadata_entry(METADATA_MESSAGE_ID).unwrap_or_default()
    }

    /// Which delivery of the message this is ([`METADATA_ATTEMPT`]): `1` the
    /// first time, `2` on the first retry, and so on. `1` if the host sent no
    /// count, or one that is not a positive number.
    ///
    /// ```
    /// use nimbus_sdk::queue::Message;
    ///
    /// let retry = Message::new("t", "").with_metadata("nimbus-attempt", "3");
    /// assert_eq!(retry.attempt(), 3);
    /// assert_eq!(Message::new("t", "").attempt(), 1);
    /// ```
    pub fn attempt(&self) -> u32 {
        self.metadata_entry(METADATA_ATTEMPT)
            .and_then(|attempt| attempt.parse().ok())
            .filter(|&attempt| attempt > 0)
            .unwrap_or(1)
    }

    /// The topic the message was published to, e.g. `orders.created`.
    ///
    /// ```
    /// let message = nimbus_sdk::queue::Message::new("orders.created", "");
    /// assert_eq!(message.topic(), "orders.created");
    /// ```
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The payload, as published.
    ///
    /// ```
    /// let message = nimbus_sdk::queue::Message::new("t", "hello");
    /// assert_eq!(message.payload(), b"hello");
    /// ```
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The payload, taking it out of the message.
    ///
    /// ```
    /// let message = nimbus_sdk::queue::Message::new("t", "hello");
    /// assert_eq!(message.into_payload(), b"hello".to_vec());
    /// ```
    pub fn into_payload(self) -> Vec<u8> {
        self.payload
    }

    /// The payload parsed as JSON. An error here usually means a message no
    /// retry will fix; returning it from the handler sends the message, after
    /// its attempts, to the dead letters, where it can be inspected.
    ///
    /// ```
    /// #[derive(serde::Deserialize)]
    /// struct Order {
    ///     id: u64,
    /// }
    ///
    /// let message = nimbus_sdk::queue::Message::new("t", r#"{"id": 3}"#);
    /// let order: Order = message.json()?;
    /// assert_eq!(order.id, 3);
    /// assert!(nimbus_sdk::queue::Message::new("t", "{").json::<Order>().is_err());
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.payload)
    }

    /// The payload's content type, if the publisher set one ([`publish_json`]
    /// sets `application/json`).
    ///
    /// ```
    /// assert_eq!(nimbus_sdk::queue::Message::new("t", "").content_type(), None);
    /// ```
    pub fn content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }

    /// The publisher's headers, in the order they were sent: every metadata
    /// entry except those starting with [`METADATA_PREFIX`], which the host
    /// adds (read them with [`id`](Message::id), [`attempt`](Message::attempt)
    /// or [`metadata`](Message::metadata)). Nimbus carries the content type
    /// as a `content-type` entry, so it shows here too.
    ///
    /// ```
    /// use nimbus_sdk::queue::Message;
    ///
    /// let message = Message::new("t", "")
    ///     .with_metadata("x-tenant", "acme")
    ///     .with_metadata("nimbus-attempt", "1");
    /// assert_eq!(message.headers().collect::<Vec<_>>(), [("x-tenant", "acme")]);
    /// ```
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.metadata
            .iter()
            .filter(|(key, _)| !is_reserved(key))
            .map(|(key, value)| (key.as_str(), value.as_str()))
    }

    /// The value of the publisher's header `name`, compared ASCII
    /// case-insensitively like an HTTP header; the first if it was sent twice.
    /// Never one of the host's `nimbus-` entries.
    ///
    /// ```
    /// use nimbus_sdk::queue::Message;
    ///
    /// let message = Message::new("t", "").with_metadata("X-Test", "1");
    /// assert_eq!(message.header("x-test"), Some("1"));
    /// assert_eq!(message.header("x-other"), None);
    /// ```
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    }

    /// Every metadata entry as the host delivered it: the publisher's headers
    /// and the host's `nimbus-` entries.
    ///
    /// ```
    /// use nimbus_sdk::queue::Message;
    ///
    /// let message = Message::new("t", "").with_metadata("nimbus-attempt", "2");
    /// assert_eq!(message.metadata(), [("nimbus-attempt".to_owned(), "2".to_owned())]);
    /// ```
    pub fn metadata(&self) -> &[(String, String)] {
        &self.metadata
    }

    /// The value of the metadata entry named exactly `key`.
    fn metadata_entry(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    }

    /// Reads a delivered wasi:messaging message whole, and drops the resource.
    pub(crate) fn from_wasi(message: WasiMessage) -> Message {
        Message {
            topic: message.topic().unwrap_or_default(),
            payload: message.data(),
            content_type: message.content_type(),
            metadata: message.metadata().unwrap_or_default(),
        }
    }
}

/// Whether `key` is one of the host's entries.
fn is_reserved(key: &str) -> bool {
    key.get(..METADATA_PREFIX.len())
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(METADATA_PREFIX))
}

/// Why a message could not be published.
///
/// Converts into [`crate::Error`] for `?` in HTTP handlers:
///
/// | variant | status | `error` |
/// |---|---|---|
/// | `PermissionDenied` | 403 | `permission_denied` |
/// | `Connection`, `Timeout` | 502 | `bad_gateway` |
/// | `Other` | 500 | `internal` |
///
/// In a queue handler, `?` passes it on as the handler's error, so the message
/// is retried.
///
/// ```
/// use nimbus_sdk::queue::Error;
///
/// let error = Error::PermissionDenied("may not publish to `audit.log`".into());
/// assert_eq!(error.to_string(), "permission denied: may not publish to `audit.log`");
/// let response = nimbus_sdk::Error::from(error);
/// assert_eq!((response.status().as_u16(), response.code()), (403, "permission_denied"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The function may not publish to the topic: no `publish` pattern of its
    /// manifest entry matches it. Holds the host's explanation.
    PermissionDenied(String),
    /// The broker could not be reached; holds why.
    Connection(String),
    /// The broker did not confirm the message in time.
    Timeout,
    /// Anything else, as the host (or the SDK, for a reserved header or a
    /// payload that cannot be JSON) explained it.
    Other(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::PermissionDenied(message) => write!(f, "permission denied: {message}"),
            Error::Connection(message) => {
                write!(f, "cannot reach the message broker: {message}")
            }
            Error::Timeout => f.write_str("the message broker timed out"),
            Error::Other(message) => write!(f, "messaging error: {message}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<WasiError> for Error {
    fn from(err: WasiError) -> Error {
        match err {
            WasiError::PermissionDenied(message) => Error::PermissionDenied(message),
            WasiError::Connection(message) => Error::Connection(message),
            WasiError::Timeout => Error::Timeout,
            WasiError::Other(message) => Error::Other(message),
        }
    }
}

/// Publishes `payload` to `topic` with `headers`, and returns once the host has
/// stored the message durably. The receivers see the headers through
/// [`Message::headers`]. A `content-type` header sets the message's content
/// type ([`Message::content_type`]). Names starting with [`METADATA_PREFIX`]
/// are the host's and are refused ([`Error::Other`]) before anything is sent.
///
/// ```no_run
/// use nimbus_sdk::queue;
///
/// queue::publish("audit.login", "alice", &[("x-source", "web")])?;
/// queue::publish("thumbnails.requested", vec![0u8, 1, 2], &[])?;
/// # Ok::<(), queue::Error>(())
/// ```
pub fn publish(
    topic: &str,
    payload: impl AsRef<[u8]>,
    headers: &[(&str, &str)],
) -> Result<(), Error> {
    send(topic, payload.as_ref(), None, headers)
}

/// Publishes `value` as JSON to `topic`, with the content type
/// `application/json`; otherwise like [`publish`].
///
/// ```no_run
/// use nimbus_sdk::queue;
///
/// #[derive(serde::Serialize)]
/// struct Shipped {
///     order_id: u64,
/// }
///
/// queue::publish_json("orders.shipped", &Shipped { order_id: 7 })?;
/// # Ok::<(), queue::Error>(())
/// ```
pub fn publish_json<T: Serialize + ?Sized>(topic: &str, value: &T) -> Result<(), Error> {
    let payload = serde_json::to_vec(value)
        .map_err(|err| Error::Other(format!("the payload cannot be JSON: {err}")))?;
    send(topic, &payload, Some(JSON), &[])
}

/// One message to the broker, on a connection of its own: each instance
/// handles one request or message, so there is nothing to share it with.
fn send(
    topic: &str,
    payload: &[u8],
    content_type: Option<&str>,
    headers: &[(&str, &str)],
) -> Result<(), Error> {
    if let Some((name, _)) = headers.iter().find(|(name, _)| is_reserved(name)) {
        return Err(Error::Other(format!(
            "the header `{name}` is reserved: names starting with `{METADATA_PREFIX}` \
             are set by the host"
        )));
    }
    let client = Client::connect(BROKER)?;
    let message = WasiMessage::new(payload);
    let mut content_type = content_type;
    for &(name, value) in headers {
        // wasi:messaging keeps the content type apart from the metadata; a host
        // may drop a `content-type` entry there (Nimbus does).
        if name.eq_ignore_ascii_case(CONTENT_TYPE) {
            content_type = Some(value);
        } else {
            message.add_metadata(name, value);
        }
    }
    if let Some(content_type) = content_type {
        message.set_content_type(content_type);
    }
    let sent = producer::send(&client, topic, message);
    drop(client);
    Ok(sent?)
}

/// What a `#[queue_handler]` function may return: `()` (the message is
/// handled), or a `Result<(), E>` whose `Err` asks for the message again, with
/// `E`'s `Display` text as the reason the host logs and keeps with a dead
/// letter.
///
/// Any error type with `Display` works. `Box<dyn std::error::Error>` takes
/// every SDK error and plain strings through `?` and keeps their text as is;
/// [`nimbus_sdk::Error`](crate::Error) works too and reads
/// `500 internal: <message>`.
///
/// ```
/// use nimbus_sdk::queue::Outcome;
///
/// assert_eq!(().into_result(), Ok(()));
/// let failed: Result<(), String> = Err("mailbox full".into());
/// assert_eq!(failed.into_result(), Err("mailbox full".to_owned()));
/// let boxed: Result<(), Box<dyn std::error::Error>> = Err("no such order".into());
/// assert_eq!(boxed.into_result(), Err("no such order".to_owned()));
/// ```
#[diagnostic::on_unimplemented(
    message = "a queue handler cannot return `{Self}`",
    label = "this does not implement `queue::Outcome`",
    note = "return `()` or a `Result<(), E>` where `E` implements `Display`, such as \
            `Result<(), Box<dyn std::error::Error>>`, `Result<(), String>` or \
            `Result<(), nimbus_sdk::Error>`"
)]
pub trait Outcome {
    /// `Ok(())` if the message was handled, else the error's text.
    ///
    /// ```
    /// use nimbus_sdk::queue::Outcome;
    ///
    /// let failed: Result<(), nimbus_sdk::Error> = Err(nimbus_sdk::Error::internal("down"));
    /// assert_eq!(failed.into_result(), Err("500 internal: down".to_owned()));
    /// ```
    fn into_result(self) -> Result<(), String>;
}

impl Outcome for () {
    fn into_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: fmt::Display> Outcome for Result<(), E> {
    fn into_result(self) -> Result<(), String> {
        self.map_err(|err| err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_entries_are_not_headers() {
        let message = Message::new("orders.created", "{}")
            .with_metadata("nimbus-message-id", "m-9")
            .with_metadata("x-a", "1")
            .with_metadata("Nimbus-Attempt", "4")
            .with_metadata("nimbus-attempt", "2")
            .with_metadata("X-A", "2");
        assert_eq!(message.id(), "m-9");
        assert_eq!(message.attempt(), 2);
        assert_eq!(
            message.headers().collect::<Vec<_>>(),
            [("x-a", "1"), ("X-A", "2")]
        );
        assert_eq!(message.header("x-a"), Some("1"));
        assert_eq!(message.header("nimbus-attempt"), None);
        assert_eq!(message.metadata().len(), 5);
    }

    #[test]
    fn a_bad_attempt_count_reads_as_the_first() {
        for bad in ["0", "-1", "two", ""] {
            let message = Message::new("t", "").with_metadata(METADATA_ATTEMPT, bad);
            assert_eq!(message.attempt(), 1, "{bad:?}");
        }
    }

    #[test]
    fn reserved_names_are_caught_in_any_case() {
        assert!(is_reserved("nimbus-attempt"));
        assert!(is_reserved("NIMBUS-x"));
        assert!(!is_reserved("nimbus"));
        assert!(!is_reserved("x-nimbus-a"));
        assert!(!is_reserved("é"));
        let refused = send("t", b"", None, &[("Nimbus-Attempt", "9")]);
        assert!(
            matches!(&refused, Err(Error::Other(message)) if message.contains("reserved")),
            "{refused:?}"
        );
    }

    #[test]
    fn errors_convert_with_their_status() {
        let cases = [
            (
                Error::PermissionDenied("no".into()),
                403,
                "permission_denied",
            ),
            (Error::Connection("down".into()), 502, "bad_gateway"),
            (Error::Timeout, 502, "bad_gateway"),
            (Error::Other("odd".into()), 500, "internal"),
        ];
        for (error, status, code) in cases {
            let text = error.to_string();
            let converted = crate::Error::from(error);
            assert_eq!(
                (converted.status().as_u16(), converted.code()),
                (status, code)
            );
            assert_eq!(converted.message(), text);
        }
    }

    #[test]
    fn outcomes_carry_the_error_text() {
        assert_eq!(().into_result(), Ok(()));
        assert_eq!(Ok::<(), String>(()).into_result(), Ok(()));
        let kv: Result<(), Box<dyn std::error::Error>> = Err(crate::kv::Error::AccessDenied.into());
        assert!(kv.into_result().unwrap_err().contains("denied"));
    }
}
