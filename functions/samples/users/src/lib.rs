//! `users`: the shop's accounts and login tokens, written with `nimbus-sdk`.
//!
//! | request | response |
//! |---|---|
//! | `POST /users/register` `{"username", "password"}` | `201 {"username"}`; `400` bad JSON, a username not matching `^[a-z0-9_]{3,32}$` or a password under 8 characters; `409` the username is taken |
//! | `POST /users/login` `{"username", "password"}` | `200 {"token", "expires_in"}`; `400` bad JSON; `401` a wrong username or password (one message for both) |
//!
//! Errors are the SDK's JSON error bodies. The token is an HS256 JWT (see
//! `token`); the Nimbus gateway verifies it with the same key (the manifest's
//! `[auth.users]` provider) on the routes that require it.
//!
//! # What the manifest grants
//!
//! - `kv = ["users"]`: one record per account under `user/<username>`, holding
//!   the argon2id hash as a PHC string (algorithm, parameters, salt and hash;
//!   never the password);
//! - config `signing_key` (required): the HMAC key for tokens;
//! - config `admins` (optional): a comma-separated list of usernames whose
//!   tokens carry `roles: ["admin"]`.
//!
//! # Layout
//!
//! | module | what |
//! |---|---|
//! | `account` | the request body, the username and password rules, the stored record |
//! | `password` | argon2id hashing and verification |
//! | `token` | the JWT's claims and its HS256 signature |

mod account;
mod password;
mod token;

use std::time::{SystemTime, UNIX_EPOCH};

use nimbus_sdk::{
    Error, IntoResponse, Json, Request, RequestExt, Response, StatusCode, config, http_handler, kv,
};
use serde_json::json;

use crate::account::{Account, Credentials};

/// The key-value store the manifest grants this function.
const STORE: &str = "users";
/// The paths this function answers, both `POST` only.
const REGISTER: &str = "/users/register";
const LOGIN: &str = "/users/login";
/// The one message for a wrong username and a wrong password, so a caller
/// cannot tell which accounts exist by logging in.
const BAD_LOGIN: &str = "wrong username or password";

#[http_handler]
fn handle(req: Request) -> Result<Response, Error> {
    let path = req.uri().path().trim_end_matches('/');
    match (req.method().as_str(), path) {
        ("POST", REGISTER) => register(&req),
        ("POST", LOGIN) => login(&req),
        (_, REGISTER | LOGIN) => Err(Error::method_not_allowed("POST")),
        _ => Err(Error::not_found(format!(
            "no users endpoint at `{}`",
            req.uri().path()
        ))),
    }
}

/// `POST /users/register`: creates the account if the name is free.
fn register(req: &Request) -> Result<Response, Error> {
    let credentials: Credentials = req.json()?;
    account::check_username(&credentials.username)?;
    account::check_password(&credentials.password)?;

    let store = kv::Store::open(STORE)?;
    let key = account::key(&credentials.username);
    // Hashing is the slow part: skip it for a name that is already taken.
    if store.exists(&key)? {
        return Err(taken(&credentials.username));
    }
    let account = Account {
        username: credentials.username,
        password_hash: password::hash(credentials.password.as_bytes())?,
        created_at: unix_now()?,
    };
    let record = serde_json::to_vec(&account)
        .map_err(|err| Error::internal(format!("cannot encode the account: {err}")))?;
    // Create-only: of two registrations racing for one name, one wins.
    if !store.compare_and_swap(&key, None, record)? {
        return Err(taken(&account.username));
    }
    nimbus_sdk::info!("registered `{}`", account.username);
    Ok((
        StatusCode::CREATED,
        Json(json!({ "username": account.username })),
    )
        .into_response())
}

/// `POST /users/login`: checks the password and issues a token.
fn login(req: &Request) -> Result<Response, Error> {
    let credentials: Credentials = req.json()?;
    let password = credentials.password.as_bytes();
    // A name that breaks the rules cannot have an account, and must not reach
    // the store (whose keys are bounded); it still pays for one hash below, so
    // every wrong login takes as long as a wrong password.
    let account = match account::check_username(&credentials.username) {
        Ok(()) => {
            kv::Store::open(STORE)?.get_json::<Account>(&account::key(&credentials.username))?
        }
        Err(_) => None,
    };
    let verified = match &account {
        Some(account) => password::verify(password, &account.password_hash)?,
        None => {
            password::waste_time(password);
            false
        }
    };
    let Some(account) = account.filter(|_| verified) else {
        return Err(Error::unauthorized(BAD_LOGIN));
    };

    let key = config::get("signing_key")?;
    let admins = config::try_get("admins")?.unwrap_or_default();
    let is_admin = admins
        .split(',')
        .any(|admin| admin.trim() == account.username);
    let claims = token::Claims::new(&account.username, is_admin, unix_now()?);
    let token = token::sign(&claims, key.as_bytes())?;
    Ok(Json(json!({ "token": token, "expires_in": token::LIFETIME_SECS })).into_response())
}

/// `409 conflict` for a username that is taken.
fn taken(username: &str) -> Error {
    Error::conflict(format!("the username `{username}` is taken")).with_code("username_taken")
}

/// Seconds since the Unix epoch, from the host's wall clock.
fn unix_now() -> Result<u64, Error> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_secs())
        .map_err(|_| Error::internal("the wall clock is before 1970"))
}
