//! Web accounts: argon2id password hashes and the bootstrap admin.

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use storage::model::UserAccount;
use storage::web::WebAccount;
use storage::{StateReader, StorageError};

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};

/// The web account named `username`, wherever this version or an earlier one stored it.
pub fn find(reader: &StateReader, username: &str) -> Result<Option<WebAccount>, StorageError> {
    if let Some(a) = reader.get::<WebAccount>(username)? {
        return Ok(Some(a));
    }
    Ok(reader
        .get::<UserAccount>(username)?
        .map(WebAccount::from_legacy))
}

/// Every web account, by name.
pub fn list(reader: &StateReader) -> Result<Vec<WebAccount>, StorageError> {
    let mut all: std::collections::BTreeMap<String, WebAccount> = reader
        .list::<UserAccount>()?
        .into_iter()
        .map(|u| (u.username.clone(), WebAccount::from_legacy(u)))
        .collect();
    for a in reader.list::<WebAccount>()? {
        all.insert(a.username.clone(), a);
    }
    Ok(all.into_values().collect())
}

/// Hashes `password` with argon2id (the crate's defaults: 19 MiB, 2 passes, as OWASP recommends).
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Verifies in constant time; a malformed stored hash counts as a mismatch.
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A hash of a random password, verified against when a login names an unknown user, so that a wrong
/// user name costs the same time as a wrong password.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password(&crate::credentials::generate_secret()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verifies_only_the_right_password() {
        let h = hash_password("Correct-Horse-9").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("Correct-Horse-9", &h));
        assert!(!verify_password("correct-horse-9", &h));
        assert!(!verify_password("Correct-Horse-9", "not a hash"));
    }
}
