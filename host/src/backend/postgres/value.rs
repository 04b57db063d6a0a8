//! PostgreSQL values as Spin's interface has them (`db-value`,
//! `parameter-value`, `db-data-type`), to and from PostgreSQL's binary wire
//! format, with the driver's own codecs (`postgres-protocol`).
//!
//! A parameter is encoded for the type the server expects: an integer goes
//! into any integer column its value fits, a string into any text column,
//! and anything else is refused by name before the statement runs. A column of a type the
//! interface has no value for comes back as `unsupported` with its bytes.

use bytes::{BufMut, BytesMut};
use fallible_iterator::FallibleIterator;
use postgres_protocol::IsNull as WireNull;
use postgres_protocol::types as wire;
use postgres_protocol::types::{ArrayDimension, Range, RangeBound};
use std::error::Error;
use tokio_postgres::types::{IsNull, Kind, ToSql, Type, to_sql_checked};

/// One side of a range: its value and whether it is inclusive; `None`
/// when unbounded.
pub type Bound<T> = Option<(T, bool)>;

/// A value in a statement's parameters or its result.
#[derive(Debug, Clone, PartialEq)]
pub enum PgValue {
    /// `boolean`.
    Bool(bool),
    /// `"char"`, one byte.
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
    /// `text`, `varchar`, `char(n)`, `name`, an enum's label.
    Text(String),
    /// `bytea`.
    Binary(Vec<u8>),
    /// `date`: year, month, day.
    Date(i32, u8, u8),
    /// `time`: hour, minute, second, nanosecond.
    Time(u8, u8, u8, u32),
    /// `timestamp` or `timestamptz` (as UTC): year, month, day, hour,
    /// minute, second, nanosecond.
    DateTime(i32, u8, u8, u8, u8, u8, u32),
    /// Seconds since the Unix epoch, into a `timestamp` (a parameter only).
    Timestamp(i64),
    /// `uuid`, as `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
    Uuid(String),
    /// `jsonb` or `json`: the JSON text.
    Jsonb(Vec<u8>),
    /// `numeric`, in base 10.
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
    /// `text[]` (or `varchar[]`).
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
    /// `NULL`.
    Null,
    /// A column of a type with no value here: its binary wire form.
    Unsupported(Vec<u8>),
}

/// A column's type as the interface names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnType {
    /// `boolean`.
    Bool,
    /// `"char"`.
    Int8,
    /// `smallint`.
    Int16,
    /// `integer`.
    Int32,
    /// `bigint`.
    Int64,
    /// `real`.
    Float32,
    /// `double precision`.
    Float64,
    /// Text of any kind.
    Text,
    /// `bytea`.
    Binary,
    /// `date`.
    Date,
    /// `time`.
    Time,
    /// `timestamp` or `timestamptz`.
    DateTime,
    /// `uuid`.
    Uuid,
    /// `jsonb` or `json`.
    Jsonb,
    /// `numeric`.
    Decimal,
    /// `int4range`.
    RangeInt32,
    /// `int8range`.
    RangeInt64,
    /// `numrange`.
    RangeDecimal,
    /// `integer[]`.
    ArrayInt32,
    /// `bigint[]`.
    ArrayInt64,
    /// `numeric[]`.
    ArrayDecimal,
    /// `text[]`.
    ArrayText,
    /// `interval`.
    Interval,
    /// Any other type, by its PostgreSQL name.
    Other(String),
}

type BoxError = Box<dyn Error + Sync + Send>;

/// Microseconds in a day.
const DAY_MICROS: i64 = 86_400_000_000;

/// Days from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_DAYS: i64 = 10_957;

/// The type `ty` is, through domains.
fn base(ty: &Type) -> &Type {
    match ty.kind() {
        Kind::Domain(inner) => base(inner),
        _ => ty,
    }
}

fn is_text(ty: &Type) -> bool {
    matches!(
        *ty,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN
    ) || matches!(ty.kind(), Kind::Enum(_))
}

impl ColumnType {
    /// The interface's name for a column of type `ty`.
    pub fn of(ty: &Type) -> ColumnType {
        let ty = base(ty);
        match *ty {
            Type::BOOL => ColumnType::Bool,
            Type::CHAR => ColumnType::Int8,
            Type::INT2 => ColumnType::Int16,
            Type::INT4 => ColumnType::Int32,
            Type::INT8 => ColumnType::Int64,
            Type::FLOAT4 => ColumnType::Float32,
            Type::FLOAT8 => ColumnType::Float64,
            Type::BYTEA => ColumnType::Binary,
            Type::DATE => ColumnType::Date,
            Type::TIME => ColumnType::Time,
            Type::TIMESTAMP | Type::TIMESTAMPTZ => ColumnType::DateTime,
            Type::UUID => ColumnType::Uuid,
            Type::JSON | Type::JSONB => ColumnType::Jsonb,
            Type::NUMERIC => ColumnType::Decimal,
            Type::INT4_RANGE => ColumnType::RangeInt32,
            Type::INT8_RANGE => ColumnType::RangeInt64,
            Type::NUM_RANGE => ColumnType::RangeDecimal,
            Type::INT4_ARRAY => ColumnType::ArrayInt32,
            Type::INT8_ARRAY => ColumnType::ArrayInt64,
            Type::NUMERIC_ARRAY => ColumnType::ArrayDecimal,
            Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::BPCHAR_ARRAY => ColumnType::ArrayText,
            Type::INTERVAL => ColumnType::Interval,
            _ if is_text(ty) => ColumnType::Text,
            _ => ColumnType::Other(ty.name().to_owned()),
        }
    }
}

