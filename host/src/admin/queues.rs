//! The handlers of `/v1/queues...` and `/v1/topics/{topic}/messages`: the
//! queue backend's counts, dead letters and publishing, for operators.

use super::route::query_param;
use super::view::{DeadLetterView, PublishedView, PurgedView, QueueView, ReplayedView};
use super::{Admin, AdminError, Answer, MAX_PUBLISH_BODY, json, ok};
use crate::backend::Consumer;
use crate::manifest::validate_topic;
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

impl Admin {
    /// `GET /v1/queues`
    pub(super) async fn queues(&self) -> Answer {
        let app = self.app();
        let mut queues = Vec::new();
        for f in &app.functions {
            let Some(trigger) = &f.queue else { continue };
            let consumer = Consumer {
                app: app.name.clone(),
                function: f.id.to_string(),
            };
            let stats = app.backends().queue.stats(&consumer).await?;
            queues.push(QueueView::new(f.id.as_str(), &trigger.spec, stats));
        }
        Ok(ok(&queues))
    }

    /// `POST /v1/topics/{topic}/messages`: the body, with its `content-type`.
    pub(super) async fn publish(&self, topic: &str, req: Request<Incoming>) -> Answer {
        validate_topic(topic).map_err(AdminError::InvalidTopic)?;
        let mut headers = Vec::new();
        if let Some(ct) = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
        {
            headers.push(("content-type".to_owned(), ct.to_owned()));
        }
        let body = Limited::new(req.into_body(), MAX_PUBLISH_BODY)
            .collect()
            .await
            .map_err(|e| AdminError::Message(e.to_string()))?
            .to_bytes();
        let app = self.app();
        let id = app
            .backends()
            .queue
            .publish(&app.name, topic, &body, &headers)
            .await?;
        crate::telemetry::metrics()
            .queue_published
            .get_or_create(&crate::telemetry::function("admin"))
            .inc();
        let published = PublishedView {
            id,
            topic: topic.to_owned(),
        };
        Ok(json(StatusCode::ACCEPTED, &published))
    }

    /// `GET /v1/queues/{function}/dead-letters`
    pub(super) async fn dead_letters(&self, function: &str) -> Answer {
        let consumer = self.consumer(function)?;
        let letters = self.app().backends().queue.dead_letters(&consumer).await?;
        let letters: Vec<DeadLetterView> = letters.into_iter().map(DeadLetterView::from).collect();
        Ok(ok(&letters))
    }

    /// `POST /v1/queues/{function}/dead-letters/replay[?id=ID]`
    pub(super) async fn replay(&self, function: &str, uri: &Uri) -> Answer {
        let consumer = self.consumer(function)?;
        let id = query_param(uri.query(), "id");
        let replayed = self
            .app()
            .backends()
            .queue
            .replay(&consumer, id.as_deref())
            .await?;
        Ok(ok(&ReplayedView { replayed }))
    }

    /// `DELETE /v1/queues/{function}/dead-letters[?id=ID]`
    pub(super) async fn purge(&self, function: &str, uri: &Uri) -> Answer {
        let consumer = self.consumer(function)?;
        let id = query_param(uri.query(), "id");
        let purged = self
            .app()
            .backends()
            .queue
            .purge(&consumer, id.as_deref())
            .await?;
        Ok(ok(&PurgedView { purged }))
    }

    /// The consumer of queue function `function`.
    fn consumer(&self, function: &str) -> Result<Consumer, AdminError> {
        let app = self.app();
        match app.functions.iter().find(|f| f.id.as_str() == function) {
            Some(f) if f.queue.is_some() => Ok(Consumer {
                app: app.name.clone(),
                function: function.to_owned(),
            }),
            Some(_) => Err(AdminError::NoQueueTrigger(function.to_owned())),
            None => Err(AdminError::NoFunction(function.to_owned())),
        }
    }
}
