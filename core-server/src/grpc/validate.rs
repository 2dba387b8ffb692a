//! Reading requests: every field bounded before use, every bad field
//! reported at once (the first few, plus a count) as `google.rpc.BadRequest`
//! field violations. Descriptions never echo what the caller sent.

use std::{ops::RangeInclusive, time::Duration};

use chrono::{DateTime, Utc};
use plinth_platform::{
    error::{ApiError, Violations},
    permission::{self, Grant},
    text,
    versions::{Consistency, Counter, VersionToken},
};
use uuid::Uuid;

pub use plinth_platform::clock::timestamp;

use crate::{auth::email, listing::PageRequest};

/// Longest free-text filter or prefix accepted.
pub const MAX_PREFIX_CHARACTERS: usize = 254;

/// Longest keyset page token accepted (hex of a 63-character key).
const MAX_KEY_TOKEN: usize = 2 * 63;

/// The next page's token after `key`.
pub fn key_token(key: &str) -> String {
    hex::encode(key)
}

/// Collects violations while reading a request.
#[derive(Default)]
pub struct Fields {
    violations: Violations,
}

impl Fields {
    pub fn violation(&mut self, field: &str, description: impl Into<String>) {
        self.violations.push(field, description);
    }

    /// A required id.
    pub fn id(&mut self, field: &str, value: &str) -> Uuid {
        if value.is_empty() {
            self.violation(field, "is required");
            return Uuid::nil();
        }
        self.optional_id(field, value).unwrap_or_default()
    }

    /// An id that may be left empty.
    pub fn optional_id(&mut self, field: &str, value: &str) -> Option<Uuid> {
        if value.is_empty() {
            return None;
        }
        // A UUID is at most 45 characters in any accepted form.
        match (value.len() <= 45)
            .then(|| Uuid::try_parse(value).ok())
            .flatten()
        {
            Some(id) => Some(id),
            None => {
                self.violation(field, "must be a UUID");
                None
            }
        }
    }

    /// A code: `^[a-z][a-z0-9-]{1,62}$`.
    pub fn slug(&mut self, field: &str, value: &str) -> String {
        self.shaped(field, value, text::is_slug(value), text::SLUG_RULE)
    }

    /// A module id: `^[a-z][a-z0-9_]{1,62}$` (also its permission namespace).
    pub fn module_id(&mut self, field: &str, value: &str) -> String {
        self.shaped(
            field,
            value,
            text::is_module_id(value),
            text::MODULE_ID_RULE,
        )
    }

    fn shaped(&mut self, field: &str, value: &str, well_formed: bool, rule: &str) -> String {
        if !well_formed {
            self.violation(field, rule);
            return String::new();
        }
        value.to_owned()
    }

    /// Required text of at most `max_characters`, trimmed, on one line.
    pub fn name(&mut self, field: &str, value: &str, max_characters: usize) -> String {
        if value.trim().is_empty() {
            self.violation(field, "is required");
            return String::new();
        }
        self.text(field, value, max_characters)
    }

    /// Text of at most `max_characters` (empty allowed), trimmed, without
    /// control characters.
    pub fn text(&mut self, field: &str, value: &str, max_characters: usize) -> String {
        let value = value.trim();
        if let Some(problem) = text::text_problem(value, max_characters) {
            self.violation(field, problem);
            return String::new();
        }
        value.to_owned()
    }

    /// An optional filter: `None` when empty.
    pub fn prefix(&mut self, field: &str, value: &str) -> Option<String> {
        let prefix = self.text(field, value, MAX_PREFIX_CHARACTERS);
        (!prefix.is_empty()).then_some(prefix)
    }

    pub fn email(&mut self, field: &str, value: &str) -> String {
        email::normalize(value).unwrap_or_else(|problem| {
            self.violation(field, problem);
            String::new()
        })
    }