impl PgValue {
    /// The value of a column of type `ty` whose wire bytes are `raw`
    /// (`None` for `NULL`), if it takes at most `budget` bytes decoded (a
    /// numeric's text can be thousands of times its wire form): else
    /// [`TooLarge`], before it is built.
    pub fn decode(ty: &Type, raw: Option<&[u8]>, budget: u64) -> Result<PgValue, BoxError> {
        let Some(raw) = raw else {
            return Ok(PgValue::Null);
        };
        let ty = base(ty);
        Ok(match *ty {
            Type::BOOL => PgValue::Bool(wire::bool_from_sql(raw)?),
            Type::CHAR => PgValue::Int8(wire::char_from_sql(raw)?),
            Type::INT2 => PgValue::Int16(wire::int2_from_sql(raw)?),
            Type::INT4 => PgValue::Int32(wire::int4_from_sql(raw)?),
            Type::INT8 => PgValue::Int64(wire::int8_from_sql(raw)?),
            Type::FLOAT4 => PgValue::Float32(wire::float4_from_sql(raw)?),
            Type::FLOAT8 => PgValue::Float64(wire::float8_from_sql(raw)?),
            Type::BYTEA => PgValue::Binary(wire::bytea_from_sql(raw).to_vec()),
            Type::DATE => match wire::date_from_sql(raw)? {
                i32::MAX | i32::MIN => PgValue::Unsupported(raw.to_vec()),
                days => {
                    let (y, m, d) = civil_from_days(i64::from(days) + PG_EPOCH_DAYS);
                    PgValue::Date(y, m, d)
                }
            },
            Type::TIME => {
                let (h, m, s, ns) = time_of_day(wire::time_from_sql(raw)?);
                PgValue::Time(h, m, s, ns)
            }
            Type::TIMESTAMP | Type::TIMESTAMPTZ => match wire::timestamp_from_sql(raw)? {
                i64::MAX | i64::MIN => PgValue::Unsupported(raw.to_vec()),
                micros => {
                    let (y, mo, d) = civil_from_days(micros.div_euclid(DAY_MICROS) + PG_EPOCH_DAYS);
                    let (h, mi, s, ns) = time_of_day(micros.rem_euclid(DAY_MICROS));
                    PgValue::DateTime(y, mo, d, h, mi, s, ns)
                }
            },
            Type::UUID => PgValue::Uuid(uuid_text(wire::uuid_from_sql(raw)?)),
            Type::JSON => PgValue::Jsonb(raw.to_vec()),
            Type::JSONB => match raw.split_first() {
                Some((1, json)) => PgValue::Jsonb(json.to_vec()),
                _ => return Err("jsonb in an unknown format version".into()),
            },
            Type::NUMERIC => PgValue::Decimal(numeric_within(raw, budget)?),
            Type::INT4_RANGE => {
                let (lo, hi) = range(raw, wire::int4_from_sql)?;
                PgValue::RangeInt32(lo, hi)
            }
            Type::INT8_RANGE => {
                let (lo, hi) = range(raw, wire::int8_from_sql)?;
                PgValue::RangeInt64(lo, hi)
            }
            Type::NUM_RANGE => {
                let left = std::cell::Cell::new(budget);
                let (lo, hi) = range(raw, |b| numeric_spending(b, &left))?;
                PgValue::RangeDecimal(lo, hi)
            }
            Type::INT4_ARRAY => PgValue::ArrayInt32(array(raw, wire::int4_from_sql)?),
            Type::INT8_ARRAY => PgValue::ArrayInt64(array(raw, wire::int8_from_sql)?),
            Type::NUMERIC_ARRAY => {
                let left = std::cell::Cell::new(budget);
                PgValue::ArrayDecimal(array(raw, |b| numeric_spending(b, &left))?)
            }
            Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::BPCHAR_ARRAY => {
                PgValue::ArrayText(array(raw, |b| Ok(wire::text_from_sql(b)?.to_owned()))?)
            }
            Type::INTERVAL => {
                let (micros, rest) = raw.split_at_checked(8).ok_or("interval too short")?;
                let (days, months) = rest.split_at_checked(4).ok_or("interval too short")?;
                PgValue::Interval {
                    micros: wire::int8_from_sql(micros)?,
                    days: wire::int4_from_sql(days)?,
                    months: wire::int4_from_sql(months)?,
                }
            }
            _ if is_text(ty) => PgValue::Text(wire::text_from_sql(raw)?.to_owned()),
            _ => PgValue::Unsupported(raw.to_vec()),
        })
    }

