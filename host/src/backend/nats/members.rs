//! The [`MembersBackend`] implementation: one KV bucket per cluster
//! (`P_members`), a key per node holding its [`Member`] record as JSON. The
//! bucket's `max_age` is [`MEMBER_TTL`], so the server drops a record its
//! node stopped renewing; `list` also skips records older than that, since
//! the server expires them only about once a second.

use super::kv::all_keys;
use super::{NatsBackend, fail};
use crate::backend::BackendError;
use crate::backend::members::{MEMBER_TTL, Member, MembersBackend, live};
use crate::backend::queue::now_ms;
use async_nats::jetstream::kv::Store;
use async_trait::async_trait;

impl NatsBackend {
    async fn members_bucket(&self) -> Result<&Store, BackendError> {
        self.connected()?;
        self.members
            .get_or_try_init(|| {
                let name = format!("{}_members", self.prefix);
                async move { self.open_bucket(&name, "cluster members", MEMBER_TTL).await }
            })
            .await
    }
}

#[async_trait]
impl MembersBackend for NatsBackend {
    async fn beat(&self, member: &Member) -> Result<(), BackendError> {
        let bucket = self.members_bucket().await?;
        let record = serde_json::to_vec(member).map_err(|e| fail("cannot encode a member", e))?;
        bucket
            .put(member_key(&member.id)?, record.into())
            .await
            .map_err(|e| fail(&format!("cannot record member {}", member.id), e))?;
        Ok(())
    }

    async fn leave(&self, id: &str) -> Result<(), BackendError> {
        let bucket = self.members_bucket().await?;
        bucket
            .purge(member_key(id)?)
            .await
            .map_err(|e| fail(&format!("cannot remove member {id}"), e))
    }

    async fn list(&self) -> Result<Vec<Member>, BackendError> {
        let bucket = self.members_bucket().await?;
        let keys = all_keys(bucket, "the members").await?;
        let now = now_ms();
        let mut members = Vec::with_capacity(keys.len());
        for key in keys {
            // Gone between the listing and the read: left or expired.
            let read = bucket.get(&key).await;
            let Some(record) = read.map_err(|e| fail(&format!("cannot read member {key}"), e))?
            else {
                continue;
            };
            match serde_json::from_slice::<Member>(&record) {
                Ok(member) if live(member.heartbeat_ms, now) => members.push(member),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(key, error = %e, "skipping a member record Nimbus cannot read")
                }
            }
        }
        members.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(members)
    }

    fn unreachable(&self) -> Option<String> {
        self.connected().err().map(|e| e.to_string())
    }
}

/// Node ids are `[A-Za-z0-9-]` (the node makes them), valid NATS keys as they are.
fn member_key(id: &str) -> Result<&str, BackendError> {
    if !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        Ok(id)
    } else {
        Err(BackendError::Invalid(format!(
            "invalid node id `{id}`: use letters, digits and `-`"
        )))
    }
}
