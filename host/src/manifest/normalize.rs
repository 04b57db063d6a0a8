//! The normalize pass: a parsed manifest checked key by key, with paths
//! made relative to the manifest's folder and every default filled in.

use super::schema::{RawFunction, RawLimits, RawManifest, RawQueue, RawReuse, RawRouteEntry};
use super::*;
use std::collections::BTreeMap;

/// The manifest of `file`, checked, with paths made relative to its folder
/// and defaults filled in.
pub(super) fn normalize(file: &Path, raw: RawManifest) -> Result<Manifest, ManifestError> {
    let err = |msg: String| ManifestError::new(file, msg);
    if raw.version != MANIFEST_VERSION {
        return Err(err(format!(
            "`version`: unsupported manifest version {} (this Nimbus reads version {MANIFEST_VERSION})",
            raw.version
        )));
    }
    id::validate_id(&raw.app.name).map_err(|e| err(format!("`app.name`: {e}")))?;
    let dir = file
        .parent()
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from("."));

    let mut auth_providers = Vec::with_capacity(raw.auth.len());
    for (name, provider) in raw.auth {
        id::validate_id(&name).map_err(|e| err(format!("`auth.{name}`: {e}")))?;
        if name == gateway::PUBLIC {
            return Err(err(format!(
                "`auth.{name}`: `{name}` means a public route; give the provider another name"
            )));
        }
        auth_providers.push(
            gateway::provider(&dir, &name, provider, expand_env)
                .map_err(|e| err(format!("`auth.{name}`: {e}")))?,
        );
    }
    let provider_names: Vec<String> = auth_providers.iter().map(|p| p.name.clone()).collect();
    let auth = raw
        .app
        .auth
        .map(|a| gateway::auth_rule(a, &provider_names))
        .transpose()
        .map_err(|e| err(format!("`app.auth`: {e}")))?;
    let cors = raw
        .app
        .cors
        .map(gateway::cors)
        .transpose()
        .map_err(|e| err(format!("`app.cors`: {e}")))?;
    let mut functions = Vec::with_capacity(raw.functions.len());
    for (id, f) in raw.functions {
        functions.push(normalize_function(file, &dir, id, f, &provider_names)?);
    }
    check_route_conflicts(file, &functions)?;
    check_services(file, &functions)?;
    let sqlite = sqlite(file, &dir, raw.sqlite, &functions)?;
    Ok(Manifest {
        file: file.to_owned(),
        dir,
        name: raw.app.name,
        description: raw.app.description,
        version: raw.app.version,
        auth_providers,
        auth,
        cors,
        functions,
        sqlite,
    })
}

/// The app's databases: each `[sqlite.<name>]` table, and a default one for
/// every other name a function lists.
fn sqlite(
    file: &Path,
    dir: &Path,
    declared: BTreeMap<StoreName, super::schema::RawDatabase>,
    functions: &[FunctionSpec],
) -> Result<Vec<SqliteSpec>, ManifestError> {
    let err = |name: &StoreName, key: &str, msg: String| {
        ManifestError::new(file, format!("`sqlite.{name}.{key}`: {msg}"))
    };
    let mut databases = BTreeMap::new();
    for (name, raw) in declared {
        let max_size = raw.max_size.map_or(DEFAULT_SQLITE_MAX_SIZE, |s| s.0);
        if max_size < MIN_SQLITE_SIZE {
            return Err(err(
                &name,
                "max_size",
                format!("must be at least {}", format_bytes(MIN_SQLITE_SIZE)),
            ));
        }
        let migrations = match raw.migrations {
            Some(path) => migrations(dir, &path).map_err(|e| err(&name, "migrations", e))?,
            None => Vec::new(),
        };
        databases.insert(
            name.clone(),
            SqliteSpec {
                name,
                migrations,
                max_size,
            },
        );
    }
    for name in functions.iter().flat_map(|f| &f.sqlite) {
        databases
            .entry(name.clone())
            .or_insert_with(|| SqliteSpec::with_defaults(name.clone()));
    }
    Ok(databases.into_values().collect())
}

/// Smallest `max_size` of a database: room for its schema and a few pages.
const MIN_SQLITE_SIZE: u64 = 64 * 1024;

/// The migration files `path` (relative to `dir`) names: the file itself,
/// or the `.sql` files of the folder in name order.
fn migrations(dir: &Path, path: &str) -> Result<Vec<MigrationFile>, String> {
    let full = dir.join(path);
    let file = |path: PathBuf| MigrationFile {
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        path,
    };
    let meta = std::fs::metadata(&full).map_err(|e| format!("`{path}`: {e}"))?;
    if meta.is_file() {
        return Ok(vec![file(full)]);
    }
    let entries = std::fs::read_dir(&full).map_err(|e| format!("`{path}`: {e}"))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("`{path}`: {e}"))?;
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "sql") && p.is_file() {
            files.push(p);
        }
    }
    if files.is_empty() {
        return Err(format!("the folder `{path}` holds no `.sql` files"));
    }
    files.sort();
    Ok(files.into_iter().map(file).collect())
}