    /// A required secret (password, refresh token) of at most `max_bytes`;
    /// password policy runs in the domain, where the account's words are
    /// known.
    pub fn secret<'a>(&mut self, field: &str, value: &'a str, max_bytes: usize) -> &'a str {
        if value.is_empty() {
            self.violation(field, "is required");
        } else if value.len() > max_bytes {
            self.violation(field, format!("must be at most {max_bytes} bytes"));
        }
        value
    }

    pub fn non_negative(&mut self, field: &str, value: i32) -> i32 {
        if value < 0 {
            self.violation(field, "must not be negative");
        }
        value.max(0)
    }

    /// A known value of a proto enum (its UNSPECIFIED included); unknown
    /// numbers are refused rather than ignored.
    pub fn known<E: TryFrom<i32>>(&mut self, field: &str, value: i32) -> Option<E> {
        let known = E::try_from(value).ok();
        if known.is_none() {
            self.violation(field, "is not a known value");
        }
        known
    }

    /// A `google.protobuf.Duration` within `range` (which the domain sets).
    pub fn duration(
        &mut self,
        field: &str,
        value: &prost_types::Duration,
        range: RangeInclusive<Duration>,
    ) -> Duration {
        let in_range = u64::try_from(value.seconds)
            .ok()
            .zip(u32::try_from(value.nanos).ok())
            .filter(|(_, nanos)| *nanos < 1_000_000_000)
            .map(|(seconds, nanos)| Duration::new(seconds, nanos))
            .filter(|duration| range.contains(duration));
        in_range.unwrap_or_else(|| {
            self.violation(
                field,
                format!(
                    "must be between {} and {} seconds",
                    range.start().as_secs(),
                    range.end().as_secs()
                ),
            );
            *range.start()
        })
    }

    /// A stream's longest silence before a checkpoint: 1 s to 5 min, unset
    /// meaning 10 s (the same for every stream the core serves).
    pub fn checkpoint_interval(&mut self, value: Option<&prost_types::Duration>) -> Duration {
        value.map_or(Duration::from_secs(10), |interval| {
            self.duration(
                "checkpoint_interval",
                interval,
                Duration::from_secs(1)..=Duration::from_secs(300),
            )
        })
    }

    /// A repeated field of at most `max` elements; elements are checked only
    /// when the count is within bounds, so a huge list costs one violation.
    pub fn bounded<'a, T>(&mut self, field: &str, values: &'a [T], max: usize) -> &'a [T] {
        if values.len() > max {
            self.violation(field, format!("must have at most {max} elements"));
            return &[];
        }
        values
    }

    /// A concrete permission: `namespace:resource:action`, no wildcard.
    pub fn permission(&mut self, field: &str, value: &str) -> String {
        match permission::check_permission(value) {
            Ok(()) => value.to_owned(),
            Err(problem) => {
                self.violation(field, problem);
                String::new()
            }
        }
    }

    /// Role grants: at most `max`, each a permission or a trailing
    /// wildcard; sorted and deduplicated.
    pub fn grants(&mut self, field: &str, values: &[String], max: usize) -> Vec<String> {
        let mut grants = Vec::with_capacity(values.len().min(max));
        for (index, value) in self.bounded(field, values, max).iter().enumerate() {
            match Grant::parse(value) {
                Ok(_) => grants.push(value.clone()),
                Err(problem) => self.violation(&format!("{field}[{index}]"), problem),
            }
        }
        grants.sort_unstable();
        grants.dedup();
        grants
    }

    /// Ids: at most `max`, each a UUID; deduplicated, in the given order.
    pub fn ids(&mut self, field: &str, values: &[String], max: usize) -> Vec<Uuid> {
        let mut ids: Vec<Uuid> = Vec::with_capacity(values.len().min(max));
        for (index, value) in self.bounded(field, values, max).iter().enumerate() {
            if let Some(id) = self.optional_id(&format!("{field}[{index}]"), value) {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            } else if value.is_empty() {
                self.violation(&format!("{field}[{index}]"), "is required");
            }
        }
        ids
    }

    /// An optional time in the future, at most `max_ahead` from now.
    pub fn future_time(
        &mut self,
        field: &str,
        value: Option<&prost_types::Timestamp>,
        max_ahead: chrono::Duration,
    ) -> Option<DateTime<Utc>> {
        let value = value?;
        let now = plinth_platform::clock::now();
        let time = u32::try_from(value.nanos)
            .ok()
            .filter(|nanos| *nanos < 1_000_000_000)
            .and_then(|nanos| DateTime::from_timestamp(value.seconds, nanos))
            .filter(|time| *time > now && *time <= now + max_ahead);
        if time.is_none() {
            self.violation(
                field,
                format!(
                    "must be in the future, at most {} days ahead",
                    max_ahead.num_days()
                ),
            );
        }
        time
    }

    /// `page_size` (0 means the default) and an opaque `page_token`.
    /// How fresh an answer must be: `asked` is the request's requirement
    /// (`Some(Ok(token))` a token, `Some(Err(true))` fully consistent);
    /// unset (or fully consistent false) means the cached view.
    pub fn consistency(
        &mut self,
        counter: Counter,
        asked: Option<Result<&str, bool>>,
    ) -> Consistency {
        match asked {
            None | Some(Err(false)) => Consistency::Cached,
            Some(Err(true)) => Consistency::Full,
            Some(Ok(token)) => match VersionToken::parse(counter, token) {
                Some(token) => Consistency::AtLeastAsFresh(token),
                None => {
                    self.violation(
                        "consistency.at_least_as_fresh",
                        "is not a token from a previous answer",
                    );
                    Consistency::Cached
                }
            },
        }
    }

    /// A keyset page token made of a key that `valid` accepts (hex of it);
    /// `None` for the first page.
    pub fn key_token(&mut self, token: &str, valid: fn(&str) -> bool) -> Option<String> {
        if token.is_empty() {
            return None;
        }
        let key = (token.len() <= MAX_KEY_TOKEN)
            .then(|| hex::decode(token).ok())
            .flatten()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .filter(|key| valid(key));
        if key.is_none() {
            self.violation("page_token", "is not a token from a previous response");
        }
        key
    }

    pub fn page(&mut self, page_size: i32, page_token: &str) -> PageRequest {
        PageRequest::parse(page_size, page_token).unwrap_or_else(|(field, problem)| {
            self.violation(field, problem);
            PageRequest::first()
        })
    }

    pub fn finish(self) -> Result<(), ApiError> {
        self.violations.into_result()
    }
}

