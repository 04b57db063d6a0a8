//! PostgreSQL databases through Spin's interface:
//! `spin:postgres/postgres@4.2.0` for WASI 0.3 components (with its async
//! functions, which spin-sdk 7 calls), `@4.1.0` (the same without them) for
//! WASI 0.2 components such as `nimbus-sdk`'s.
//!
//! A function reaches only the databases its manifest grants in
//! `postgres = { name = "URL" }`. The guest opens one by its grant's name
//! (`open("orders")`), or by an address naming the same database (host,
//! port, database and user) as a grant, which is what a Spin component
//! does with a URL it read from its variables. Either way the host connects
//! with the grant's own URL and credentials, from the grant's pool; any
//! other address is refused without a connection being tried.

use crate::backend::StatementLimits;
use crate::backend::postgres::{ColumnType, Lease, PgError, PgValue, Pool, RowSet};
use crate::capability::connections;
use crate::manifest::{PostgresGrant, StoreName};
use std::sync::Arc;
use tokio::sync::Mutex as AsyncMutex;
use tokio_postgres::Config;
use tokio_postgres::config::Host;
use wasmtime::component::{
    Accessor, FutureReader, HasData, Linker, Resource, ResourceTable, StreamReader,
};

mod v4_1 {
    wasmtime::component::bindgen!({
        path: "wit/spin",
        world: "nimbus:spin/postgres-sync",
        imports: { default: async | trappable },
        with: {
            "spin:postgres/postgres@4.1.0.connection": crate::capability::postgres::Conn,
            "spin:postgres/postgres@4.1.0.connection-builder": crate::capability::postgres::Builder,
        },
    });
}

mod v4_2 {
    wasmtime::component::bindgen!({
        path: "wit/spin",
        world: "nimbus:spin/postgres",
        imports: { default: async | trappable },
        with: {
            "spin:postgres/postgres@4.2.0.connection": crate::capability::postgres::Conn,
            "spin:postgres/postgres@4.2.0.connection-builder": crate::capability::postgres::Builder,
        },
    });
}

use v4_1::spin::postgres4_1_0::postgres as sync_api;
use v4_2::spin::postgres4_2_0::postgres as async_api;

/// One granted database: its name, where it is, and its pool.
struct Grant {
    name: StoreName,
    config: Config,
    pool: Pool,
}

/// A function's PostgreSQL grants, with a pool each, and the limits on each
/// statement. Cloned into every instance; the pools are shared.
#[derive(Clone)]
pub struct PostgresCtx {
    function: Arc<str>,
    grants: Arc<[Grant]>,
    limits: StatementLimits,
}

impl PostgresCtx {
    /// Grants `grants` to `function` under `limits`, each with a pool of
    /// its own (no connection is opened until a request needs one).
    pub fn new(function: &str, grants: &[PostgresGrant], limits: StatementLimits) -> PostgresCtx {
        let grants = grants
            .iter()
            .map(|g| Grant {
                name: g.name.clone(),
                pool: Pool::new(
                    format!("function `{function}`'s PostgreSQL database `{}`", g.name),
                    &g.config,
                    g.pool,
                ),
                config: g.config.clone(),
            })
            .collect();
        PostgresCtx {
            function: function.into(),
            grants,
            limits,
        }
    }

    /// The statement limits of the function.
    pub fn limits(&self) -> StatementLimits {
        self.limits
    }

    /// The names of the grants, in order.
    pub fn names(&self) -> Vec<&str> {
        self.grants.iter().map(|g| g.name.as_str()).collect()
    }

    /// A connection of the grant called `name` (not an address), for the
    /// operator's `nimbus sql`; `None` when there is no such grant.
    pub async fn lease(&self, name: &str) -> Option<Result<Lease, PgError>> {
        let grant = self.grants.iter().find(|g| g.name.as_str() == name)?;
        Some(grant.pool.lease(self.limits.timeout).await)
    }

