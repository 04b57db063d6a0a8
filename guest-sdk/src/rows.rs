//! A statement's result as [`crate::sqlite`] and [`crate::postgres`] both
//! return it: column names, rows of values, and typed access by column.

use std::fmt;

/// A value type of rows: what a missing column or a value of the wrong
/// type is, as the value's own module's error.
pub trait ColumnValue: fmt::Debug {
    /// The module's error.
    type Error;
    /// The error for a column that is missing or of another type.
    fn column_error(message: String) -> Self::Error;
}

/// A Rust type a column's value converts to, for [`Row::get`]: implemented
/// for the integers, floats, `bool`, `String`, `Vec<u8>`, the value type
/// itself, and `Option` of any of them (`NULL` is `None`).
pub trait FromValue<V>: Sized {
    /// The value as `Self`, or `None` when it is of another type.
    fn from_value(value: &V) -> Option<Self>;
}

/// `FromValue<$value>` for the narrower integer types, from the `i64`
/// conversion: any integer whose value fits.
macro_rules! narrow_integers {
    ($value:ty: $($t:ty),*) => {$(
        impl $crate::rows::FromValue<$value> for $t {
            /// Any integer column whose value fits.
            fn from_value(value: &$value) -> Option<$t> {
                <i64 as $crate::rows::FromValue<$value>>::from_value(value)
                    .and_then(|i| <$t>::try_from(i).ok())
            }
        }
    )*};
}
pub(crate) use narrow_integers;

/// A statement's result: its column names and rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Rows<V> {
    columns: Vec<String>,
    rows: Vec<Vec<V>>,
}

impl<V> Rows<V> {
    pub(crate) fn new(columns: Vec<String>, rows: Vec<Vec<V>>) -> Rows<V> {
        Rows { columns, rows }
    }

    /// The column names, in order.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The rows, in order.
    pub fn iter(&self) -> impl Iterator<Item = Row<'_, V>> {
        self.rows.iter().map(|values| Row {
            columns: &self.columns,
            values,
        })
    }
}

/// One row of [`Rows`].
#[derive(Debug)]
pub struct Row<'a, V> {
    columns: &'a [String],
    values: &'a [V],
}

impl<V> Clone for Row<'_, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<V> Copy for Row<'_, V> {}

impl<V: ColumnValue> Row<'_, V> {
    /// The value of `column` as a `T`: `row.get::<i64>("id")`. A missing
    /// column or a value of another type is the module's `Error::Column`,
    /// naming both.
    pub fn get<T: FromValue<V>>(&self, column: &str) -> Result<T, V::Error> {
        let index = self
            .columns
            .iter()
            .position(|c| c == column)
            .ok_or_else(|| {
                V::column_error(format!(
                    "the row has no column `{column}` (it has {})",
                    self.columns.join(", ")
                ))
            })?;
        self.get_at(index)
    }

    /// The value of the column at `index` (from 0) as a `T`.
    pub fn get_at<T: FromValue<V>>(&self, index: usize) -> Result<T, V::Error> {
        let value = self
            .values
            .get(index)
            .ok_or_else(|| V::column_error(format!("the row has no column {index}")))?;
        T::from_value(value).ok_or_else(|| {
            let name = self.columns.get(index).map_or("?", String::as_str);
            V::column_error(format!(
                "column `{name}` holds {value:?}, which is not a {}",
                std::any::type_name::<T>()
            ))
        })
    }

    /// The raw values, in column order.
    pub fn values(&self) -> &[V] {
        self.values
    }
}
