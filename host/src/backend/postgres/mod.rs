//! PostgreSQL databases granted to functions: a pool of connections per
//! grant (`deadpool-postgres` over `tokio-postgres`), and statements run
//! under the function's `limits.sql_*`.
//!
//! Every node of a cluster reaches the same PostgreSQL, so this is the
//! relational store a cluster shares (SQLite stays on one node's disk).
//!
//! A guest's connection is a [`Lease`] on one pooled connection: its own
//! for as long as the guest holds it, so `BEGIN ... COMMIT` across calls
//! works, and a transaction it leaves open is rolled back, and its session
//! reset, before the connection serves anyone else. A statement past `sql_timeout` is
//! cancelled on the server (PostgreSQL's cancel request), not only
//! abandoned; so is one whose result grows past `sql_rows` or
//! `sql_result_size`, and a statement that writes and returns rows (an
//! `INSERT ... RETURNING`) runs in a transaction of its own outside the
//! guest's, so that a result refused for its size keeps nothing.

mod value;

pub use value::{Bound, ColumnType, PgValue};

use super::StatementLimits;
use deadpool_postgres::{Manager, ManagerConfig, Object, RecyclingMethod, Runtime, Timeouts};
use futures_util::TryStreamExt;
use std::time::Duration;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_postgres::error::DbError as WireDbError;
use tokio_postgres::{Client, Config, NoTls, Statement};

/// Statements a connection keeps prepared for reuse, at most; past it the
/// cache starts over, so a guest that builds SQL text with its values in
/// it cannot grow the host's memory without bound.
const STATEMENT_CACHE: usize = 256;

/// How long the host waits for PostgreSQL to take a cancel request, or to
/// roll back a transaction a guest left open, before it drops the
/// connection instead.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(2);

/// How long opening one new connection may take, unless the URL says
/// (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One grant's connections.
#[derive(Clone)]
pub struct Pool {
    /// What the grant is, for errors: "function `f`'s database `orders`".
    label: String,
    size: usize,
    pool: deadpool_postgres::Pool,
}

/// A statement's rows, with its columns' names and types.
#[derive(Debug, Default)]
pub struct RowSet {
    /// The columns, in order.
    pub columns: Vec<(String, ColumnType)>,
    /// Each row's values, in column order.
    pub rows: Vec<Vec<PgValue>>,
    /// Rows the statement inserted, updated or deleted (for a `SELECT`, the
    /// rows it returned).
    pub changed: u64,
}

/// PostgreSQL's own report of a failed statement.
#[derive(Debug, Clone)]
pub struct DbError {
    /// All of it on one line, as PostgreSQL's clients print it.
    pub as_text: String,
    /// `ERROR`, `FATAL`, ...
    pub severity: String,
    /// The SQLSTATE code: `23505` for a unique violation, `42601` for a
    /// syntax error, ...
    pub code: String,
    /// The primary message.
    pub message: String,
    /// The detail, if any.
    pub detail: Option<String>,
    /// The other fields PostgreSQL sent: `hint`, `constraint`, `table`,
    /// `column`, `schema`.
    pub extras: Vec<(String, String)>,
}

/// Why a connection or a statement failed, explained for the guest.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PgError {
    /// No connection to the database: it is down, unreachable, refused the
    /// grant's credentials, or the connection was lost.
    #[error("{0}")]
    ConnectionFailed(String),
    /// A parameter does not fit the statement.
    #[error("{0}")]
    BadParameter(String),
    /// PostgreSQL refused the statement.
    #[error("{}", .0.as_text)]
    Db(Box<DbError>),
    /// The statement failed otherwise: a limit, a cancel.
    #[error("{0}")]
    Query(String),
    /// A value in the result could not be read.
    #[error("{0}")]
    ValueConversion(String),
}