    /// The grant `address` names: a grant's name, or a connection URL (or
    /// `key=value` string) for the same database as a grant's. A refusal is
    /// `connection-failed` (Spin's interface has no case of its own for it)
    /// starting `access denied: `, which `nimbus-sdk` reads.
    fn grant(&self, address: &str) -> Result<&Grant, PgError> {
        if let Some(grant) = self.grants.iter().find(|g| g.name.as_str() == address) {
            return Ok(grant);
        }
        let granted = || {
            if self.grants.is_empty() {
                "it grants none (add `postgres = { name = \"URL\" }` to the function)".to_owned()
            } else {
                let names: Vec<&str> = self.grants.iter().map(|g| g.name.as_str()).collect();
                format!(
                    "it grants {}: open one by its name, or by its URL",
                    names.join(", ")
                )
            }
        };
        let Ok(wanted) = address.parse::<Config>() else {
            return Err(PgError::ConnectionFailed(format!(
                "access denied: function `{}` has no PostgreSQL database by that name, and the address is not a connection URL; {}",
                self.function,
                granted()
            )));
        };
        self.grants
            .iter()
            .find(|g| same_database(&g.config, &wanted))
            .ok_or_else(|| {
                PgError::ConnectionFailed(format!(
                    "access denied: function `{}` may not connect to {}: its manifest does not grant that database; {}",
                    self.function,
                    describe(&wanted),
                    granted()
                ))
            })
    }
}

/// Whether `wanted` names the database `granted` connects to: the same
/// hosts, ports and database, and the same user if it names one (its
/// password, if any, is ignored: the grant's is used).
fn same_database(granted: &Config, wanted: &Config) -> bool {
    let ports = |c: &Config| -> Vec<u16> {
        if c.get_ports().is_empty() {
            vec![5432]
        } else {
            c.get_ports().to_vec()
        }
    };
    let dbname = |c: &Config| c.get_dbname().or(c.get_user()).map(str::to_owned);
    granted.get_hosts() == wanted.get_hosts()
        && ports(granted) == ports(wanted)
        && dbname(granted) == dbname(wanted)
        && wanted
            .get_user()
            .is_none_or(|user| Some(user) == granted.get_user())
}

/// A database's address for an error, without its password.
fn describe(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    format!(
        "postgres://{}{}{}/{}",
        config
            .get_user()
            .map(|u| format!("{u}@"))
            .unwrap_or_default(),
        hosts.join(","),
        if ports.is_empty() {
            String::new()
        } else {
            format!(":{}", ports.join(","))
        },
        config.get_dbname().unwrap_or("")
    )
}

/// The host side of `connection`: one pooled connection, held until the
/// guest drops it. Calls on it take turns (a WASI 0.3 guest may make
/// several at once).
pub struct Conn {
    lease: Arc<AsyncMutex<Lease>>,
}

/// The host side of `connection-builder`: the address it will open.
pub struct Builder {
    address: String,
}

/// The PostgreSQL connections an instance has open.
pub type OpenConnections = connections::OpenConnections<Lease>;

impl connections::Lease for Lease {
    /// Rolls back and resets the session of a connection the instance
    /// keeps, so its next request starts as on a fresh one.
    fn end_transaction(mut lease: tokio::sync::OwnedMutexGuard<Lease>) {
        if !lease.needs_cleanup() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { lease.end_request().await });
        }
    }
}

/// How the PostgreSQL interfaces find their state in the store data.
pub struct PostgresView<'a> {
    /// The grants.
    pub ctx: &'a PostgresCtx,
    /// The instance's resource table.
    pub table: &'a mut ResourceTable,
    /// The instance's open connections.
    pub open: &'a mut OpenConnections,
}

struct HasPostgres;

impl HasData for HasPostgres {
    type Data<'a> = PostgresView<'a>;
}

/// Adds `spin:postgres@4.1.0`, and with `concurrent` (the WASI 0.3 engine)
/// `@4.2.0` instead, to `linker`.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    concurrent: bool,
    view: fn(&mut T) -> PostgresView<'_>,
) -> wasmtime::Result<()> {
    if concurrent {
        async_api::add_to_linker::<T, HasPostgres>(linker, view)
    } else {
        sync_api::add_to_linker::<T, HasPostgres>(linker, view)
    }
}

/// TLS is not offered yet, so a CA root has nowhere to go.
const NO_TLS: &str = "Nimbus connects to PostgreSQL without TLS for now, so it takes no CA root; connect over a private network or a local socket";

