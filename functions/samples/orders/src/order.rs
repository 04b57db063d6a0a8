//! Orders, and the body that places one.

use nimbus_sdk::Error;
use serde::{Deserialize, Serialize};

/// An order, as stored and as answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub id: u64,
    /// The username of whoever placed it.
    pub user: String,
    pub product_id: u64,
    pub quantity: i64,
    /// The product's price when the order was placed.
    pub unit_price_cents: i64,
    pub total_cents: i64,
    /// RFC 3339, UTC, whole seconds: `2025-01-31T12:00:00Z`.
    pub created_at: String,
}

/// The body of `POST /orders`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    pub product_id: u64,
    pub quantity: i64,
}

impl NewOrder {
    /// Parses and checks a body. Every error is a `400` that names the field
    /// where it can (`quantity: invalid type: string "2", expected i64`).
    pub fn parse(body: &[u8]) -> Result<NewOrder, Error> {
        let mut json = serde_json::Deserializer::from_slice(body);
        let order: NewOrder = serde_path_to_error::deserialize(&mut json).map_err(invalid_json)?;
        // Like `serde_json::from_slice`: nothing but whitespace may follow.
        json.end().map_err(invalid_json)?;
        if order.quantity < 1 {
            return Err(Error::bad_request(format!(
                "`quantity` must be at least 1, got {}",
                order.quantity
            )));
        }
        Ok(order)
    }
}

fn invalid_json(err: impl std::fmt::Display) -> Error {
    Error::bad_request(format!("invalid JSON body: {err}"))
}

/// `secs` since the Unix epoch as RFC 3339 in UTC (`1970-01-01T00:00:00Z`).
pub fn rfc3339(secs: u64) -> String {
    const SECS_PER_DAY: u64 = 86_400;
    let (days, rest) = (secs / SECS_PER_DAY, secs % SECS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01: Howard Hinnant's
/// `civil_from_days`, for days on or after the epoch.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Counted from 0000-03-01, so that a leap day ends each 4-year cycle.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153; // March is 0
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(rfc3339(4_102_444_800), "2100-01-01T00:00:00Z");
    }

    #[test]
    fn new_orders_are_checked() {
        let order = NewOrder::parse(br#"{"product_id": 3, "quantity": 2}"#).unwrap();
        assert_eq!((order.product_id, order.quantity), (3, 2));
        let cases = [
            (r#"{"product_id": 3, "quantity": 0}"#, "`quantity`"),
            (r#"{"product_id": 3}"#, "`quantity`"),
            (r#"{"product_id": "3", "quantity": 1}"#, "product_id"),
            (r#"{"product_id": -3, "quantity": 1}"#, "product_id"),
            (r#"{"product_id": 3, "quantity": 1, "price": 0}"#, "`price`"),
            ("not json", "invalid JSON"),
        ];
        for (body, field) in cases {
            let error = NewOrder::parse(body.as_bytes()).unwrap_err();
            assert_eq!(error.status(), 400);
            assert!(error.message().contains(field), "{body}: {error}");
        }
    }
}