    /// What the value is, for an error that names it.
    fn kind(&self) -> &'static str {
        match self {
            PgValue::Bool(_) => "boolean",
            PgValue::Int8(_) => "int8",
            PgValue::Int16(_) => "int16",
            PgValue::Int32(_) => "int32",
            PgValue::Int64(_) => "int64",
            PgValue::Float32(_) => "floating32",
            PgValue::Float64(_) => "floating64",
            PgValue::Text(_) => "str",
            PgValue::Binary(_) => "binary",
            PgValue::Date(..) => "date",
            PgValue::Time(..) => "time",
            PgValue::DateTime(..) => "datetime",
            PgValue::Timestamp(_) => "timestamp",
            PgValue::Uuid(_) => "uuid",
            PgValue::Jsonb(_) => "jsonb",
            PgValue::Decimal(_) => "decimal",
            PgValue::RangeInt32(..) => "range-int32",
            PgValue::RangeInt64(..) => "range-int64",
            PgValue::RangeDecimal(..) => "range-decimal",
            PgValue::ArrayInt32(_) => "array-int32",
            PgValue::ArrayInt64(_) => "array-int64",
            PgValue::ArrayDecimal(_) => "array-decimal",
            PgValue::ArrayText(_) => "array-str",
            PgValue::Interval { .. } => "interval",
            PgValue::Null => "db-null",
            PgValue::Unsupported(_) => "unsupported",
        }
    }

    /// Whether the value can be sent as a parameter of type `ty`.
    pub fn fits(&self, ty: &Type) -> bool {
        let ty = base(ty);
        match self {
            PgValue::Null => true,
            PgValue::Bool(_) => *ty == Type::BOOL,
            PgValue::Int8(_) => matches!(*ty, Type::CHAR | Type::INT2 | Type::INT4 | Type::INT8),
            PgValue::Int16(_) => matches!(*ty, Type::INT2 | Type::INT4 | Type::INT8),
            PgValue::Int32(v) => {
                matches!(*ty, Type::INT4 | Type::INT8)
                    || is_number(ty)
                    || (*ty == Type::INT2 && i16::try_from(*v).is_ok())
            }
            PgValue::Int64(v) => {
                *ty == Type::INT8
                    || is_number(ty)
                    || (*ty == Type::INT4 && i32::try_from(*v).is_ok())
                    || (*ty == Type::INT2 && i16::try_from(*v).is_ok())
            }
            PgValue::Float32(_) | PgValue::Float64(_) => is_number(ty),
            // Text goes into text, and is read as the value PostgreSQL would
            // read it as for the others here (a decimal, a UUID, an ISO 8601
            // date or time, a number, a boolean); [`PgValue::check`] says
            // when it cannot be.
            PgValue::Text(_) => {
                is_text(ty)
                    || is_number(ty)
                    || matches!(
                        *ty,
                        Type::JSON
                            | Type::JSONB
                            | Type::UUID
                            | Type::DATE
                            | Type::TIME
                            | Type::TIMESTAMP
                            | Type::TIMESTAMPTZ
                            | Type::BOOL
                            | Type::INT2
                            | Type::INT4
                            | Type::INT8
                    )
            }
            PgValue::Binary(_) => *ty == Type::BYTEA,
            PgValue::Date(..) => *ty == Type::DATE,
            PgValue::Time(..) => *ty == Type::TIME,
            PgValue::DateTime(..) | PgValue::Timestamp(_) => {
                matches!(*ty, Type::TIMESTAMP | Type::TIMESTAMPTZ)
            }
            PgValue::Uuid(_) => *ty == Type::UUID,
            PgValue::Jsonb(_) => matches!(*ty, Type::JSON | Type::JSONB),
            PgValue::Decimal(_) => *ty == Type::NUMERIC,
            PgValue::RangeInt32(..) => *ty == Type::INT4_RANGE,
            PgValue::RangeInt64(..) => *ty == Type::INT8_RANGE,
            PgValue::RangeDecimal(..) => *ty == Type::NUM_RANGE,
            PgValue::ArrayInt32(_) => matches!(*ty, Type::INT4_ARRAY | Type::INT8_ARRAY),
            PgValue::ArrayInt64(_) => *ty == Type::INT8_ARRAY,
            PgValue::ArrayDecimal(_) => *ty == Type::NUMERIC_ARRAY,
            PgValue::ArrayText(_) => {
                matches!(
                    *ty,
                    Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::BPCHAR_ARRAY
                )
            }
            PgValue::Interval { .. } => *ty == Type::INTERVAL,
            PgValue::Unsupported(_) => false,
        }
    }

    /// Whether the value can be parameter `index` (0-based) of type `ty`,
    /// and if not, why, naming the parameter: encoded once here, so that
    /// a mistake is named before the statement runs.
    pub fn check(&self, index: usize, ty: &Type) -> Result<(), String> {
        if !self.fits(ty) {
            return Err(self.misfit(index, ty));
        }
        self.to_sql(ty, &mut BytesMut::new())
            .map(drop)
            .map_err(|e| format!("parameter ${} ({} for a {ty}): {e}", index + 1, self.kind()))
    }

    /// Why the value cannot be parameter `index` (0-based) of type `ty`.
    fn misfit(&self, index: usize, ty: &Type) -> String {
        format!(
            "parameter ${} is a {} value, and the statement takes a {} there",
            index + 1,
            self.kind(),
            ty.name()
        )
    }

    /// The value as JSON, for an operator (`nimbus sql`): numbers,
    /// strings (text, UUIDs, decimals, and dates and times in ISO 8601),
    /// JSON as itself, bytes as `{"base64": ...}`.
    pub fn to_json(&self) -> serde_json::Value {
        use base64::Engine as _;
        use serde_json::{Value, json};
        fn bound<T: serde::Serialize>(b: &Bound<T>) -> Value {
            b.as_ref().map_or(
                Value::Null,
                |(v, inclusive)| json!({"value": v, "inclusive": inclusive}),
            )
        }
        match self {
            PgValue::Null => Value::Null,
            PgValue::Bool(v) => json!(v),
            PgValue::Int8(v) => json!(v),
            PgValue::Int16(v) => json!(v),
            PgValue::Int32(v) => json!(v),
            PgValue::Int64(v) => json!(v),
            PgValue::Float32(v) => json!(v),
            PgValue::Float64(v) => json!(v),
            PgValue::Text(s) | PgValue::Uuid(s) | PgValue::Decimal(s) => json!(s),
            PgValue::Binary(b) | PgValue::Unsupported(b) => {
                json!({ "base64": base64::engine::general_purpose::STANDARD.encode(b) })
            }
            PgValue::Jsonb(b) => {
                serde_json::from_slice(b).unwrap_or_else(|_| json!(String::from_utf8_lossy(b)))
            }
            PgValue::Date(y, m, d) => json!(format!("{y:04}-{m:02}-{d:02}")),
            PgValue::Time(h, m, s, ns) => json!(format!("{h:02}:{m:02}:{s:02}.{:06}", ns / 1000)),
            PgValue::DateTime(y, mo, d, h, mi, s, ns) => json!(format!(
                "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:06}",
                ns / 1000
            )),
            PgValue::Timestamp(t) => json!(t),
            PgValue::RangeInt32(lo, hi) => json!({ "lower": bound(lo), "upper": bound(hi) }),
            PgValue::RangeInt64(lo, hi) => json!({ "lower": bound(lo), "upper": bound(hi) }),
            PgValue::RangeDecimal(lo, hi) => json!({ "lower": bound(lo), "upper": bound(hi) }),
            PgValue::ArrayInt32(a) => json!(a),
            PgValue::ArrayInt64(a) => json!(a),
            PgValue::ArrayDecimal(a) | PgValue::ArrayText(a) => json!(a),
            PgValue::Interval {
                micros,
                days,
                months,
            } => json!({ "months": months, "days": days, "micros": micros }),
        }
    }

    /// Bytes the value holds, for the cap on a result's size.
    pub fn size(&self) -> u64 {
        let len = match self {
            PgValue::Text(s) | PgValue::Uuid(s) | PgValue::Decimal(s) => s.len(),
            PgValue::Binary(b) | PgValue::Jsonb(b) | PgValue::Unsupported(b) => b.len(),
            PgValue::ArrayInt32(a) => a.len() * 4,
            PgValue::ArrayInt64(a) => a.len() * 8,
            PgValue::ArrayDecimal(a) | PgValue::ArrayText(a) => {
                a.iter().map(|s| s.as_ref().map_or(1, String::len)).sum()
            }
            PgValue::RangeDecimal(lo, hi) => [lo, hi]
                .iter()
                .map(|b| b.as_ref().map_or(1, |(s, _)| s.len()))
                .sum(),
            _ => 8,
        };
        len as u64
    }
}