impl Pool {
    /// Up to `size` connections to `config`, opened as requests need them.
    pub fn new(label: String, config: &Config, size: u32) -> Pool {
        let mut config = config.clone();
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("nimbus");
        }
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let size = size as usize;
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(size)
            .runtime(Runtime::Tokio1)
            .build()
            .expect("a pool with a runtime and no hooks builds");
        Pool { label, size, pool }
    }

    /// A connection of the pool, once one is free: waits up to `wait`.
    pub async fn lease(&self, wait: Duration) -> Result<Lease, PgError> {
        Ok(Lease::new(self.get(wait).await?, self.clone()))
    }

    async fn get(&self, wait: Duration) -> Result<Object, PgError> {
        use deadpool_postgres::PoolError;
        let timeouts = Timeouts {
            wait: Some(wait),
            create: Some(wait),
            recycle: Some(wait),
        };
        self.pool.timeout_get(&timeouts).await.map_err(|e| match e {
            PoolError::Timeout(deadpool_postgres::TimeoutType::Wait) => {
                PgError::ConnectionFailed(format!(
                    "all {} connections to {} are in use, and none was free within {} (limits.sql_timeout); raise its `pool`, or hold connections for less time",
                    self.size,
                    self.label,
                    humantime::format_duration(wait)
                ))
            }
            PoolError::Timeout(_) => PgError::ConnectionFailed(format!(
                "could not connect to {} within {}",
                self.label,
                humantime::format_duration(wait)
            )),
            PoolError::Backend(e) => {
                PgError::ConnectionFailed(format!("could not connect to {}: {}", self.label, crate::error_chain(&e)))
            }
            e => PgError::ConnectionFailed(format!("could not connect to {}: {e}", self.label)),
        })
    }

    /// Connections open now, and how many of them are idle.
    pub fn status(&self) -> (usize, usize) {
        let status = self.pool.status();
        (status.size, status.available)
    }
}

/// What a statement ended with, before it is explained.
enum Failure {
    Pg(tokio_postgres::Error),
    BadParameter(String),
    TooManyRows,
    TooLarge,
    Value(String),
    TimedOut,
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Failure {
        Failure::Pg(e)
    }
}

/// What a connection is given back in after a statement that may have
/// changed its session ([`changes_session`]): no transaction, and none of
/// the session state a statement can leave (settings and `SET ROLE`,
/// cursors, `LISTEN`, advisory locks, temporary tables, sequences' cached
/// values). Prepared statements stay: they are the host's own cache. Each
/// of its eight statements costs the server about as much as a point read,
/// so a lease that ran only plain statements gets a `ROLLBACK` at most.
const RESET: &str = "ROLLBACK; CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; \
     UNLISTEN *; SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES";

/// One guest connection's pooled connection. When the guest is done with
/// it (it dropped the connection, or its request ended while an instance
/// kept it), the host rolls back what the guest left open and, when a
/// statement may have changed the session, resets it ([`RESET`]) before
/// anyone else uses it; a statement still running then is cancelled first.
pub struct Lease {
    client: Option<Object>,
    pool: Pool,
    /// Whether the guest began a transaction and has not ended it, as far
    /// as its statements tell; when unsure, true (only the host's own
    /// transaction around a write that returns rows depends on it).
    in_transaction: bool,
    /// Whether a statement since the session was last reset may have
    /// changed its state ([`changes_session`]).
    session: bool,
    /// Whether a statement is on its way: a lease dropped meanwhile (the
    /// request ran out of time) cancels it.
    busy: bool,
    /// Whether the connection is in a state the host cannot vouch for: it
    /// is closed, not pooled.
    broken: bool,
}

impl Lease {
    fn new(client: Object, pool: Pool) -> Lease {
        Lease {
            client: Some(client),
            pool,
            in_transaction: false,
            session: false,
            busy: false,
            broken: false,
        }
    }

    /// Runs `sql` with `params` and returns its rows.
    pub async fn query(
        &mut self,
        sql: &str,
        params: &[PgValue],
        limits: StatementLimits,
    ) -> Result<RowSet, PgError> {
        self.run(sql, params, limits, true)
            .await
            .map(|outcome| outcome.rows)
    }

    /// Runs `sql` in a read-only transaction, rolled back after: a
    /// statement that writes fails with SQLSTATE 25006
    /// (`read_only_sql_transaction`).
    pub async fn query_read_only(
        &mut self,
        sql: &str,
        params: &[PgValue],
        limits: StatementLimits,
    ) -> Result<RowSet, PgError> {
        self.execute("BEGIN READ ONLY", &[], limits).await?;
        let rows = self.query(sql, params, limits).await;
        self.end_request().await;
        rows
    }

    /// Runs `sql` with `params` and returns how many rows it changed.
    pub async fn execute(
        &mut self,
        sql: &str,
        params: &[PgValue],
        limits: StatementLimits,
    ) -> Result<u64, PgError> {
        self.run(sql, params, limits, false)
            .await
            .map(|outcome| outcome.changed)
    }

    /// Whether the connection needs cleaning up before anyone uses it
    /// again ([`Cleanup`]).
    pub fn needs_cleanup(&self) -> bool {
        self.cleanup() != Cleanup::Nothing
    }

