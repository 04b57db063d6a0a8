//! The manifest exactly as written: serde types, strict about unknown keys.
//!
//! Nothing here resolves paths or applies defaults; that is `super::normalize`'s job.

use super::id::{FunctionId, StoreName};
use super::outbound::HostPattern;
use super::route::Route;
use super::topic::TopicPattern;
use super::units::{ByteSize, HumanDuration};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::num::NonZeroU32;

/// `nimbus.toml`, version 1.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawManifest {
    /// The manifest format version. Example: `version = 1`.
    pub version: u32,
    /// The `[app]` table.
    pub app: RawApp,
    /// `[auth.<provider>]` tables: JWT providers the gateway verifies tokens
    /// against, by name. Example: `[auth.users]` with `issuer`, `audience`
    /// and one key source.
    #[serde(default)]
    pub auth: BTreeMap<String, RawJwtProvider>,
    /// `[functions.<id>]` tables, one per function.
    #[serde(default)]
    pub functions: BTreeMap<FunctionId, RawFunction>,
    /// `[sqlite.<name>]` tables: a SQLite database's migrations and size
    /// cap. A database a function lists in `sqlite` needs no table.
    /// Example: `[sqlite.catalog]` with `migrations = "sql/catalog"`.
    #[serde(default)]
    pub sqlite: BTreeMap<StoreName, RawDatabase>,
}

/// `[sqlite.<name>]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDatabase {
    /// A `.sql` file, or a folder whose `.sql` files apply in name order,
    /// relative to the manifest; each applies once. Example:
    /// `migrations = "sql/catalog.sql"`.
    #[serde(default)]
    pub migrations: Option<String>,
    /// The most the database file may hold. Example: `max_size = "256MiB"`.
    #[serde(default)]
    pub max_size: Option<ByteSize>,
}

/// `[app]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApp {
    /// The app's name, with the same rules as a function id. Example: `name = "shop"`.
    pub name: String,
    /// A sentence about the app. Example: `description = "A small shop"`.
    #[serde(default)]
    pub description: Option<String>,
    /// The version shown in the generated OpenAPI document. Example: `version = "1.2.0"`.
    #[serde(default)]
    pub version: Option<String>,
    /// The default authentication rule for every route; functions and routes
    /// override it. Example: `auth = { require = "users" }`.
    #[serde(default)]
    pub auth: Option<RawAuthRule>,
    /// `[app.cors]`: cross-origin rules for every function; a function's own
    /// `cors` replaces them. Example: `cors = { allow_origins = ["https://shop.example"] }`.
    #[serde(default)]
    pub cors: Option<RawCors>,
}

/// `[functions.<id>]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFunction {
    /// The component file, relative to the manifest.
    /// Example: `source = "target/wasm32-wasip2/release/hello.wasm"`.
    pub source: String,
    /// A shell command that builds `source`. Example: `build = "cargo build --release"`.
    #[serde(default)]
    pub build: Option<String>,
    /// Where `build` runs, relative to the manifest (default: the manifest's folder).
    #[serde(default)]
    pub workdir: Option<String>,
    /// A sentence about the function, shown in the OpenAPI document.
    /// Example: `description = "Accounts and login tokens"`.
    #[serde(default)]
    pub description: Option<String>,
    /// HTTP routes: a string, or a table with the route and its own policy
    /// and documentation. Example:
    /// `routes = ["GET /", { route = "POST /items", auth = { require = "users", roles = ["admin"] }, summary = "Add an item" }]`.
    #[serde(default)]
    pub routes: Vec<RawRouteEntry>,
    /// Who may call the function's routes; replaces the app's `auth`.
    /// Example: `auth = { require = "users", scopes = ["orders:write"] }`, or
    /// `auth = { require = "none" }` for public routes.
    #[serde(default)]
    pub auth: Option<RawAuthRule>,
    /// A token bucket per caller for the function's routes. Example:
    /// `rate_limit = { requests = 10, per = "1s", burst = 20, key = "client" }`.
    #[serde(default)]
    pub rate_limit: Option<RawRateLimit>,
    /// Cross-origin rules for this function, replacing `[app.cors]`.
    /// Example: `cors = { allow_origins = ["*"] }`.
    #[serde(default)]
    pub cors: Option<RawCors>,
    /// `[functions.<id>.limits]`.
    #[serde(default)]
    pub limits: RawLimits,
    /// `[functions.<id>.env]`: environment variables the guest sees.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Key-value stores the function may open. Example: `kv = ["catalog"]`.
    #[serde(default)]
    pub kv: Vec<StoreName>,
    /// SQLite databases of the app it may open. Example: `sqlite = ["default"]`.
    #[serde(default)]
    pub sqlite: Vec<StoreName>,
    /// PostgreSQL databases it may use, each by a name of its own: a
    /// connection URL (or `key=value` string), or a table with the URL and
    /// the size of the grant's connection pool; `{{ env.NAME }}` is replaced
    /// by the host's environment variable. Example:
    /// `postgres = { orders = "{{ env.ORDERS_DATABASE_URL }}" }`, or
    /// `postgres = { orders = { url = "{{ env.ORDERS_DATABASE_URL }}", pool = 16 } }`.
    #[serde(default)]
    pub postgres: BTreeMap<StoreName, RawPostgres>,
    /// Other functions of the app it may call as `http://<id>.internal/`.
    /// Example: `services = ["users"]`.
    #[serde(default)]
    pub services: Vec<FunctionId>,
    /// Outbound HTTP it may make, as `scheme://host:port` patterns with `*`.
    /// Example: `allowed_outbound_hosts = ["https://api.example.com", "http://127.0.0.1:*"]`.
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<HostPattern>,
    /// A queue trigger. Example:
    /// `queue = { topic = "orders.created", max_attempts = 5, backoff = "200ms" }`.
    #[serde(default)]
    pub queue: Option<RawQueue>,
    /// Topics it may publish to (`*` one token, `>` the rest). Example: `publish = ["orders.*"]`.
    #[serde(default)]
    pub publish: Vec<TopicPattern>,
    /// `[functions.<id>.config]`: values the guest reads through `wasi:config`;
    /// `{{ env.NAME }}` is replaced by the host's environment variable.
    /// Example: `signing_key = "{{ env.SHOP_SIGNING_KEY }}"`.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Opt-in instance reuse, for a function that keeps no state from one
    /// request to the next: a number of requests each instance serves (one
    /// at a time), or a table. Absent: a fresh instance per request.
    /// Examples: `instance_reuse = 1000`,
    /// `instance_reuse = { requests = 128, concurrent = 16, idle = "1s" }`.
    #[serde(default)]
    pub instance_reuse: Option<RawReuse>,
}