impl ToSql for PgValue {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        let ty = base(ty);
        match self {
            PgValue::Null => return Ok(IsNull::Yes),
            PgValue::Bool(v) => wire::bool_to_sql(*v, out),
            PgValue::Int8(v) => int_to_sql(i64::from(*v), ty, out)?,
            PgValue::Int16(v) => int_to_sql(i64::from(*v), ty, out)?,
            PgValue::Int32(v) => int_to_sql(i64::from(*v), ty, out)?,
            PgValue::Int64(v) => int_to_sql(*v, ty, out)?,
            PgValue::Float32(v) => float_to_sql(f64::from(*v), ty, out)?,
            PgValue::Float64(v) => float_to_sql(*v, ty, out)?,
            PgValue::Text(s) => text_to_sql(s, ty, out)?,
            PgValue::Jsonb(json) => json_or_text(json, ty, out)?,
            PgValue::Binary(b) => wire::bytea_to_sql(b, out),
            PgValue::Date(y, m, d) => {
                let days = days_from_civil(*y, *m, *d)? - PG_EPOCH_DAYS;
                wire::date_to_sql(i32::try_from(days)?, out);
            }
            PgValue::Time(h, m, s, ns) => wire::time_to_sql(micros_of_day(*h, *m, *s, *ns)?, out),
            PgValue::DateTime(y, mo, d, h, mi, s, ns) => {
                let days = days_from_civil(*y, *mo, *d)? - PG_EPOCH_DAYS;
                let micros = days
                    .checked_mul(DAY_MICROS)
                    .and_then(|m| m.checked_add(micros_of_day(*h, *mi, *s, *ns).ok()?))
                    .ok_or("the date and time are out of range")?;
                wire::timestamp_to_sql(micros, out);
            }
            PgValue::Timestamp(secs) => {
                let micros = secs
                    .checked_sub(PG_EPOCH_DAYS * 86_400)
                    .and_then(|s| s.checked_mul(1_000_000))
                    .ok_or("the timestamp is out of range")?;
                wire::timestamp_to_sql(micros, out);
            }
            PgValue::Uuid(s) => wire::uuid_to_sql(parse_uuid(s)?, out),
            PgValue::Decimal(s) => numeric_to_sql(s, out)?,
            PgValue::RangeInt32(lo, hi) => range_to_sql(lo, hi, out, |v, out| {
                wire::int4_to_sql(*v, out);
                Ok(())
            })?,
            PgValue::RangeInt64(lo, hi) => range_to_sql(lo, hi, out, |v, out| {
                wire::int8_to_sql(*v, out);
                Ok(())
            })?,
            PgValue::RangeDecimal(lo, hi) => {
                range_to_sql(lo, hi, out, |v, out| numeric_to_sql(v, out))?
            }
            PgValue::ArrayInt32(a) if *ty == Type::INT8_ARRAY => {
                array_to_sql(a, Type::INT8, out, |v, out| {
                    wire::int8_to_sql(i64::from(*v), out);
                    Ok(())
                })?
            }
            PgValue::ArrayInt32(a) => array_to_sql(a, Type::INT4, out, |v, out| {
                wire::int4_to_sql(*v, out);
                Ok(())
            })?,
            PgValue::ArrayInt64(a) => array_to_sql(a, Type::INT8, out, |v, out| {
                wire::int8_to_sql(*v, out);
                Ok(())
            })?,
            PgValue::ArrayDecimal(a) => {
                array_to_sql(a, Type::NUMERIC, out, |v, out| numeric_to_sql(v, out))?
            }
            PgValue::ArrayText(a) => {
                let element = match ty.kind() {
                    Kind::Array(element) => element.clone(),
                    _ => Type::TEXT,
                };
                array_to_sql(a, element, out, |v, out| {
                    wire::text_to_sql(v, out);
                    Ok(())
                })?
            }
            PgValue::Interval {
                micros,
                days,
                months,
            } => {
                out.put_i64(*micros);
                out.put_i32(*days);
                out.put_i32(*months);
            }
            PgValue::Unsupported(_) => return Err("an unsupported value cannot be sent".into()),
        }
        Ok(IsNull::No)
    }

    /// Every type: [`PgValue::fits`] checks each parameter first, so that
    /// a mismatch is named before the statement runs.
    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn is_number(ty: &Type) -> bool {
    matches!(*ty, Type::NUMERIC | Type::FLOAT4 | Type::FLOAT8)
}

