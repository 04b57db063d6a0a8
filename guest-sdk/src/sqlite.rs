//! SQLite databases: SQL with parameters, typed rows, transactions
//! (`spin:sqlite/sqlite@3.0.0`, Spin's interface, so the same calls work on
//! Spin).
//!
//! A function may open only the databases its manifest grants, e.g.
//! `sqlite = ["default"]` under `[functions.catalog]`; opening any other is
//! [`Error::AccessDenied`]. A database belongs to the app: every function of
//! the app that lists it sees the same tables. Its schema comes from the
//! migrations named under `[sqlite.<name>]`, applied once when the app
//! starts. Each statement is bounded by the function's `limits.sql_timeout`,
//! `limits.sql_rows` and `limits.sql_result_size`.
//!
//! ```no_run
//! use nimbus_sdk::{Error, Request, RequestExt, http_handler, sqlite};
//!
//! #[http_handler]
//! fn product(req: Request) -> Result<String, Error> {
//!     let db = sqlite::Connection::open("default")?;
//!     let id: i64 = req.param("id").and_then(|id| id.parse().ok())
//!         .ok_or_else(|| Error::bad_request("the id is a number"))?;
//!     let rows = db.execute("SELECT name, price FROM products WHERE id = ?", &[id.into()])?;
//!     let row = rows.iter().next().ok_or_else(|| Error::not_found(format!("no product {id}")))?;
//!     let name: String = row.get("name")?;
//!     let price: f64 = row.get("price")?;
//!     Ok(format!("{name}: {price:.2}\n"))
//! }
//! # fn main() {}
//! ```
//!
//! A transaction begun on a connection is rolled back by the host if the
//! request ends before it commits; [`Connection::transaction`] commits when
//! its closure returns `Ok` and rolls back when it returns `Err`.

use std::fmt;

use crate::bindings::spin::sqlite::sqlite as wit;

