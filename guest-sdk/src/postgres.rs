//! PostgreSQL databases: SQL with `$1` parameters, typed rows, transactions
//! (`spin:postgres/postgres@4.1.0`, Spin's interface, so the same calls work
//! on Spin).
//!
//! A function may use only the databases its manifest grants, each by a
//! name: `postgres = { orders = "{{ env.ORDERS_DATABASE_URL }}" }` under
//! `[functions.orders]` lets it call `Connection::open("orders")`. The host
//! keeps a pool of connections per grant; a connection is the function's
//! own until it is dropped. Each statement is bounded by the function's
//! `limits.sql_timeout` (past it the host cancels the statement on the
//! server), `limits.sql_rows` and `limits.sql_result_size`.
//!
//! ```no_run
//! use nimbus_sdk::{Error, Request, RequestExt, http_handler, postgres};
//!
//! #[http_handler]
//! fn order(req: Request) -> Result<String, Error> {
//!     let db = postgres::Connection::open("orders")?;
//!     let id: i64 = req.param("id").and_then(|id| id.parse().ok())
//!         .ok_or_else(|| Error::bad_request("the id is a number"))?;
//!     let rows = db.query("SELECT sku, total FROM orders WHERE id = $1", &[id.into()])?;
//!     let row = rows.iter().next().ok_or_else(|| Error::not_found(format!("no order {id}")))?;
//!     let sku: String = row.get("sku")?;
//!     let total: String = row.get("total")?; // a numeric, in base 10
//!     Ok(format!("{sku}: {total}\n"))
//! }
//! # fn main() {}
//! ```
//!
//! Errors are typed: [`Error::Db`] carries PostgreSQL's SQLSTATE code, with
//! helpers such as [`DbError::is_unique_violation`]; converted into
//! [`crate::Error`], a constraint violation is a `409 constraint_violation`.
//! A transaction left open when the connection is dropped, or when the
//! request ends, is rolled back by the host.

use std::fmt;

use crate::bindings::spin::postgres::postgres as wit;
use crate::rows::ColumnValue;
pub use crate::rows::FromValue;

/// The prefix of the host's message when the manifest does not grant the
/// database asked for (Spin's interface has no error case of its own for it).
const ACCESS_DENIED: &str = "access denied: ";

/// PostgreSQL's report of a failed statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbError {
    /// The SQLSTATE code: `23505` for a unique violation, `42601` for a
    /// syntax error, ...
    pub code: String,
    /// `ERROR`, `FATAL`, ...
    pub severity: String,
    /// The primary message.
    pub message: String,
    /// The detail, if any: `Key (email)=(a@example.com) already exists.`
    pub detail: Option<String>,
    /// The other fields PostgreSQL sent: `hint`, `constraint`, `table`,
    /// `column`, `schema`.
    pub extras: Vec<(String, String)>,
    /// All of it on one line.
    pub text: String,
}