fn int_to_sql(v: i64, ty: &Type, out: &mut BytesMut) -> Result<(), BoxError> {
    match *ty {
        Type::NUMERIC => numeric_to_sql(&v.to_string(), out)?,
        Type::FLOAT4 => wire::float4_to_sql(v as f32, out),
        Type::FLOAT8 => wire::float8_to_sql(v as f64, out),
        Type::CHAR => wire::char_to_sql(i8::try_from(v)?, out),
        Type::INT2 => wire::int2_to_sql(i16::try_from(v)?, out),
        Type::INT4 => wire::int4_to_sql(i32::try_from(v)?, out),
        _ => wire::int8_to_sql(v, out),
    }
    Ok(())
}

fn float_to_sql(v: f64, ty: &Type, out: &mut BytesMut) -> Result<(), BoxError> {
    match *ty {
        // Rust prints a float in full, never with an exponent.
        Type::NUMERIC if v.is_finite() => numeric_to_sql(&v.to_string(), out)?,
        Type::NUMERIC if v.is_nan() => numeric_to_sql("NaN", out)?,
        Type::NUMERIC => return Err("an infinite float has no numeric".into()),
        Type::FLOAT4 if v.is_finite() && v.abs() > f64::from(f32::MAX) => {
            return Err(format!("{v} is out of range for a real").into());
        }
        Type::FLOAT4 => wire::float4_to_sql(v as f32, out),
        _ => wire::float8_to_sql(v, out),
    }
    Ok(())
}

/// Text into a parameter of type `ty`: as it is into text or JSON, else
/// read the way PostgreSQL reads such a literal (the ISO 8601 forms for
/// dates and times; a timestamp with a zone only in UTC, `Z` or `+00:00`).
fn text_to_sql(s: &str, ty: &Type, out: &mut BytesMut) -> Result<(), BoxError> {
    let t = s.trim();
    let bad = |what: &str| -> BoxError { format!("`{s}` is not {what}").into() };
    match *ty {
        Type::NUMERIC => numeric_to_sql(t, out)?,
        Type::FLOAT4 | Type::FLOAT8 => {
            float_to_sql(t.parse().map_err(|_| bad("a number"))?, ty, out)?
        }
        Type::INT2 | Type::INT4 | Type::INT8 => {
            int_to_sql(t.parse().map_err(|_| bad("a whole number"))?, ty, out)?
        }
        Type::BOOL => match t.to_ascii_lowercase().as_str() {
            "true" | "t" | "yes" | "on" | "1" => wire::bool_to_sql(true, out),
            "false" | "f" | "no" | "off" | "0" => wire::bool_to_sql(false, out),
            _ => return Err(bad("a boolean")),
        },
        Type::UUID => wire::uuid_to_sql(parse_uuid(t)?, out),
        Type::DATE => {
            let (y, m, d) = parse_date(t).ok_or_else(|| bad("a date (YYYY-MM-DD)"))?;
            wire::date_to_sql(
                i32::try_from(days_from_civil(y, m, d)? - PG_EPOCH_DAYS)?,
                out,
            );
        }
        Type::TIME => {
            let (h, m, sec, ns) = parse_time(t).ok_or_else(|| bad("a time (HH:MM:SS)"))?;
            wire::time_to_sql(micros_of_day(h, m, sec, ns)?, out);
        }
        Type::TIMESTAMP | Type::TIMESTAMPTZ => {
            let local = t
                .strip_suffix('Z')
                .or_else(|| t.strip_suffix("+00:00"))
                .unwrap_or(t);
            let (date, time) = local
                .split_once(['T', ' '])
                .ok_or_else(|| bad("a timestamp (YYYY-MM-DD HH:MM:SS)"))?;
            if time.contains(['+', '-']) {
                return Err(format!(
                    "`{s}`: give a timestamp with a zone in UTC (`Z` or `+00:00`)"
                )
                .into());
            }
            let (y, mo, d) = parse_date(date).ok_or_else(|| bad("a timestamp"))?;
            let (h, mi, sec, ns) = parse_time(time).ok_or_else(|| bad("a timestamp"))?;
            PgValue::DateTime(y, mo, d, h, mi, sec, ns).to_sql(ty, out)?;
        }
        _ => json_or_text(s.as_bytes(), ty, out)?,
    }
    Ok(())
}

