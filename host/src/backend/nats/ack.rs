//! Delivery tokens: a delivery's token is the JetStream ack subject of the
//! message, so settling it needs no state on this node and still works
//! after a restart.

use super::{NatsBackend, fail};
use crate::backend::{BackendError, Consumer, Delivery};
use async_nats::jetstream::AckKind;
use bytes::Bytes;

/// A JetStream ack subject, parsed: `$JS.ACK.<stream>.<consumer>.<delivered>.
/// <stream seq>.<consumer seq>.<time>.<pending>`, or the newer form with a
/// domain and an account hash after `$JS.ACK` and a random token at the end.
pub(super) struct AckToken<'a> {
    pub(super) stream: &'a str,
    pub(super) consumer: &'a str,
    pub(super) stream_seq: u64,
}

impl<'a> AckToken<'a> {
    fn parse(token: &'a str) -> Option<AckToken<'a>> {
        let parts: Vec<&str> = token.strip_prefix("$JS.ACK.")?.split('.').collect();
        let at = match parts.len() {
            7 => 0,
            9.. => 2,
            _ => return None,
        };
        Some(AckToken {
            stream: parts[at],
            consumer: parts[at + 1],
            stream_seq: parts[at + 3].parse().ok()?,
        })
    }
}

impl NatsBackend {
    /// Checks that `token` is a delivery to `consumer`, and returns it parsed.
    pub(super) fn check_token<'a>(
        &self,
        consumer: &Consumer,
        token: &'a str,
    ) -> Result<AckToken<'a>, BackendError> {
        let names = self.names(consumer);
        AckToken::parse(token)
            .filter(|t| {
                t.consumer == names.consumer
                    && (t.stream == names.queue_stream || t.stream == names.replay_stream)
            })
            .ok_or_else(|| {
                BackendError::Invalid(format!(
                    "`{token}` is not a delivery to `{}` of app `{}`",
                    consumer.function, consumer.app
                ))
            })
    }

    /// Sends `kind` for a delivery and waits until the server has it.
    pub(super) async fn settle(
        &self,
        consumer: &Consumer,
        delivery: &Delivery,
        kind: AckKind,
    ) -> Result<(), BackendError> {
        self.check_token(consumer, &delivery.token)?;
        let what = match kind {
            AckKind::Ack => "acknowledging",
            AckKind::Nak(_) => "scheduling a retry of",
            _ => "terminating",
        };
        match self
            .client
            .request(delivery.token.clone(), Bytes::from(kind))
            .await
        {
            Ok(_) => Ok(()),
            // The consumer is gone (deleted, or its stream was): so is the
            // delivery, as with a token the embedded backend no longer holds.
            Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                tracing::debug!(
                    message_id = delivery.message.id,
                    "{what} a delivery whose consumer is gone"
                );
                Ok(())
            }
            Err(e) => Err(fail(&format!("{what} message {}", delivery.message.id), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_tokens_parse_in_both_forms() {
        let old = AckToken::parse("$JS.ACK.s.c.2.17.5.1700000000000000000.0").unwrap();
        assert_eq!((old.stream, old.consumer, old.stream_seq), ("s", "c", 17));
        let new =
            AckToken::parse("$JS.ACK.hub.ACCHASH.s.c.2.17.5.1700000000000000000.0.xyz").unwrap();
        assert_eq!((new.stream, new.consumer, new.stream_seq), ("s", "c", 17));
        assert!(AckToken::parse("$JS.ACK.s.c").is_none());
        assert!(AckToken::parse("orders.created").is_none());
    }
}
