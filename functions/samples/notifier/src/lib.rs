//! `notifier`: order confirmations, "sent" asynchronously for each
//! `orders.created` message `orders` publishes; written with `nimbus-sdk`.
//!
//! | trigger | what happens |
//! |---|---|
//! | a message on `orders.created` (the order as JSON) | records a notification for the order's user; fails with `mailbox unavailable for <user>` for the user `bounce` |
//! | `GET /notifications?user=<name>` | `200` JSON array of the user's notifications, by order id; `400` without a valid `user` |
//!
//! A notification is `{"order_id", "user", "text"}`. There is no mail server:
//! recording it under `notification/<user>/<order_id>` stands for sending it.
//! Setting that key again to the same value is harmless, so a second delivery
//! of one order changes nothing: the handler is idempotent without a marker.
//!
//! The user `bounce` has a mailbox that never accepts mail, to show what
//! becomes of a message that always fails: the host retries it with backoff
//! until the subscription's `max_attempts`, then keeps it as a dead letter
//! with the error text. The order itself was placed long before, unaffected.
//!
//! # What the manifest grants
//!
//! `kv = ["notifications"]` and the subscription
//! `queue = { topic = "orders.created", ... }`.

use nimbus_sdk::{
    Error, IntoResponse, Json, Request, RequestExt, Response, http_handler, kv, queue,
    queue_handler,
};
use serde::{Deserialize, Serialize};

/// The key-value store the manifest grants this function.
const STORE: &str = "notifications";
/// The user whose mailbox always refuses mail.
const BOUNCING_USER: &str = "bounce";

/// The fields of an `orders.created` message this function needs.
#[derive(Debug, Deserialize)]
struct OrderCreated {
    id: u64,
    user: String,
    product_id: u64,
    quantity: i64,
    total_cents: i64,
}

/// A notification, as stored and as answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Notification {
    order_id: u64,
    user: String,
    text: String,
}

impl Notification {
    fn for_order(order: &OrderCreated) -> Notification {
        let total = order.total_cents.unsigned_abs();
        let sign = if order.total_cents < 0 { "-" } else { "" };
        Notification {
            order_id: order.id,
            user: order.user.clone(),
            text: format!(
                "Thank you for your order {}: {} x product {}, {sign}{}.{:02} in total.",
                order.id,
                order.quantity,
                order.product_id,
                total / 100,
                total % 100
            ),
        }
    }
}

#[queue_handler]
fn order_created(message: queue::Message) -> Result<(), String> {
    let order: OrderCreated = message
        .json()
        .map_err(|err| format!("not an order: {err}"))?;
    if !is_username(&order.user) {
        return Err(format!(
            "order {}: `{}` is not a username",
            order.id, order.user
        ));
    }
    if order.user == BOUNCING_USER {
        return Err(format!("mailbox unavailable for {}", order.user));
    }
    let notification = Notification::for_order(&order);
    kv::Store::open(STORE)
        .and_then(|store| store.set_json(&notification_key(&order.user, order.id), &notification))
        .map_err(|err| err.to_string())?;
    nimbus_sdk::info!("notified `{}` of order {}", order.user, order.id);
    Ok(())
}

#[http_handler]
fn handle(req: Request) -> Result<Response, Error> {
    // The host routes HEAD to GET routes and drops the body of the answer.
    let method = match req.method().as_str() {
        "HEAD" => "GET",
        method => method,
    };
    match (method, req.uri().path().trim_end_matches('/')) {
        ("GET", "/notifications") => {
            let user = req
                .query("user")
                .ok_or_else(|| Error::bad_request("say whose notifications: `?user=<name>`"))?;
            if !is_username(&user) {
                return Err(Error::bad_request(format!("`{user}` is not a username")));
            }
            Ok(Json(of_user(&kv::Store::open(STORE)?, &user)?).into_response())
        }
        (_, "/notifications") => Err(Error::method_not_allowed("GET")),
        (_, path) => Err(Error::not_found(format!(
            "no notifications endpoint at `{path}`"
        ))),
    }
}

/// Every notification of `user`, by order id.
fn of_user(store: &kv::Store, user: &str) -> Result<Vec<Notification>, Error> {
    let mut notifications = Vec::new();
    for key in store.keys_with_prefix(&notification_key(user, ""))? {
        if let Some(notification) = store.get_json::<Notification>(&key)? {
            notifications.push(notification);
        }
    }
    // Keys sort as text (`/10` before `/2`); ids as numbers.
    notifications.sort_by_key(|notification| notification.order_id);
    Ok(notifications)
}

/// `notification/<user>/<order_id>`; with an empty id, the prefix of all of
/// `user`'s. Usernames are `[a-z0-9_]`, so one user's prefix never covers
/// another's.
fn notification_key(user: &str, order_id: impl std::fmt::Display) -> String {
    format!("notification/{user}/{order_id}")
}

/// Usernames as `users` allows them (`^[a-z0-9_]{3,32}$`): they become part of
/// store keys here.
fn is_username(name: &str) -> bool {
    (3..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(user: &str) -> queue::Message {
        queue::Message::new(
            "orders.created",
            serde_json::json!({
                "id": 12, "user": user, "product_id": 3, "quantity": 2,
                "unit_price_cents": 450, "total_cents": 905,
                "created_at": "2026-11-27T21:43:01Z",
            })
            .to_string(),
        )
    }

    #[test]
    fn the_text_names_the_order_and_its_total() {
        let order: OrderCreated = order("ada").json().unwrap();
        let notification = Notification::for_order(&order);
        assert_eq!(notification.order_id, 12);
        assert_eq!(
            notification.text,
            "Thank you for your order 12: 2 x product 3, 9.05 in total."
        );
    }

    #[test]
    fn the_bouncing_user_and_bad_messages_fail_before_any_store() {
        // Both fail before touching the store, so they run natively.
        assert_eq!(
            order_created(order("bounce")),
            Err("mailbox unavailable for bounce".to_owned())
        );
        assert!(
            order_created(order("../x"))
                .unwrap_err()
                .contains("not a username")
        );
        let junk = queue::Message::new("orders.created", "{");
        assert!(order_created(junk).unwrap_err().starts_with("not an order"));
    }
}