/// A request whose one field is a required id.
pub fn required_id(field: &str, value: &str) -> Result<Uuid, ApiError> {
    let mut fields = Fields::default();
    let id = fields.id(field, value);
    fields.finish()?;
    Ok(id)
}

/// A request whose one field is a required secret of at most `max_bytes`.
pub fn required_secret<'a>(
    field: &str,
    value: &'a str,
    max_bytes: usize,
) -> Result<&'a str, ApiError> {
    let mut fields = Fields::default();
    let secret = fields.secret(field, value, max_bytes);
    fields.finish()?;
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proto_duration(seconds: i64, nanos: i32) -> prost_types::Duration {
        prost_types::Duration { seconds, nanos }
    }

    #[test]
    fn durations_outside_their_range_or_the_proto_range_are_refused() {
        let range = Duration::from_secs(60)..=Duration::from_secs(3600);
        for (seconds, nanos) in [
            (59, 0),
            (3601, 0),
            (-1, 0),
            (60, -1),
            (60, 1_000_000_000),
            (10_000_000_000_000, 0),
            (i64::MAX, 999_999_999),
            (i64::MIN, 0),
        ] {
            let mut fields = Fields::default();
            fields.duration("ttl", &proto_duration(seconds, nanos), range.clone());
            assert!(fields.finish().is_err(), "{seconds}s {nanos}ns");
        }
        let mut fields = Fields::default();
        let accepted = fields.duration("ttl", &proto_duration(60, 5), range);
        assert!(fields.finish().is_ok());
        assert_eq!(accepted, Duration::new(60, 5));
    }

    #[test]
    fn text_refuses_control_characters_and_length_in_characters() {
        let mut fields = Fields::default();
        assert_eq!(fields.text("a", " é ", 1), "é");
        assert!(fields.finish().is_ok());
        for (bad, max_characters) in [("nul\0byte", 100), ("new\nline", 100), ("ab", 1)] {
            let mut fields = Fields::default();
            fields.text("a", bad, max_characters);
            assert!(fields.finish().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn codes_must_match_their_pattern() {
        for (code, valid) in [
            ("acme", true),
            ("a1-b", true),
            ("a", false),
            ("1acme", false),
            ("Acme", false),
            ("ac_me", false),
            ("aé", false),
        ] {
            let mut fields = Fields::default();
            fields.slug("code", code);
            assert_eq!(fields.finish().is_ok(), valid, "{code}");
        }
    }
}