/// `YYYY-MM-DD`.
fn parse_date(s: &str) -> Option<(i32, u8, u8)> {
    let mut parts = s.splitn(3, '-');
    let y = parts.next()?.parse().ok()?;
    let m = parts.next()?.parse().ok()?;
    let d = parts.next()?.parse().ok()?;
    Some((y, m, d))
}

/// `HH:MM[:SS[.fraction]]`.
fn parse_time(s: &str) -> Option<(u8, u8, u8, u32)> {
    let mut parts = s.splitn(3, ':');
    let h = parts.next()?.parse().ok()?;
    let m = parts.next()?.parse().ok()?;
    let (sec, ns) = match parts.next() {
        None => (0, 0),
        Some(rest) => {
            let (whole, fraction) = rest.split_once('.').unwrap_or((rest, ""));
            if fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let ns = format!("{fraction:0<9}").parse().ok()?;
            (whole.parse().ok()?, ns)
        }
    };
    Some((h, m, sec, ns))
}

/// Text, or JSON into a `json`/`jsonb` parameter (`jsonb` leads with its
/// format version, 1).
fn json_or_text(text: &[u8], ty: &Type, out: &mut BytesMut) -> Result<(), BoxError> {
    if *ty == Type::JSONB {
        out.put_u8(1);
    }
    if *ty != Type::JSON && *ty != Type::JSONB {
        std::str::from_utf8(text)?;
    }
    out.put_slice(text);
    Ok(())
}

fn range<T>(
    raw: &[u8],
    decode: impl Fn(&[u8]) -> Result<T, BoxError>,
) -> Result<(Bound<T>, Bound<T>), BoxError> {
    let bound = |b: RangeBound<Option<&[u8]>>| -> Result<Bound<T>, BoxError> {
        Ok(match b {
            RangeBound::Inclusive(Some(v)) => Some((decode(v)?, true)),
            RangeBound::Exclusive(Some(v)) => Some((decode(v)?, false)),
            RangeBound::Inclusive(None) | RangeBound::Exclusive(None) | RangeBound::Unbounded => {
                None
            }
        })
    };
    match wire::range_from_sql(raw)? {
        Range::Empty => Ok((None, None)),
        Range::Nonempty(lo, hi) => Ok((bound(lo)?, bound(hi)?)),
    }
}

fn range_to_sql<T>(
    lo: &Bound<T>,
    hi: &Bound<T>,
    out: &mut BytesMut,
    encode: impl Fn(&T, &mut BytesMut) -> Result<(), BoxError>,
) -> Result<(), BoxError> {
    let bound = |b: &Bound<T>, out: &mut BytesMut| -> Result<RangeBound<WireNull>, BoxError> {
        Ok(match b {
            None => RangeBound::Unbounded,
            Some((v, inclusive)) => {
                encode(v, out)?;
                if *inclusive {
                    RangeBound::Inclusive(WireNull::No)
                } else {
                    RangeBound::Exclusive(WireNull::No)
                }
            }
        })
    };
    wire::range_to_sql(|out| bound(lo, out), |out| bound(hi, out), out)
}

fn array<T>(
    raw: &[u8],
    decode: impl Fn(&[u8]) -> Result<T, BoxError>,
) -> Result<Vec<Option<T>>, BoxError> {
    wire::array_from_sql(raw)?
        .values()
        .map(|v| v.map(&decode).transpose())
        .collect()
}

fn array_to_sql<T>(
    values: &[Option<T>],
    element: Type,
    out: &mut BytesMut,
    encode: impl Fn(&T, &mut BytesMut) -> Result<(), BoxError>,
) -> Result<(), BoxError> {
    let dimension = ArrayDimension {
        len: i32::try_from(values.len())?,
        lower_bound: 1,
    };
    wire::array_to_sql(
        Some(dimension),
        element.oid(),
        values,
        |v, out| match v {
            None => Ok(WireNull::Yes),
            Some(v) => encode(v, out).map(|()| WireNull::No),
        },
        out,
    )
}

/// The error of a value that would decode past the result's size cap.
#[derive(Debug)]
pub struct TooLarge;

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the value is larger than the result may be")
    }
}

impl Error for TooLarge {}

/// A numeric's text, if it is at most `budget` bytes long, told from its
/// header before the text is built.
fn numeric_within(raw: &[u8], budget: u64) -> Result<String, BoxError> {
    let word = |i: usize| {
        raw.get(i * 2..i * 2 + 2)
            .map(|b| i16::from_be_bytes([b[0], b[1]]))
    };
    if let (Some(weight), Some(dscale)) = (word(1), word(3)) {
        let int_digits = 4 * (u64::try_from(weight).unwrap_or(0) + 1);
        let length = 2 + int_digits + u64::from(dscale as u16);
        if length > budget {
            return Err(Box::new(TooLarge));
        }
    }
    numeric_from_sql(raw)
}

/// [`numeric_within`] of what is `left`, spending it.
fn numeric_spending(raw: &[u8], left: &std::cell::Cell<u64>) -> Result<String, BoxError> {
    let text = numeric_within(raw, left.get())?;
    left.set(left.get().saturating_sub(text.len() as u64));
    Ok(text)
}

