//! Password policy (NIST 800-63B) and argon2id hashing on a bounded blocking
//! pool, so that a login storm queues on its own permits instead of starving
//! the runtime that serves every other call.

use std::sync::{Arc, LazyLock};

use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};
use plinth_platform::error::ApiError;
use tokio::sync::Semaphore;

pub const MIN_LENGTH: usize = 8;
pub const MAX_LENGTH: usize = 128;

/// zxcvbn scores below this (guessable within 10^6 tries: common, breached,
/// dictionary or keyboard-pattern passwords) are refused.
const MIN_STRENGTH: zxcvbn::Score = zxcvbn::Score::Two;

/// OWASP's argon2id parameters: 19 MiB, 2 passes, 1 lane.
fn hasher() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// A hash of a random password, verified against when the account does not
/// exist so that unknown and known accounts cost the same.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    hasher()
        .hash_password(uuid::Uuid::now_v7().as_bytes())
        .expect("hashing cannot fail")
        .to_string()
});

/// Checks a new password: length in characters, and not guessable given the
/// account's own words (`context`: email, names, tenant code).
pub fn check_policy(password: &str, context: &[&str]) -> Result<(), ApiError> {
    let length = password.chars().count();
    if length < MIN_LENGTH {
        return Err(ApiError::WeakPassword {
            rule: "too_short",
            message: "must be at least 8 characters",
        });
    }
    if length > MAX_LENGTH {
        return Err(ApiError::WeakPassword {
            rule: "too_long",
            message: "must be at most 128 characters",
        });
    }
    if zxcvbn::zxcvbn(password, context).score() < MIN_STRENGTH {
        return Err(ApiError::WeakPassword {
            rule: "common",
            message: "is too common or too easy to guess",
        });
    }
    Ok(())
}

/// Hashes and verifies passwords, at most `concurrency` at a time.
#[derive(Clone)]
pub struct Passwords {
    permits: Arc<Semaphore>,
}

impl Passwords {
    pub fn new(concurrency: usize) -> Passwords {
        LazyLock::force(&DUMMY_HASH);
        Passwords {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
        }
    }

    /// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`).
    pub async fn hash(&self, password: &str) -> Result<String, ApiError> {
        let password = password.to_owned();
        self.run(move || {
            hasher()
                .hash_password(password.as_bytes())
                .map(|hash| hash.to_string())
                .map_err(|error| ApiError::Internal(error.to_string().into()))
        })
        .await?
    }

    /// Whether `password` matches `hash`; with `None`, spends the same time
    /// and answers false.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool, ApiError> {
        let password = password.to_owned();
        let (hash, exists) = match hash {
            Some(hash) => (hash.to_owned(), true),
            None => (DUMMY_HASH.clone(), false),
        };
        self.run(move || {
            // Always verify, then combine: `&&` would skip the work for
            // unknown accounts and tell them apart by time.
            let matches = hasher()
                .verify_password(password.as_bytes(), hash.as_str())
                .is_ok();
            matches & exists
        })
        .await
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| ApiError::Unavailable)?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|error| ApiError::Internal(Box::new(error)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_long_and_common_passwords_are_refused() {
        for (password, rule) in [
            ("short1!", "too_short"),
            (&"x".repeat(129), "too_long"),
            ("password", "common"),
            ("12345678", "common"),
            ("qwertyuiop", "common"),
            ("aaaaaaaaaaaa", "common"),
        ] {
            match check_policy(password, &[]) {
                Err(ApiError::WeakPassword { rule: refused, .. }) => {
                    assert_eq!(refused, rule, "{password}")
                }
                other => panic!("{password}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_accounts_own_words_do_not_make_a_password() {
        let password = "qmzvtrhplx";
        assert!(
            check_policy(password, &[]).is_ok(),
            "strong without context"
        );
        assert!(check_policy(password, &["qmzvtrhplx@example.com", "qmzvtrhplx"]).is_err());
    }

    #[test]
    fn a_long_passphrase_without_composition_rules_is_accepted() {
        assert!(check_policy("correct horse battery staple", &[]).is_ok());
    }

    #[test]
    fn length_counts_characters_not_bytes() {
        assert!(check_policy(&"é".repeat(7), &[]).is_err());
    }

    #[tokio::test]
    async fn a_hash_verifies_only_its_password() {
        let passwords = Passwords::new(1);
        let hash = passwords
            .hash("correct horse battery staple")
            .await
            .unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(
            passwords
                .verify("correct horse battery staple", Some(&hash))
                .await
                .unwrap()
        );
        assert!(
            !passwords
                .verify("correct horse battery stapler", Some(&hash))
                .await
                .unwrap()
        );
        assert!(
            !passwords
                .verify("correct horse battery staple", None)
                .await
                .unwrap()
        );
    }
}