/// `instance_reuse`: a number of requests, or a table.
#[derive(Debug)]
pub enum RawReuse {
    /// `instance_reuse = 1000`.
    Requests(NonZeroU32),
    /// `instance_reuse = { ... }`.
    Table(RawReuseTable),
}

/// `instance_reuse = { requests = 128, concurrent = 16, idle = "1s" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReuseTable {
    /// Requests each instance serves before it is dropped. Example: `requests = 128`.
    pub requests: Option<NonZeroU32>,
    /// Requests one instance runs at once (WASI 0.3 functions only; 1 for
    /// WASI 0.2). Example: `concurrent = 16`.
    pub concurrent: Option<NonZeroU32>,
    /// How long an idle instance is kept for the next request. Example: `idle = "1s"`.
    pub idle: Option<HumanDuration>,
}

impl<'de> Deserialize<'de> for RawReuse {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawReuse;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "a number of requests per instance, or a table like { requests = 128, concurrent = 16, idle = \"1s\" }",
                )
            }

            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<RawReuse, E> {
                u32::try_from(n)
                    .ok()
                    .and_then(NonZeroU32::new)
                    .map(RawReuse::Requests)
                    .ok_or_else(|| {
                        E::custom(format!(
                            "{n} requests per instance: it must be from 1 to {}",
                            u32::MAX
                        ))
                    })
            }

            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<RawReuse, E> {
                self.visit_i64(i64::try_from(n).unwrap_or(-1))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RawReuse, A::Error> {
                RawReuseTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(RawReuse::Table)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// One entry of `postgres`: a URL, or a table.
#[derive(Debug)]
pub enum RawPostgres {
    /// `orders = "postgres://..."`.
    Url(String),
    /// `orders = { url = "postgres://...", pool = 16 }`.
    Table(RawPostgresTable),
}

/// `orders = { url = "postgres://...", pool = 16 }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPostgresTable {
    /// The database's URL (`postgres://user:password@host:port/db`) or
    /// `key=value` connection string. Example: `url = "{{ env.ORDERS_DATABASE_URL }}"`.
    pub url: String,
    /// Connections the host keeps open to it at most, shared by the
    /// function's requests. Example: `pool = 16`.
    pub pool: Option<NonZeroU32>,
}

impl<'de> Deserialize<'de> for RawPostgres {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawPostgres;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "a connection URL, or a table like { url = \"postgres://...\", pool = 8 }",
                )
            }

            fn visit_str<E: serde::de::Error>(self, url: &str) -> Result<RawPostgres, E> {
                Ok(RawPostgres::Url(url.to_owned()))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<RawPostgres, A::Error> {
                RawPostgresTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(RawPostgres::Table)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// `queue = { ... }`: the topic and the retry policy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQueue {
    /// The topic (or pattern) to consume. Example: `topic = "orders.created"`.
    pub topic: TopicPattern,
    /// Deliveries before a message moves to dead letters. Example: `max_attempts = 5`.
    pub max_attempts: Option<u32>,
    /// Delay before the first retry; it doubles each time. Example: `backoff = "200ms"`.
    pub backoff: Option<HumanDuration>,
    /// The longest delay between retries. Example: `max_backoff = "30s"`.
    pub max_backoff: Option<HumanDuration>,
    /// Messages handled at once. Example: `concurrency = 16`.
    pub concurrency: Option<u32>,
}

/// `[functions.<id>.limits]`; every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Wall-clock time per request. Example: `timeout = "5s"`.
    pub timeout: Option<HumanDuration>,
    /// Linear-memory cap per instance. Example: `memory = "64MiB"`.
    pub memory: Option<ByteSize>,
    /// Instances of this function running at once. Example: `concurrency = 100`.
    pub concurrency: Option<u32>,
    /// How long a request waits for a free instance before a 503. Example: `queue_timeout = "1s"`.
    pub queue_timeout: Option<HumanDuration>,
    /// Request body cap. Example: `max_body = "1MiB"`.
    pub max_body: Option<ByteSize>,
    /// Longest key-value key. Example: `kv_key_size = "256B"`.
    pub kv_key_size: Option<ByteSize>,
    /// Largest key-value value. Example: `kv_value_size = "1MiB"`.
    pub kv_value_size: Option<ByteSize>,
    /// Time limit for each outbound HTTP request. Example: `outbound_timeout = "10s"`.
    pub outbound_timeout: Option<HumanDuration>,
    /// Time limit for each SQL statement, waiting for a lock included.
    /// Example: `sql_timeout = "2s"`.
    pub sql_timeout: Option<HumanDuration>,
    /// Most rows one SQL result may have. Example: `sql_rows = 1000`.
    pub sql_rows: Option<u64>,
    /// Most bytes one SQL result may hold. Example: `sql_result_size = "4MiB"`.
    pub sql_result_size: Option<ByteSize>,
}