    /// Rolls back what the guest left open and resets the session
    /// ([`RESET`]), for a connection the guest keeps into its next request;
    /// a connection that cannot be reset is replaced by the next statement.
    pub async fn end_request(&mut self) {
        if !self.needs_cleanup() {
            return;
        }
        if let Some(client) = self.client.take() {
            self.client = reset(client, self.cleanup()).await;
        }
        self.session = false;
        self.busy = false;
        self.broken = false;
        self.in_transaction = false;
    }

    async fn run(
        &mut self,
        sql: &str,
        params: &[PgValue],
        limits: StatementLimits,
        want_rows: bool,
    ) -> Result<Outcome, PgError> {
        let deadline = Instant::now() + limits.timeout;
        // A connection PostgreSQL closed (a restart, an operator's
        // pg_terminate_backend), or one a failed reset gave up, is replaced
        // before anything is sent on it. Nothing is ever sent twice.
        let closed = self.client.as_ref().is_none_or(|c| c.is_closed());
        if closed && !self.in_transaction {
            if let Some(dead) = self.client.take() {
                drop(Object::take(dead));
            }
            let wait = deadline.saturating_duration_since(Instant::now());
            self.client = Some(self.pool.get(wait).await?);
            self.broken = false;
        }
        if self.client.is_none() {
            return Err(PgError::ConnectionFailed(format!(
                "the connection to {} was lost inside a transaction; open a new one",
                self.pool.label
            )));
        }
        self.busy = true;
        let keyword = leading_keyword(sql);
        self.session |= changes_session(&keyword, sql);
        let mut result = self
            .attempt(sql, params, limits, want_rows, deadline, &keyword)
            .await;
        // A statement prepared before the schema changed (an `ALTER TABLE`
        // through another connection) fails before it runs: prepared again,
        // it is safe to send once more.
        if !self.in_transaction && matches!(&result, Err(Failure::Pg(e)) if stale_plan(e)) {
            if let Some(client) = &self.client {
                client.statement_cache.clear();
            }
            result = self
                .attempt(sql, params, limits, want_rows, deadline, &keyword)
                .await;
        }
        self.busy = false;
        self.in_transaction = transaction_after(&keyword, sql, self.in_transaction, result.is_ok());
        result.map_err(|e| explain(e, limits, &self.pool.label))
    }

    async fn attempt(
        &mut self,
        sql: &str,
        params: &[PgValue],
        limits: StatementLimits,
        want_rows: bool,
        deadline: Instant,
        keyword: &str,
    ) -> Result<Outcome, Failure> {
        let client = self.client.as_ref().expect("a lease holds a connection");
        if client.statement_cache.size() >= STATEMENT_CACHE {
            client.statement_cache.clear();
        }
        let stmt = match timeout_at(deadline, client.prepare_cached(sql)).await {
            Ok(stmt) => stmt?,
            Err(_) => {
                cancel(client).await;
                return Err(Failure::TimedOut);
            }
        };
        check_params(&stmt, params)?;
        // A write that returns rows, outside the guest's transaction, gets
        // one of its own: a result refused for its size (or time) then
        // keeps none of its writes.
        let own_transaction =
            want_rows && !stmt.columns().is_empty() && !self.in_transaction && writes_rows(keyword);
        if own_transaction {
            match timeout_at(deadline, client.batch_execute("BEGIN")).await {
                Ok(begun) => begun?,
                Err(_) => {
                    self.broken = true;
                    return Err(Failure::TimedOut);
                }
            }
        }
        let ran = timeout_at(deadline, async {
            if want_rows {
                collect(client, &stmt, params, limits).await
            } else {
                Ok(Outcome {
                    rows: RowSet::default(),
                    changed: client.execute_raw(&stmt, params.iter()).await?,
                })
            }
        })
        .await
        .unwrap_or(Err(Failure::TimedOut));
        if matches!(
            ran,
            Err(Failure::TimedOut | Failure::TooManyRows | Failure::TooLarge | Failure::Value(_))
        ) {
            cancel(client).await;
        }
        if !own_transaction {
            return ran;
        }
        // The commit is the statement's too (a deferred trigger runs in
        // it), so it keeps to the deadline; a rollback gets a moment more.
        if ran.is_ok() {
            match timeout_at(deadline, client.batch_execute("COMMIT")).await {
                Ok(committed) => committed?,
                Err(_) => {
                    cancel(client).await;
                    self.broken = true;
                    return Err(Failure::TimedOut);
                }
            }
        } else if !matches!(
            timeout(CLEANUP_TIMEOUT, client.batch_execute("ROLLBACK")).await,
            Ok(Ok(()))
        ) {
            self.broken = true;
        }
        ran
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        let cleanup = self.cleanup();
        if cleanup == Cleanup::Nothing {
            // Back to the pool as it is.
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(reset(client, cleanup));
            }
            Err(_) => drop(Object::take(client)),
        }
    }
}