/// Leases a connection to the database `address` names, if `ctx` grants it.
async fn open(ctx: &PostgresCtx, address: &str) -> Result<Conn, PgError> {
    let lease = ctx.grant(address)?.pool.lease(ctx.limits.timeout).await?;
    Ok(Conn {
        lease: Arc::new(AsyncMutex::new(lease)),
    })
}

/// Runs one statement on `lease`, once the connection's earlier calls are
/// done, and returns its rows.
async fn run(
    lease: Arc<AsyncMutex<Lease>>,
    limits: StatementLimits,
    statement: String,
    params: Vec<PgValue>,
) -> Result<RowSet, PgError> {
    lease
        .lock_owned()
        .await
        .query(&statement, &params, limits)
        .await
}

/// Runs one statement on `lease`, once the connection's earlier calls are
/// done, and returns how many rows it changed.
async fn execute(
    lease: Arc<AsyncMutex<Lease>>,
    limits: StatementLimits,
    statement: String,
    params: Vec<PgValue>,
) -> Result<u64, PgError> {
    lease
        .lock_owned()
        .await
        .execute(&statement, &params, limits)
        .await
}

impl PostgresView<'_> {
    fn lease(&self, conn: &Resource<Conn>) -> wasmtime::Result<Arc<AsyncMutex<Lease>>> {
        Ok(self.table.get(conn)?.lease.clone())
    }

    async fn open_conn(
        &mut self,
        address: String,
    ) -> wasmtime::Result<Result<Resource<Conn>, PgError>> {
        if let Err(e) = self.open.reserve() {
            return Ok(Err(PgError::ConnectionFailed(e)));
        }
        Ok(match open(self.ctx, &address).await {
            Ok(conn) => {
                self.open.track(&conn.lease);
                Ok(self.table.push(conn)?)
            }
            Err(e) => Err(e),
        })
    }
}

/// Opens `address` for a WASI 0.3 guest, between its other calls.
async fn open_async<T>(
    accessor: &Accessor<T, HasPostgres>,
    address: String,
) -> wasmtime::Result<Result<Resource<Conn>, PgError>> {
    let ctx = accessor.with(|mut access| {
        let view = access.get();
        view.open.reserve().map(|()| view.ctx.clone())
    });
    let ctx = match ctx {
        Ok(ctx) => ctx,
        Err(e) => return Ok(Err(PgError::ConnectionFailed(e))),
    };
    Ok(match open(&ctx, &address).await {
        Ok(conn) => Ok(accessor.with(|mut access| {
            let view = access.get();
            view.open.track(&conn.lease);
            view.table.push(conn)
        })?),
        Err(e) => Err(e),
    })
}

/// The lease of `conn` and the limits, for a WASI 0.3 guest's call.
fn lease_of<T>(
    accessor: &Accessor<T, HasPostgres>,
    conn: &Resource<Conn>,
) -> wasmtime::Result<(Arc<AsyncMutex<Lease>>, StatementLimits)> {
    accessor.with(|mut access| {
        let view = access.get();
        Ok((view.lease(conn)?, view.ctx.limits))
    })
}

