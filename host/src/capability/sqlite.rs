//! SQLite databases through Spin's interface: `spin:sqlite/sqlite@3.1.0` for
//! WASI 0.3 components (with its async functions, which spin-sdk 7 calls),
//! `@3.0.0` (the same without them) for WASI 0.2 components such as
//! `nimbus-sdk`'s. A component built against either links on either engine
//! that has it.
//!
//! A function may open only the databases its manifest lists in `sqlite`;
//! anything else is `access-denied`. Each guest connection leases its own
//! SQLite connection ([`Lease`]): statements run off the async workers,
//! under the function's `limits.sql_*`, and a transaction the guest leaves
//! open is rolled back when the connection or the instance ends.

use crate::backend::sqlite::{Database, Lease, QueryOutput, SqlError, SqlValue, StatementLimits};
use crate::capability::connections;
use crate::manifest::StoreName;
use std::sync::Arc;
use tokio::sync::Mutex as AsyncMutex;
use wasmtime::component::{
    Accessor, FutureReader, HasData, Linker, Resource, ResourceTable, StreamReader,
};

mod v3_0 {
    wasmtime::component::bindgen!({
        path: "wit/spin",
        world: "nimbus:spin/sqlite-sync",
        imports: { default: async | trappable },
        with: {
            "spin:sqlite/sqlite@3.0.0.connection": crate::capability::sqlite::Conn,
        },
    });
}

mod v3_1 {
    wasmtime::component::bindgen!({
        path: "wit/spin",
        world: "nimbus:spin/sqlite",
        imports: { default: async | trappable },
        with: {
            "spin:sqlite/sqlite@3.1.0.connection": crate::capability::sqlite::Conn,
        },
    });
}

use v3_0::spin::sqlite3_0_0::sqlite as sync_api;
use v3_1::spin::sqlite3_1_0::sqlite as async_api;

/// A function's SQLite grants: its databases, opened when the app loaded,
/// and the limits on each statement.
#[derive(Clone)]
pub struct SqliteCtx {
    databases: Arc<[(StoreName, Arc<Database>)]>,
    limits: StatementLimits,
}

impl SqliteCtx {
    /// Grants `databases` under `limits`.
    pub fn new(databases: Vec<(StoreName, Arc<Database>)>, limits: StatementLimits) -> SqliteCtx {
        SqliteCtx {
            databases: databases.into(),
            limits,
        }
    }

    /// The statement limits of the function.
    pub fn limits(&self) -> StatementLimits {
        self.limits
    }

    /// The granted database `name`, if the function lists it.
    pub fn database(&self, name: &str) -> Option<Arc<Database>> {
        self.databases
            .iter()
            .find(|(granted, _)| granted.as_str() == name)
            .map(|(_, db)| db.clone())
    }
}

/// The host side of `connection`: one leased SQLite connection. Calls on
/// it take turns (a WASI 0.3 guest may make several at once).
pub struct Conn {
    lease: Arc<AsyncMutex<Lease>>,
}

/// How the SQLite interfaces find their state in the store data.
pub struct SqliteView<'a> {
    /// The grants.
    pub ctx: &'a SqliteCtx,
    /// The instance's resource table.
    pub table: &'a mut ResourceTable,
    /// The instance's open connections.
    pub open: &'a mut OpenConnections,
}

/// The SQLite connections an instance has open.
pub type OpenConnections = connections::OpenConnections<Lease>;

impl connections::Lease for Lease {
    fn end_transaction(lease: tokio::sync::OwnedMutexGuard<Lease>) {
        lease.end_transaction();
    }
}

struct HasSqlite;

impl HasData for HasSqlite {
    type Data<'a> = SqliteView<'a>;
}

/// Adds `spin:sqlite@3.0.0`, and with `concurrent` (the WASI 0.3 engine)
/// `@3.1.0` instead, to `linker`.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    concurrent: bool,
    view: fn(&mut T) -> SqliteView<'_>,
) -> wasmtime::Result<()> {
    if concurrent {
        async_api::add_to_linker::<T, HasSqlite>(linker, view)
    } else {
        sync_api::add_to_linker::<T, HasSqlite>(linker, view)
    }
}