/// What a lease's connection needs before it is used again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cleanup {
    /// Nothing: plain statements, no transaction open.
    Nothing,
    /// A `ROLLBACK`: plain statements, a transaction maybe open.
    Rollback,
    /// The whole [`RESET`]: a statement may have changed the session.
    Reset,
    /// A statement is still running: cancel it, then the whole [`RESET`].
    Cancel,
    /// Nothing can be vouched for: close it.
    Close,
}

impl Lease {
    fn cleanup(&self) -> Cleanup {
        if self.broken {
            Cleanup::Close
        } else if self.busy {
            Cleanup::Cancel
        } else if self.session {
            Cleanup::Reset
        } else if self.in_transaction {
            Cleanup::Rollback
        } else {
            Cleanup::Nothing
        }
    }
}

/// Cleans `client` up as `cleanup` says, and gives it back; closes it
/// (and gives nothing) when it cannot be vouched for or the cleanup fails.
async fn reset(client: Object, cleanup: Cleanup) -> Option<Object> {
    let sql = match cleanup {
        Cleanup::Nothing => return Some(client),
        Cleanup::Rollback => "ROLLBACK",
        Cleanup::Reset => RESET,
        Cleanup::Cancel => {
            cancel(&client).await;
            RESET
        }
        Cleanup::Close => {
            drop(Object::take(client));
            return None;
        }
    };
    if matches!(
        timeout(CLEANUP_TIMEOUT, client.batch_execute(sql)).await,
        Ok(Ok(()))
    ) {
        return Some(client);
    }
    drop(Object::take(client));
    None
}

/// Asks the server to stop what `client` runs now; the connection stays
/// usable (its abandoned results are discarded as they come).
async fn cancel(client: &Client) {
    let token = client.cancel_token();
    let _ = timeout(CLEANUP_TIMEOUT, token.cancel_query(NoTls)).await;
}

/// Whether `e` says a prepared statement no longer fits the schema
/// (`0A000` "cached plan must not change result type") or is gone
/// (`26000`, a guest's `DEALLOCATE ALL`): raised before the statement runs.
fn stale_plan(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    e.code().is_some_and(|c| {
        *c == SqlState::FEATURE_NOT_SUPPORTED && e.to_string().contains("cached plan")
            || *c == SqlState::INVALID_SQL_STATEMENT_NAME
    })
}

/// Whether a transaction is open after `sql` (whose first word is
/// `keyword`) ran (`ok`) or failed, given whether one was before. What
/// ends one for sure ends it; `AND CHAIN`, `ROLLBACK TO` and the
/// `PREPARED` forms keep what was.
fn transaction_after(keyword: &str, sql: &str, before: bool, ok: bool) -> bool {
    let words: Vec<String> = sql
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .filter(|w| !w.is_empty())
        .take(6)
        .map(str::to_ascii_uppercase)
        .collect();
    let has = |w: &str| words.iter().any(|x| x == w);
    match keyword {
        "BEGIN" | "START" => before || ok,
        "COMMIT" | "END" | "ABORT" | "ROLLBACK" => {
            if has("CHAIN") || has("PREPARED") || (keyword == "ROLLBACK" && has("TO")) {
                before
            } else {
                false
            }
        }
        "PREPARE" if has("TRANSACTION") => before && !ok,
        _ => before,
    }
}

struct Outcome {
    rows: RowSet,
    changed: u64,
}

/// Each parameter checked against the type the server expects there.
fn check_params(stmt: &Statement, params: &[PgValue]) -> Result<(), Failure> {
    let types = stmt.params();
    if types.len() != params.len() {
        return Err(Failure::BadParameter(format!(
            "the statement takes {} parameters ($1 to ${0}) and was given {}",
            types.len(),
            params.len()
        )));
    }
    for (index, (value, ty)) in params.iter().zip(types).enumerate() {
        value.check(index, ty).map_err(Failure::BadParameter)?;
    }
    Ok(())
}

