//! The catalog, called in-process as the service `catalog`.

use nimbus_sdk::http::ResponseExt;
use nimbus_sdk::service::Client;
use nimbus_sdk::{Error, StatusCode};
use serde::Deserialize;
use serde_json::json;

/// The catalog's function id, as listed in this function's `services`.
const SERVICE: &str = "catalog";

/// What an order needs of the product the catalog answers with.
#[derive(Debug, Deserialize)]
pub struct Product {
    pub price_cents: i64,
}

/// Takes `quantity` units of product `id` out of the catalog's stock, through
/// `client` (made from the incoming request, so the catalog sees the same
/// request id). Returns the product as reserved.
///
/// The catalog's `404` is this function's `404`, and its `409` (not enough
/// stock) its `409` with the catalog's message; anything else unexpected is a
/// `502`.
pub fn reserve(client: &Client, id: u64, quantity: i64) -> Result<Product, Error> {
    let response = client.post_json(
        SERVICE,
        &format!("/products/{id}/reserve"),
        &json!({ "quantity": quantity }),
    )?;
    match response.status() {
        StatusCode::OK => response.json(),
        StatusCode::NOT_FOUND => Err(Error::not_found(format!("no such product: {id}"))),
        StatusCode::CONFLICT => Err(response
            .error_for_status()
            .err()
            .unwrap_or_else(|| Error::conflict(format!("not enough stock of product {id}")))),
        status => Err(Error::bad_gateway(format!(
            "the catalog answered {status} to a reservation of product {id}"
        ))),
    }
}
