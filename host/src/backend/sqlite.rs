//! SQLite databases for functions: one file per app and database name in
//! the state folder, opened with `rusqlite`, migrated once when an app loads.
//!
//! SQLite is node-local: a cluster has no [`Databases`] (the app is refused
//! at load), and shares PostgreSQL instead.
//!
//! A guest's connection is a [`Lease`] on one SQLite connection: its own, so
//! a transaction it begins is seen by no other request, and rolled back when
//! the lease ends (the guest dropped the connection, or its instance ended).
//! Guest statements run under [`StatementLimits`] and an authorizer: no
//! `ATTACH` (which would reach any file on the host), and only the pragmas
//! that read the schema.

use crate::manifest::{MigrationFile, SqliteSpec};
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, ErrorCode, OpenFlags, params_from_iter};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Idle connections kept per database for the next lease.
const MAX_IDLE: usize = 16;

/// The table recording applied migrations, in each database.
pub const MIGRATIONS_TABLE: &str = "_nimbus_migrations";

/// How long a statement waiting for another connection's write lock sleeps
/// between two tries. SQLite's own busy timeout backs off to 100 ms sleeps,
/// which at 16 concurrent writers made a p99 of 800 ms.
const BUSY_POLL: Duration = Duration::from_micros(500);

thread_local! {
    /// When the statement running on this thread must give up waiting for
    /// a lock: what [`busy`] reads, as SQLite's busy handler takes no state.
    static DEADLINE: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
}

/// The busy handler of every connection: wait a little and try again, until
/// the running statement's deadline.
fn busy(_attempts: i32) -> bool {
    let waiting = DEADLINE
        .with(|d| d.get())
        .is_some_and(|d| Instant::now() < d);
    if waiting {
        std::thread::sleep(BUSY_POLL);
    }
    waiting
}

/// The smallest cap on one value's length, whatever `sql_result_size` says:
/// room for the statement's own work on short strings.
const MIN_VALUE_LIMIT: u64 = 1024;

/// SQLite's virtual-machine steps between two checks of a statement's
/// deadline: about a millisecond of work or less.
const PROGRESS_STEPS: i32 = 10_000;

/// Pragmas a guest may run with an argument: each reads the schema or
/// checks the file, except `user_version`, the application's own number.
const GUEST_PRAGMAS: &[&str] = &[
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "foreign_key_check",
    "integrity_check",
    "quick_check",
    "user_version",
];

/// Pragmas a guest may read but not set. Everything else (`journal_mode`,
/// `max_page_count`, `foreign_keys`, `writable_schema`, ...) is the host's.
const GUEST_READ_PRAGMAS: &[&str] = &[
    "page_count",
    "page_size",
    "freelist_count",
    "data_version",
    "schema_version",
    "collation_list",
    "foreign_keys",
];

/// Every database of this node, by app and name, opened on first use.
pub struct Databases {
    root: PathBuf,
    open: Mutex<HashMap<(String, String), Arc<Database>>>,
}

/// One database: its file and the idle connections to it.
pub struct Database {
    /// The app's name and the database's, for errors.
    pub label: String,
    path: PathBuf,
    max_size: u64,
    idle: Mutex<Vec<Connection>>,
    /// Taken by a writing statement outside an explicit transaction while
    /// it runs: writers queue here, in the process, rather than poll
    /// SQLite's file lock.
    writes: parking_lot::Mutex<()>,
}

pub use super::StatementLimits;

/// A value in a statement's parameters or its result.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
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

/// A statement's result: column names and rows.
#[derive(Debug, Default)]
pub struct QueryOutput {
    /// The result's column names, in order.
    pub columns: Vec<String>,
    /// Each row's values, in column order.
    pub rows: Vec<Vec<SqlValue>>,
}

/// Why a statement or a database failed, explained for the guest or the
/// operator.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The database reached its `max_size`.
    #[error("database `{database}` is full: it may hold {} (`max_size`)", crate::manifest::format_bytes(*max_size))]
    Full {
        /// The database.
        database: String,
        /// Its cap.
        max_size: u64,
    },
    /// A statement that writes, where only reading was allowed.
    #[error(
        "the statement writes to the database, and only read-only statements were allowed (`nimbus sql --write` allows writes)"
    )]
    NotReadOnly,
    /// Anything else: SQL errors, limits, I/O.
    #[error("{0}")]
    Other(String),
}