/// One entry of `routes`: `"GET /path"` or a table with options.
#[derive(Debug)]
pub struct RawRouteEntry {
    /// The route.
    pub route: Route,
    /// Its options; all empty for the plain string form.
    pub options: RawRouteOptions,
}

/// The table form of a route entry, without the route.
#[derive(Debug, Default)]
pub struct RawRouteOptions {
    /// Who may call this route; replaces the function's `auth`.
    /// Example: `auth = { require = "users", roles = ["admin"] }`.
    pub auth: Option<RawAuthRule>,
    /// A token bucket for this route; replaces the function's `rate_limit`.
    /// Example: `rate_limit = { requests = 5, per = "1m", key = "client" }`.
    pub rate_limit: Option<RawRateLimit>,
    /// One line for the OpenAPI document. Example: `summary = "Create a product"`.
    pub summary: Option<String>,
    /// Longer text for the OpenAPI document.
    pub description: Option<String>,
    /// The JSON Schema of the request body: an inline table, or a `.json`
    /// file relative to the manifest. Example: `request_body = "schemas/product.json"`.
    pub request_body: Option<RawSchema>,
    /// The JSON Schema of the success response body, inline or a file.
    /// Example: `response = { type = "object", properties = { id = { type = "string" } } }`.
    pub response: Option<RawSchema>,
}