/// The function `id` of `file`, checked key by key, with paths made
/// relative to `dir` and defaults filled in.
fn normalize_function(
    file: &Path,
    dir: &Path,
    id: FunctionId,
    f: RawFunction,
    providers: &[String],
) -> Result<FunctionSpec, ManifestError> {
    let at = Field { file, id: &id };
    if f.source.trim().is_empty() {
        return Err(at.err("source", "is empty; name the component's .wasm file"));
    }
    let (routes, route_options) = routes(&at, dir, f.routes, providers)?;
    let auth = f
        .auth
        .map(|a| gateway::auth_rule(a, providers))
        .transpose()
        .map_err(|e| at.err("auth", e))?;
    let rate_limit = f
        .rate_limit
        .map(gateway::rate_limit)
        .transpose()
        .map_err(|e| at.err("rate_limit", e))?;
    let cors = f
        .cors
        .map(gateway::cors)
        .transpose()
        .map_err(|e| at.err("cors", e))?;
    let limits = limits(&at, f.limits)?;
    check_env(&at, &f.env)?;
    if f.workdir.is_some() && f.build.is_none() {
        return Err(at.err("workdir", "is only used with `build`; add a build command"));
    }
    let config = config(&at, &f.config)?;
    let postgres = postgres(&at, f.postgres)?;
    let queue = f.queue.map(|q| queue(&at, q)).transpose()?;
    let build = f.build.map(|command| BuildSpec {
        command,
        workdir: f
            .workdir
            .as_deref()
            .map_or_else(|| dir.to_owned(), |w| dir.join(w)),
    });
    Ok(FunctionSpec {
        source: dir.join(&f.source),
        build,
        routes,
        route_options,
        description: f.description,
        auth,
        rate_limit,
        cors,
        limits,
        env: f.env.into_iter().collect(),
        kv: f.kv,
        sqlite: f.sqlite,
        postgres,
        services: f.services,
        allowed_outbound_hosts: f.allowed_outbound_hosts,
        config,
        queue,
        publish: f.publish,
        instance_reuse: f.instance_reuse.map(reuse),
        id,
    })
}

/// Where a function's keys are, for errors that name them.
struct Field<'a> {
    file: &'a Path,
    id: &'a FunctionId,
}

impl Field<'_> {
    /// An error about `functions.ID.KEY`.
    fn err(&self, key: &str, message: impl Into<String>) -> ManifestError {
        let message = message.into();
        ManifestError::new(
            self.file,
            format!("`functions.{}.{key}`: {message}", self.id),
        )
    }
}

/// A function's routes and each one's gateway options.
fn routes(
    at: &Field<'_>,
    dir: &Path,
    entries: Vec<RawRouteEntry>,
    providers: &[String],
) -> Result<(Vec<Route>, Vec<RouteOptions>), ManifestError> {
    let mut routes = Vec::with_capacity(entries.len());
    let mut route_options = Vec::with_capacity(entries.len());
    for entry in entries {
        let o = entry.options;
        let route = entry.route;
        let key = |key: &str| format!("routes.\"{route}\".{key}");
        route_options.push(RouteOptions {
            auth: o
                .auth
                .map(|a| gateway::auth_rule(a, providers))
                .transpose()
                .map_err(|e| at.err(&key("auth"), e))?,
            rate_limit: o
                .rate_limit
                .map(gateway::rate_limit)
                .transpose()
                .map_err(|e| at.err(&key("rate_limit"), e))?,
            summary: o.summary,
            description: o.description,
            request_body: o
                .request_body
                .map(|s| gateway::schema(dir, s))
                .transpose()
                .map_err(|e| at.err(&key("request_body"), e))?,
            response: o
                .response
                .map(|s| gateway::schema(dir, s))
                .transpose()
                .map_err(|e| at.err(&key("response"), e))?,
        });
        routes.push(route);
    }
    if let Some(route) = routes.iter().find(|r| {
        matches!(r.pattern.segments.as_slice(), [Segment::Literal(a), Segment::Literal(b), ..] if &**a == ".well-known" && &**b == "nimbus")
    }) {
        return Err(at.err(
            "routes",
            format!("route `{route}` is under `/.well-known/nimbus/`, which Nimbus reserves for its own endpoints"),
        ));
    }
    Ok((routes, route_options))
}