impl DbError {
    fn extra(&self, key: &str) -> Option<&str> {
        self.extras
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The constraint that was violated, if the error names one.
    pub fn constraint(&self) -> Option<&str> {
        self.extra("constraint")
    }

    /// The table the error is about, if it names one.
    pub fn table(&self) -> Option<&str> {
        self.extra("table")
    }

    /// Any integrity constraint violation (SQLSTATE class 23).
    pub fn is_constraint_violation(&self) -> bool {
        self.code.starts_with("23")
    }

    /// A `UNIQUE` or primary key violation (23505).
    pub fn is_unique_violation(&self) -> bool {
        self.code == "23505"
    }

    /// A foreign key violation (23503).
    pub fn is_foreign_key_violation(&self) -> bool {
        self.code == "23503"
    }

    /// A `NOT NULL` violation (23502).
    pub fn is_not_null_violation(&self) -> bool {
        self.code == "23502"
    }

    /// A `CHECK` violation (23514).
    pub fn is_check_violation(&self) -> bool {
        self.code == "23514"
    }

    /// A syntax error (42601).
    pub fn is_syntax_error(&self) -> bool {
        self.code == "42601"
    }

    /// A serialization failure or deadlock (40001, 40P01): the transaction
    /// may succeed if run again.
    pub fn is_retryable(&self) -> bool {
        self.code == "40001" || self.code == "40P01"
    }
}

/// Why a PostgreSQL call failed.
///
/// Converts into [`crate::Error`] for `?` in handlers: `AccessDenied` is a
/// `403 access_denied`, `ConnectionFailed` a `503 database_unavailable`, a
/// constraint violation a `409 constraint_violation`, other statement
/// errors a `500 sql_error`, and `Column` or `ValueConversion` a
/// `500 internal`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The manifest's `postgres` does not grant the database.
    AccessDenied(String),
    /// No connection: the database is down or unreachable, refused the
    /// grant's credentials, every pooled connection stayed busy, or the
    /// connection was lost.
    ConnectionFailed(String),
    /// A parameter does not fit the statement (their count, or a type).
    BadParameter(String),
    /// PostgreSQL refused the statement.
    Db(Box<DbError>),
    /// The statement failed otherwise: it ran past `limits.sql_timeout`,
    /// or its result past `sql_rows` or `sql_result_size`.
    Query(String),
    /// A value of the result could not be read.
    ValueConversion(String),
    /// A row has no such column, or its value is not of the type asked for.
    Column(String),
    /// Anything else the host reported.
    Other(String),
}

impl Error {
    /// PostgreSQL's report, when it refused the statement.
    pub fn db(&self) -> Option<&DbError> {
        match self {
            Error::Db(db) => Some(&**db),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::AccessDenied(m) => write!(f, "{ACCESS_DENIED}{m}"),
            Error::ConnectionFailed(m) => write!(f, "PostgreSQL connection failed: {m}"),
            Error::BadParameter(m) => write!(f, "bad parameter: {m}"),
            Error::Db(db) => write!(f, "SQL error: {}", db.text),
            Error::Query(m) => write!(f, "SQL error: {m}"),
            Error::ValueConversion(m) | Error::Column(m) | Error::Other(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

impl From<wit::Error> for Error {
    fn from(e: wit::Error) -> Error {
        match e {
            wit::Error::ConnectionFailed(m) => match m.strip_prefix(ACCESS_DENIED) {
                Some(m) => Error::AccessDenied(m.to_owned()),
                None => Error::ConnectionFailed(m),
            },
            wit::Error::BadParameter(m) => Error::BadParameter(m),
            wit::Error::QueryFailed(wit::QueryError::Text(m)) => Error::Query(m),
            wit::Error::QueryFailed(wit::QueryError::DbError(db)) => Error::Db(Box::new(DbError {
                code: db.code,
                severity: db.severity,
                message: db.message,
                detail: db.detail,
                extras: db.extras,
                text: db.as_text,
            })),
            wit::Error::ValueConversionFailed(m) => Error::ValueConversion(m),
            wit::Error::Other(m) => Error::Other(m),
        }
    }
}

/// One side of a range: its value and whether it is inclusive; `None`
/// when unbounded.
pub type Bound<T> = Option<(T, bool)>;

/// A value in a statement's parameters or in a row.
///
/// ```
/// use nimbus_sdk::postgres::Value;
/// assert_eq!(Value::from(7i64), Value::Int64(7));
/// assert_eq!(Value::from("tea"), Value::Text("tea".into()));
/// assert_eq!(Value::from(None::<i32>), Value::Null);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `NULL`.
    Null,
    /// `boolean`.
    Bool(bool),
    /// `"char"`.
    Int8(i8),
    /// `smallint`.
    Int16(i16),
    /// `integer`.
    Int32(i32),
    /// `bigint`.
    Int64(i64),
    /// `real`.
    Float32(f32),
    /// `double precision`.
    Float64(f64),
    /// `text`, `varchar`, `char(n)`, an enum's label.
    Text(String),
    /// `bytea`.
    Binary(Vec<u8>),
    /// `date`: year, month, day.
    Date(i32, u8, u8),
    /// `time`: hour, minute, second, nanosecond.
    Time(u8, u8, u8, u32),
    /// `timestamp` or `timestamptz` (in UTC): year, month, day, hour,
    /// minute, second, nanosecond.
    DateTime(i32, u8, u8, u8, u8, u8, u32),
    /// Seconds since the Unix epoch, for a `timestamp` parameter.
    Timestamp(i64),
    /// `uuid`, as text.
    Uuid(String),
    /// `jsonb` or `json`: the JSON text.
    Json(Vec<u8>),
    /// `numeric`, in base 10: `"12.50"`.
    Decimal(String),
    /// `int4range`.
    RangeInt32(Bound<i32>, Bound<i32>),
    /// `int8range`.
    RangeInt64(Bound<i64>, Bound<i64>),
    /// `numrange`.
    RangeDecimal(Bound<String>, Bound<String>),
    /// `integer[]`.
    ArrayInt32(Vec<Option<i32>>),
    /// `bigint[]`.
    ArrayInt64(Vec<Option<i64>>),
    /// `numeric[]`.
    ArrayDecimal(Vec<Option<String>>),
    /// `text[]`.
    ArrayText(Vec<Option<String>>),
    /// `interval`.
    Interval {
        /// Microseconds.
        micros: i64,
        /// Days.
        days: i32,
        /// Months.
        months: i32,
    },
    /// A column of a type with no value here: PostgreSQL's binary form.
    Unsupported(Vec<u8>),
}

macro_rules! values_from {
    ($($t:ty => $variant:ident),* $(,)?) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Value {
                Value::$variant(v.into())
            }
        }
    )*};
}
values_from!(
    bool => Bool, i8 => Int8, i16 => Int16, i32 => Int32, i64 => Int64, f32 => Float32,
    f64 => Float64, String => Text, &str => Text, Vec<u8> => Binary,
);

