//! The handlers of `/v1/functions...`: each runs one [`Deployer`] operation
//! and answers with its view.

use super::route::query_param;
use super::{Admin, AdminError, Answer, MAX_COMPONENT_SIZE, ok};
use crate::deploy::{DeployError, Deployer, MANIFEST_HEADER, parse_percent};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Serialize;

impl Admin {
    /// `GET /v1/functions`
    pub(super) async fn functions(&self) -> Answer {
        self.deploying(|d| Ok(d.list())).await
    }

    /// `GET /v1/functions/{id}`
    pub(super) async fn function(&self, id: String) -> Answer {
        self.deploying(move |d| d.get(&id)).await
    }

    /// `PUT /v1/functions/{id}`: a deploy, or with a manifest entry an add.
    pub(super) async fn deploy(&self, id: String, req: Request<Incoming>) -> Answer {
        let entry = match req.headers().get(MANIFEST_HEADER) {
            Some(value) => Some(
                String::from_utf8(value.as_bytes().to_vec())
                    .map_err(|_| AdminError::ManifestHeader)?,
            ),
            None => None,
        };
        let component = component(req).await?;
        match entry {
            Some(entry) => {
                self.deploying(move |d| d.add(&id, &entry, &component))
                    .await
            }
            None => self.deploying(move |d| d.deploy(&id, &component)).await,
        }
    }

    /// `DELETE /v1/functions/{id}`
    pub(super) async fn remove(&self, id: String) -> Answer {
        self.deploying(move |d| d.remove(&id)).await
    }

    /// `POST /v1/functions/{id}/rollback`
    pub(super) async fn rollback(&self, id: String) -> Answer {
        self.deploying(move |d| d.rollback(&id)).await
    }

    /// `PUT /v1/functions/{id}/canary?percent=N`: a new canary, or with no
    /// body a new share for the running one.
    pub(super) async fn canary(&self, id: String, req: Request<Incoming>) -> Answer {
        let percent = query_param(req.uri().query(), "percent");
        // The body is read first, so a refusal leaves the connection clean
        // for the client's next request; nothing is compiled before the
        // percentage is checked.
        let component = component(req).await?;
        let percent = parse_percent(&percent.ok_or(AdminError::NoPercent)?)?;
        if component.is_empty() {
            self.deploying(move |d| d.set_canary_percent(&id, percent))
                .await
        } else {
            self.deploying(move |d| d.canary(&id, &component, percent))
                .await
        }
    }

    /// `POST /v1/functions/{id}/canary/promote`
    pub(super) async fn promote(&self, id: String) -> Answer {
        self.deploying(move |d| d.promote(&id)).await
    }

    /// `POST /v1/functions/{id}/canary/abort`, `DELETE /v1/functions/{id}/canary`
    pub(super) async fn abort(&self, id: String) -> Answer {
        self.deploying(move |d| d.abort(&id)).await
    }

    /// Runs a deployment operation off the async workers: it may compile.
    async fn deploying<T: Serialize + Send + 'static>(
        &self,
        operation: impl FnOnce(&Deployer) -> Result<T, DeployError> + Send + 'static,
    ) -> Answer {
        let deployer = self.deployer.clone();
        match tokio::task::spawn_blocking(move || operation(&deployer)).await {
            Ok(answer) => Ok(ok(&answer?)),
            Err(e) => Err(AdminError::Task(e.to_string())),
        }
    }
}

/// Reads an uploaded component, up to [`MAX_COMPONENT_SIZE`].
async fn component(req: Request<Incoming>) -> Result<Bytes, AdminError> {
    Limited::new(req.into_body(), MAX_COMPONENT_SIZE)
        .collect()
        .await
        .map(|body| body.to_bytes())
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                AdminError::ComponentTooLarge
            } else {
                AdminError::Component(e.to_string())
            }
        })
}
