//! Permission names, the grants that cover them, and the matcher that
//! answers a check in at most four hash lookups.
//!
//! A permission is `namespace:resource:action`, each segment `[a-z0-9_-]+`;
//! the namespace is the declaring module's id (`plinth` for the core). A
//! grant is a permission or a wildcard that replaces whole trailing
//! segments: `ns:res:*`, `ns:*`, or `*` for everything.

pub mod catalog;

use std::collections::HashMap;

use foldhash::fast::RandomState;

/// Namespaces no module id may take: the core's and words that would read
/// as the core's.
pub const RESERVED_NAMESPACES: &[&str] = &[
    "plinth", "auth", "tenant", "rbac", "registry", "audit", "module", "core", "system",
];

/// The core's own namespace.
pub const CORE_NAMESPACE: &str = "plinth";

/// Longest permission or grant, in bytes (all ASCII).
pub const MAX_PERMISSION_LENGTH: usize = 200;

/// Whether a module id would take a reserved namespace.
pub fn is_reserved_namespace(module_id: &str) -> bool {
    RESERVED_NAMESPACES.contains(&module_id)
}

fn is_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

const PERMISSION_RULE: &str = "must be namespace:resource:action, each part [a-z0-9_-]+";

/// A concrete permission (no wildcard), as checks and declarations take it;
/// on error, what is wrong with it.
pub fn check_permission(name: &str) -> Result<(), &'static str> {
    if name.len() > MAX_PERMISSION_LENGTH {
        return Err("must be at most 200 characters");
    }
    let mut segments = 0;
    for segment in name.split(':') {
        if segment == "*" {
            return Err("must not contain a wildcard");
        }
        if !is_segment(segment) {
            return Err(PERMISSION_RULE);
        }
        segments += 1;
    }
    if segments == 3 {
        Ok(())
    } else {
        Err(PERMISSION_RULE)
    }
}

/// What a grant covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant<'a> {
    /// One permission.
    Permission(&'a str),
    /// Every permission whose name starts with this prefix (`ns:` or
    /// `ns:res:`, colon included).
    Prefix(&'a str),
    /// Every permission.
    Everything,
}

impl<'a> Grant<'a> {
    /// Reads a grant; on error, what is wrong with it.
    pub fn parse(grant: &'a str) -> Result<Grant<'a>, &'static str> {
        const RULE: &str =
            "must be a permission, or end in a wildcard segment (ns:*, ns:res:*, or *)";
        if grant == "*" {
            return Ok(Grant::Everything);
        }
        let Some(prefix) = grant.strip_suffix('*') else {
            check_permission(grant)?;
            return Ok(Grant::Permission(grant));
        };
        let segments: Vec<&str> = prefix.split(':').collect();
        let well_formed = grant.len() <= MAX_PERMISSION_LENGTH
            && matches!(segments.len(), 2 | 3)
            && segments.last() == Some(&"")
            && segments[..segments.len() - 1].iter().all(|s| is_segment(s));
        if well_formed {
            Ok(Grant::Prefix(prefix))
        } else {
            Err(RULE)
        }
    }

    /// Whether the grant covers a concrete permission.
    pub fn covers(self, permission: &str) -> bool {
        match self {
            Grant::Permission(name) => name == permission,
            Grant::Prefix(prefix) => permission.starts_with(prefix),
            Grant::Everything => true,
        }
    }

    /// The wildcards that would cover a concrete permission, most specific
    /// first: `ns:res:*`, `ns:*`, `*`.
    pub fn wildcards_over(permission: &str) -> [String; 3] {
        let mut segments = permission.splitn(3, ':');
        let namespace = segments.next().unwrap_or_default();
        let resource = segments.next().unwrap_or_default();
        [
            format!("{namespace}:{resource}:*"),
            format!("{namespace}:*"),
            "*".to_owned(),
        ]
    }

    /// The namespace the grant lies in; `None` for `*`.
    pub fn namespace(self) -> Option<&'a str> {
        match self {
            Grant::Permission(text) | Grant::Prefix(text) => text.split(':').next(),
            Grant::Everything => None,
        }
    }
}