/// The conversions from and to one version's types, and that version's
/// functions without async, which are the same in 4.1.0 and 4.2.0.
macro_rules! spin_postgres {
    ($api:ident) => {
        impl From<PgError> for $api::Error {
            fn from(e: PgError) -> $api::Error {
                use $api::{DbError, Error, QueryError};
                match e {
                    PgError::ConnectionFailed(m) => Error::ConnectionFailed(m),
                    PgError::BadParameter(m) => Error::BadParameter(m),
                    PgError::ValueConversion(m) => Error::ValueConversionFailed(m),
                    PgError::Query(m) => Error::QueryFailed(QueryError::Text(m)),
                    PgError::Db(db) => Error::QueryFailed(QueryError::DbError(DbError {
                        as_text: db.as_text,
                        severity: db.severity,
                        code: db.code,
                        message: db.message,
                        detail: db.detail,
                        extras: db.extras,
                    })),
                }
            }
        }

        impl From<$api::ParameterValue> for PgValue {
            fn from(value: $api::ParameterValue) -> PgValue {
                use $api::ParameterValue as P;
                fn bound<V>(b: Option<(V, $api::RangeBoundKind)>) -> Option<(V, bool)> {
                    b.map(|(v, kind)| (v, kind == $api::RangeBoundKind::Inclusive))
                }
                match value {
                    P::Boolean(v) => PgValue::Bool(v),
                    P::Int8(v) => PgValue::Int8(v),
                    P::Int16(v) => PgValue::Int16(v),
                    P::Int32(v) => PgValue::Int32(v),
                    P::Int64(v) => PgValue::Int64(v),
                    P::Floating32(v) => PgValue::Float32(v),
                    P::Floating64(v) => PgValue::Float64(v),
                    P::Str(v) => PgValue::Text(v),
                    P::Binary(v) => PgValue::Binary(v),
                    P::Date((y, m, d)) => PgValue::Date(y, m, d),
                    P::Time((h, m, s, ns)) => PgValue::Time(h, m, s, ns),
                    P::Datetime((y, mo, d, h, mi, s, ns)) => {
                        PgValue::DateTime(y, mo, d, h, mi, s, ns)
                    }
                    P::Timestamp(v) => PgValue::Timestamp(v),
                    P::Uuid(v) => PgValue::Uuid(v),
                    P::Jsonb(v) => PgValue::Jsonb(v),
                    P::Decimal(v) => PgValue::Decimal(v),
                    P::RangeInt32((lo, hi)) => PgValue::RangeInt32(bound(lo), bound(hi)),
                    P::RangeInt64((lo, hi)) => PgValue::RangeInt64(bound(lo), bound(hi)),
                    P::RangeDecimal((lo, hi)) => PgValue::RangeDecimal(bound(lo), bound(hi)),
                    P::ArrayInt32(v) => PgValue::ArrayInt32(v),
                    P::ArrayInt64(v) => PgValue::ArrayInt64(v),
                    P::ArrayDecimal(v) => PgValue::ArrayDecimal(v),
                    P::ArrayStr(v) => PgValue::ArrayText(v),
                    P::Interval(i) => PgValue::Interval {
                        micros: i.micros,
                        days: i.days,
                        months: i.months,
                    },
                    P::DbNull => PgValue::Null,
                }
            }
        }

        impl From<PgValue> for $api::DbValue {
            fn from(value: PgValue) -> $api::DbValue {
                use $api::DbValue as V;
                fn bound<T>(b: Option<(T, bool)>) -> Option<(T, $api::RangeBoundKind)> {
                    b.map(|(v, inclusive)| {
                        let kind = if inclusive {
                            $api::RangeBoundKind::Inclusive
                        } else {
                            $api::RangeBoundKind::Exclusive
                        };
                        (v, kind)
                    })
                }
                match value {
                    PgValue::Bool(v) => V::Boolean(v),
                    PgValue::Int8(v) => V::Int8(v),
                    PgValue::Int16(v) => V::Int16(v),
                    PgValue::Int32(v) => V::Int32(v),
                    PgValue::Int64(v) => V::Int64(v),
                    PgValue::Float32(v) => V::Floating32(v),
                    PgValue::Float64(v) => V::Floating64(v),
                    PgValue::Text(v) => V::Str(v),
                    PgValue::Binary(v) => V::Binary(v),
                    PgValue::Date(y, m, d) => V::Date((y, m, d)),
                    PgValue::Time(h, m, s, ns) => V::Time((h, m, s, ns)),
                    PgValue::DateTime(y, mo, d, h, mi, s, ns) => {
                        V::Datetime((y, mo, d, h, mi, s, ns))
                    }
                    PgValue::Timestamp(v) => V::Timestamp(v),
                    PgValue::Uuid(v) => V::Uuid(v),
                    PgValue::Jsonb(v) => V::Jsonb(v),
                    PgValue::Decimal(v) => V::Decimal(v),
                    PgValue::RangeInt32(lo, hi) => V::RangeInt32((bound(lo), bound(hi))),
                    PgValue::RangeInt64(lo, hi) => V::RangeInt64((bound(lo), bound(hi))),
                    PgValue::RangeDecimal(lo, hi) => V::RangeDecimal((bound(lo), bound(hi))),
                    PgValue::ArrayInt32(v) => V::ArrayInt32(v),
                    PgValue::ArrayInt64(v) => V::ArrayInt64(v),
                    PgValue::ArrayDecimal(v) => V::ArrayDecimal(v),
                    PgValue::ArrayText(v) => V::ArrayStr(v),
                    PgValue::Interval {
                        micros,
                        days,
                        months,
                    } => V::Interval($api::Interval {
                        micros,
                        days,
                        months,
                    }),
                    PgValue::Null => V::DbNull,
                    PgValue::Unsupported(v) => V::Unsupported(v),
                }
            }
        }

        impl From<ColumnType> for $api::DbDataType {
            fn from(ty: ColumnType) -> $api::DbDataType {
                use $api::DbDataType as T;
                match ty {
                    ColumnType::Bool => T::Boolean,
                    ColumnType::Int8 => T::Int8,
                    ColumnType::Int16 => T::Int16,
                    ColumnType::Int32 => T::Int32,
                    ColumnType::Int64 => T::Int64,
                    ColumnType::Float32 => T::Floating32,
                    ColumnType::Float64 => T::Floating64,
                    ColumnType::Text => T::Str,
                    ColumnType::Binary => T::Binary,
                    ColumnType::Date => T::Date,
                    ColumnType::Time => T::Time,
                    ColumnType::DateTime => T::Datetime,
                    ColumnType::Uuid => T::Uuid,
                    ColumnType::Jsonb => T::Jsonb,
                    ColumnType::Decimal => T::Decimal,
                    ColumnType::RangeInt32 => T::RangeInt32,
                    ColumnType::RangeInt64 => T::RangeInt64,
                    ColumnType::RangeDecimal => T::RangeDecimal,
                    ColumnType::ArrayInt32 => T::ArrayInt32,
                    ColumnType::ArrayInt64 => T::ArrayInt64,
                    ColumnType::ArrayDecimal => T::ArrayDecimal,
                    ColumnType::ArrayText => T::ArrayStr,
                    ColumnType::Interval => T::Interval,
                    ColumnType::Other(name) => T::Other(name),
                }
            }
        }

        impl From<RowSet> for $api::RowSet {
            fn from(set: RowSet) -> $api::RowSet {
                $api::RowSet {
                    columns: set
                        .columns
                        .into_iter()
                        .map(|(name, ty)| $api::Column {
                            name,
                            data_type: ty.into(),
                        })
                        .collect(),
                    rows: set
                        .rows
                        .into_iter()
                        .map(|row| row.into_iter().map(Into::into).collect())
                        .collect(),
                }
            }
        }

        impl $api::Host for PostgresView<'_> {}

        impl $api::HostConnection for PostgresView<'_> {
            async fn open(
                &mut self,
                address: String,
            ) -> wasmtime::Result<Result<Resource<Conn>, $api::Error>> {
                Ok(self.open_conn(address).await?.map_err(Into::into))
            }

            async fn query(
                &mut self,
                conn: Resource<Conn>,
                statement: String,
                params: Vec<$api::ParameterValue>,
            ) -> wasmtime::Result<Result<$api::RowSet, $api::Error>> {
                let params = params.into_iter().map(PgValue::from).collect();
                let rows = run(self.lease(&conn)?, self.ctx.limits, statement, params).await;
                Ok(rows.map(Into::into).map_err(Into::into))
            }

            async fn execute(
                &mut self,
                conn: Resource<Conn>,
                statement: String,
                params: Vec<$api::ParameterValue>,
            ) -> wasmtime::Result<Result<u64, $api::Error>> {
                let params = params.into_iter().map(PgValue::from).collect();
                let changed = execute(self.lease(&conn)?, self.ctx.limits, statement, params).await;
                Ok(changed.map_err(Into::into))
            }

            async fn drop(&mut self, conn: Resource<Conn>) -> wasmtime::Result<()> {
                self.table.delete(conn)?;
                Ok(())
            }
        }

        impl $api::HostConnectionBuilder for PostgresView<'_> {
            async fn new(&mut self, address: String) -> wasmtime::Result<Resource<Builder>> {
                Ok(self.table.push(Builder { address })?)
            }

            async fn set_ca_root(
                &mut self,
                _builder: Resource<Builder>,
                _certificate: String,
            ) -> wasmtime::Result<Result<(), $api::Error>> {
                Ok(Err($api::Error::Other(NO_TLS.into())))
            }

            async fn build(
                &mut self,
                builder: Resource<Builder>,
            ) -> wasmtime::Result<Result<Resource<Conn>, $api::Error>> {
                let address = self.table.get(&builder)?.address.clone();
                Ok(self.open_conn(address).await?.map_err(Into::into))
            }

            async fn drop(&mut self, builder: Resource<Builder>) -> wasmtime::Result<()> {
                self.table.delete(builder)?;
                Ok(())
            }
        }
    };
}

