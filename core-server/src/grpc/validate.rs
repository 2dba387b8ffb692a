//! Request validation that reports every bad field at once, as
//! `google.rpc.BadRequest` field violations.

use chrono::{DateTime, Utc};
use plinth_platform::error::ApiError;
use tonic_types::FieldViolation;
use uuid::Uuid;

use crate::auth::email;

/// Collects violations while reading a request.
#[derive(Default)]
pub struct Fields {
    violations: Vec<FieldViolation>,
}

impl Fields {
    pub fn violation(&mut self, field: &str, description: &str) {
        self.violations
            .push(FieldViolation::new(field, description));
    }

    /// A required id.
    pub fn id(&mut self, field: &str, value: &str) -> Uuid {
        match Uuid::try_parse(value) {
            Ok(id) => id,
            Err(_) if value.is_empty() => {
                self.violation(field, "is required");
                Uuid::nil()
            }
            Err(_) => {
                self.violation(field, "must be a UUID");
                Uuid::nil()
            }
        }
    }

    /// A code: `^[a-z][a-z0-9-]{1,62}$`.
    pub fn slug(&mut self, field: &str, value: &str) -> String {
        let mut characters = value.chars();
        let well_formed = characters
            .next()
            .is_some_and(|first| first.is_ascii_lowercase())
            && (2..=63).contains(&value.len())
            && characters.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !well_formed {
            self.violation(field, "must match ^[a-z][a-z0-9-]{1,62}$");
        }
        value.to_owned()
    }

    /// A module id: `^[a-z][a-z0-9_]{1,62}$` (also its permission namespace).
    pub fn module_id(&mut self, field: &str, value: &str) -> String {
        let mut characters = value.chars();
        let well_formed = characters
            .next()
            .is_some_and(|first| first.is_ascii_lowercase())
            && (2..=63).contains(&value.len())
            && characters.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !well_formed {
            self.violation(field, "must match ^[a-z][a-z0-9_]{1,62}$");
        }
        value.to_owned()
    }

    /// Required text of at most `max_characters`, trimmed.
    pub fn name(&mut self, field: &str, value: &str, max_characters: usize) -> String {
        let trimmed = value.trim();
        if trimmed.is_empty() {
            self.violation(field, "is required");
        } else if trimmed.chars().count() > max_characters {
            self.violation(
                field,
                &format!("must be at most {max_characters} characters"),
            );
        } else if trimmed.chars().any(char::is_control) {
            self.violation(field, "must not contain control characters");
        }
        trimmed.to_owned()
    }

    pub fn email(&mut self, field: &str, value: &str) -> String {
        email::normalize(value).unwrap_or_else(|problem| {
            self.violation(field, problem);
            String::new()
        })
    }

    /// A required secret (password, refresh token); password policy runs in
    /// the domain, where the account's own words are known.
    pub fn password(&mut self, field: &str, value: &str) -> String {
        if value.is_empty() {
            self.violation(field, "is required");
        }
        value.to_owned()
    }

    pub fn non_negative(&mut self, field: &str, value: i32) -> i32 {
        if value < 0 {
            self.violation(field, "must not be negative");
        }
        value
    }

    pub fn finish(self) -> Result<(), ApiError> {
        if self.violations.is_empty() {
            Ok(())
        } else {
            Err(ApiError::InvalidArgument(self.violations))
        }
    }
}

pub fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}
