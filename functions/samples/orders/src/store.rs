//! The orders in the orders' SQLite database (`sqlite = ["orders"]`): the
//! tables of `examples/shop/sql/orders/`. `orders` holds one row per order
//! (indexed by user), `outbox` a row per order whose `orders.created` event
//! may not have been published yet (see `events`; a foreign key to
//! `orders`), and `sequences` the last order id handed out.

use nimbus_sdk::Error;
use nimbus_sdk::sqlite::{Connection, Row, Value};

use crate::order::Order;

/// The database the manifest grants this function.
const DATABASE: &str = "orders";
/// The columns of an order, in `Order`'s order.
const COLUMNS: &str = "id, user, product_id, quantity, unit_price_cents, total_cents, created_at";

/// The orders' database.
pub struct Orders {
    db: Connection,
}

impl Orders {
    /// Opens the database.
    pub fn open() -> Result<Orders, Error> {
        Ok(Orders {
            db: Connection::open(DATABASE)?,
        })
    }

    /// A fresh order id.
    pub fn next_id(&self) -> Result<u64, Error> {
        let rows = self.db.execute(
            "UPDATE sequences SET last = last + 1 WHERE name = 'orders' RETURNING last",
            &[],
        )?;
        let row = rows
            .iter()
            .next()
            .ok_or_else(|| Error::internal("the `orders` sequence is missing"))?;
        Ok(row.get("last")?)
    }

    /// Stores `order` and marks its event as pending, in one transaction: an
    /// order is never stored without its mark.
    pub fn insert(&self, order: &Order) -> Result<(), Error> {
        self.db.transaction(|db| {
            db.execute(
                &format!("INSERT INTO orders ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"),
                &[
                    key(order.id),
                    order.user.as_str().into(),
                    key(order.product_id),
                    order.quantity.into(),
                    order.unit_price_cents.into(),
                    order.total_cents.into(),
                    order.created_at.as_str().into(),
                ],
            )?;
            db.execute("INSERT INTO outbox (order_id) VALUES (?)", &[key(order.id)])?;
            Ok::<_, Error>(())
        })
    }

    /// The order `id`, whoever placed it.
    pub fn by_id(&self, id: u64) -> Result<Option<Order>, Error> {
        let rows = self.db.execute(
            &format!("SELECT {COLUMNS} FROM orders WHERE id = ?"),
            &[key(id)],
        )?;
        rows.iter().next().map(|row| order(&row)).transpose()
    }

    /// Marks order `id`'s event as pending (again).
    pub fn mark_pending(&self, id: u64) -> Result<(), Error> {
        self.db.execute(
            "INSERT OR IGNORE INTO outbox (order_id) VALUES (?)",
            &[key(id)],
        )?;
        Ok(())
    }

    /// Clears the mark of order `id`'s event, once it is published.
    pub fn clear_pending(&self, id: u64) -> Result<(), Error> {
        self.db
            .execute("DELETE FROM outbox WHERE order_id = ?", &[key(id)])?;
        Ok(())
    }

    /// The ids of up to `limit` orders whose events are pending, oldest first.
    pub fn pending(&self, limit: usize) -> Result<Vec<u64>, Error> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.db.execute(
            "SELECT order_id FROM outbox ORDER BY order_id LIMIT ?",
            &[limit.into()],
        )?;
        rows.iter().map(|row| Ok(row.get("order_id")?)).collect()
    }

    /// The order `id` if `user` placed it; `None` for another user's order as
    /// for a missing one, so ids reveal nothing about other users.
    pub fn get(&self, user: &str, id: u64) -> Result<Option<Order>, Error> {
        Ok(self.by_id(id)?.filter(|order| order.user == user))
    }

    /// Every order `user` placed, by id.
    pub fn of_user(&self, user: &str) -> Result<Vec<Order>, Error> {
        let rows = self.db.execute(
            &format!("SELECT {COLUMNS} FROM orders WHERE user = ? ORDER BY id"),
            &[user.into()],
        )?;
        rows.iter().map(|row| order(&row)).collect()
    }
}

/// Ids are `u64` in the API and SQLite integers (`i64`) in the tables; the
/// ids handed out are positive, so both fit.
fn key(id: u64) -> Value {
    i64::try_from(id).map_or(Value::Integer(-1), Value::Integer)
}

fn order(row: &Row<'_>) -> Result<Order, Error> {
    Ok(Order {
        id: row.get("id")?,
        user: row.get("user")?,
        product_id: row.get("product_id")?,
        quantity: row.get("quantity")?,
        unit_price_cents: row.get("unit_price_cents")?,
        total_cents: row.get("total_cents")?,
        created_at: row.get("created_at")?,
    })
}
