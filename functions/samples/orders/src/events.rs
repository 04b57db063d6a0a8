//! The `orders.created` event, and the outbox that makes sure every stored
//! order's event is published at least once.
//!
//! Placing an order stores it with its event marked as pending (a row of the
//! `outbox` table, in the same transaction), publishes the event and clears
//! the mark. If publishing fails, the
//! order still stands (the stock is already reserved, and a `500` would make
//! the caller retry and order twice): the mark stays, and the next order whose
//! own event is published successfully publishes up to [`OUTBOX_BATCH`]
//! pending ones too. An event can therefore be published twice (two requests
//! flushing the same mark, or a crash after publishing but before clearing it);
//! that is harmless because delivery is at least once anyway and every
//! subscriber is idempotent by order id.

use nimbus_sdk::{Error, queue};

use crate::order::Order;
use crate::store::Orders;

/// The topic every stored order is published to, as JSON of the [`Order`].
pub const ORDER_CREATED: &str = "orders.created";

/// Pending events one request publishes at most, after its own: enough to
/// catch up after a short broker outage within a few orders, without making
/// one request pay for a long one.
const OUTBOX_BATCH: usize = 16;

/// Publishes `order`'s event, with the outbox mark around it. `Ok` if the event
/// was published or is pending in the outbox; an error only when it is
/// neither, so nothing would ever publish it.
pub fn publish_created(orders: &Orders, order: &Order) -> Result<(), Error> {
    let marked = orders.mark_pending(order.id);
    match (queue::publish_json(ORDER_CREATED, order), marked) {
        (Ok(()), Ok(())) => {
            if let Err(err) = orders.clear_pending(order.id) {
                // Only costs a duplicate event later, which subscribers ignore.
                nimbus_sdk::warn!("order {}: cannot clear its outbox mark: {err}", order.id);
            }
            flush(orders, order.id);
            Ok(())
        }
        (Ok(()), Err(err)) => {
            nimbus_sdk::warn!(
                "order {}: published without an outbox mark: {err}",
                order.id
            );
            Ok(())
        }
        (Err(err), Ok(())) => {
            nimbus_sdk::error!(
                "order {}: its {ORDER_CREATED} event is pending in the outbox, \
                 to be published with a later order: {err}",
                order.id
            );
            Ok(())
        }
        (Err(publish), Err(mark)) => Err(Error::internal(format!(
            "order {} was placed, but its {ORDER_CREATED} event was neither published \
             ({publish}) nor kept for later ({mark})",
            order.id
        ))
        .with_code("event_not_published")),
    }
}

/// Publishes up to [`OUTBOX_BATCH`] pending events other than `just_published`'s,
/// clearing each mark once its event is out. Failures are logged and left for
/// a later order: the request that runs this has already succeeded.
fn flush(orders: &Orders, just_published: u64) {
    let pending = match orders.pending(OUTBOX_BATCH + 1) {
        Ok(pending) => pending,
        Err(err) => {
            nimbus_sdk::warn!("cannot list the outbox: {err}");
            return;
        }
    };
    for id in pending
        .into_iter()
        .filter(|&id| id != just_published)
        .take(OUTBOX_BATCH)
    {
        let order = match orders.by_id(id) {
            Ok(Some(order)) => order,
            Ok(None) => {
                nimbus_sdk::warn!("the outbox names order {id}, which is not stored; dropping it");
                let _ = orders.clear_pending(id);
                continue;
            }
            Err(err) => {
                nimbus_sdk::warn!("order {id}: cannot read it to publish its event: {err}");
                continue;
            }
        };
        if let Err(err) = queue::publish_json(ORDER_CREATED, &order) {
            nimbus_sdk::warn!("order {id}: its {ORDER_CREATED} event is still pending: {err}");
            // The broker fails again; the rest would too.
            return;
        }
        match orders.clear_pending(id) {
            Ok(()) => nimbus_sdk::info!("order {id}: published its pending {ORDER_CREATED} event"),
            Err(err) => nimbus_sdk::warn!("order {id}: cannot clear its outbox mark: {err}"),
        }
    }
}
