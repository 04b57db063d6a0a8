//! `catalog`: the shop's products and their stock, written with `nimbus-sdk`.
//!
//! | request | response |
//! |---|---|
//! | `GET /products` | `200` JSON array of every product, by id |
//! | `GET /products/:id` | `200` the product; `404` |
//! | `POST /products` `{"name", "price_cents", "stock"}` | `201` the product with its new `id`, and `Location: /products/:id`; `400` |
//! | `PUT /products/:id` `{"name", "price_cents", "stock"}` | `200` the product as replaced; `400`; `404` |
//! | `DELETE /products/:id` | `204`; `404` |
//! | `POST /products/:id/reserve` `{"quantity"}` | `200` the product with its stock decreased; `400` a quantity under 1; `404`; `409 out_of_stock` |
//!
//! A product is `{"id", "name", "price_cents", "stock"}`. A body with a
//! missing, mistyped or invalid field (an empty name, a negative price or
//! stock), an unknown field or bad JSON is a `400` whose message names the
//! field. An id that is not a product's (`abc`, `007`, a deleted one) is a
//! `404`. `HEAD` is answered as `GET`.
//!
//! `reserve` is what `orders` calls for each order; it takes the stock with
//! one conditional `UPDATE` in a transaction, so concurrent reservations
//! never sell the same unit twice.
//!
//! Reads are public. Writes (`POST`, `PUT`, `DELETE`, `reserve`) need a token
//! with the `admin` role: the manifest says so per route and the Nimbus
//! gateway enforces it (`401` without a valid token, `403` without the role)
//! before this code runs. `orders` reaches `reserve` by an in-process service
//! call, which the gateway does not stand in front of.
//!
//! # What the manifest grants
//!
//! `sqlite = ["catalog"]`: the table `products`, made by the migrations in
//! `examples/shop/sql/catalog/`.
//!
//! # Layout
//!
//! | module | what |
//! |---|---|
//! | `product` | the product, the bodies callers send, and their rules |
//! | `store` | the products in SQLite, and the reservation in a transaction |

mod product;
mod store;

use nimbus_sdk::http::{HeaderValue, header};
use nimbus_sdk::{
    Error, IntoResponse, Json, Request, RequestExt, Response, StatusCode, http_handler,
};

use crate::product::{ProductInput, Reservation};
use crate::store::Products;

#[http_handler]
fn handle(req: Request) -> Result<Response, Error> {
    let segments = req.path_segments();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let method = req.dispatch_method();
    let products = Products::open()?;
    match (method, segments.as_slice()) {
        ("GET", ["products"]) => Ok(Json(products.list()?).into_response()),
        ("POST", ["products"]) => create(&products, &req),
        ("GET", ["products", id]) => Ok(Json(products.get(id)?).into_response()),
        ("PUT", ["products", id]) => {
            let input: ProductInput = product::parse(req.body())?;
            Ok(Json(products.replace(id, input)?).into_response())
        }
        ("DELETE", ["products", id]) => {
            products.delete(id)?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        ("POST", ["products", id, "reserve"]) => {
            let reservation: Reservation = product::parse(req.body())?;
            let quantity = reservation.quantity;
            let product = products.reserve(id, reservation)?;
            nimbus_sdk::info!(
                "reserved {quantity} of product {}; {} left",
                product.id,
                product.stock
            );
            Ok(Json(product).into_response())
        }
        (_, ["products"]) => Err(Error::method_not_allowed("GET, POST")),
        (_, ["products", _]) => Err(Error::method_not_allowed("GET, PUT, DELETE")),
        (_, ["products", _, "reserve"]) => Err(Error::method_not_allowed("POST")),
        _ => Err(Error::not_found(format!(
            "no catalog endpoint at `{}`",
            req.uri().path()
        ))),
    }
}

/// `POST /products`: `201` with the new product and its `Location`.
fn create(products: &Products, req: &Request) -> Result<Response, Error> {
    let input: ProductInput = product::parse(req.body())?;
    let product = products.create(input)?;
    let location = HeaderValue::try_from(format!("/products/{}", product.id))
        .map_err(|err| Error::internal(format!("cannot make the Location header: {err}")))?;
    let mut response = (StatusCode::CREATED, Json(product)).into_response();
    response.headers_mut().insert(header::LOCATION, location);
    Ok(response)
}