spin_postgres!(sync_api);
spin_postgres!(async_api);

/// The columns, a stream of rows and a future of how the statement ended.
type Streamed = (
    Vec<async_api::Column>,
    StreamReader<Vec<async_api::DbValue>>,
    FutureReader<Result<(), async_api::Error>>,
);

impl<T> async_api::HostConnectionWithStore<T> for HasPostgres {
    async fn open_async(
        accessor: &Accessor<T, Self>,
        address: String,
    ) -> wasmtime::Result<Result<Resource<Conn>, async_api::Error>> {
        Ok(open_async(accessor, address).await?.map_err(Into::into))
    }

    /// The whole result is read (within `limits.sql_rows` and
    /// `sql_result_size`) before the first row is streamed, so the
    /// connection is free again by then.
    async fn query_async(
        accessor: &Accessor<T, Self>,
        conn: Resource<Conn>,
        statement: String,
        params: Vec<async_api::ParameterValue>,
    ) -> wasmtime::Result<Result<Streamed, async_api::Error>> {
        let (lease, limits) = lease_of(accessor, &conn)?;
        let params = params.into_iter().map(PgValue::from).collect();
        let set = match run(lease, limits, statement, params).await {
            Ok(set) => set,
            Err(e) => return Ok(Err(e.into())),
        };
        let async_api::RowSet { columns, rows } = set.into();
        accessor.with(|mut access| {
            let rows = StreamReader::new(&mut access, rows)?;
            let done = FutureReader::new(&mut access, async { Ok::<_, wasmtime::Error>(Ok(())) })?;
            Ok(Ok((columns, rows, done)))
        })
    }