/// Reads the rows of `stmt` within `limits`.
async fn collect(
    client: &Client,
    stmt: &Statement,
    params: &[PgValue],
    limits: StatementLimits,
) -> Result<Outcome, Failure> {
    let columns: Vec<(String, ColumnType)> = stmt
        .columns()
        .iter()
        .map(|c| (c.name().to_owned(), ColumnType::of(c.type_())))
        .collect();
    // The wire bytes and the decoded values both count against the cap: a
    // numeric's text can be far longer than its wire form.
    let mut bytes: u64 = columns.iter().map(|(name, _)| name.len() as u64).sum();
    let mut decoded = bytes;
    let mut rows = Vec::new();
    let stream = client.query_raw(stmt, params.iter()).await?;
    futures_util::pin_mut!(stream);
    while let Some(row) = stream.try_next().await? {
        if rows.len() as u64 >= limits.max_rows {
            return Err(Failure::TooManyRows);
        }
        bytes += row.raw_size_bytes() as u64;
        if bytes > limits.max_bytes {
            return Err(Failure::TooLarge);
        }
        let mut values = Vec::with_capacity(row.len());
        for (i, column) in stmt.columns().iter().enumerate() {
            let raw = row
                .try_get::<_, Raw<'_>>(i)
                .map_err(|e| Failure::Value(e.to_string()))?;
            let budget = limits.max_bytes.saturating_sub(decoded);
            let value = PgValue::decode(column.type_(), raw.0, budget).map_err(|e| {
                if e.is::<value::TooLarge>() {
                    Failure::TooLarge
                } else {
                    Failure::Value(format!(
                        "column `{}` ({}): {e}",
                        column.name(),
                        column.type_()
                    ))
                }
            })?;
            decoded += value.size();
            if decoded > limits.max_bytes {
                return Err(Failure::TooLarge);
            }
            values.push(value);
        }
        rows.push(values);
    }
    let changed = stream.rows_affected().unwrap_or(rows.len() as u64);
    Ok(Outcome {
        rows: RowSet {
            columns,
            rows,
            changed,
        },
        changed,
    })
}

/// A column's wire bytes, whatever its type.
struct Raw<'a>(Option<&'a [u8]>);

impl<'a> tokio_postgres::types::FromSql<'a> for Raw<'a> {
    fn from_sql(
        _: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(Some(raw)))
    }

    fn from_sql_null(
        _: &tokio_postgres::types::Type,
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(None))
    }

    fn accepts(_: &tokio_postgres::types::Type) -> bool {
        true
    }
}

/// The failure explained, naming the limit it hit.
fn explain(failure: Failure, limits: StatementLimits, label: &str) -> PgError {
    match failure {
        Failure::BadParameter(message) => PgError::BadParameter(message),
        Failure::Value(message) => PgError::ValueConversion(message),
        Failure::TooManyRows => PgError::Query(limits.too_many_rows()),
        Failure::TooLarge => PgError::Query(limits.too_large()),
        Failure::TimedOut => PgError::Query(limits.timed_out("cancelled")),
        Failure::Pg(e) => match e.as_db_error() {
            Some(db) => PgError::Db(Box::new(db_error(db))),
            None if e.is_closed()
                || std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>()) =>
            {
                PgError::ConnectionFailed(format!(
                    "the connection to {label} was lost: {}",
                    crate::error_chain(&e)
                ))
            }
            None => PgError::Query(crate::error_chain(&e)),
        },
    }
}

fn db_error(db: &WireDbError) -> DbError {
    let extras = [
        ("hint", db.hint()),
        ("constraint", db.constraint()),
        ("table", db.table()),
        ("column", db.column()),
        ("schema", db.schema()),
    ]
    .into_iter()
    .filter_map(|(key, value)| Some((key.to_owned(), value?.to_owned())))
    .collect();
    DbError {
        as_text: db.to_string().replace('\n', " "),
        severity: db.severity().to_owned(),
        code: db.code().code().to_owned(),
        message: db.message().to_owned(),
        detail: db.detail().map(str::to_owned),
        extras,
    }
}

/// The first word of `sql` in capitals, after spaces and comments
/// (`-- ...` and nested `/* ... */`) and opening parentheses.
fn leading_keyword(sql: &str) -> String {
    let mut rest = sql;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '(');
        if let Some(line) = rest.strip_prefix("--") {
            rest = line.split_once('\n').map_or("", |(_, after)| after);
        } else if rest.starts_with("/*") {
            let mut depth = 0usize;
            let mut end = rest.len();
            let bytes = rest.as_bytes();
            let mut i = 0;
            while i + 1 < bytes.len() {
                match &bytes[i..i + 2] {
                    b"/*" => {
                        depth += 1;
                        i += 2;
                    }
                    b"*/" => {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            end = i;
                            break;
                        }
                    }
                    _ => i += 1,
                }
            }
            rest = &rest[end..];
        } else {
            break;
        }
    }
    rest.chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_uppercase()
}