/// Compiled grants, each carrying a value (why it is held, or nothing).
/// Checks never allocate: a permission is looked up whole, then by its two
/// prefixes, then against `*`, most specific first.
#[derive(Debug, Clone)]
pub struct Matcher<V> {
    permissions: HashMap<Box<str>, V, RandomState>,
    prefixes: HashMap<Box<str>, V, RandomState>,
    everything: Option<V>,
}

impl<V> Default for Matcher<V> {
    fn default() -> Self {
        Matcher {
            permissions: HashMap::default(),
            prefixes: HashMap::default(),
            everything: None,
        }
    }
}

impl<V> Matcher<V> {
    /// Adds a grant (already valid, see [`Grant::parse`]); the first value
    /// given for a grant is kept.
    pub fn insert(&mut self, grant: Grant<'_>, value: V) {
        match grant {
            Grant::Permission(name) => {
                self.permissions.entry(name.into()).or_insert(value);
            }
            Grant::Prefix(prefix) => {
                self.prefixes.entry(prefix.into()).or_insert(value);
            }
            Grant::Everything => {
                self.everything.get_or_insert(value);
            }
        }
    }

    /// The most specific grant that covers a concrete permission.
    pub fn find(&self, permission: &str) -> Option<&V> {
        self.permissions
            .get(permission)
            .or_else(|| self.covering_prefix(permission))
            .or(self.everything.as_ref())
    }

    pub fn allows(&self, permission: &str) -> bool {
        self.find(permission).is_some()
    }

    /// Whether everything `grant` covers is held here: the no-escalation
    /// rule's question.
    pub fn covers(&self, grant: Grant<'_>) -> bool {
        match grant {
            Grant::Permission(name) => self.allows(name),
            Grant::Prefix(prefix) => {
                self.everything.is_some() || self.covering_prefix(prefix).is_some()
            }
            Grant::Everything => self.everything.is_some(),
        }
    }

    /// The longest held prefix of `text` that ends at one of its (at most
    /// two) colons.
    fn covering_prefix(&self, text: &str) -> Option<&V> {
        if self.prefixes.is_empty() {
            return None;
        }
        let first = text.find(':')?;
        let second = text[first + 1..].find(':').map(|at| first + 1 + at);
        second
            .and_then(|end| self.prefixes.get(&text[..=end]))
            .or_else(|| self.prefixes.get(&text[..=first]))
    }

    pub fn is_empty(&self) -> bool {
        self.permissions.is_empty() && self.prefixes.is_empty() && self.everything.is_none()
    }

    /// Every grant, as written (`ns:*` for prefixes), unsorted.
    pub fn grants(&self) -> impl Iterator<Item = String> + '_ {
        self.permissions
            .keys()
            .map(|name| name.to_string())
            .chain(self.prefixes.keys().map(|prefix| format!("{prefix}*")))
            .chain(self.everything.iter().map(|_| "*".to_owned()))
    }
}

impl<'a> FromIterator<Grant<'a>> for Matcher<()> {
    fn from_iter<I: IntoIterator<Item = Grant<'a>>>(grants: I) -> Self {
        let mut matcher = Matcher::default();
        for grant in grants {
            matcher.insert(grant, ());
        }
        matcher
    }
}

/// Most permissions one module may declare.
pub const MAX_DECLARED_PER_MODULE: i64 = 5000;

