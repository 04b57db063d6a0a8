//! The products in the key-value store: `product/<id>` holds each product as
//! JSON, `next-id` the last id handed out.
//!
//! Updates of an existing product (`replace`, `reserve`) read it, compute the
//! new value and write it with compare-and-swap, retrying when another request
//! changed it in between: no update is lost and stock never goes negative.

use nimbus_sdk::{Error, StatusCode, kv};

use crate::product::{Product, ProductInput, Reservation, parse_id};

/// The key-value store the manifest grants this function.
const STORE: &str = "catalog";
/// The counter that hands out product ids.
const NEXT_ID: &str = "next-id";
/// The prefix of every product's key.
const PRODUCT_PREFIX: &str = "product/";
/// Compare-and-swap attempts before giving up with a `503`. Each failed
/// attempt means another request's update of the same product succeeded, so
/// this is reached only under contention far beyond a shop's.
const MAX_CAS_ATTEMPTS: u32 = 1_000;

/// The catalog's store.
pub struct Products {
    store: kv::Store,
}

impl Products {
    /// Opens the store.
    pub fn open() -> Result<Products, Error> {
        Ok(Products {
            store: kv::Store::open(STORE)?,
        })
    }

    /// Every product, by id.
    pub fn list(&self) -> Result<Vec<Product>, Error> {
        let mut products = Vec::new();
        for key in self.store.keys_with_prefix(PRODUCT_PREFIX)? {
            // A product deleted since the listing is simply left out.
            if let Some(product) = self.store.get_json::<Product>(&key)? {
                products.push(product);
            }
        }
        // Keys sort as text (`product/10` before `product/2`); ids as numbers.
        products.sort_by_key(|product| product.id);
        Ok(products)
    }

    /// The product `id` (as in the path), or a `404`.
    pub fn get(&self, id: &str) -> Result<Product, Error> {
        let id = parse_id(id)?;
        self.store.get_json(&key(id))?.ok_or_else(|| not_found(id))
    }

    /// Stores a new product under a fresh id.
    pub fn create(&self, input: ProductInput) -> Result<Product, Error> {
        let id = self.store.increment(NEXT_ID, 1)?;
        let id = u64::try_from(id)
            .map_err(|_| Error::internal(format!("the id counter is negative: {id}")))?;
        let product = input.with_id(id);
        // Create-only, so a counter reset by hand can never overwrite a product.
        if !self
            .store
            .compare_and_swap(&key(id), None, encode(&product)?)?
        {
            return Err(Error::internal(format!(
                "product {id} already exists; the `{NEXT_ID}` counter is behind"
            )));
        }
        Ok(product)
    }

    /// Replaces the product `id` with `input`; a `404` if it does not exist.
    pub fn replace(&self, id: &str, input: ProductInput) -> Result<Product, Error> {
        let id = parse_id(id)?;
        let product = input.with_id(id);
        self.update(id, |_| Ok(product.clone()))
    }

    /// Removes the product `id`; a `404` if it does not exist.
    pub fn delete(&self, id: &str) -> Result<(), Error> {
        let id = parse_id(id)?;
        let key = key(id);
        if !self.store.exists(&key)? {
            return Err(not_found(id));
        }
        Ok(self.store.delete(&key)?)
    }

    /// Takes `reservation.quantity` units out of the product's stock; a `409`
    /// if it has fewer.
    pub fn reserve(&self, id: &str, reservation: Reservation) -> Result<Product, Error> {
        let id = parse_id(id)?;
        let wanted = reservation.quantity;
        self.update(id, |old| {
            let mut product: Product = decode(id, old)?;
            if product.stock < wanted {
                return Err(Error::conflict(format!(
                    "not enough stock of product {id}: {} left, {wanted} wanted",
                    product.stock
                ))
                .with_code("out_of_stock"));
            }
            product.stock -= wanted;
            Ok(product)
        })
    }

    /// Sets the product `id` to `change(its stored JSON)` atomically, retrying
    /// when another request changed it first; returns the product written. A
    /// `404` if the product does not exist (or is deleted meanwhile).
    fn update(
        &self,
        id: u64,
        mut change: impl FnMut(&[u8]) -> Result<Product, Error>,
    ) -> Result<Product, Error> {
        let key = key(id);
        for _ in 0..MAX_CAS_ATTEMPTS {
            let old = self.store.get(&key)?.ok_or_else(|| not_found(id))?;
            let product = change(&old)?;
            if self
                .store
                .compare_and_swap(&key, Some(&old), encode(&product)?)?
            {
                return Ok(product);
            }
        }
        Err(Error::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("product {id} is changing too often to update; try again"),
        ))
    }
}

/// The store key of product `id`.
fn key(id: u64) -> String {
    format!("{PRODUCT_PREFIX}{id}")
}

fn not_found(id: u64) -> Error {
    Error::not_found(format!("no product {id}"))
}

fn encode(product: &Product) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(product)
        .map_err(|err| Error::internal(format!("cannot encode product {}: {err}", product.id)))
}

fn decode(id: u64, json: &[u8]) -> Result<Product, Error> {
    serde_json::from_slice(json)
        .map_err(|err| Error::internal(format!("product {id} is stored as invalid JSON: {err}")))
}