impl From<serde_json::Value> for Value {
    fn from(v: serde_json::Value) -> Value {
        Value::Json(v.to_string().into_bytes())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

impl From<Value> for wit::ParameterValue {
    fn from(v: Value) -> wit::ParameterValue {
        use wit::ParameterValue as P;
        match v {
            // `params` refuses an unsupported value before it gets here.
            Value::Null | Value::Unsupported(_) => P::DbNull,
            Value::Bool(v) => P::Boolean(v),
            Value::Int8(v) => P::Int8(v),
            Value::Int16(v) => P::Int16(v),
            Value::Int32(v) => P::Int32(v),
            Value::Int64(v) => P::Int64(v),
            Value::Float32(v) => P::Floating32(v),
            Value::Float64(v) => P::Floating64(v),
            Value::Text(v) => P::Str(v),
            Value::Binary(v) => P::Binary(v),
            Value::Date(y, m, d) => P::Date((y, m, d)),
            Value::Time(h, m, s, ns) => P::Time((h, m, s, ns)),
            Value::DateTime(y, mo, d, h, mi, s, ns) => P::Datetime((y, mo, d, h, mi, s, ns)),
            Value::Timestamp(v) => P::Timestamp(v),
            Value::Uuid(v) => P::Uuid(v),
            Value::Json(v) => P::Jsonb(v),
            Value::Decimal(v) => P::Decimal(v),
            Value::RangeInt32(lo, hi) => P::RangeInt32((to_wit(lo), to_wit(hi))),
            Value::RangeInt64(lo, hi) => P::RangeInt64((to_wit(lo), to_wit(hi))),
            Value::RangeDecimal(lo, hi) => P::RangeDecimal((to_wit(lo), to_wit(hi))),
            Value::ArrayInt32(v) => P::ArrayInt32(v),
            Value::ArrayInt64(v) => P::ArrayInt64(v),
            Value::ArrayDecimal(v) => P::ArrayDecimal(v),
            Value::ArrayText(v) => P::ArrayStr(v),
            Value::Interval {
                micros,
                days,
                months,
            } => P::Interval(wit::Interval {
                micros,
                days,
                months,
            }),
        }
    }
}

fn to_wit<T>(b: Bound<T>) -> Option<(T, wit::RangeBoundKind)> {
    b.map(|(v, inclusive)| {
        let kind = if inclusive {
            wit::RangeBoundKind::Inclusive
        } else {
            wit::RangeBoundKind::Exclusive
        };
        (v, kind)
    })
}

fn from_wit<T>(b: Option<(T, wit::RangeBoundKind)>) -> Bound<T> {
    b.map(|(v, kind)| (v, kind == wit::RangeBoundKind::Inclusive))
}

impl From<wit::DbValue> for Value {
    fn from(v: wit::DbValue) -> Value {
        use wit::DbValue as V;
        match v {
            V::DbNull => Value::Null,
            V::Boolean(v) => Value::Bool(v),
            V::Int8(v) => Value::Int8(v),
            V::Int16(v) => Value::Int16(v),
            V::Int32(v) => Value::Int32(v),
            V::Int64(v) => Value::Int64(v),
            V::Floating32(v) => Value::Float32(v),
            V::Floating64(v) => Value::Float64(v),
            V::Str(v) => Value::Text(v),
            V::Binary(v) => Value::Binary(v),
            V::Date((y, m, d)) => Value::Date(y, m, d),
            V::Time((h, m, s, ns)) => Value::Time(h, m, s, ns),
            V::Datetime((y, mo, d, h, mi, s, ns)) => Value::DateTime(y, mo, d, h, mi, s, ns),
            V::Timestamp(v) => Value::Timestamp(v),
            V::Uuid(v) => Value::Uuid(v),
            V::Jsonb(v) => Value::Json(v),
            V::Decimal(v) => Value::Decimal(v),
            V::RangeInt32((lo, hi)) => Value::RangeInt32(from_wit(lo), from_wit(hi)),
            V::RangeInt64((lo, hi)) => Value::RangeInt64(from_wit(lo), from_wit(hi)),
            V::RangeDecimal((lo, hi)) => Value::RangeDecimal(from_wit(lo), from_wit(hi)),
            V::ArrayInt32(v) => Value::ArrayInt32(v),
            V::ArrayInt64(v) => Value::ArrayInt64(v),
            V::ArrayDecimal(v) => Value::ArrayDecimal(v),
            V::ArrayStr(v) => Value::ArrayText(v),
            V::Interval(i) => Value::Interval {
                micros: i.micros,
                days: i.days,
                months: i.months,
            },
            V::Unsupported(v) => Value::Unsupported(v),
        }
    }
}

impl ColumnValue for Value {
    type Error = Error;
    fn column_error(message: String) -> Error {
        Error::Column(message)
    }
}

impl FromValue<Value> for i64 {
    /// Any integer column.
    fn from_value(value: &Value) -> Option<i64> {
        match value {
            Value::Int8(i) => Some((*i).into()),
            Value::Int16(i) => Some((*i).into()),
            Value::Int32(i) => Some((*i).into()),
            Value::Int64(i) => Some(*i),
            _ => None,
        }
    }
}

crate::rows::narrow_integers!(Value: i32, u32, u64, i16, u16, usize);

impl FromValue<Value> for f64 {
    /// `double precision` or `real`.
    fn from_value(value: &Value) -> Option<f64> {
        match value {
            Value::Float64(f) => Some(*f),
            Value::Float32(f) => Some((*f).into()),
            _ => None,
        }
    }
}

impl FromValue<Value> for f32 {
    fn from_value(value: &Value) -> Option<f32> {
        match value {
            Value::Float32(f) => Some(*f),
            _ => None,
        }
    }
}

impl FromValue<Value> for bool {
    fn from_value(value: &Value) -> Option<bool> {
        match value {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }
}

impl FromValue<Value> for String {
    /// Text, and the values the interface carries as text: `uuid` and
    /// `numeric`.
    fn from_value(value: &Value) -> Option<String> {
        match value {
            Value::Text(s) | Value::Uuid(s) | Value::Decimal(s) => Some(s.clone()),
            _ => None,
        }
    }
}

impl FromValue<Value> for Vec<u8> {
    /// `bytea`, or the text of a `jsonb`.
    fn from_value(value: &Value) -> Option<Vec<u8>> {
        match value {
            Value::Binary(b) | Value::Json(b) => Some(b.clone()),
            _ => None,
        }
    }
}

impl FromValue<Value> for serde_json::Value {
    /// A `jsonb` or `json` column, parsed.
    fn from_value(value: &Value) -> Option<serde_json::Value> {
        match value {
            Value::Json(b) => serde_json::from_slice(b).ok(),
            _ => None,
        }
    }
}

impl FromValue<Value> for Value {
    fn from_value(value: &Value) -> Option<Value> {
        Some(value.clone())
    }
}

impl<T: FromValue<Value>> FromValue<Value> for Option<T> {
    /// `NULL` is `None`; anything else must convert to `T`.
    fn from_value(value: &Value) -> Option<Option<T>> {
        match value {
            Value::Null => Some(None),
            other => T::from_value(other).map(Some),
        }
    }
}

/// A statement's result: its column names and rows.
pub type Rows = crate::rows::Rows<Value>;

/// One row of [`Rows`].
pub type Row<'a> = crate::rows::Row<'a, Value>;

/// An open connection to one of the function's PostgreSQL databases.
pub struct Connection {
    name: String,
    conn: wit::Connection,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("database", &self.name)
            .finish()
    }
}

/// The parameters for the host; a value read back as `Unsupported` cannot
/// be sent (its type is not known here).
fn params(params: &[Value]) -> Result<Vec<wit::ParameterValue>, Error> {
    params
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::Unsupported(_) => Err(Error::BadParameter(format!(
                "parameter ${} is a value of a type this interface has no value for; select it as text (`column::text`) to send it back",
                i + 1
            ))),
            v => Ok(v.clone().into()),
        })
        .collect()
}

