//! Queues (`wasi:messaging@0.2.0-draft`): publishing, and the message a
//! queue-triggered function receives.
//!
//! A function may publish only to topics matching its manifest's `publish`
//! patterns; anything else is `permission-denied`. `send` returns once the
//! message is durable for every subscriber.

use super::bindings::wasi::messaging::{producer, types};
use crate::backend::{Delivery, QueueBackend};
use crate::manifest::{TopicPattern, validate_topic};
use std::sync::Arc;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

/// Metadata key holding the message id on delivery.
pub const META_MESSAGE_ID: &str = "nimbus-message-id";
/// Metadata key holding the attempt number (1 on the first delivery).
pub const META_ATTEMPT: &str = "nimbus-attempt";
/// Metadata key that carries the content type through the broker.
pub const META_CONTENT_TYPE: &str = "content-type";
/// Metadata key of the publisher's W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

/// Per-function publishing policy and the broker.
#[derive(Clone)]
pub struct MessagingCtx {
    queue: Arc<dyn QueueBackend>,
    app: Arc<str>,
    function: Arc<str>,
    allowed: Arc<[TopicPattern]>,
}

impl MessagingCtx {
    /// `function` of `app` may publish to topics matching `allowed`.
    pub fn new(
        queue: Arc<dyn QueueBackend>,
        app: &str,
        function: &str,
        allowed: &[TopicPattern],
    ) -> Self {
        MessagingCtx {
            queue,
            app: app.into(),
            function: function.into(),
            allowed: allowed.into(),
        }
    }
}

/// The host side of `client`: there is one broker, so it holds nothing.
pub struct Client;

/// The host side of `message`.
#[derive(Debug, Clone, Default)]
pub struct Message {
    data: Vec<u8>,
    topic: Option<String>,
    content_type: Option<String>,
    metadata: Vec<(String, String)>,
}

impl Message {
    /// The message a handler receives for `delivery`.
    pub fn delivered(delivery: &Delivery) -> Message {
        let m = &delivery.message;
        let content_type = m
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(META_CONTENT_TYPE))
            .map(|(_, v)| v.clone());
        let mut metadata = m.headers.clone();
        metadata.push((META_MESSAGE_ID.into(), m.id.clone()));
        metadata.push((META_ATTEMPT.into(), delivery.attempt.to_string()));
        Message {
            data: m.payload.clone(),
            topic: Some(m.topic.clone()),
            content_type,
            metadata,
        }
    }
}

/// How the messaging interfaces find their state in the store data.
pub struct MessagingView<'a> {
    /// The policy and broker.
    pub ctx: &'a MessagingCtx,
    /// The instance's resource table.
    pub table: &'a mut ResourceTable,
    /// The `traceparent` of the invocation that publishes: a message
    /// without one of its own carries it, so its delivery continues the trace.
    pub traceparent: Option<&'a http::HeaderValue>,
}

struct HasMessaging;

impl HasData for HasMessaging {
    type Data<'a> = MessagingView<'a>;
}

/// Adds `wasi:messaging/types` and `wasi:messaging/producer` to `linker`.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> MessagingView<'_>,
) -> wasmtime::Result<()> {
    types::add_to_linker::<T, HasMessaging>(linker, view)?;
    producer::add_to_linker::<T, HasMessaging>(linker, view)?;
    Ok(())
}

impl types::Host for MessagingView<'_> {}

impl types::HostClient for MessagingView<'_> {
    async fn connect(
        &mut self,
        _name: String,
    ) -> wasmtime::Result<Result<Resource<Client>, types::Error>> {
        Ok(Ok(self.table.push(Client)?))
    }

    async fn disconnect(
        &mut self,
        _client: Resource<Client>,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        Ok(Ok(()))
    }

    async fn drop(&mut self, client: Resource<Client>) -> wasmtime::Result<()> {
        self.table.delete(client)?;
        Ok(())
    }
}

