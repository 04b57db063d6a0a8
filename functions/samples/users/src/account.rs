//! Accounts: what a caller sends, the rules it must meet, and what is stored.

use nimbus_sdk::Error;
use serde::{Deserialize, Serialize};

/// The shortest and longest username. Short enough to show in full anywhere,
/// and a bounded key in the store.
const USERNAME_LEN: std::ops::RangeInclusive<usize> = 3..=32;
/// The fewest characters a password may have (NIST SP 800-63B's minimum for a
/// password the user chose).
const PASSWORD_MIN_CHARS: usize = 8;

/// The body of `POST /users/register` and `POST /users/login`.
///
/// Deliberately not `Debug`, so the password cannot end up in a log line.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// The stored record of an account, under [`key`].
#[derive(Serialize, Deserialize)]
pub struct Account {
    pub username: String,
    /// The argon2id hash as a PHC string: `$argon2id$v=19$m=..,t=..,p=..$salt$hash`,
    /// so each record carries the parameters it was hashed with.
    pub password_hash: String,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
}

/// The store key of `username`'s account.
pub fn key(username: &str) -> String {
    format!("user/{username}")
}

/// A username is 3 to 32 of `a-z`, `0-9` and `_` (`^[a-z0-9_]{3,32}$`).
pub fn check_username(username: &str) -> Result<(), Error> {
    let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_';
    if USERNAME_LEN.contains(&username.len()) && username.bytes().all(allowed) {
        Ok(())
    } else {
        Err(Error::bad_request(format!(
            "`username` must be {} to {} characters of a-z, 0-9 and _",
            USERNAME_LEN.start(),
            USERNAME_LEN.end()
        )))
    }
}

/// A password has at least 8 characters (Unicode scalar values, not bytes).
pub fn check_password(password: &str) -> Result<(), Error> {
    if password.chars().count() >= PASSWORD_MIN_CHARS {
        Ok(())
    } else {
        Err(Error::bad_request(format!(
            "`password` must be at least {PASSWORD_MIN_CHARS} characters"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_match_the_pattern() {
        for good in ["abc", "alice_01", "___", &"a".repeat(32)] {
            assert!(check_username(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "ab",
            "Alice",
            "al ice",
            "al-ice",
            "jürgen",
            &"a".repeat(33),
        ] {
            let error = check_username(bad).unwrap_err();
            assert_eq!(error.status(), 400, "{bad}");
            assert!(error.message().contains("`username`"), "{error}");
        }
    }

    #[test]
    fn passwords_count_characters() {
        assert!(check_password("12345678").is_ok());
        assert!(check_password("ääääääää").is_ok());
        let error = check_password("1234567").unwrap_err();
        assert!(error.message().contains("`password`"), "{error}");
        // Seven characters, fourteen bytes: still too short.
        assert!(check_password("äääääää").is_err());
    }
}