/// Why a database could not be made ready when the app loaded.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// The file or folder could not be opened, or SQLite refused to start.
    #[error("SQLite database `{database}` ({}): {message}", path.display())]
    Open {
        /// The database.
        database: String,
        /// Its file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A migration file could not be read.
    #[error("migration {} of database `{database}` cannot be read: {source}", path.display())]
    Read {
        /// The database.
        database: String,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A migration failed; nothing of this start's migrations was applied.
    #[error("migration {} of database `{database}` failed, so none of the pending migrations was applied: {message}", path.display())]
    Failed {
        /// The database.
        database: String,
        /// The file.
        path: PathBuf,
        /// SQLite's error.
        message: String,
    },
    /// An applied migration was edited after it was applied.
    #[error(
        "migration {} of database `{database}` was applied on {applied_at} and has changed since; an applied migration must not change: put the new statements in a new migration file (and restore this one)",
        path.display()
    )]
    Changed {
        /// The database.
        database: String,
        /// The file.
        path: PathBuf,
        /// When it was applied (UTC).
        applied_at: String,
    },
}

impl Databases {
    /// Databases under `root` (created when the first one opens).
    pub fn new(root: &Path) -> Databases {
        Databases {
            root: root.to_owned(),
            open: Mutex::new(HashMap::new()),
        }
    }

    /// The file of `app`'s database `name`.
    pub fn file(&self, app: &str, name: &str) -> PathBuf {
        self.root.join(app).join(format!("{name}.db"))
    }

    /// `app`'s database `name`, opened (the file created if new) and
    /// migrated: every migration of `spec` not yet recorded in it is applied,
    /// all in one transaction. Blocking.
    pub fn open(
        &self,
        app: &str,
        name: &str,
        spec: &SqliteSpec,
    ) -> Result<Arc<Database>, MigrationError> {
        let key = (app.to_owned(), name.to_owned());
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let db = match open.get(&key) {
            Some(db) => db.clone(),
            None => {
                let db = Arc::new(Database {
                    label: format!("{app}/{name}"),
                    path: self.file(app, name),
                    max_size: spec.max_size,
                    idle: Mutex::new(Vec::new()),
                    writes: parking_lot::Mutex::new(()),
                });
                db.create()?;
                open.insert(key, db.clone());
                db
            }
        };
        drop(open);
        db.migrate(&spec.migrations)?;
        Ok(db)
    }
}

impl Database {
    /// Makes the file (and its folder) if it is new, in WAL mode, and keeps
    /// the connection for the first lease.
    fn create(&self) -> Result<(), MigrationError> {
        let folder = self.path.parent().expect("a database file has a folder");
        std::fs::create_dir_all(folder)
            .map_err(|e| self.open_error(format!("cannot create its folder: {e}")))?;
        let conn = self.connect().map_err(|e| self.open_error(e))?;
        conn.pragma_update(None, "journal_mode", "wal")
            .map_err(|e| self.open_error(e))?;
        self.put_back(conn);
        Ok(())
    }

    /// The database could not be opened or made ready: `message` says why.
    fn open_error(&self, message: impl std::fmt::Display) -> MigrationError {
        MigrationError::Open {
            database: self.label.clone(),
            path: self.path.clone(),
            message: message.to_string(),
        }
    }

