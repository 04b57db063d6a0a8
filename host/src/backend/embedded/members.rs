//! Members of a node on its own: the node itself, kept in memory (a node
//! with embedded state shares it with nobody).

use super::EmbeddedBackend;
use crate::backend::BackendError;
use crate::backend::members::{Member, MembersBackend};
use async_trait::async_trait;

#[async_trait]
impl MembersBackend for EmbeddedBackend {
    async fn beat(&self, member: &Member) -> Result<(), BackendError> {
        *self.member.lock().unwrap_or_else(|e| e.into_inner()) = Some(member.clone());
        Ok(())
    }

    async fn leave(&self, id: &str) -> Result<(), BackendError> {
        let mut member = self.member.lock().unwrap_or_else(|e| e.into_inner());
        if member.as_ref().is_some_and(|m| m.id == id) {
            *member = None;
        }
        Ok(())
    }

    async fn list(&self) -> Result<Vec<Member>, BackendError> {
        let member = self.member.lock().unwrap_or_else(|e| e.into_inner());
        Ok(member.iter().cloned().collect())
    }

    fn unreachable(&self) -> Option<String> {
        None
    }
}
