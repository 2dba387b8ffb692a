//! Permission answers kept for a short while, so that a module asking the
//! same question for every request of a user asks the core once.
//!
//! An answer is kept for `ttl` at most, so a revoked grant is refused here
//! within that bound. A consistency token (from an RBAC answer: a grant, a
//! revocation, a check) is honoured exactly: tokens are opaque, so a cached
//! answer serves a request carrying a token only if that answer was read at
//! that very token or was asked for with it; otherwise the core is asked to
//! answer at least as fresh as the token.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use plinth_api::rbac::v1::{
    CheckRequest, Consistency, consistency::Requirement, rbac_service_client::RbacServiceClient,
};

use crate::{channel::PlinthChannel, user::User};

/// How long and how many permission answers are kept.
#[derive(Debug, Clone, Copy)]
pub struct CheckCacheSettings {
    /// The longest an answer is trusted; zero turns the cache off.
    pub ttl: Duration,
    /// Answers kept; past it the cache starts afresh, so memory stays
    /// bounded.
    pub capacity: usize,
}

impl Default for CheckCacheSettings {
    fn default() -> CheckCacheSettings {
        CheckCacheSettings {
            ttl: Duration::from_secs(2),
            capacity: 10_000,
        }
    }
}

struct Answer {
    allowed: bool,
    /// The token the core answered with.
    read_at: String,
    /// The token the answer was asked to reflect, if any.
    asked_for: Option<String>,
    read: Instant,
}

impl Answer {
    fn serves(&self, ttl: Duration, consistency_token: Option<&str>) -> bool {
        self.read.elapsed() < ttl
            && consistency_token.is_none_or(|token| {
                self.read_at == token || self.asked_for.as_deref() == Some(token)
            })
    }
}

pub(crate) struct CheckCache {
    settings: CheckCacheSettings,
    answers: Mutex<HashMap<String, Answer>>,
}

impl CheckCache {
    pub fn new(settings: CheckCacheSettings) -> CheckCache {
        CheckCache {
            settings,
            answers: Mutex::new(HashMap::new()),
        }
    }

    pub async fn allowed(
        &self,
        rbac: &RbacServiceClient<PlinthChannel>,
        user: &User,
        permission: &str,
        company_id: Option<&str>,
        consistency_token: Option<&str>,
    ) -> Result<bool, tonic::Status> {
        let company_id = company_id.unwrap_or_default();
        // NUL cannot occur in ids or permission names, so keys cannot collide.
        let key = format!(
            "{}\0{}\0{company_id}\0{permission}",
            user.tenant_id, user.user_id
        );
        if let Some(answer) = self.lock().get(&key)
            && answer.serves(self.settings.ttl, consistency_token)
        {
            return Ok(answer.allowed);
        }
        let request = CheckRequest {
            tenant_id: user.tenant_id.to_string(),
            user_id: user.user_id.to_string(),
            permission: permission.to_owned(),
            company_id: company_id.to_owned(),
            consistency: consistency_token.map(|token| Consistency {
                requirement: Some(Requirement::AtLeastAsFresh(token.to_owned())),
            }),
            explain: false,
        };
        let read = Instant::now();
        let response = rbac.clone().check(request).await?.into_inner();
        if !self.settings.ttl.is_zero() {
            let mut answers = self.lock();
            if answers.len() >= self.settings.capacity {
                *answers = HashMap::new();
            }
            let answer = Answer {
                allowed: response.allowed,
                read_at: response.consistency_token,
                asked_for: consistency_token.map(str::to_owned),
                read,
            };
            answers.insert(key, answer);
        }
        Ok(response.allowed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Answer>> {
        self.answers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(read_at: &str, asked_for: Option<&str>) -> Answer {
        Answer {
            allowed: true,
            read_at: read_at.to_owned(),
            asked_for: asked_for.map(str::to_owned),
            read: Instant::now(),
        }
    }

    #[test]
    fn an_answer_serves_a_token_it_was_read_at_or_asked_for_and_no_other() {
        let ttl = Duration::from_secs(2);
        assert!(answer("v7", None).serves(ttl, None));
        assert!(answer("v7", None).serves(ttl, Some("v7")));
        assert!(answer("v9", Some("v7")).serves(ttl, Some("v7")));
        assert!(!answer("v7", None).serves(ttl, Some("v8")));
        assert!(!answer("v9", Some("v7")).serves(ttl, Some("v8")));
    }

    #[test]
    fn an_answer_older_than_the_ttl_serves_nothing() {
        assert!(!answer("v7", None).serves(Duration::ZERO, None));
    }
}