    /// A new connection with the host's settings: durable commits, foreign
    /// keys enforced, no attached files, the size cap.
    fn connect(&self) -> rusqlite::Result<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(&self.path, flags)?;
        conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)?;
        conn.busy_handler(Some(busy))?;
        conn.pragma_update(None, "synchronous", "full")?;
        conn.pragma_update(None, "foreign_keys", "on")?;
        let page_size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
        let pages = (self.max_size / page_size.max(512) as u64).max(1);
        conn.pragma_update(None, "max_page_count", pages as i64)?;
        Ok(conn)
    }

    /// Keeps `conn` for the next lease, if it is back in autocommit mode
    /// and there is room.
    fn put_back(&self, conn: Connection) {
        if !conn.is_autocommit() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    /// A connection for one guest connection: an idle one, or a new one.
    /// Blocking when it opens one.
    pub fn lease(self: &Arc<Self>) -> Result<Lease, SqlError> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut conn = match idle {
            Some(conn) => conn,
            None => self
                .connect()
                .map_err(|e| SqlError::Other(format!("cannot open the database: {e}")))?,
        };
        conn.authorizer(Some(guest_authorizer))
            .map_err(|e| SqlError::Other(format!("cannot restrict the connection: {e}")))?;
        Ok(Lease {
            conn: Some(conn),
            db: self.clone(),
        })
    }

    /// Applies every migration not yet recorded, in one transaction, and
    /// refuses a recorded one whose text changed.
    fn migrate(&self, migrations: &[MigrationFile]) -> Result<(), MigrationError> {
        let mut conn = self.connect().map_err(|e| self.open_error(e))?;
        conn.busy_timeout(Duration::from_secs(30))
            .map_err(|e| self.open_error(e))?;
        // Off while migrations run (it cannot change inside a transaction),
        // so a table can be rebuilt as SQLite documents it without
        // cascading deletes; checked whole before the commit instead.
        conn.pragma_update(None, "foreign_keys", "off")
            .map_err(|e| self.open_error(e))?;
        conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
                name TEXT PRIMARY KEY,
                digest TEXT NOT NULL,
                applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
            );
            BEGIN IMMEDIATE;"
        ))
        .map_err(|e| self.open_error(e))?;
        conn.authorizer(Some(migration_authorizer))
            .map_err(|e| self.open_error(e))?;
        let applied = self.apply(&conn, migrations);
        let _ = conn.authorizer(None::<fn(AuthContext<'_>) -> Authorization>);
        match applied {
            Ok(()) => conn.execute_batch("COMMIT").map_err(|e| self.open_error(e)),
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    /// Applies each migration not yet recorded, on `conn` inside the
    /// transaction [`Database::migrate`] began.
    fn apply(&self, conn: &Connection, migrations: &[MigrationFile]) -> Result<(), MigrationError> {
        let mut last = None;
        for migration in migrations {
            let text = std::fs::read(&migration.path).map_err(|source| MigrationError::Read {
                database: self.label.clone(),
                path: migration.path.clone(),
                source,
            })?;
            let digest = blake3::hash(&text).to_hex().to_string();
            let recorded: Option<(String, String)> = conn
                .query_row(
                    &format!("SELECT digest, applied_at FROM {MIGRATIONS_TABLE} WHERE name = ?1"),
                    [&migration.name],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .map(Some)
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    e => Err(e),
                })
                .map_err(|e| self.open_error(e))?;
            let failed = |message: String| MigrationError::Failed {
                database: self.label.clone(),
                path: migration.path.clone(),
                message,
            };
            match recorded {
                Some((recorded, _)) if recorded == digest => continue,
                Some((_, applied_at)) => {
                    return Err(MigrationError::Changed {
                        database: self.label.clone(),
                        path: migration.path.clone(),
                        applied_at,
                    });
                }
                None => {}
            }
            let sql = String::from_utf8(text).map_err(|_| failed("it is not UTF-8 text".into()))?;
            conn.execute_batch(&sql).map_err(|e| {
                failed(match e.sqlite_error_code() {
                    Some(ErrorCode::AuthorizationForStatementDenied) => format!(
                        "{e}: a migration runs inside the transaction Nimbus opens for them all, so it may not BEGIN, COMMIT or ROLLBACK, nor write {MIGRATIONS_TABLE} from a trigger"
                    ),
                    _ => e.to_string(),
                })
            })?;
            conn.execute(
                &format!("INSERT INTO {MIGRATIONS_TABLE} (name, digest) VALUES (?1, ?2)"),
                [&migration.name, &digest],
            )
            .map_err(|e| failed(e.to_string()))?;
            tracing::info!(database = %self.label, migration = %migration.name, "migration applied");
            last = Some(migration);
        }
        if let Some(migration) = last {
            let broken: i64 = conn
                .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                    r.get(0)
                })
                .map_err(|e| self.open_error(e))?;
            if broken > 0 {
                return Err(MigrationError::Failed {
                    database: self.label.clone(),
                    path: migration.path.clone(),
                    message: format!(
                        "after the pending migrations {broken} rows break a foreign key (PRAGMA foreign_key_check lists them)"
                    ),
                });
            }
        }
        Ok(())
    }

    fn full(&self) -> SqlError {
        SqlError::Full {
            database: self.label.clone(),
            max_size: self.max_size,
        }
    }
}