/// `numeric`'s wire form: digit count, weight (of the first digit, in
/// powers of 10000), sign and display scale, then base-10000 digits.
fn numeric_from_sql(raw: &[u8]) -> Result<String, BoxError> {
    let word = |i: usize| -> Result<i16, BoxError> {
        let b = raw.get(i * 2..i * 2 + 2).ok_or("numeric too short")?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    };
    let ndigits = usize::try_from(word(0)?)?;
    let weight = i64::from(word(1)?);
    let sign = word(2)? as u16;
    let dscale = usize::try_from(word(3)?)?;
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        _ => return Err("numeric with an unknown sign".into()),
    }
    let digits: Vec<i16> = (0..ndigits)
        .map(|i| word(4 + i))
        .collect::<Result<_, _>>()?;
    let digit = |power: i64| -> i16 {
        // The digit worth 10000^power.
        usize::try_from(weight - power)
            .ok()
            .and_then(|i| digits.get(i).copied())
            .unwrap_or(0)
    };
    let mut text = String::new();
    if sign == 0x4000 {
        text.push('-');
    }
    if weight < 0 {
        text.push('0');
    } else {
        text.push_str(&digit(weight).to_string());
        for power in (0..weight).rev() {
            text.push_str(&format!("{:04}", digit(power)));
        }
    }
    if dscale > 0 {
        let mut fraction = String::new();
        let mut power = -1;
        while fraction.len() < dscale {
            fraction.push_str(&format!("{:04}", digit(power)));
            power -= 1;
        }
        fraction.truncate(dscale);
        text.push('.');
        text.push_str(&fraction);
    }
    Ok(text)
}

/// A decimal string (`-12.50`, `NaN`) in `numeric`'s wire form.
fn numeric_to_sql(text: &str, out: &mut BytesMut) -> Result<(), BoxError> {
    let invalid = || -> BoxError { format!("`{text}` is not a decimal number").into() };
    let trimmed = text.trim();
    if trimmed.eq_ignore_ascii_case("nan") {
        out.put_slice(&[0, 0, 0, 0, 0xC0, 0, 0, 0]);
        return Ok(());
    }
    let (negative, unsigned) = match trimmed.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, trimmed.strip_prefix('+').unwrap_or(trimmed)),
    };
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !all_digits(int) || !all_digits(frac) {
        return Err(invalid());
    }
    let dscale = u16::try_from(frac.len()).map_err(|_| invalid())?;
    // Digits grouped by four around the point, zeros padding both ends.
    let int_pad = (4 - int.len() % 4) % 4;
    let frac_pad = (4 - frac.len() % 4) % 4;
    let padded: Vec<u8> = std::iter::repeat_n(b'0', int_pad)
        .chain(int.bytes())
        .chain(frac.bytes())
        .chain(std::iter::repeat_n(b'0', frac_pad))
        .collect();
    let mut groups: Vec<i16> = padded
        .chunks(4)
        .map(|c| c.iter().fold(0i16, |n, d| n * 10 + i16::from(d - b'0')))
        .collect();
    let mut weight = i64::try_from((int_pad + int.len()) / 4).map_err(|_| invalid())? - 1;
    let leading = groups.iter().take_while(|g| **g == 0).count();
    groups.drain(..leading);
    weight -= i64::try_from(leading).map_err(|_| invalid())?;
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    let ndigits = i16::try_from(groups.len()).map_err(|_| invalid())?;
    out.put_i16(ndigits);
    out.put_i16(i16::try_from(weight).map_err(|_| invalid())?);
    out.put_u16(if negative && !groups.is_empty() {
        0x4000
    } else {
        0
    });
    out.put_u16(dscale);
    for g in groups {
        out.put_i16(g);
    }
    Ok(())
}

fn uuid_text(b: [u8; 16]) -> String {
    let hex: String = b.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

fn parse_uuid(s: &str) -> Result<[u8; 16], BoxError> {
    let hex: Vec<u8> = s.bytes().filter(|b| *b != b'-').collect();
    let invalid = || -> BoxError { format!("`{s}` is not a UUID").into() };
    if hex.len() != 32 {
        return Err(invalid());
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        let pair = std::str::from_utf8(pair).map_err(|_| invalid())?;
        out[i] = u8::from_str_radix(pair, 16).map_err(|_| invalid())?;
    }
    Ok(out)
}

fn time_of_day(micros: i64) -> (u8, u8, u8, u32) {
    let secs = micros.div_euclid(1_000_000);
    let ns = (micros.rem_euclid(1_000_000) * 1000) as u32;
    (
        (secs / 3600) as u8,
        (secs / 60 % 60) as u8,
        (secs % 60) as u8,
        ns,
    )
}

fn micros_of_day(h: u8, m: u8, s: u8, ns: u32) -> Result<i64, BoxError> {
    let midnight_after = h == 24 && m == 0 && s == 0 && ns == 0;
    if (h > 23 && !midnight_after) || m > 59 || s > 60 || ns >= 1_000_000_000 {
        return Err(format!("{h:02}:{m:02}:{s:02}.{ns:09} is not a time of day").into());
    }
    Ok(((i64::from(h) * 60 + i64::from(m)) * 60 + i64::from(s)) * 1_000_000 + i64::from(ns) / 1000)
}

/// Days since 1970-01-01 of a date in the proleptic Gregorian calendar
/// (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i32, m: u8, d: u8) -> Result<i64, BoxError> {
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in_month = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => 0,
    };
    if !(1..=days_in_month).contains(&d) {
        return Err(format!("{y:04}-{m:02}-{d:02} is not a date").into());
    }
    let (m, d) = (i64::from(m), i64::from(d));
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Ok(era * 146_097 + doe - 719_468)
}