    async fn execute_async(
        accessor: &Accessor<T, Self>,
        conn: Resource<Conn>,
        statement: String,
        params: Vec<async_api::ParameterValue>,
    ) -> wasmtime::Result<Result<u64, async_api::Error>> {
        let (lease, limits) = lease_of(accessor, &conn)?;
        let params = params.into_iter().map(PgValue::from).collect();
        Ok(execute(lease, limits, statement, params)
            .await
            .map_err(Into::into))
    }
}

impl<T> async_api::HostConnectionBuilderWithStore<T> for HasPostgres {
    async fn build_async(
        accessor: &Accessor<T, Self>,
        builder: Resource<Builder>,
    ) -> wasmtime::Result<Result<Resource<Conn>, async_api::Error>> {
        let address = accessor.with(|mut access| {
            Ok::<_, wasmtime::Error>(access.get().table.get(&builder)?.address.clone())
        })?;
        Ok(open_async(accessor, address).await?.map_err(Into::into))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_matches_a_grant_by_host_port_database_and_user() {
        let granted: Config = "postgres://app:secret@127.0.0.1:5432/orders"
            .parse()
            .unwrap();
        let same = |url: &str| same_database(&granted, &url.parse().unwrap());
        assert!(same("postgres://app@127.0.0.1/orders"));
        assert!(same("host=127.0.0.1 dbname=orders"));
        assert!(same("postgres://app:other@127.0.0.1:5432/orders"));
        assert!(!same("postgres://app@127.0.0.1:5432/users"));
        assert!(!same("postgres://admin@127.0.0.1:5432/orders"));
        assert!(!same("postgres://app@127.0.0.2:5432/orders"));
        assert!(!same("postgres://app@127.0.0.1:5433/orders"));
        assert_eq!(describe(&granted), "postgres://app@127.0.0.1:5432/orders");
    }
}