/// What a migration must not do: transaction control (each runs inside the
/// one transaction of them all), and a trigger that writes the record of
/// applied migrations (a guest may have made one).
fn migration_authorizer(ctx: AuthContext<'_>) -> Authorization {
    match ctx.action {
        AuthAction::Transaction { .. } => Authorization::Deny,
        AuthAction::Insert { table_name }
        | AuthAction::Update { table_name, .. }
        | AuthAction::Delete { table_name }
            if ctx.accessor.is_some() && table_name.eq_ignore_ascii_case(MIGRATIONS_TABLE) =>
        {
            Authorization::Deny
        }
        _ => Authorization::Allow,
    }
}

/// Refuses what a guest must not do: pragmas beyond reading the schema,
/// attaching files (also barred by the attached-database limit of 0), and
/// changing the record of applied migrations.
fn guest_authorizer(ctx: AuthContext<'_>) -> Authorization {
    match ctx.action {
        AuthAction::Pragma {
            pragma_name,
            pragma_value,
        } => {
            let name = pragma_name.to_ascii_lowercase();
            let allowed = GUEST_PRAGMAS.contains(&name.as_str())
                || (pragma_value.is_none() && GUEST_READ_PRAGMAS.contains(&name.as_str()));
            if allowed {
                Authorization::Allow
            } else {
                Authorization::Deny
            }
        }
        AuthAction::Attach { .. } | AuthAction::Detach { .. } => Authorization::Deny,
        // TEMP objects would outlive the lease on the pooled connection
        // (a TEMP view could shadow a table for the next request), and
        // `max_size` does not cover them.
        AuthAction::CreateTempIndex { .. }
        | AuthAction::CreateTempTable { .. }
        | AuthAction::CreateTempTrigger { .. }
        | AuthAction::CreateTempView { .. } => Authorization::Deny,
        AuthAction::CreateTrigger { table_name, .. }
            if table_name.eq_ignore_ascii_case(MIGRATIONS_TABLE) =>
        {
            Authorization::Deny
        }
        // The record of applied migrations is the host's: read, not changed.
        AuthAction::Insert { table_name }
        | AuthAction::Update { table_name, .. }
        | AuthAction::Delete { table_name }
        | AuthAction::DropTable { table_name }
        | AuthAction::AlterTable { table_name, .. }
            if table_name.eq_ignore_ascii_case(MIGRATIONS_TABLE) =>
        {
            Authorization::Deny
        }
        _ => Authorization::Allow,
    }
}

/// One guest connection's SQLite connection. Dropping it rolls back a
/// transaction the guest left open and returns the connection.
pub struct Lease {
    conn: Option<Connection>,
    db: Arc<Database>,
}

impl Lease {
    fn conn(&self) -> &Connection {
        self.conn
            .as_ref()
            .expect("a lease holds its connection until dropped")
    }

    fn conn_mut(&mut self) -> &mut Connection {
        self.conn
            .as_mut()
            .expect("a lease holds its connection until dropped")
    }

    /// Runs one statement with `params` under `limits`. Blocking.
    pub fn execute(
        &mut self,
        sql: &str,
        params: Vec<SqlValue>,
        limits: StatementLimits,
    ) -> Result<QueryOutput, SqlError> {
        self.statement(sql, params, limits, false)
    }