/// Runs blocking SQLite work off the async workers.
async fn blocking<R: Send + 'static>(
    work: impl FnOnce() -> R + Send + 'static,
) -> wasmtime::Result<R> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| wasmtime::format_err!("a SQLite call failed: {e}"))
}

/// Why a call failed, before it is put in one version's `error`.
enum Fault {
    AccessDenied,
    Full,
    Io(String),
}

impl From<SqlError> for Fault {
    fn from(e: SqlError) -> Fault {
        match e {
            SqlError::Full { .. } => Fault::Full,
            e @ SqlError::NotReadOnly => Fault::Io(e.to_string()),
            SqlError::Other(message) => Fault::Io(message),
        }
    }
}

/// Leases a connection to `name` for a guest, if `ctx` grants it.
async fn open(ctx: &SqliteCtx, name: &str) -> wasmtime::Result<Result<Conn, Fault>> {
    let Some(db) = ctx.database(name) else {
        return Ok(Err(Fault::AccessDenied));
    };
    Ok(blocking(move || db.lease())
        .await?
        .map_err(Fault::from)
        .map(|lease| Conn {
            lease: Arc::new(AsyncMutex::new(lease)),
        }))
}

/// Runs one statement on `lease`, once the connection's earlier calls are done.
async fn execute(
    lease: Arc<AsyncMutex<Lease>>,
    limits: StatementLimits,
    statement: String,
    parameters: Vec<SqlValue>,
) -> wasmtime::Result<Result<QueryOutput, Fault>> {
    let mut lease = lease.lock_owned().await;
    let output = blocking(move || lease.execute(&statement, parameters, limits)).await?;
    Ok(output.map_err(Fault::from))
}

impl SqliteView<'_> {
    fn lease(&self, conn: &Resource<Conn>) -> wasmtime::Result<Arc<AsyncMutex<Lease>>> {
        Ok(self.table.get(conn)?.lease.clone())
    }

    async fn open_conn(
        &mut self,
        database: String,
    ) -> wasmtime::Result<Result<Resource<Conn>, Fault>> {
        if let Err(e) = self.open.reserve() {
            return Ok(Err(Fault::Io(e)));
        }
        Ok(match open(self.ctx, &database).await? {
            Ok(conn) => {
                self.open.track(&conn.lease);
                Ok(self.table.push(conn)?)
            }
            Err(e) => Err(e),
        })
    }

    async fn run(
        &mut self,
        conn: &Resource<Conn>,
        statement: String,
        parameters: Vec<SqlValue>,
    ) -> wasmtime::Result<Result<QueryOutput, Fault>> {
        execute(self.lease(conn)?, self.ctx.limits, statement, parameters).await
    }
}

/// The conversions from and to one version's types (values, results and
/// errors), and that version's functions without async, which
/// are the same in 3.0.0 and 3.1.0.
macro_rules! spin_sqlite {
    ($api:ident) => {
        impl From<Fault> for $api::Error {
            fn from(fault: Fault) -> $api::Error {
                match fault {
                    Fault::AccessDenied => $api::Error::AccessDenied,
                    Fault::Full => $api::Error::DatabaseFull,
                    Fault::Io(message) => $api::Error::Io(message),
                }
            }
        }

        impl From<$api::Value> for SqlValue {
            fn from(value: $api::Value) -> SqlValue {
                match value {
                    $api::Value::Integer(i) => SqlValue::Integer(i),
                    $api::Value::Real(f) => SqlValue::Real(f),
                    $api::Value::Text(s) => SqlValue::Text(s),
                    $api::Value::Blob(b) => SqlValue::Blob(b),
                    $api::Value::Null => SqlValue::Null,
                }
            }
        }

        impl From<SqlValue> for $api::Value {
            fn from(value: SqlValue) -> $api::Value {
                match value {
                    SqlValue::Integer(i) => $api::Value::Integer(i),
                    SqlValue::Real(f) => $api::Value::Real(f),
                    SqlValue::Text(s) => $api::Value::Text(s),
                    SqlValue::Blob(b) => $api::Value::Blob(b),
                    SqlValue::Null => $api::Value::Null,
                }
            }
        }

        impl From<QueryOutput> for $api::QueryResult {
            fn from(output: QueryOutput) -> $api::QueryResult {
                $api::QueryResult {
                    columns: output.columns,
                    rows: output
                        .rows
                        .into_iter()
                        .map(|values| $api::RowResult {
                            values: values.into_iter().map(Into::into).collect(),
                        })
                        .collect(),
                }
            }
        }

        impl $api::Host for SqliteView<'_> {}

        impl $api::HostConnection for SqliteView<'_> {
            async fn open(
                &mut self,
                database: String,
            ) -> wasmtime::Result<Result<Resource<Conn>, $api::Error>> {
                Ok(self.open_conn(database).await?.map_err(Into::into))
            }

            async fn execute(
                &mut self,
                conn: Resource<Conn>,
                statement: String,
                parameters: Vec<$api::Value>,
            ) -> wasmtime::Result<Result<$api::QueryResult, $api::Error>> {
                let parameters = parameters.into_iter().map(SqlValue::from).collect();
                let output = self.run(&conn, statement, parameters).await?;
                Ok(output.map(Into::into).map_err(Into::into))
            }

            async fn last_insert_rowid(&mut self, conn: Resource<Conn>) -> wasmtime::Result<i64> {
                Ok(self.lease(&conn)?.lock().await.last_insert_rowid())
            }

            async fn changes(&mut self, conn: Resource<Conn>) -> wasmtime::Result<u64> {
                Ok(self.lease(&conn)?.lock().await.changes())
            }

            async fn drop(&mut self, conn: Resource<Conn>) -> wasmtime::Result<()> {
                self.table.delete(conn)?;
                Ok(())
            }
        }
    };
}