/// Declares `records` (every name already checked to lie in `module_id`'s
/// namespace) with their audit event, in the caller's transaction; refuses
/// a module past [`MAX_DECLARED_PER_MODULE`]. RegisterPermissions and
/// RegisterModule both declare through it.
pub async fn declare(
    tx: &mut crate::store::Tx,
    module_id: &str,
    records: &[crate::store::permissions::PermissionRecord],
    audit: crate::audit::AuditDraft,
) -> Result<Vec<crate::store::permissions::PermissionRecord>, crate::error::ApiError> {
    use crate::store::permissions;
    let stored = permissions::declare(tx, records, audit).await?;
    // Counted after the writes, so declaring again costs nothing.
    if permissions::count_declared(tx, module_id).await? > MAX_DECLARED_PER_MODULE {
        return Err(crate::error::ApiError::FailedPrecondition {
            resource_type: "module",
            state: format!("at its limit of {MAX_DECLARED_PER_MODULE} permissions"),
        });
    }
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(grants: &[&str]) -> Matcher<()> {
        grants
            .iter()
            .map(|grant| Grant::parse(grant).unwrap())
            .collect()
    }

    /// The matching table the proto documents.
    #[test]
    fn grants_match_permissions_by_whole_trailing_segments() {
        let table: &[(&str, &str, bool)] = &[
            ("inventory:item:read", "inventory:item:read", true),
            ("inventory:item:read", "inventory:item:write", false),
            ("inventory:item:*", "inventory:item:read", true),
            ("inventory:item:*", "inventory:items:read", false),
            ("inventory:item:*", "inventory:stock:read", false),
            ("inventory:*", "inventory:item:read", true),
            ("inventory:*", "inventory:stock:count", true),
            ("inventory:*", "inventory2:item:read", false),
            ("inventory:*", "finance:item:read", false),
            ("*", "finance:invoice:approve", true),
        ];
        for &(grant, permission, expected) in table {
            assert_eq!(
                matcher(&[grant]).allows(permission),
                expected,
                "{grant} on {permission}"
            );
        }
    }

    #[test]
    fn a_grant_covers_what_its_matcher_allows() {
        for grant in [
            "inventory:item:read",
            "inventory:item:*",
            "inventory:*",
            "*",
        ] {
            for permission in ["inventory:item:read", "inventory:stock:read", "finance:a:b"] {
                assert_eq!(
                    Grant::parse(grant).unwrap().covers(permission),
                    matcher(&[grant]).allows(permission),
                    "{grant} on {permission}"
                );
            }
        }
        assert_eq!(
            Grant::wildcards_over("inventory:item:read"),
            ["inventory:item:*", "inventory:*", "*"]
        );
    }

    #[test]
    fn wildcards_are_whole_trailing_segments_only() {
        for bad in [
            "inventory:it*",
            "inventory:*:read",
            "*:item:read",
            "inventory*",
            "inventory:item:read:*",
            "inventory:**",
            ":*",
            "**",
            "Inventory:*",
        ] {
            assert!(Grant::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Grant::parse("inventory:*"), Ok(Grant::Prefix("inventory:")));
        assert_eq!(
            Grant::parse("inventory:item:*"),
            Ok(Grant::Prefix("inventory:item:"))
        );
        assert_eq!(Grant::parse("*"), Ok(Grant::Everything));
    }

    #[test]
    fn permissions_have_three_segments_and_no_wildcard() {
        for bad in [
            "",
            "inventory",
            "inventory:item",
            "inventory:item:read:all",
            "inventory:item:*",
            "*",
            "inventory::read",
            "inventory:Item:read",
            "inventory:item:re ad",
            "inventory:item:réad",
        ] {
            assert!(check_permission(bad).is_err(), "{bad:?}");
        }
        assert!(check_permission("crm-pro:deal_stage:move-1").is_ok());
        assert!(check_permission(&format!("a:b:{}", "c".repeat(200))).is_err());
    }

    #[test]
    fn a_grant_is_covered_only_by_an_equal_or_broader_one() {
        let held = matcher(&["inventory:item:*", "finance:invoice:read"]);
        assert!(held.covers(Grant::Permission("inventory:item:read")));
        assert!(held.covers(Grant::Prefix("inventory:item:")));
        assert!(!held.covers(Grant::Prefix("inventory:")));
        assert!(!held.covers(Grant::Everything));
        assert!(held.covers(Grant::Permission("finance:invoice:read")));
        assert!(!held.covers(Grant::Prefix("finance:invoice:")));

        let everything = matcher(&["*"]);
        assert!(everything.covers(Grant::Everything));
        assert!(everything.covers(Grant::Prefix("inventory:")));
    }

    #[test]
    fn the_most_specific_grant_is_found() {
        let mut held = Matcher::default();
        held.insert(Grant::Everything, "everything");
        held.insert(Grant::Prefix("inventory:"), "namespace");
        held.insert(Grant::Prefix("inventory:item:"), "resource");
        held.insert(Grant::Permission("inventory:item:read"), "permission");
        assert_eq!(held.find("inventory:item:read"), Some(&"permission"));
        assert_eq!(held.find("inventory:item:write"), Some(&"resource"));
        assert_eq!(held.find("inventory:stock:read"), Some(&"namespace"));
        assert_eq!(held.find("finance:invoice:read"), Some(&"everything"));
    }
}