    /// Runs one statement as [`Lease::execute`] does, refusing it before it
    /// runs unless it only reads (SQLite's own `sqlite3_stmt_readonly`).
    pub fn query(
        &mut self,
        sql: &str,
        params: Vec<SqlValue>,
        limits: StatementLimits,
    ) -> Result<QueryOutput, SqlError> {
        self.statement(sql, params, limits, true)
    }

    fn statement(
        &mut self,
        sql: &str,
        params: Vec<SqlValue>,
        limits: StatementLimits,
        read_only: bool,
    ) -> Result<QueryOutput, SqlError> {
        let db = self.db.clone();
        let conn = self.conn_mut();
        let deadline = Instant::now() + limits.timeout;
        conn.progress_handler(PROGRESS_STEPS, Some(move || Instant::now() > deadline))
            .map_err(|e| SqlError::Other(format!("cannot set the statement's time limit: {e}")))?;
        // No string or blob longer than a result may be: SQLite refuses to
        // make one (`randomblob(1e9)`) instead of allocating it.
        let longest = i32::try_from(limits.max_bytes.max(MIN_VALUE_LIMIT)).unwrap_or(i32::MAX);
        conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, longest)
            .map_err(|e| SqlError::Other(format!("cannot set the statement's size limit: {e}")))?;
        // Waiting for another connection's write lock counts too.
        DEADLINE.with(|d| d.set(Some(deadline)));
        let result = run(conn, &db.writes, sql, params, limits, read_only, deadline);
        DEADLINE.with(|d| d.set(None));
        // Left in place if this fails: the next statement sets its own.
        let _ = conn.progress_handler(PROGRESS_STEPS, None::<fn() -> bool>);
        result.map_err(|e| self.explain(e, limits))
    }

    /// Rolls back a transaction left open on the connection, if any.
    pub fn end_transaction(&self) {
        let conn = self.conn();
        if conn.is_autocommit() {
            return;
        }
        tracing::warn!(database = %self.db.label, "a request ended with a transaction open on a connection its instance keeps; rolled back");
        if let Err(e) = conn.execute_batch("ROLLBACK") {
            // Closed, rather than pooled, when the guest drops it.
            tracing::warn!(database = %self.db.label, error = %e, "cannot roll the transaction back");
        }
    }

    /// The rowid of the connection's last successful `INSERT`.
    pub fn last_insert_rowid(&self) -> i64 {
        self.conn().last_insert_rowid()
    }

    /// Rows changed by the connection's last `INSERT`, `UPDATE` or `DELETE`.
    pub fn changes(&self) -> u64 {
        self.conn().changes()
    }

    fn explain(&self, e: RunError, limits: StatementLimits) -> SqlError {
        match e {
            RunError::NotReadOnly => SqlError::NotReadOnly,
            RunError::Busy => SqlError::Other(format!(
                "the statement waited {} (limits.sql_timeout) for the writes ahead of it",
                humantime::format_duration(limits.timeout)
            )),
            RunError::TooManyRows => SqlError::Other(limits.too_many_rows()),
            RunError::TooLarge => SqlError::Other(limits.too_large()),
            RunError::Sql(e) => match e.sqlite_error_code() {
                Some(ErrorCode::OperationInterrupted) => {
                    SqlError::Other(limits.timed_out("stopped"))
                }
                Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                    SqlError::Other(format!(
                        "the database is locked by another connection's write (a statement waits for it up to {}, limits.sql_timeout; a transaction that read before another one wrote must start again): {e}",
                        humantime::format_duration(limits.timeout)
                    ))
                }
                Some(ErrorCode::DiskFull) => self.db.full(),
                Some(ErrorCode::TooBig) => SqlError::Other(format!(
                    "{e}: no value may be longer than {} (limits.sql_result_size)",
                    crate::manifest::format_bytes(limits.max_bytes.max(MIN_VALUE_LIMIT))
                )),
                Some(ErrorCode::AuthorizationForStatementDenied) => SqlError::Other(format!(
                    "{e}: a function may not attach databases or run pragmas that change settings"
                )),
                _ => SqlError::Other(e.to_string()),
            },
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        if !conn.is_autocommit()
            && let Err(e) = conn.execute_batch("ROLLBACK")
        {
            tracing::warn!(database = %self.db.label, error = %e, "cannot roll back a transaction the function left open; closing its connection");
            return;
        }
        self.db.put_back(conn);
    }
}

