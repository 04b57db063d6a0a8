//! `orders`: the shop's orders, for logged-in users, written with `nimbus-sdk`.
//!
//! Every request needs `Authorization: Bearer <token>` with a token from
//! `users`. The Nimbus gateway checks it before this function runs (the
//! manifest's `auth = { require = "users", scopes = ["orders:write"] }`):
//! without one, or with a bad one, the caller gets a `401` with
//! `WWW-Authenticate: Bearer ...`; a token without the `orders:write` scope a
//! `403`. This function reads the verified claims (`RequestExt::claims`);
//! the user is the token's subject.
//!
//! | request | response |
//! |---|---|
//! | `POST /orders` `{"product_id", "quantity"}` | `201` the order, with `Location: /orders/:id`; `400` bad JSON or a quantity under 1; `404` no such product; `409` not enough stock |
//! | `GET /orders` | `200` JSON array of the caller's orders, by id |
//! | `GET /orders/:id` | `200` the order if the caller placed it; `404` otherwise |
//!
//! An order is `{"id", "user", "product_id", "quantity", "unit_price_cents",
//! "total_cents", "created_at"}`. Placing one reserves the stock from the
//! catalog first (`POST /products/:id/reserve`, called in-process with the same
//! request id), then stores the order at the price the catalog answered, then
//! publishes it as JSON to the topic `orders.created`, which `inventory` and
//! `notifier` handle asynchronously (see `events`).
//!
//! The event is published after the order is stored, and a failure to publish
//! does not fail the order: it is answered `201` all the same, and the event
//! waits in an outbox to be published with a later order. Only if the event
//! can be neither published nor kept is the answer a `500
//! event_not_published` (the order stands; the message says so).
//!
//! # What the manifest grants
//!
//! - `sqlite = ["orders"]`: see `store`;
//! - `services = ["catalog"]`: the stock reservation;
//! - `publish = ["orders.created"]`: the event.
//!
//! # Layout
//!
//! | module | what |
//! |---|---|
//! | `order` | the order, the body that places one, timestamps |
//! | `catalog` | the stock reservation, a service call |
//! | `events` | the `orders.created` event and its outbox |
//! | `store` | the orders, their outbox rows and the id sequence in SQLite |

mod catalog;
mod events;
mod order;
mod store;

use std::time::{SystemTime, UNIX_EPOCH};

use nimbus_sdk::auth::Claims;
use nimbus_sdk::http::{HeaderValue, header};
use nimbus_sdk::service::Client;
use nimbus_sdk::{
    Error, IntoResponse, Json, Request, RequestExt, Response, StatusCode, http_handler,
};

use crate::order::{NewOrder, Order};
use crate::store::Orders;

#[http_handler]
fn handle(req: Request) -> Result<Response, Error> {
    // The gateway verified the token; without claims the manifest lost its
    // `auth` rule, and refusing is the only safe answer.
    let claims = req
        .claims()
        .ok_or_else(|| Error::unauthorized("orders need a token verified by the gateway"))?;
    let user = User::from_claims(&claims)?;
    let now = unix_now()?;

    let segments = req.path_segments();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let method = req.dispatch_method();
    match (method, segments.as_slice()) {
        ("POST", ["orders"]) => place(&req, &user, now),
        ("GET", ["orders"]) => Ok(Json(Orders::open()?.of_user(&user.name)?).into_response()),
        ("GET", ["orders", id]) => Ok(Json(get(&user, id)?).into_response()),
        (_, ["orders"]) => Err(Error::method_not_allowed("GET, POST")),
        (_, ["orders", _]) => Err(Error::method_not_allowed("GET")),
        _ => Err(Error::not_found(format!(
            "no orders endpoint at `{}`",
            req.uri().path()
        ))),
    }
}

/// `POST /orders`: reserves the stock, stores the order, publishes its event.
fn place(req: &Request, user: &User, now: u64) -> Result<Response, Error> {
    let new = NewOrder::parse(req.body())?;
    let orders = Orders::open()?;
    let product = catalog::reserve(&Client::from_request(req), new.product_id, new.quantity)?;
    let total_cents = product
        .price_cents
        .checked_mul(new.quantity)
        .ok_or_else(|| Error::bad_request("the order's total is too large"))?;
    let order = Order {
        id: orders.next_id()?,
        user: user.name.clone(),
        product_id: new.product_id,
        quantity: new.quantity,
        unit_price_cents: product.price_cents,
        total_cents,
        created_at: order::rfc3339(now),
    };
    if let Err(err) = orders.insert(&order) {
        // The catalog has already given out the stock; nothing gives it back
        // yet, so say exactly what to fix.
        nimbus_sdk::error!(
            "order {} of {} x product {} for `{}` was reserved but not stored: {err}",
            order.id,
            order.quantity,
            order.product_id,
            order.user
        );
        return Err(err);
    }
    events::publish_created(&orders, &order)?;
    nimbus_sdk::info!(
        "order {} placed by `{}`: {} x product {}",
        order.id,
        order.user,
        order.quantity,
        order.product_id
    );
    let location = HeaderValue::try_from(format!("/orders/{}", order.id))
        .map_err(|err| Error::internal(format!("cannot make the Location header: {err}")))?;
    let mut response = (StatusCode::CREATED, Json(order)).into_response();
    response.headers_mut().insert(header::LOCATION, location);
    Ok(response)
}

/// `GET /orders/:id`: the order if `user` placed it, else a `404`.
fn get(user: &User, id: &str) -> Result<Order, Error> {
    let order = match parse_id(id) {
        Some(id) => Orders::open()?.get(&user.name, id)?,
        None => None,
    };
    order.ok_or_else(|| Error::not_found(format!("no order `{id}`")))
}

/// An order id in canonical decimal form (`7`, not `07`); anything else names
/// no order.
fn parse_id(id: &str) -> Option<u64> {
    id.parse::<u64>()
        .ok()
        .filter(|parsed| parsed.to_string() == id)
}

/// The caller: the subject of the verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The username, from the token's `sub`.
    pub name: String,
}

impl User {
    /// The user the claims name. Usernames are `[a-z0-9_]` (see `users`), and
    /// the order index relies on it, so anything else is refused.
    fn from_claims(claims: &Claims) -> Result<User, Error> {
        let name = claims.require_subject()?;
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(Error::forbidden(format!(
                "the token's subject `{name}` is not a shop username"
            )));
        }
        Ok(User {
            name: name.to_owned(),
        })
    }
}

/// Seconds since the Unix epoch, from the host's wall clock.
fn unix_now() -> Result<u64, Error> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_secs())
        .map_err(|_| Error::internal("the wall clock is before 1970"))
}
