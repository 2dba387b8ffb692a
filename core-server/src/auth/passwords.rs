//! Password policy (NIST 800-63B) and argon2id hashing on a small fixed set
//! of threads, each reusing its own 19 MiB of working memory: a login storm
//! queues for those threads instead of starving the runtime that serves
//! every other call, and memory stays at its level however many logins come.

use std::{
    sync::{Arc, Mutex},
    thread,
};

use argon2::{
    Algorithm, Argon2, Block, Params, Version,
    password_hash::phc::{Output, ParamsString, PasswordHash, Salt},
};
use plinth_platform::error::ApiError;
use rand::RngCore;
use subtle::ConstantTimeEq;
use tokio::sync::{mpsc, oneshot};

pub const MIN_LENGTH: usize = 8;
pub const MAX_LENGTH: usize = 128;
/// Longest password read from a request, in bytes: the policy counts at
/// most 128 characters, of at most 4 bytes each.
pub const MAX_BYTES: usize = 4 * MAX_LENGTH;

/// zxcvbn scores below this (guessable within 10^6 tries: common, breached,
/// dictionary or keyboard-pattern passwords) are refused.
const MIN_STRENGTH: zxcvbn::Score = zxcvbn::Score::Two;

/// OWASP's argon2id parameters: 19 MiB, 2 passes, 1 lane, 32-byte output.
fn params() -> Params {
    Params::new(19 * 1024, 2, 1, Some(OUTPUT_BYTES)).expect("valid argon2 parameters")
}

const OUTPUT_BYTES: usize = 32;
const SALT_BYTES: usize = 16;

/// Largest working memory a stored hash may ask for (in 1 KiB blocks); a
/// hash asking more is not ours and never matches.
const MAX_BLOCKS: usize = 64 * 1024;

/// Hashing requests waiting for a thread; senders wait beyond it.
const QUEUE_PER_THREAD: usize = 64;

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

/// Hashes and verifies passwords on `concurrency` dedicated threads.
#[derive(Clone)]
pub struct Passwords {
    jobs: mpsc::Sender<Job>,
}

type Job = Box<dyn FnOnce(&mut Hasher) + Send>;

impl Passwords {
    /// Starts the hashing threads; they end when the last clone is dropped.
    pub fn new(concurrency: usize) -> Passwords {
        let concurrency = concurrency.max(1);
        let (jobs, queue) = mpsc::channel::<Job>(QUEUE_PER_THREAD * concurrency);
        let queue = Arc::new(Mutex::new(queue));
        for index in 0..concurrency {
            let queue = queue.clone();
            thread::Builder::new()
                .name(format!("password-hashing-{index}"))
                .spawn(move || {
                    let mut hasher = Hasher::default();
                    loop {
                        let job = queue
                            .lock()
                            .unwrap_or_else(|poisoned| poisoned.into_inner())
                            .blocking_recv();
                        match job {
                            Some(job) => job(&mut hasher),
                            None => return,
                        }
                    }
                })
                .expect("starting a password hashing thread");
        }
        Passwords { jobs }
    }

    /// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`).
    pub async fn hash(&self, password: &str) -> Result<String, ApiError> {
        let password = password.to_owned();
        self.run(move |hasher| hasher.hash(password.as_bytes()))
            .await?
    }

    /// Whether `password` matches `hash`; with `None`, spends the same time
    /// (against a hash of nothing) and answers false.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool, ApiError> {
        let password = password.to_owned();
        let hash = hash.map(str::to_owned);
        self.run(move |hasher| {
            let (stored, exists) = match &hash {
                Some(hash) => (PasswordHash::new(hash).ok(), true),
                None => (Some(hasher.unmatchable()), false),
            };
            // Always verify, then combine: `&&` would skip the work for
            // unknown accounts and tell them apart by time.
            let matches = stored.is_some_and(|stored| hasher.matches(password.as_bytes(), &stored));
            matches & exists
        })
        .await
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Hasher) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let (answer, answered) = oneshot::channel();
        let job: Job = Box::new(move |hasher| {
            let _ = answer.send(work(hasher));
        });
        self.jobs
            .send(job)
            .await
            .map_err(|_| ApiError::Unavailable)?;
        answered.await.map_err(|_| ApiError::Unavailable)
    }
}

/// One thread's hashing state: its working memory, allocated once.
#[derive(Default)]
struct Hasher {
    memory: Vec<Block>,
}

impl Hasher {
    fn hash(&mut self, password: &[u8]) -> Result<String, ApiError> {
        let mut salt = [0u8; SALT_BYTES];
        rand::rng().fill_bytes(&mut salt);
        let params = params();
        let mut output = [0u8; OUTPUT_BYTES];
        self.compute(&params, password, &salt, &mut output)
            .ok_or_else(|| ApiError::Internal("argon2 refused its own parameters".into()))?;
        phc_string(&params, &salt, &output)
            .ok_or_else(|| ApiError::Internal("argon2 output does not encode".into()))
    }

    fn matches(&mut self, password: &[u8], stored: &PasswordHash) -> bool {
        let well_formed = stored.algorithm == Algorithm::Argon2id.ident()
            && stored.version == Some(Version::V0x13.into());
        let (Some(salt), Some(expected), Ok(params)) = (
            stored.salt.as_ref(),
            stored.hash.as_ref(),
            Params::try_from(stored),
        ) else {
            return false;
        };
        let mut output = vec![0u8; expected.len()];
        let computed = well_formed && self.compute(&params, password, salt, &mut output).is_some();
        computed && bool::from(output.ct_eq(expected.as_bytes()))
    }

    /// A well-formed hash with our parameters that no password matches, so
    /// that checking it costs what checking a real one does.
    fn unmatchable(&self) -> PasswordHash {
        let mut salt = [0u8; SALT_BYTES];
        let mut output = [0u8; OUTPUT_BYTES];
        rand::rng().fill_bytes(&mut salt);
        rand::rng().fill_bytes(&mut output);
        let text = phc_string(&params(), &salt, &output).expect("random bytes encode");
        PasswordHash::new(&text).expect("a hash we wrote parses")
    }

    fn compute(
        &mut self,
        params: &Params,
        password: &[u8],
        salt: &[u8],
        output: &mut [u8],
    ) -> Option<()> {
        let blocks = params.block_count();
        if blocks > MAX_BLOCKS {
            return None;
        }
        if self.memory.len() < blocks {
            self.memory.resize(blocks, Block::default());
        }
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
            .hash_password_into_with_memory(password, salt, output, &mut self.memory[..blocks])
            .ok()
    }
}

fn phc_string(params: &Params, salt: &[u8], output: &[u8]) -> Option<String> {
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).ok()?,
        salt: Some(Salt::new(salt).ok()?),
        hash: Some(Output::new(output).ok()?),
    };
    Some(hash.to_string())
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