impl<'de> serde::Deserialize<'de> for RawRouteEntry {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawRouteEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(r#"a route such as "GET /users/:id", or a table { route = "GET /users/:id", ... }"#)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawRouteEntry, E> {
                Ok(RawRouteEntry {
                    route: Route::parse(v).map_err(E::custom)?,
                    options: RawRouteOptions::default(),
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<RawRouteEntry, A::Error> {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Table {
                    route: Route,
                    #[serde(default)]
                    auth: Option<RawAuthRule>,
                    #[serde(default)]
                    rate_limit: Option<RawRateLimit>,
                    #[serde(default)]
                    summary: Option<String>,
                    #[serde(default)]
                    description: Option<String>,
                    #[serde(default)]
                    request_body: Option<RawSchema>,
                    #[serde(default)]
                    response: Option<RawSchema>,
                }
                let t = Table::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(RawRouteEntry {
                    route: t.route,
                    options: RawRouteOptions {
                        auth: t.auth,
                        rate_limit: t.rate_limit,
                        summary: t.summary,
                        description: t.description,
                        request_body: t.request_body,
                        response: t.response,
                    },
                })
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// A JSON Schema in the manifest: a file name or an inline table.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawSchema {
    /// A `.json` file, relative to the manifest.
    File(String),
    /// The schema itself, as TOML.
    Inline(toml::Table),
}

/// `[auth.<provider>]`: a JWT issuer the gateway trusts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwtProvider {
    /// The expected `iss` claim. Example: `issuer = "shop-users"`.
    #[serde(default)]
    pub issuer: Option<String>,
    /// The expected `aud` claim: one value or a list, any of which may match.
    /// Example: `audience = "shop"`.
    #[serde(default)]
    pub audience: Option<OneOrMany>,
    /// An HMAC-SHA256 secret. Example: `hs256_secret = "{{ env.SHOP_JWT_SECRET }}"`.
    #[serde(default)]
    pub hs256_secret: Option<String>,
    /// An HMAC-SHA384 secret.
    #[serde(default)]
    pub hs384_secret: Option<String>,
    /// An HMAC-SHA512 secret.
    #[serde(default)]
    pub hs512_secret: Option<String>,
    /// A PEM file with an RSA, EC (P-256, P-384) or Ed25519 public key,
    /// relative to the manifest. Example: `public_key_pem = "keys/issuer.pem"`.
    #[serde(default)]
    pub public_key_pem: Option<String>,
    /// A JWKS: a file relative to the manifest or an `http(s)://` URL,
    /// cached and refreshed when a token names an unknown `kid`.
    /// Example: `jwks = "https://id.example.com/.well-known/jwks.json"`.
    #[serde(default)]
    pub jwks: Option<String>,
    /// The shortest time between two JWKS fetches caused by tokens naming
    /// an unknown `kid` (default 30s). Example: `jwks_min_refresh = "1m"`.
    #[serde(default)]
    pub jwks_min_refresh: Option<HumanDuration>,
    /// Accepted `alg` values, narrowing what the key allows.
    /// Example: `algorithms = ["RS256"]`.
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    /// Clock skew allowed on `exp` and `nbf`. Example: `leeway = "30s"`.
    #[serde(default)]
    pub leeway: Option<HumanDuration>,
    /// The claim holding scopes (a space-separated string or a list); a
    /// dotted path reaches into objects. Example: `scopes_claim = "scope"`.
    #[serde(default)]
    pub scopes_claim: Option<String>,
    /// The claim holding roles (a list or a space-separated string).
    /// Example: `roles_claim = "realm_access.roles"`.
    #[serde(default)]
    pub roles_claim: Option<String>,
}

/// One string or a list of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// A single value.
    One(String),
    /// Several values.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The values as a list.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// `auth = { require = ..., scopes = [...], roles = [...] }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuthRule {
    /// A provider name from `[auth.<provider>]`, or `"none"` for public access.
    pub require: String,
    /// Scopes the token must all carry. Example: `scopes = ["orders:write"]`.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Roles the token must carry, any one of them. Example: `roles = ["admin"]`.
    #[serde(default)]
    pub roles: Vec<String>,
}

/// `rate_limit = { requests = 10, per = "1s", burst = 20, key = "client" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    /// Requests allowed per `per`, on average. Example: `requests = 100`.
    pub requests: u32,
    /// The period of `requests`. Example: `per = "1m"`.
    pub per: HumanDuration,
    /// Requests allowed at once after a quiet spell (default: `requests`).
    /// Example: `burst = 20`.
    #[serde(default)]
    pub burst: Option<u32>,
    /// Whose bucket a request draws from: `"client"` (its IP address),
    /// `"subject"` (the JWT `sub`, else the IP address) or `"header:<name>"`
    /// (that header's value, else the IP address). Default `"client"`.
    #[serde(default)]
    pub key: Option<String>,
}

/// Cross-origin resource sharing rules.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCors {
    /// Origins allowed to call, or `["*"]` for any.
    /// Example: `allow_origins = ["https://shop.example"]`.
    pub allow_origins: Vec<String>,
    /// Methods allowed (default: the methods of the matched path's routes).
    /// Example: `allow_methods = ["GET", "POST"]`.
    #[serde(default)]
    pub allow_methods: Option<Vec<String>>,
    /// Request headers allowed, or `["*"]` for any (default:
    /// `authorization` and `content-type`). Example: `allow_headers = ["x-api-key"]`.
    #[serde(default)]
    pub allow_headers: Option<Vec<String>>,
    /// Response headers a page may read. Example: `expose_headers = ["x-request-id"]`.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// Whether cookies and `Authorization` may be sent cross-origin.
    /// Example: `allow_credentials = true`.
    #[serde(default)]
    pub allow_credentials: bool,
    /// How long a browser may cache a preflight answer. Example: `max_age = "10m"`.
    #[serde(default)]
    pub max_age: Option<HumanDuration>,
}