/// Statements that write and may return rows: `INSERT`, `UPDATE`, `DELETE`
/// and `MERGE` (with `RETURNING`), and `WITH` (whose parts may write). A
/// `SELECT` of a function that writes is not among them, nor a `CALL`,
/// whose procedure may manage its own transactions.
/// Whether a statement may change its session's state beyond its
/// transaction, so that the whole [`RESET`] must follow it: anything but a
/// plain query, write or transaction statement (`SET`, `DECLARE`,
/// `LISTEN`, `CREATE TEMP`, `CALL`, `DO`, ...), and a plain one that names
/// `TEMP`, `set_config`, an advisory lock or a sequence function. What a
/// function of the guest's schema does inside is not seen; nor is the
/// `lastval()` an insert's `serial` default leaves, which stays visible to
/// the connection's next user.
fn changes_session(keyword: &str, sql: &str) -> bool {
    const PLAIN: &[&str] = &[
        "SELECT",
        "INSERT",
        "UPDATE",
        "DELETE",
        "MERGE",
        "WITH",
        "VALUES",
        "TABLE",
        "BEGIN",
        "START",
        "COMMIT",
        "END",
        "ABORT",
        "ROLLBACK",
        "SAVEPOINT",
        "RELEASE",
    ];
    const WORDS: &[&str] = &[
        "TEMP",
        "TEMPORARY",
        "SET_CONFIG",
        "NEXTVAL",
        "SETVAL",
        "CURRVAL",
        "LASTVAL",
    ];
    if !PLAIN.contains(&keyword) {
        return true;
    }
    sql.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .any(|word| {
            WORDS.iter().any(|w| word.eq_ignore_ascii_case(w))
                || word.to_ascii_lowercase().contains("advisory")
        })
}

fn writes_rows(keyword: &str) -> bool {
    matches!(keyword, "INSERT" | "UPDATE" | "DELETE" | "MERGE" | "WITH")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leading_keyword_skips_comments() {
        assert_eq!(leading_keyword("  begin;"), "BEGIN");
        assert_eq!(
            leading_keyword("-- x\n/* a /* b */ c */ (select 1)"),
            "SELECT"
        );
        assert_eq!(leading_keyword("/* open"), "");
        let after =
            |sql: &str, before: bool| transaction_after(&leading_keyword(sql), sql, before, true);
        assert!(after("begin", false));
        assert!(!after("COMMIT", true));
        assert!(after("commit and chain", true));
        assert!(after("ROLLBACK WORK TO SAVEPOINT a", true));
        assert!(after("rollback transaction to a", true));
        assert!(!after("rollback", true));
        assert!(after("COMMIT PREPARED 'x'", true));
        assert!(!after("PREPARE TRANSACTION 'x'", true));
        assert!(after("SELECT 1", true));
    }

    #[test]
    fn only_plain_statements_skip_the_session_reset() {
        let changes = |sql: &str| changes_session(&leading_keyword(sql), sql);
        for plain in [
            "SELECT value FROM kv WHERE key = $1",
            "insert into kv (key, value) values ($1, $2) on conflict (key) do update set value = excluded.value",
            "UPDATE t SET n = n + 1",
            "BEGIN",
            "commit",
            "WITH d AS (DELETE FROM t RETURNING *) SELECT count(*) FROM d",
            "/* note */ SELECT temperature FROM readings",
        ] {
            assert!(!changes(plain), "{plain}");
        }
        for session in [
            "SET statement_timeout = 1",
            "set role reader",
            "RESET ALL",
            "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
            "LISTEN jobs",
            "CREATE TEMP TABLE x (n int)",
            "SELECT * INTO TEMPORARY t FROM kv",
            "SELECT set_config('app.user', 'ada', false)",
            "select pg_advisory_lock(1)",
            "SELECT PG_TRY_ADVISORY_LOCK(1)",
            "SELECT nextval('s')",
            "CALL p()",
            "DO $$ BEGIN PERFORM 1; END $$",
            "PREPARE q AS SELECT 1",
        ] {
            assert!(changes(session), "{session}");
        }
    }
}