/// A function's limits, defaults filled in, each in range.
fn limits(at: &Field<'_>, l: RawLimits) -> Result<Limits, ManifestError> {
    let defaults = Limits::default();
    let limits = Limits {
        timeout: l.timeout.map_or(defaults.timeout, |d| d.0),
        memory: l.memory.map_or(defaults.memory, |s| s.0),
        concurrency: l.concurrency.unwrap_or(defaults.concurrency),
        queue_timeout: l.queue_timeout.map_or(defaults.queue_timeout, |d| d.0),
        max_body: l.max_body.map_or(defaults.max_body, |s| s.0),
        kv_key_size: l.kv_key_size.map_or(defaults.kv_key_size, |s| s.0),
        kv_value_size: l.kv_value_size.map_or(defaults.kv_value_size, |s| s.0),
        outbound_timeout: l
            .outbound_timeout
            .map_or(defaults.outbound_timeout, |d| d.0),
        sql_timeout: l.sql_timeout.map_or(defaults.sql_timeout, |d| d.0),
        sql_rows: l.sql_rows.unwrap_or(defaults.sql_rows),
        sql_result_size: l.sql_result_size.map_or(defaults.sql_result_size, |s| s.0),
    };
    if limits.sql_timeout.is_zero() {
        return Err(at.err("limits.sql_timeout", "must be more than zero"));
    }
    if limits.sql_rows == 0 {
        return Err(at.err("limits.sql_rows", "must be at least 1"));
    }
    if limits.timeout.is_zero() {
        return Err(at.err("limits.timeout", "must be more than zero"));
    }
    if limits.concurrency == 0 {
        return Err(at.err("limits.concurrency", "must be at least 1"));
    }
    if limits.memory < WASM_PAGE || limits.memory > MAX_MEMORY {
        return Err(at.err(
            "limits.memory",
            format!(
                "{} is out of range; it must be between 64 KiB (one wasm page) and 4 GiB",
                format_bytes(limits.memory)
            ),
        ));
    }
    Ok(limits)
}

/// Environment variable names and values a process can have.
fn check_env(at: &Field<'_>, env: &BTreeMap<String, String>) -> Result<(), ManifestError> {
    for name in env.keys() {
        if name.is_empty() || name.contains(['=', '\0']) {
            return Err(at.err(
                "env",
                format!("`{name}` is not a valid environment variable name"),
            ));
        }
    }
    if let Some((name, _)) = env.iter().find(|(_, v)| v.contains('\0')) {
        return Err(at.err("env", format!("the value of `{name}` contains a NUL byte")));
    }
    Ok(())
}

/// The config values, templates expanded.
fn config(
    at: &Field<'_>,
    raw: &BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, ManifestError> {
    let mut config = Vec::with_capacity(raw.len());
    for (key, template) in raw {
        if key.is_empty() {
            return Err(at.err("config", "a key is empty"));
        }
        let value = expand_env(template).map_err(|e| at.err(&format!("config.{key}"), e))?;
        config.push((key.clone(), value));
    }
    Ok(config)
}

/// The queue trigger, defaults filled in, each in range.
fn queue(at: &Field<'_>, q: RawQueue) -> Result<QueueSpec, ManifestError> {
    let spec = QueueSpec {
        topic: q.topic,
        max_attempts: q.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS),
        backoff: q.backoff.map_or(DEFAULT_BACKOFF, |d| d.0),
        max_backoff: q.max_backoff.map_or(DEFAULT_MAX_BACKOFF, |d| d.0),
        concurrency: q.concurrency.unwrap_or(DEFAULT_QUEUE_CONCURRENCY),
    };
    if spec.max_attempts == 0 {
        return Err(at.err("queue.max_attempts", "must be at least 1"));
    }
    if spec.concurrency == 0 {
        return Err(at.err("queue.concurrency", "must be at least 1"));
    }
    if spec.max_backoff < spec.backoff {
        return Err(at.err(
            "queue.max_backoff",
            format!(
                "{:?} is shorter than `backoff` ({:?})",
                spec.max_backoff, spec.backoff
            ),
        ));
    }
    Ok(spec)
}

/// A function's PostgreSQL grants: each URL's templates resolved and the
/// URL parsed now, so a typo stops the start naming the key. The errors
/// never repeat the URL, which may hold a password.
fn postgres(
    at: &Field<'_>,
    raw: BTreeMap<StoreName, super::schema::RawPostgres>,
) -> Result<Vec<PostgresGrant>, ManifestError> {
    use super::schema::RawPostgres;
    let mut grants = Vec::with_capacity(raw.len());
    for (name, entry) in raw {
        let key = format!("postgres.{name}");
        let (url, pool) = match entry {
            RawPostgres::Url(url) => (url, None),
            RawPostgres::Table(t) => (t.url, t.pool),
        };
        let pool = pool.map_or(DEFAULT_POSTGRES_POOL, NonZeroU32::get);
        if pool > MAX_POSTGRES_POOL {
            return Err(at.err(
                &format!("{key}.pool"),
                format!("{pool} connections: at most {MAX_POSTGRES_POOL}"),
            ));
        }
        let url = expand_env(&url).map_err(|e| at.err(&key, e))?;
        let config: tokio_postgres::Config = url.parse().map_err(|e| {
            at.err(
                &key,
                format!(
                    "not a PostgreSQL connection URL (`postgres://user:password@host:5432/database`) or `key=value` string: {e}"
                ),
            )
        })?;
        if config.get_hosts().is_empty() {
            return Err(at.err(
                &key,
                "names no host; write `postgres://user@host:5432/database`",
            ));
        }
        grants.push(PostgresGrant { name, config, pool });
    }
    Ok(grants)
}