enum RunError {
    NotReadOnly,
    Busy,
    TooManyRows,
    TooLarge,
    Sql(rusqlite::Error),
}

impl From<rusqlite::Error> for RunError {
    fn from(e: rusqlite::Error) -> Self {
        RunError::Sql(e)
    }
}

fn run(
    conn: &Connection,
    writes: &parking_lot::Mutex<()>,
    sql: &str,
    params: Vec<SqlValue>,
    limits: StatementLimits,
    read_only: bool,
    deadline: Instant,
) -> Result<QueryOutput, RunError> {
    let mut stmt = conn.prepare(sql)?;
    if read_only && !stmt.readonly() {
        return Err(RunError::NotReadOnly);
    }
    // A write on its own (its own transaction) waits for the writers ahead
    // of it here; one inside a transaction the guest began already waited
    // for SQLite's lock at its first write.
    let _turn = if !stmt.readonly() && conn.is_autocommit() {
        let wait = deadline.saturating_duration_since(Instant::now());
        Some(writes.try_lock_for(wait).ok_or(RunError::Busy)?)
    } else {
        None
    };
    let columns: Vec<String> = stmt.column_names().map(str::to_owned).collect();
    // A write whose result breaks a limit is undone: with `RETURNING`,
    // SQLite has made every change by the first row. (A write that returns
    // no rows cannot break one; transaction control returns none either.)
    let writes_rows = !stmt.readonly() && stmt.column_count() > 0;
    if writes_rows {
        conn.execute_batch("SAVEPOINT nimbus_statement")?;
    }
    let rows = collect(&mut stmt, &columns, params, limits);
    drop(stmt);
    if writes_rows {
        let end = match rows {
            Err(RunError::TooManyRows | RunError::TooLarge) => {
                "ROLLBACK TO nimbus_statement; RELEASE nimbus_statement"
            }
            _ => "RELEASE nimbus_statement",
        };
        let ended = conn.execute_batch(end);
        // After a failed statement SQLite may have rolled back further
        // (a full database ends the transaction); its error is the one to tell.
        if rows.is_ok() {
            ended?;
        }
    }
    Ok(QueryOutput {
        columns,
        rows: rows?,
    })
}

/// Runs `stmt` with `params` and reads its rows, within `limits`.
fn collect(
    stmt: &mut rusqlite::Statement<'_>,
    columns: &[String],
    params: Vec<SqlValue>,
    limits: StatementLimits,
) -> Result<Vec<Vec<SqlValue>>, RunError> {
    let mut bytes: u64 = columns.iter().map(|c| c.len() as u64).sum();
    let width = columns.len();
    let params = params.into_iter().map(|v| match v {
        SqlValue::Null => Value::Null,
        SqlValue::Integer(i) => Value::Integer(i),
        SqlValue::Real(f) => Value::Real(f),
        SqlValue::Text(s) => Value::Text(s),
        SqlValue::Blob(b) => Value::Blob(b),
    });
    let mut rows = stmt.query(params_from_iter(params))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        if out.len() as u64 >= limits.max_rows {
            return Err(RunError::TooManyRows);
        }
        let mut values = Vec::with_capacity(width);
        for i in 0..width {
            let value = row.get_ref(i)?;
            bytes += match value {
                ValueRef::Null => 1,
                ValueRef::Integer(_) | ValueRef::Real(_) => 8,
                ValueRef::Text(b) | ValueRef::Blob(b) => b.len() as u64,
            };
            // Counted before it is copied (and SQLite makes no value
            // longer than the cap: `SQLITE_LIMIT_LENGTH`).
            if bytes > limits.max_bytes {
                return Err(RunError::TooLarge);
            }
            values.push(match value {
                ValueRef::Null => SqlValue::Null,
                ValueRef::Integer(i) => SqlValue::Integer(i),
                ValueRef::Real(f) => SqlValue::Real(f),
                ValueRef::Text(t) => SqlValue::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
            });
        }
        out.push(values);
    }
    Ok(out)
}
