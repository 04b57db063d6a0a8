//! The orders in the key-value store: `order/<id>` holds each order as JSON,
//! `user/<username>/<id>` indexes a user's orders, and `next-id` is the last id
//! handed out.

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

    /// The order `id` if `user` placed it; `None` for another user's order as
    /// for a missing one, so ids reveal nothing about other users.
    pub fn get(&self, user: &str, id: u64) -> Result<Option<Order>, Error> {
        let order: Option<Order> = self.store.get_json(&order_key(id))?;
        Ok(order.filter(|order| order.user == user))
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

/// `user/<user>/<id>`; with an empty id, the prefix of all of `user`'s orders.
/// Usernames are `[a-z0-9_]`, so one user's prefix never covers another's.
fn index_key(user: &str, id: impl std::fmt::Display) -> String {
    format!("user/{user}/{id}")
}
