//! `inventory`: a ledger of the stock orders have reserved, per product, kept
//! asynchronously from the `orders.created` messages `orders` publishes;
//! written with `nimbus-sdk`.
//!
//! | trigger | what happens |
//! |---|---|
//! | a message on `orders.created` (the order as JSON) | adds the order's `quantity` to its product's reserved total, once per order id |
//! | `GET /inventory/:product_id` | `200 {"product_id", "reserved"}` (`0` for a product no order named); `404` for an id that is not a number |
//!
//! # Idempotency
//!
//! Messages are delivered at least once, so one order may arrive twice (a
//! retry after a failure, or `orders` publishing it again from its outbox).
//! Before adding to the total, the handler claims `order/<id>` with
//! compare-and-swap; a delivery that finds it already claimed does nothing.
//! If the increment then fails, the claim is released and the error returned,
//! so the retry counts the order. (Only being stopped between the claim and
//! the increment, by the timeout, would lose an order's quantity: two host
//! calls apart.)
//!
//! A message that is not an order (bad JSON) fails every attempt and ends in
//! the dead letters, with serde's message as the error.
//!
//! # What the manifest grants
//!
//! `kv = ["inventory"]`: `reserved/<product_id>` running totals (decimal, by
//! `increment`) and `order/<id>` markers holding each order's quantity; and
//! the subscription `queue = { topic = "orders.created", ... }`.

use nimbus_sdk::{
    Error, IntoResponse, Json, Request, RequestExt, Response, http_handler, kv, queue,
    queue_handler,
};
use serde::{Deserialize, Serialize};

/// The key-value store the manifest grants this function.
const STORE: &str = "inventory";

/// The fields of an `orders.created` message this function needs; the others
/// are ignored, so `orders` can add fields freely.
#[derive(Debug, Deserialize)]
struct OrderCreated {
    id: u64,
    product_id: u64,
    quantity: i64,
}

/// The answer of `GET /inventory/:product_id`.
#[derive(Debug, Serialize)]
struct Reserved {
    product_id: u64,
    reserved: i64,
}

#[queue_handler]
fn order_created(message: queue::Message) -> Result<(), Box<dyn std::error::Error>> {
    let order: OrderCreated = message.json()?;
    let store = kv::Store::open(STORE)?;
    let marker = format!("order/{}", order.id);
    if !store.compare_and_swap(&marker, None, order.quantity.to_string())? {
        nimbus_sdk::info!(
            "order {} is already in the ledger (delivery {} of message {})",
            order.id,
            message.attempt(),
            message.id()
        );
        return Ok(());
    }
    let reserved = match store.increment(&reserved_key(order.product_id), order.quantity) {
        Ok(reserved) => reserved,
        Err(err) => {
            // Release the claim so that the retry counts the order.
            if let Err(release) = store.delete(&marker) {
                nimbus_sdk::error!(
                    "order {}: cannot release its claim after a failed increment: {release}",
                    order.id
                );
            }
            return Err(err.into());
        }
    };
    nimbus_sdk::info!(
        "order {}: {} more of product {} reserved, {reserved} in all",
        order.id,
        order.quantity,
        order.product_id
    );
    Ok(())
}

#[http_handler]
fn handle(req: Request) -> Result<Response, Error> {
    let segments = req.path_segments();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let method = req.dispatch_method();
    match (method, segments.as_slice()) {
        ("GET", ["inventory", id]) => {
            let product_id =
                parse_id(id).ok_or_else(|| Error::not_found(format!("no product `{id}`")))?;
            let reserved = reserved(&kv::Store::open(STORE)?, product_id)?;
            Ok(Json(Reserved {
                product_id,
                reserved,
            })
            .into_response())
        }
        (_, ["inventory", _]) => Err(Error::method_not_allowed("GET")),
        _ => Err(Error::not_found(format!(
            "no inventory endpoint at `{}`",
            req.uri().path()
        ))),
    }
}

/// The reserved total of `product_id`; 0 if no order named it.
fn reserved(store: &kv::Store, product_id: u64) -> Result<i64, Error> {
    let Some(value) = store.get(&reserved_key(product_id))? else {
        return Ok(0);
    };
    String::from_utf8_lossy(&value).parse().map_err(|_| {
        Error::internal(format!(
            "the reserved total of product {product_id} is not a number"
        ))
    })
}

fn reserved_key(product_id: u64) -> String {
    format!("reserved/{product_id}")
}

/// A product id in canonical decimal form (`7`, not `07`).
fn parse_id(id: &str) -> Option<u64> {
    id.parse::<u64>()
        .ok()
        .filter(|parsed| parsed.to_string() == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_event_is_read_from_the_order_json() {
        let message = queue::Message::new(
            "orders.created",
            r#"{"id": 4, "user": "ada", "product_id": 2, "quantity": 3,
                "unit_price_cents": 450, "total_cents": 1350,
                "created_at": "2026-11-27T21:43:01Z"}"#,
        );
        let order: OrderCreated = message.json().unwrap();
        assert_eq!((order.id, order.product_id, order.quantity), (4, 2, 3));
        assert!(
            queue::Message::new("t", "{}")
                .json::<OrderCreated>()
                .is_err()
        );
    }

    #[test]
    fn product_ids_are_canonical() {
        assert_eq!(parse_id("12"), Some(12));
        assert_eq!(parse_id("012"), None);
        assert_eq!(parse_id("x"), None);
    }
}