/// The date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y as i32, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(value: PgValue, ty: Type) -> PgValue {
        let mut buf = BytesMut::new();
        assert!(value.fits(&ty), "{value:?} fits {ty}");
        value.to_sql(&ty, &mut buf).unwrap();
        PgValue::decode(&ty, Some(&buf), u64::MAX).unwrap()
    }

    #[test]
    fn numerics_round_trip_through_the_wire_form() {
        for text in [
            "0",
            "1",
            "-1",
            "12.50",
            "0.0001",
            "-0.00012",
            "10000",
            "123456789.987654321",
            "1e",
            "NaN",
        ] {
            let mut buf = BytesMut::new();
            match numeric_to_sql(text, &mut buf) {
                Ok(()) => assert_eq!(numeric_from_sql(&buf).unwrap(), text, "{text}"),
                Err(e) => assert_eq!(text, "1e", "{e}"),
            }
        }
        let mut buf = BytesMut::new();
        numeric_to_sql("-0.0", &mut buf).unwrap();
        assert_eq!(numeric_from_sql(&buf).unwrap(), "0.0");
    }

    #[test]
    fn dates_and_times_round_trip() {
        for (y, m, d) in [
            (2000, 1, 1),
            (1970, 1, 1),
            (2024, 2, 29),
            (1899, 12, 31),
            (-44, 3, 15),
        ] {
            assert_eq!(
                roundtrip(PgValue::Date(y, m, d), Type::DATE),
                PgValue::Date(y, m, d)
            );
        }
        let dt = PgValue::DateTime(2026, 12, 3, 17, 45, 9, 123_456_000);
        assert_eq!(roundtrip(dt.clone(), Type::TIMESTAMPTZ), dt);
        assert_eq!(
            roundtrip(PgValue::Timestamp(0), Type::TIMESTAMP),
            PgValue::DateTime(1970, 1, 1, 0, 0, 0, 0)
        );
        let t = PgValue::Time(23, 59, 58, 999_999_000);
        assert_eq!(roundtrip(t.clone(), Type::TIME), t);
        for bad in [
            PgValue::Date(2026, 13, 1),
            PgValue::Date(2026, 2, 29),
            PgValue::Date(2026, 4, 31),
        ] {
            assert!(
                bad.to_sql(&Type::DATE, &mut BytesMut::new()).is_err(),
                "{bad:?}"
            );
        }
        assert_eq!(
            roundtrip(PgValue::Date(2024, 2, 29), Type::DATE),
            PgValue::Date(2024, 2, 29)
        );
        assert!(
            PgValue::Time(24, 59, 0, 0)
                .to_sql(&Type::TIME, &mut BytesMut::new())
                .is_err()
        );
        assert!(
            PgValue::Timestamp(i64::MIN)
                .to_sql(&Type::TIMESTAMP, &mut BytesMut::new())
                .is_err()
        );
    }

    #[test]
    fn other_values_round_trip_and_integers_widen() {
        let uuid = PgValue::Uuid("0193a5c2-7d4e-7000-8000-0123456789ab".into());
        assert_eq!(roundtrip(uuid.clone(), Type::UUID), uuid);
        assert_eq!(
            roundtrip(PgValue::Int16(-7), Type::INT8),
            PgValue::Int64(-7)
        );
        // A wider integer narrows only when its value fits.
        assert_eq!(roundtrip(PgValue::Int64(7), Type::INT4), PgValue::Int32(7));
        assert!(!PgValue::Int64(1 << 40).fits(&Type::INT4));
        let json = PgValue::Jsonb(br#"{"a":1}"#.to_vec());
        assert_eq!(roundtrip(json.clone(), Type::JSONB), json);
        let range = PgValue::RangeInt64(Some((1, true)), Some((10, false)));
        assert_eq!(roundtrip(range.clone(), Type::INT8_RANGE), range);
        let array = PgValue::ArrayText(vec![Some("a".into()), None]);
        assert_eq!(roundtrip(array.clone(), Type::TEXT_ARRAY), array);
        let interval = PgValue::Interval {
            micros: 5,
            days: -1,
            months: 14,
        };
        assert_eq!(roundtrip(interval.clone(), Type::INTERVAL), interval);
        assert_eq!(
            PgValue::Int64(1).check(0, &Type::TEXT).unwrap_err(),
            "parameter $1 is a int64 value, and the statement takes a text there"
        );
        // Text read as the types PostgreSQL would read its literal as.
        let text = |s: &str| PgValue::Text(s.into());
        assert_eq!(
            roundtrip(text("2026-12-03"), Type::DATE),
            PgValue::Date(2026, 12, 3)
        );
        assert_eq!(
            roundtrip(text("12.50"), Type::NUMERIC),
            PgValue::Decimal("12.50".into())
        );
        assert_eq!(
            roundtrip(text("2026-12-03T17:45:09.5Z"), Type::TIMESTAMPTZ),
            PgValue::DateTime(2026, 12, 3, 17, 45, 9, 500_000_000)
        );
        assert_eq!(roundtrip(text("t"), Type::BOOL), PgValue::Bool(true));
        assert_eq!(
            roundtrip(PgValue::Int64(3), Type::NUMERIC),
            PgValue::Decimal("3".into())
        );
        assert_eq!(
            roundtrip(PgValue::Float64(0.5), Type::NUMERIC),
            PgValue::Decimal("0.5".into())
        );
        assert!(
            text("2026-12-03 10:00+02:00")
                .check(0, &Type::TIMESTAMPTZ)
                .unwrap_err()
                .contains("UTC")
        );
        assert!(
            text("soon")
                .check(1, &Type::DATE)
                .unwrap_err()
                .starts_with("parameter $2 (str for a date)")
        );
    }
}
