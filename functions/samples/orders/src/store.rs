//! The orders in the key-value store: `order/<id>` holds each order as JSON,
//! `user/<username>/<id>` indexes a user's orders, `next-id` is the last id
//! handed out, and `outbox/<id>` marks an order whose `orders.created` event
//! may not have been published yet (see `events`).

use nimbus_sdk::{Error, kv};

use crate::order::Order;

/// The key-value store the manifest grants this function.
const STORE: &str = "orders";
/// The counter that hands out order ids.
const NEXT_ID: &str = "next-id";

/// The orders' store.
pub struct Orders {
    store: kv::Store,
}

impl Orders {
    /// Opens the store.
    pub fn open() -> Result<Orders, Error> {
        Ok(Orders {
            store: kv::Store::open(STORE)?,
        })
    }

    /// A fresh order id.
    pub fn next_id(&self) -> Result<u64, Error> {
        let id = self.store.increment(NEXT_ID, 1)?;
        u64::try_from(id).map_err(|_| Error::internal(format!("the id counter is negative: {id}")))
    }

    /// Stores `order` and indexes it under its user. The order is written
    /// first, so the index never names an order that is not there.
    pub fn insert(&self, order: &Order) -> Result<(), Error> {
        self.store.set_json(&order_key(order.id), order)?;
        self.store
            .set(&index_key(&order.user, order.id), order.id.to_string())?;
        Ok(())
    }

    /// The order `id`, whoever placed it.
    pub fn by_id(&self, id: u64) -> Result<Option<Order>, Error> {
        Ok(self.store.get_json(&order_key(id))?)
    }

    /// Marks order `id`'s event as pending.
    pub fn mark_pending(&self, id: u64) -> Result<(), Error> {
        Ok(self.store.set(&outbox_key(id), "")?)
    }

    /// Clears the mark of order `id`'s event, once it is published.
    pub fn clear_pending(&self, id: u64) -> Result<(), Error> {
        Ok(self.store.delete(&outbox_key(id))?)
    }

    /// The ids of up to `limit` orders whose events are pending, oldest first.
    pub fn pending(&self, limit: usize) -> Result<Vec<u64>, Error> {
        let prefix = outbox_key("");
        let mut ids: Vec<u64> = self
            .store
            .keys_with_prefix(&prefix)?
            .iter()
            .filter_map(|key| key.strip_prefix(&prefix)?.parse().ok())
            .collect();
        // Keys sort as text (`/10` before `/2`); ids as numbers.
        ids.sort_unstable();
        ids.truncate(limit);
        Ok(ids)
    }

    /// The order `id` if `user` placed it; `None` for another user's order as
    /// for a missing one, so ids reveal nothing about other users.
    pub fn get(&self, user: &str, id: u64) -> Result<Option<Order>, Error> {
        Ok(self.by_id(id)?.filter(|order| order.user == user))
    }

    /// Every order `user` placed, by id.
    pub fn of_user(&self, user: &str) -> Result<Vec<Order>, Error> {
        let prefix = index_key(user, "");
        let mut orders = Vec::new();
        for key in self.store.keys_with_prefix(&prefix)? {
            let Some(id) = key.strip_prefix(&prefix).and_then(|id| id.parse().ok()) else {
                continue;
            };
            if let Some(order) = self.get(user, id)? {
                orders.push(order);
            }
        }
        // Keys sort as text (`/10` before `/2`); ids as numbers.
        orders.sort_by_key(|order| order.id);
        Ok(orders)
    }
}

fn order_key(id: u64) -> String {
    format!("order/{id}")
}

/// `outbox/<id>`; with an empty id, the prefix of every mark.
fn outbox_key(id: impl std::fmt::Display) -> String {
    format!("outbox/{id}")
}

/// `user/<user>/<id>`; with an empty id, the prefix of all of `user`'s orders.
/// Usernames are `[a-z0-9_]`, so one user's prefix never covers another's.
fn index_key(user: &str, id: impl std::fmt::Display) -> String {
    format!("user/{user}/{id}")
}