impl Connection {
    /// Opens the database granted as `name`: a connection from its pool,
    /// the function's own until dropped.
    pub fn open(name: &str) -> Result<Connection, Error> {
        Ok(Connection {
            name: name.to_owned(),
            conn: wit::Connection::open(name)?,
        })
    }

    /// Runs one statement with `params` bound to `$1`, `$2`, ... and
    /// returns its rows.
    pub fn query(&self, sql: &str, params: &[Value]) -> Result<Rows, Error> {
        let set = self.conn.query(sql, &self::params(params)?)?;
        Ok(Rows::new(
            set.columns.into_iter().map(|c| c.name).collect(),
            set.rows
                .into_iter()
                .map(|row| row.into_iter().map(Value::from).collect())
                .collect(),
        ))
    }

    /// Runs one statement with `params` bound to `$1`, `$2`, ... and
    /// returns how many rows it inserted, changed or deleted.
    pub fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, Error> {
        Ok(self.conn.execute(sql, &self::params(params)?)?)
    }

    /// Runs `work` in a transaction: committed when it returns `Ok`,
    /// rolled back when it returns `Err` (and by the host if the request
    /// ends first).
    ///
    /// ```no_run
    /// use nimbus_sdk::postgres::{Connection, Error};
    ///
    /// let db = Connection::open("orders")?;
    /// db.transaction(|tx| {
    ///     tx.execute("UPDATE stock SET count = count - 1 WHERE sku = $1", &["tea".into()])?;
    ///     tx.execute("INSERT INTO orders (sku) VALUES ($1)", &["tea".into()])?;
    ///     Ok::<_, Error>(())
    /// })?;
    /// # Ok::<(), Error>(())
    /// ```
    pub fn transaction<T, E: From<Error>>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        self.execute("BEGIN", &[])?;
        match work(self) {
            Ok(value) => match self.execute("COMMIT", &[]) {
                Ok(_) => Ok(value),
                Err(e) => {
                    let _ = self.execute("ROLLBACK", &[]);
                    Err(e.into())
                }
            },
            Err(e) => {
                // A failed rollback leaves the transaction open; the host
                // rolls it back when the connection ends.
                let _ = self.execute("ROLLBACK", &[]);
                Err(e)
            }
        }
    }
}