impl types::HostMessage for MessagingView<'_> {
    async fn new(&mut self, data: Vec<u8>) -> wasmtime::Result<Resource<Message>> {
        Ok(self.table.push(Message {
            data,
            ..Message::default()
        })?)
    }

    async fn topic(&mut self, m: Resource<Message>) -> wasmtime::Result<Option<String>> {
        Ok(self.table.get(&m)?.topic.clone())
    }

    async fn content_type(&mut self, m: Resource<Message>) -> wasmtime::Result<Option<String>> {
        Ok(self.table.get(&m)?.content_type.clone())
    }

    async fn set_content_type(
        &mut self,
        m: Resource<Message>,
        content_type: String,
    ) -> wasmtime::Result<()> {
        self.table.get_mut(&m)?.content_type = Some(content_type);
        Ok(())
    }

    async fn data(&mut self, m: Resource<Message>) -> wasmtime::Result<Vec<u8>> {
        Ok(self.table.get(&m)?.data.clone())
    }

    async fn set_data(&mut self, m: Resource<Message>, data: Vec<u8>) -> wasmtime::Result<()> {
        self.table.get_mut(&m)?.data = data;
        Ok(())
    }

    async fn metadata(
        &mut self,
        m: Resource<Message>,
    ) -> wasmtime::Result<Option<types::Metadata>> {
        let metadata = &self.table.get(&m)?.metadata;
        Ok((!metadata.is_empty()).then(|| metadata.clone()))
    }

    async fn add_metadata(
        &mut self,
        m: Resource<Message>,
        key: String,
        value: String,
    ) -> wasmtime::Result<()> {
        self.table.get_mut(&m)?.metadata.push((key, value));
        Ok(())
    }

    async fn set_metadata(
        &mut self,
        m: Resource<Message>,
        meta: types::Metadata,
    ) -> wasmtime::Result<()> {
        self.table.get_mut(&m)?.metadata = meta;
        Ok(())
    }

    async fn remove_metadata(&mut self, m: Resource<Message>, key: String) -> wasmtime::Result<()> {
        self.table.get_mut(&m)?.metadata.retain(|(k, _)| *k != key);
        Ok(())
    }

    async fn drop(&mut self, m: Resource<Message>) -> wasmtime::Result<()> {
        self.table.delete(m)?;
        Ok(())
    }
}

impl producer::Host for MessagingView<'_> {
    async fn send(
        &mut self,
        _client: Resource<Client>,
        topic: String,
        message: Resource<Message>,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        let message = self.table.delete(message)?;
        if let Err(e) = validate_topic(&topic) {
            return Ok(Err(types::Error::Other(e)));
        }
        if !self.ctx.allowed.iter().any(|p| p.matches(&topic)) {
            tracing::info!(
                function = &*self.ctx.function,
                topic,
                "publish denied: topic not in `publish`"
            );
            return Ok(Err(types::Error::PermissionDenied(format!(
                "function `{}` may not publish to `{topic}`; add it to `publish` in the manifest",
                self.ctx.function
            ))));
        }
        let mut headers: Vec<(String, String)> = message
            .metadata
            .into_iter()
            .filter(|(k, _)| {
                !k.starts_with("nimbus-") && !k.eq_ignore_ascii_case(META_CONTENT_TYPE)
            })
            .collect();
        if let Some(ct) = message.content_type {
            headers.push((META_CONTENT_TYPE.into(), ct));
        }
        if let Some(tp) = self.traceparent.and_then(|tp| tp.to_str().ok())
            && !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case(TRACEPARENT))
        {
            headers.push((TRACEPARENT.into(), tp.to_owned()));
        }
        match self
            .ctx
            .queue
            .publish(&self.ctx.app, &topic, &message.data, &headers)
            .await
        {
            Ok(_) => {
                crate::telemetry::metrics()
                    .queue_published
                    .get_or_create(&crate::telemetry::function(&self.ctx.function))
                    .inc();
                Ok(Ok(()))
            }
            Err(e) => Ok(Err(types::Error::Connection(e.to_string()))),
        }
    }
}
