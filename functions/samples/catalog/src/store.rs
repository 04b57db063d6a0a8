//! The products in the catalog's SQLite database (`sqlite = ["catalog"]`):
//! the table `products` of `examples/shop/sql/catalog/`, one row a product,
//! its id the row's `INTEGER PRIMARY KEY`.
//!
//! A reservation is one conditional `UPDATE` inside a transaction: it takes
//! the stock only if enough is left, so concurrent reservations never lose
//! an update and stock never goes negative (the table's `CHECK` says so too).

use nimbus_sdk::Error;
use nimbus_sdk::sqlite::{Connection, Row, Rows, Value};

use crate::product::{Product, ProductInput, Reservation, parse_id};

/// The database the manifest grants this function.
const DATABASE: &str = "catalog";
/// The columns of a product, in `Product`'s order.
const COLUMNS: &str = "id, name, price_cents, stock";

/// The catalog's database.
pub struct Products {
    db: Connection,
}

impl Products {
    /// Opens the database.
    pub fn open() -> Result<Products, Error> {
        Ok(Products {
            db: Connection::open(DATABASE)?,
        })
    }

    /// Every product, by id.
    pub fn list(&self) -> Result<Vec<Product>, Error> {
        let rows = self
            .db
            .execute(&format!("SELECT {COLUMNS} FROM products ORDER BY id"), &[])?;
        rows.iter().map(|row| product(&row)).collect()
    }

    /// The product `id` (as in the path), or a `404`.
    pub fn get(&self, id: &str) -> Result<Product, Error> {
        self.find(parse_id(id)?)
    }

    /// Stores a new product under a fresh id.
    pub fn create(&self, input: ProductInput) -> Result<Product, Error> {
        let rows = self.db.execute(
            &format!("INSERT INTO products (name, price_cents, stock) VALUES (?, ?, ?) RETURNING {COLUMNS}"),
            &[input.name.into(), input.price_cents.into(), input.stock.into()],
        )?;
        first(&rows)?
            .ok_or_else(|| Error::internal("the database returned no row for the new product"))
    }

    /// Replaces the product `id` with `input`; a `404` if it does not exist.
    pub fn replace(&self, id: &str, input: ProductInput) -> Result<Product, Error> {
        let id = parse_id(id)?;
        let rows = self.db.execute(
            &format!("UPDATE products SET name = ?, price_cents = ?, stock = ? WHERE id = ? RETURNING {COLUMNS}"),
            &[input.name.into(), input.price_cents.into(), input.stock.into(), key(id)],
        )?;
        first(&rows)?.ok_or_else(|| not_found(id))
    }

    /// Removes the product `id`; a `404` if it does not exist.
    pub fn delete(&self, id: &str) -> Result<(), Error> {
        let id = parse_id(id)?;
        self.db
            .execute("DELETE FROM products WHERE id = ?", &[key(id)])?;
        if self.db.changes() == 0 {
            return Err(not_found(id));
        }
        Ok(())
    }

    /// Takes `reservation.quantity` units out of the product's stock; a `409`
    /// if it has fewer.
    pub fn reserve(&self, id: &str, reservation: Reservation) -> Result<Product, Error> {
        let id = parse_id(id)?;
        let wanted = reservation.quantity;
        self.db.transaction(|db| {
            let rows = db.execute(
                &format!("UPDATE products SET stock = stock - ?1 WHERE id = ?2 AND stock >= ?1 RETURNING {COLUMNS}"),
                &[wanted.into(), key(id)],
            )?;
            if let Some(product) = first(&rows)? {
                return Ok(product);
            }
            // Nothing taken: say whether the product is missing or short.
            let product = self.find(id)?;
            Err(Error::conflict(format!(
                "not enough stock of product {id}: {} left, {wanted} wanted",
                product.stock
            ))
            .with_code("out_of_stock"))
        })
    }

    fn find(&self, id: u64) -> Result<Product, Error> {
        let rows = self.db.execute(
            &format!("SELECT {COLUMNS} FROM products WHERE id = ?"),
            &[key(id)],
        )?;
        first(&rows)?.ok_or_else(|| not_found(id))
    }
}

/// Product ids are `u64` in the API and SQLite integers (`i64`) in the
/// table; ids the table hands out are positive, so both fit.
fn key(id: u64) -> Value {
    i64::try_from(id).map_or(Value::Integer(-1), Value::Integer)
}

fn product(row: &Row<'_>) -> Result<Product, Error> {
    Ok(Product {
        id: row.get("id")?,
        name: row.get("name")?,
        price_cents: row.get("price_cents")?,
        stock: row.get("stock")?,
    })
}

/// The product in the first row of `rows`, if there is one.
fn first(rows: &Rows) -> Result<Option<Product>, Error> {
    rows.iter().next().map(|row| product(&row)).transpose()
}

fn not_found(id: u64) -> Error {
    Error::not_found(format!("no product {id}"))
}