/// Replaces each `{{ env.NAME }}` in a config value with the host's
/// environment variable NAME. A variable that is not set is an error now,
/// at load time, rather than a surprise at the first request.
fn expand_env(template: &str) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("unclosed `{{{{` in `{template}`"))?;
        let expr = after[..end].trim();
        let name = expr.strip_prefix("env.").ok_or_else(|| {
            format!("`{{{{ {expr} }}}}` is not a template Nimbus knows; write `{{{{ env.NAME }}}}`")
        })?;
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("`{name}` is not an environment variable name"));
        }
        let value = std::env::var(name)
            .map_err(|_| format!("needs the environment variable `{name}`, which is not set"))?;
        out.push_str(&value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Every function named in `services` must exist in the app.
fn check_services(file: &Path, functions: &[FunctionSpec]) -> Result<(), ManifestError> {
    for f in functions {
        for service in &f.services {
            if !functions.iter().any(|g| &g.id == service) {
                let known: Vec<&str> = functions.iter().map(|g| g.id.as_str()).collect();
                return Err(ManifestError::new(
                    file,
                    format!(
                        "`functions.{}.services`: there is no function `{service}` in this app (functions: {})",
                        f.id,
                        known.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The size of a wasm page: the smallest memory an instance can have.
const WASM_PAGE: u64 = 64 * 1024;

/// Two routes conflict when they match the same paths and could take the same
/// method: the router could not say which function a request is for.
fn check_route_conflicts(file: &Path, functions: &[FunctionSpec]) -> Result<(), ManifestError> {
    let mut seen: HashMap<String, Vec<(&FunctionId, &Route)>> = HashMap::new();
    for f in functions {
        for route in &f.routes {
            let claims = seen.entry(route.pattern.shape()).or_default();
            if let Some((other, other_route)) = claims.iter().find(|(_, r)| {
                r.method.is_none() || route.method.is_none() || r.method == route.method
            }) {
                let other = if *other == &f.id {
                    "the same function".to_string()
                } else {
                    format!("function `{other}`")
                };
                return Err(ManifestError::new(
                    file,
                    format!(
                        "`functions.{}.routes`: route `{route}` matches the same requests as `{other_route}` of {other}; each method and path may go to one function only",
                        f.id
                    ),
                ));
            }
            claims.push((&f.id, route));
        }
    }
    Ok(())
}

/// `instance_reuse` with the defaults: one request at a time, idle for
/// [`Reuse::DEFAULT_IDLE`]; a table without `requests` takes
/// [`Reuse::DEFAULT_REQUESTS`].
fn reuse(raw: RawReuse) -> Reuse {
    let one = std::num::NonZeroU32::MIN;
    match raw {
        RawReuse::Requests(requests) => Reuse {
            requests,
            concurrent: one,
            idle: Reuse::DEFAULT_IDLE,
        },
        RawReuse::Table(t) => Reuse {
            requests: t.requests.unwrap_or(Reuse::DEFAULT_REQUESTS),
            concurrent: t.concurrent.unwrap_or(one),
            idle: t.idle.map_or(Reuse::DEFAULT_IDLE, |d| d.0),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::expand_env;

    #[test]
    fn config_templates_read_the_host_environment() {
        assert_eq!(expand_env("plain").unwrap(), "plain");
        let path = std::env::var("PATH").unwrap();
        assert_eq!(expand_env("a{{ env.PATH }}b").unwrap(), format!("a{path}b"));
        assert_eq!(expand_env("{{env.PATH}}").unwrap(), path);
        let err = expand_env("{{ env.NIMBUS_SURELY_UNSET_VAR }}").unwrap_err();
        assert!(
            err.contains("`NIMBUS_SURELY_UNSET_VAR`, which is not set"),
            "{err}"
        );
        assert!(
            expand_env("{{ secret.x }}")
                .unwrap_err()
                .contains("not a template")
        );
        assert!(expand_env("{{ env.X").unwrap_err().contains("unclosed"));
    }
}
