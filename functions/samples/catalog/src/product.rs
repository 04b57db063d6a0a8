//! Products, the bodies callers send, and the rules those bodies must meet.

use nimbus_sdk::Error;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The longest product name, in characters: enough for any real product,
/// short enough to keep a listing of many products small.
const NAME_MAX_CHARS: usize = 200;

/// A product, as stored and as answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    pub id: u64,
    pub name: String,
    pub price_cents: i64,
    pub stock: i64,
}

/// The body of `POST /products` and `PUT /products/:id`: a product without
/// its id, which the catalog assigns.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductInput {
    pub name: String,
    pub price_cents: i64,
    pub stock: i64,
}

/// The body of `POST /products/:id/reserve`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reservation {
    pub quantity: i64,
}

/// A request body with rules beyond its JSON shape.
pub trait Body: DeserializeOwned {
    /// A `400` naming the first field that breaks a rule.
    fn check(&self) -> Result<(), Error>;
}

impl Body for ProductInput {
    fn check(&self) -> Result<(), Error> {
        if self.name.trim().is_empty() {
            return Err(Error::bad_request("`name` must not be empty"));
        }
        if self.name.chars().count() > NAME_MAX_CHARS {
            return Err(Error::bad_request(format!(
                "`name` must be at most {NAME_MAX_CHARS} characters"
            )));
        }
        if self.price_cents < 0 {
            return Err(Error::bad_request(format!(
                "`price_cents` must not be negative, got {}",
                self.price_cents
            )));
        }
        if self.stock < 0 {
            return Err(Error::bad_request(format!(
                "`stock` must not be negative, got {}",
                self.stock
            )));
        }
        Ok(())
    }
}

impl Body for Reservation {
    fn check(&self) -> Result<(), Error> {
        if self.quantity < 1 {
            return Err(Error::bad_request(format!(
                "`quantity` must be at least 1, got {}",
                self.quantity
            )));
        }
        Ok(())
    }
}

/// Parses and checks a JSON body. Every error is a `400` that names the field
/// where it can: `price_cents: invalid type: string "9", expected i64`,
/// `missing field `stock``, `unknown field `colour``.
pub fn parse<T: Body>(body: &[u8]) -> Result<T, Error> {
    let mut json = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut json).map_err(invalid_json)?;
    // Like `serde_json::from_slice`: nothing but whitespace may follow.
    json.end().map_err(invalid_json)?;
    value.check()?;
    Ok(value)
}

fn invalid_json(err: impl std::fmt::Display) -> Error {
    Error::bad_request(format!("invalid JSON body: {err}"))
}

/// The id in a path, or a `404`: only the canonical decimal form of an id
/// names a product (`7`, not `07` or `+7`).
pub fn parse_id(id: &str) -> Result<u64, Error> {
    id.parse::<u64>()
        .ok()
        .filter(|parsed| parsed.to_string() == id)
        .ok_or_else(|| Error::not_found(format!("no product `{id}`")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input_error(body: &str) -> String {
        let error = parse::<ProductInput>(body.as_bytes()).unwrap_err();
        assert_eq!(error.status(), 400, "{body}: {error}");
        error.message().to_owned()
    }

    #[test]
    fn a_valid_product_parses() {
        let input: ProductInput =
            parse(br#"{"name": "Tea", "price_cents": 450, "stock": 0}"#).unwrap();
        assert_eq!(
            (input.name.as_str(), input.price_cents, input.stock),
            ("Tea", 450, 0)
        );
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (r#"{"name": " ", "price_cents": 1, "stock": 1}"#, "`name`"),
            (
                r#"{"name": "Tea", "price_cents": -1, "stock": 1}"#,
                "`price_cents`",
            ),
            (r#"{"name": "Tea", "stock": 1}"#, "`price_cents`"),
            (
                r#"{"name": "Tea", "price_cents": null, "stock": 1}"#,
                "price_cents",
            ),
            (
                r#"{"name": "Tea", "price_cents": "9", "stock": 1}"#,
                "price_cents",
            ),
            (
                r#"{"name": "Tea", "price_cents": 1.5, "stock": 1}"#,
                "price_cents",
            ),
            (
                r#"{"name": "Tea", "price_cents": 1, "stock": -2}"#,
                "`stock`",
            ),
            (r#"{"name": "Tea", "price_cents": 1}"#, "`stock`"),
            (
                r#"{"name": "Tea", "price_cents": 1, "stock": 1, "id": 4}"#,
                "`id`",
            ),
        ];
        for (body, field) in cases {
            let message = input_error(body);
            assert!(message.contains(field), "{body}: {message}");
        }
        let long = format!(
            r#"{{"name": "{}", "price_cents": 1, "stock": 1}}"#,
            "x".repeat(201)
        );
        assert!(input_error(&long).contains("`name`"));
        for bad_json in [
            "",
            "{",
            "[]",
            r#"{"name": "Tea", "price_cents": 1, "stock": 1} x"#,
        ] {
            input_error(bad_json);
        }
    }

    #[test]
    fn reservations_need_a_positive_quantity() {
        assert_eq!(
            parse::<Reservation>(br#"{"quantity": 2}"#)
                .unwrap()
                .quantity,
            2
        );
        for body in [r#"{"quantity": 0}"#, r#"{"quantity": -1}"#, "{}"] {
            let error = parse::<Reservation>(body.as_bytes()).unwrap_err();
            assert!(error.message().contains("quantity"), "{error}");
        }
    }

    #[test]
    fn only_canonical_ids_name_products() {
        assert_eq!(parse_id("7").unwrap(), 7);
        for bad in ["07", "+7", "-7", "abc", "", "99999999999999999999"] {
            assert_eq!(parse_id(bad).unwrap_err().status(), 404, "{bad}");
        }
    }
}