/// Why a SQLite call failed.
///
/// Converts into [`crate::Error`] for `?` in handlers: `AccessDenied` is a
/// `403 access_denied`, `NoSuchDatabase` a `404 no_such_database`, `Column`
/// a `500 internal`, `DatabaseFull` a `507 database_full`, and a statement's
/// error (`Sql`) a `500 sql_error` with SQLite's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The host knows no database of that name.
    NoSuchDatabase,
    /// The manifest's `sqlite` does not grant the database.
    AccessDenied,
    /// The connection is no longer valid.
    InvalidConnection,
    /// The database reached its `max_size`.
    DatabaseFull,
    /// The statement failed: SQL, a constraint, a limit; SQLite's or the
    /// host's message.
    Sql(String),
    /// A row has no such column, or its value is not of the type asked for.
    Column(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoSuchDatabase => f.write_str("no such SQLite database"),
            Error::AccessDenied => f.write_str(
                "access to the SQLite database is denied (the manifest's `sqlite` does not grant it)",
            ),
            Error::InvalidConnection => f.write_str("the SQLite connection is no longer valid"),
            Error::DatabaseFull => f.write_str("the SQLite database is full (its `max_size`)"),
            Error::Sql(message) => write!(f, "SQL error: {message}"),
            Error::Column(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for Error {}

impl From<wit::Error> for Error {
    fn from(e: wit::Error) -> Error {
        match e {
            wit::Error::NoSuchDatabase => Error::NoSuchDatabase,
            wit::Error::AccessDenied => Error::AccessDenied,
            wit::Error::InvalidConnection => Error::InvalidConnection,
            wit::Error::DatabaseFull => Error::DatabaseFull,
            wit::Error::Io(message) => Error::Sql(message),
        }
    }
}

/// A value in a statement's parameters or in a row.
///
/// ```
/// use nimbus_sdk::sqlite::Value;
/// assert_eq!(Value::from(7), Value::Integer(7));
/// assert_eq!(Value::from("tea"), Value::Text("tea".into()));
/// assert_eq!(Value::from(None::<i64>), Value::Null);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `NULL`.
    Null,
    /// A 64-bit integer.
    Integer(i64),
    /// A 64-bit float.
    Real(f64),
    /// UTF-8 text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

macro_rules! integer_values {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Value {
                Value::Integer(v.into())
            }
        }
    )*};
}
integer_values!(i64, i32, u32, i16, u16, i8, u8, bool);

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Real(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Value {
        Value::Blob(v)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

impl From<Value> for wit::Value {
    fn from(v: Value) -> wit::Value {
        match v {
            Value::Null => wit::Value::Null,
            Value::Integer(i) => wit::Value::Integer(i),
            Value::Real(f) => wit::Value::Real(f),
            Value::Text(s) => wit::Value::Text(s),
            Value::Blob(b) => wit::Value::Blob(b),
        }
    }
}

impl From<wit::Value> for Value {
    fn from(v: wit::Value) -> Value {
        match v {
            wit::Value::Null => Value::Null,
            wit::Value::Integer(i) => Value::Integer(i),
            wit::Value::Real(f) => Value::Real(f),
            wit::Value::Text(s) => Value::Text(s),
            wit::Value::Blob(b) => Value::Blob(b),
        }
    }
}

pub use crate::rows::FromValue;

/// A statement's result: its column names and rows.
pub type Rows = crate::rows::Rows<Value>;

/// One row of [`Rows`].
pub type Row<'a> = crate::rows::Row<'a, Value>;

impl crate::rows::ColumnValue for Value {
    type Error = Error;
    fn column_error(message: String) -> Error {
        Error::Column(message)
    }
}

impl FromValue<Value> for i64 {
    fn from_value(value: &Value) -> Option<i64> {
        match value {
            Value::Integer(i) => Some(*i),
            _ => None,
        }
    }
}

crate::rows::narrow_integers!(Value: i32, u32, u64, i16, u16, usize);

impl FromValue<Value> for bool {
    fn from_value(value: &Value) -> Option<bool> {
        i64::from_value(value).map(|i| i != 0)
    }
}

impl FromValue<Value> for f64 {
    /// A real, or an integer widened (SQLite stores `2.0` in a REAL column
    /// as the integer 2).
    fn from_value(value: &Value) -> Option<f64> {
        match value {
            Value::Real(f) => Some(*f),
            Value::Integer(i) => Some(*i as f64),
            _ => None,
        }
    }
}

impl FromValue<Value> for String {
    fn from_value(value: &Value) -> Option<String> {
        match value {
            Value::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}

impl FromValue<Value> for Vec<u8> {
    fn from_value(value: &Value) -> Option<Vec<u8>> {
        match value {
            Value::Blob(b) => Some(b.clone()),
            Value::Text(s) => Some(s.clone().into_bytes()),
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

/// An open connection to one of the app's databases.
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

impl Connection {
    /// Opens the database called `name`.
    pub fn open(name: &str) -> Result<Connection, Error> {
        Ok(Connection {
            name: name.to_owned(),
            conn: wit::Connection::open(name)?,
        })
    }

    /// Runs one statement with `params` bound to its `?`, `?N` or `:name`
    /// placeholders in order, and returns its rows (none for an `INSERT`
    /// without `RETURNING`).
    pub fn execute(&self, sql: &str, params: &[Value]) -> Result<Rows, Error> {
        let params: Vec<wit::Value> = params.iter().cloned().map(Into::into).collect();
        let result = self.conn.execute(sql, &params)?;
        Ok(Rows::new(
            result.columns,
            result
                .rows
                .into_iter()
                .map(|row| row.values.into_iter().map(Value::from).collect())
                .collect(),
        ))
    }

    /// The rowid of this connection's last successful `INSERT`.
    pub fn last_insert_rowid(&self) -> i64 {
        self.conn.last_insert_rowid()
    }

    /// The rows changed by this connection's last `INSERT`, `UPDATE` or `DELETE`.
    pub fn changes(&self) -> u64 {
        self.conn.changes()
    }

    /// Runs `work` in a transaction: committed when it returns `Ok`,
    /// rolled back when it returns `Err` (and by the host if the request
    /// ends first).
    ///
    /// ```no_run
    /// use nimbus_sdk::sqlite::{Connection, Error};
    ///
    /// let db = Connection::open("default")?;
    /// db.transaction(|tx| {
    ///     tx.execute("UPDATE stock SET count = count - 1 WHERE sku = ?", &["tea".into()])?;
    ///     tx.execute("INSERT INTO orders (sku) VALUES (?)", &["tea".into()])?;
    ///     Ok::<_, Error>(())
    /// })?;
    /// # Ok::<(), Error>(())
    /// ```
    pub fn transaction<T, E: From<Error>>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        self.execute("BEGIN IMMEDIATE", &[])?;
        match work(self) {
            Ok(value) => match self.execute("COMMIT", &[]) {
                Ok(_) => Ok(value),
                Err(e) => {
                    // A failed COMMIT (a deferred constraint, a time limit)
                    // leaves the transaction open: end it here.
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