spin_sqlite!(sync_api);
spin_sqlite!(async_api);

/// The columns, a stream of rows and a future of how the statement ended.
type Streamed = (
    Vec<String>,
    StreamReader<async_api::RowResult>,
    FutureReader<Result<(), async_api::Error>>,
);

impl<T> async_api::HostConnectionWithStore<T> for HasSqlite {
    async fn open_async(
        accessor: &Accessor<T, Self>,
        database: String,
    ) -> wasmtime::Result<Result<Resource<Conn>, async_api::Error>> {
        let ctx = accessor.with(|mut access| {
            let view = access.get();
            view.open
                .reserve()
                .map(|()| view.ctx.clone())
                .map_err(Fault::Io)
        });
        let ctx = match ctx {
            Ok(ctx) => ctx,
            Err(e) => return Ok(Err(e.into())),
        };
        Ok(match open(&ctx, &database).await? {
            Ok(conn) => Ok(accessor.with(|mut access| {
                let view = access.get();
                view.open.track(&conn.lease);
                view.table.push(conn)
            })?),
            Err(e) => Err(e.into()),
        })
    }

    /// The whole result is read (within `limits.sql_rows` and
    /// `sql_result_size`) before the first row is streamed, so the
    /// statement's connection is free again by then.
    async fn execute_async(
        accessor: &Accessor<T, Self>,
        conn: Resource<Conn>,
        statement: String,
        parameters: Vec<async_api::Value>,
    ) -> wasmtime::Result<Result<Streamed, async_api::Error>> {
        let (lease, limits) = accessor.with(|mut access| {
            let view = access.get();
            Ok::<_, wasmtime::Error>((view.lease(&conn)?, view.ctx.limits))
        })?;
        let parameters = parameters.into_iter().map(SqlValue::from).collect();
        let output = match execute(lease, limits, statement, parameters).await? {
            Ok(output) => output,
            Err(e) => return Ok(Err(e.into())),
        };
        let async_api::QueryResult { columns, rows } = output.into();
        accessor.with(|mut access| {
            let rows = StreamReader::new(&mut access, rows)?;
            let done = FutureReader::new(&mut access, async { Ok::<_, wasmtime::Error>(Ok(())) })?;
            Ok(Ok((columns, rows, done)))
        })
    }

    async fn last_insert_rowid_async(
        accessor: &Accessor<T, Self>,
        conn: Resource<Conn>,
    ) -> wasmtime::Result<i64> {
        let lease = accessor.with(|mut access| access.get().lease(&conn))?;
        Ok(lease.lock().await.last_insert_rowid())
    }

    async fn changes_async(
        accessor: &Accessor<T, Self>,
        conn: Resource<Conn>,
    ) -> wasmtime::Result<u64> {
        let lease = accessor.with(|mut access| access.get().lease(&conn))?;
        Ok(lease.lock().await.changes())
    }
}
