//! Password hashes: argon2id, a fresh 16-byte salt per password, stored as a
//! PHC string that carries the algorithm, its parameters and the salt.
//!
//! Verification recomputes the hash with the parameters stored in the record
//! and compares the outputs in constant time (`phc::Output`'s `PartialEq`), so
//! raising [`PARAMS`] later keeps old records valid.

use argon2::password_hash::Error as HashError;
use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
use nimbus_sdk::Error;

/// Bytes of random salt per password: the PHC string format's recommendation.
const SALT_LEN: usize = 16;

/// Memory per hash in KiB (19 MiB), passes over it, and lanes: the first of
/// OWASP's recommended argon2id configurations (Password Storage Cheat Sheet),
/// which costs a guessing attacker 19 MiB per guess. One lane because a
/// component instance is single-threaded. The function's `memory` limit must
/// leave room for these 19 MiB.
const M_COST_KIB: u32 = 19 * 1024;
const T_COST: u32 = 2;
const P_COST: u32 = 1;
/// Bytes of hash output.
const OUTPUT_LEN: usize = 32;

/// The parameters new hashes use.
const PARAMS: Params = match Params::new(M_COST_KIB, T_COST, P_COST, Some(OUTPUT_LEN)) {
    Ok(params) => params,
    Err(_) => panic!("the argon2 parameters are out of range"),
};

/// A fixed salt for [`waste_time`], whose output nobody compares.
const DUMMY_SALT: [u8; SALT_LEN] = [0x5a; SALT_LEN];

fn argon2() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, PARAMS)
}

/// Hashes `password` with a new random salt; returns the PHC string to store.
pub fn hash(password: &[u8]) -> Result<String, Error> {
    let mut salt = [0u8; SALT_LEN];
    getrandom::fill(&mut salt).map_err(|err| Error::internal(format!("no random salt: {err}")))?;
    argon2()
        .hash_password_with_salt(password, &salt)
        .map(|hash| hash.to_string())
        .map_err(|err| Error::internal(format!("cannot hash the password: {err}")))
}

/// Whether `password` matches `stored`, a PHC string from [`hash`]. A record
/// that does not parse is a `500`: the store, not the caller, is at fault.
pub fn verify(password: &[u8], stored: &str) -> Result<bool, Error> {
    let stored = PasswordHash::new(stored)
        .map_err(|err| Error::internal(format!("a stored password hash is invalid: {err}")))?;
    match argon2().verify_password(password, &stored) {
        Ok(()) => Ok(true),
        Err(HashError::PasswordInvalid) => Ok(false),
        Err(err) => Err(Error::internal(format!(
            "cannot verify the password: {err}"
        ))),
    }
}

/// Spends as long as [`verify`] does, for a login whose user does not exist,
/// so the answer's timing does not tell which usernames are registered.
pub fn waste_time(password: &[u8]) {
    let _ = argon2().hash_password_with_salt(password, &DUMMY_SALT);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_owasps_and_land_in_the_phc_string() {
        // The salt is fixed here only to make the output checkable; the hash of
        // a real password always gets a random one.
        let cheap = Params::new(64, 1, 1, Some(OUTPUT_LEN)).unwrap();
        let hashed = Argon2::new(Algorithm::Argon2id, Version::V0x13, cheap)
            .hash_password_with_salt(b"correct horse", &DUMMY_SALT)
            .unwrap()
            .to_string();
        assert!(
            hashed.starts_with("$argon2id$v=19$m=64,t=1,p=1$"),
            "{hashed}"
        );
        assert!(verify(b"correct horse", &hashed).unwrap());
        assert!(!verify(b"wrong horse", &hashed).unwrap());
        assert_eq!(verify(b"x", "not a hash").unwrap_err().status(), 500);

        assert_eq!(
            (PARAMS.m_cost(), PARAMS.t_cost(), PARAMS.p_cost()),
            (19_456, 2, 1)
        );
    }
}
