//! Module manifests: the rules a manifest keeps on its own, before the
//! catalog is consulted. Every broken rule is reported at once, with its
//! field path (`dependencies[0].version_requirement`), and descriptions
//! never echo what the manifest says.

pub mod document;
pub mod json;

use std::{collections::HashSet, time::Duration};

use plinth_api::registry::v1::{LifecycleCallback, ModuleManifest};
use plinth_platform::{
    permission::{self, Grant},
    text,
};

/// The platform's version, which manifests' platform requirements name.
pub const PLATFORM_VERSION: &str = env!("CARGO_PKG_VERSION");

pub const MAX_VERSION: usize = 100;
pub const MAX_NAME: usize = 200;
pub const MAX_DESCRIPTION: usize = 2000;
pub const MAX_SHORT_DESCRIPTION: usize = 500;
pub const MAX_TAGS: usize = 20;
pub const MAX_URL: usize = 500;
pub const MAX_DEPENDENCIES: usize = 50;
pub const MAX_REQUIREMENT: usize = 200;
pub const MAX_PERMISSIONS: usize = 500;
pub const MAX_ROLES: usize = 50;
pub const MAX_ROLE_GRANTS: usize = 500;
/// Largest config schema, and largest defaults, as JSON.
pub const MAX_CONFIG_BYTES: usize = 64 * 1024;
pub const MAX_FEATURES: usize = 100;
pub const MAX_MENU_ITEMS: usize = 50;
pub const MAX_MENU_LABEL: usize = 100;
pub const MAX_ROUTE: usize = 200;
pub const MAX_ICON: usize = 100;
pub const MAX_HEALTH_SERVICE: usize = 200;
pub const MIN_PROBE_INTERVAL: Duration = Duration::from_secs(1);
pub const MAX_PROBE_INTERVAL: Duration = Duration::from_secs(300);
pub const MIN_PROBE_TIMEOUT: Duration = Duration::from_millis(100);
pub const MAX_FAILURE_THRESHOLD: u32 = 10;

/// An absolute http(s) URL with a host, of at most [`MAX_URL`] characters.
pub fn is_http_url(value: &str) -> bool {
    let host = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))
        .map(|rest| rest.split(['/', '?', '#']).next().unwrap_or_default());
    value.len() <= MAX_URL
        && host.is_some_and(|host| !host.is_empty())
        && !value.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// The validator of a manifest's config schema, as registration checks it
/// and tenants' configuration is held to; `None` when it does not compile.
/// Patterns run in linear time: a `pattern` cannot make validation
/// backtrack.
pub fn config_validator(schema: &serde_json::Value) -> Option<jsonschema::Validator> {
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .with_pattern_options(jsonschema::PatternOptions::regex())
        .build(schema)
        .ok()
}

/// A broken rule: where, and what the rule is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub description: String,
}

/// Every rule `manifest` breaks on its own; empty when it keeps them all.
pub fn violations(manifest: &ModuleManifest) -> Vec<Violation> {
    let mut check = Check::default();
    check.describing(manifest);
    check.dependencies(manifest);
    let declared = check.permissions(manifest);
    check.default_roles(manifest, &declared);
    check.config(manifest);
    check.features(manifest);
    check.menu_items(manifest, &declared);
    check.callbacks(manifest);
    check.health_check(manifest);
    check.found
}

#[derive(Default)]
struct Check {
    found: Vec<Violation>,
}

impl Check {
    fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.found.push(Violation {
            field: field.into(),
            description: description.into(),
        });
    }

    fn text(&mut self, field: &str, value: &str, max_characters: usize) {
        if let Some(problem) = text::text_problem(value, max_characters) {
            self.add(field, problem);
        } else if value.trim() != value {
            self.add(field, "must not begin or end with white space");
        }
    }

    fn required_text(&mut self, field: &str, value: &str, max_characters: usize) {
        if value.trim().is_empty() {
            self.add(field, "is required");
        } else {
            self.text(field, value, max_characters);
        }
    }

    fn slug(&mut self, field: &str, value: &str) {
        if !text::is_slug(value) {
            self.add(field, text::SLUG_RULE);
        }
    }

    /// Whether `count` items fit `max`; reported when not.
    fn within(&mut self, field: &str, count: usize, max: usize) -> bool {
        let fits = count <= max;
        if !fits {
            self.add(field, format!("must have at most {max} entries"));
        }
        fits
    }

    fn distinct<'a>(&mut self, seen: &mut HashSet<&'a str>, field: String, value: &'a str) {
        if !value.is_empty() && !seen.insert(value) {
            self.add(field, "is listed twice");
        }
    }

    fn url(&mut self, field: &str, value: &str) {
        if !value.is_empty() && !is_http_url(value) {
            self.add(
                field,
                format!("must be an absolute http(s) URL of at most {MAX_URL} characters"),
            );
        }
    }

    fn requirement(&mut self, field: &str, value: &str) -> Option<semver::VersionReq> {
        if value.len() > MAX_REQUIREMENT {
            self.add(
                field,
                format!("must be at most {MAX_REQUIREMENT} characters"),
            );
            return None;
        }
        match semver::VersionReq::parse(value) {
            Ok(requirement) => Some(requirement),
            Err(_) => {
                self.add(field, "must be a semver requirement, e.g. \">=1.2, <2\"");
                None
            }
        }
    }

    fn describing(&mut self, manifest: &ModuleManifest) {
        if !text::is_module_id(&manifest.id) {
            self.add("id", text::MODULE_ID_RULE);
        } else if permission::is_reserved_namespace(&manifest.id) {
            self.add("id", "is reserved for the platform");
        }
        if manifest.version.len() > MAX_VERSION
            || semver::Version::parse(&manifest.version).is_err()
        {
            self.add("version", "must be a semantic version, e.g. \"1.4.0\"");
        }
        self.required_text("display_name", &manifest.display_name, MAX_NAME);
        self.text("description", &manifest.description, MAX_DESCRIPTION);
        if !manifest.category.is_empty() {
            self.slug("category", &manifest.category);
        }
        if self.within("tags", manifest.tags.len(), MAX_TAGS) {
            let mut seen = HashSet::new();
            for (index, tag) in manifest.tags.iter().enumerate() {
                let field = format!("tags[{index}]");
                self.slug(&field, tag);
                self.distinct(&mut seen, field, tag);
            }
        }
        self.text("author", &manifest.author, MAX_NAME);
        self.url("author_url", &manifest.author_url);
        self.url("repository_url", &manifest.repository_url);
        if !manifest.platform_requirement.is_empty()
            && let Some(requirement) =
                self.requirement("platform_requirement", &manifest.platform_requirement)
            && let Ok(platform) = semver::Version::parse(PLATFORM_VERSION)
            && !requirement.matches(&platform)
        {
            self.add(
                "platform_requirement",
                format!("is not met by this platform's version {PLATFORM_VERSION}"),
            );
        }
    }

    fn dependencies(&mut self, manifest: &ModuleManifest) {
        if !self.within(
            "dependencies",
            manifest.dependencies.len(),
            MAX_DEPENDENCIES,
        ) {
            return;
        }
        let mut seen = HashSet::new();
        for (index, dependency) in manifest.dependencies.iter().enumerate() {
            let field = format!("dependencies[{index}].module_id");
            if !text::is_module_id(&dependency.module_id) {
                self.add(&field, text::MODULE_ID_RULE);
            } else if dependency.module_id == manifest.id {
                self.add(&field, "must not be the module itself");
            }
            self.distinct(&mut seen, field, &dependency.module_id);
            self.requirement(
                &format!("dependencies[{index}].version_requirement"),
                &dependency.version_requirement,
            );
        }
    }

    /// The permissions declared, as far as they are well formed.
    fn permissions<'a>(&mut self, manifest: &'a ModuleManifest) -> HashSet<&'a str> {
        let mut declared = HashSet::new();
        if !self.within("permissions", manifest.permissions.len(), MAX_PERMISSIONS) {
            return declared;
        }
        for (index, declaration) in manifest.permissions.iter().enumerate() {
            let field = format!("permissions[{index}].name");
            let name = declaration.name.as_str();
            if let Err(problem) = permission::check_permission(name) {
                self.add(&field, problem);
            } else if name.split(':').next() != Some(manifest.id.as_str()) {
                self.add(&field, "must be in the module's own namespace (its id)");
            } else {
                self.distinct(&mut declared, field, name);
            }
            self.text(
                &format!("permissions[{index}].description"),
                &declaration.description,
                MAX_SHORT_DESCRIPTION,
            );
        }
        declared
    }

    fn default_roles(&mut self, manifest: &ModuleManifest, declared: &HashSet<&str>) {
        if !self.within("default_roles", manifest.default_roles.len(), MAX_ROLES) {
            return;
        }
        let own_namespace = format!("{}:", manifest.id);
        let mut keys = HashSet::new();
        for (index, role) in manifest.default_roles.iter().enumerate() {
            let field = |name: &str| format!("default_roles[{index}].{name}");
            self.slug(&field("key"), &role.key);
            self.distinct(&mut keys, field("key"), &role.key);
            self.required_text(&field("display_name"), &role.display_name, MAX_NAME);
            self.text(&field("description"), &role.description, MAX_DESCRIPTION);
            if role.grants.is_empty() {
                self.add(field("grants"), "must hold at least one grant");
            }
            if !self.within(&field("grants"), role.grants.len(), MAX_ROLE_GRANTS) {
                continue;
            }
            for (position, grant) in role.grants.iter().enumerate() {
                let field = format!("default_roles[{index}].grants[{position}]");
                match Grant::parse(grant) {
                    Err(problem) => self.add(field, problem),
                    Ok(Grant::Permission(name)) if !declared.contains(name) => {
                        self.add(field, "must be a permission this manifest declares")
                    }
                    Ok(Grant::Prefix(prefix)) if !prefix.starts_with(&own_namespace) => {
                        self.add(field, "must be a wildcard over the module's own namespace")
                    }
                    Ok(Grant::Everything) => {
                        self.add(field, "must be a wildcard over the module's own namespace")
                    }
                    Ok(_) => {}
                }
            }
        }
    }

    fn config(&mut self, manifest: &ModuleManifest) {
        let schema = manifest.config_schema.as_ref().map(json::object);
        let defaults = manifest.config_defaults.as_ref().map(json::object);
        let oversized = |document: &Option<serde_json::Value>| {
            document
                .as_ref()
                .is_some_and(|document| document.to_string().len() > MAX_CONFIG_BYTES)
        };
        let too_large = format!("must be at most {MAX_CONFIG_BYTES} bytes as JSON");
        if oversized(&schema) {
            self.add("config_schema", too_large.clone());
        }
        if oversized(&defaults) {
            self.add("config_defaults", too_large);
        }
        if oversized(&schema) || oversized(&defaults) {
            return;
        }
        let Some(schema) = schema else {
            if defaults.is_some_and(|defaults| defaults.as_object().is_some_and(|d| !d.is_empty()))
            {
                self.add(
                    "config_defaults",
                    "must be empty when the module has no config_schema",
                );
            }
            return;
        };
        if schema.get("type").and_then(serde_json::Value::as_str) != Some("object") {
            self.add(
                "config_schema",
                "must describe an object (\"type\": \"object\")",
            );
        }
        let validator = match config_validator(&schema) {
            Some(validator) => validator,
            None => {
                self.add(
                    "config_schema",
                    "must be a JSON Schema (draft 2020-12) without external references, \
                     its patterns without lookaround or backreferences",
                );
                return;
            }
        };
        let defaults = defaults.unwrap_or_else(|| serde_json::json!({}));
        for error in validator.iter_errors(&defaults) {
            let path = error.instance_path().to_string().replace('/', ".");
            self.add(
                format!("config_defaults{path}"),
                format!("breaks the config schema: {}", error.masked()),
            );
        }
    }

    fn features(&mut self, manifest: &ModuleManifest) {
        if !self.within("features", manifest.features.len(), MAX_FEATURES) {
            return;
        }
        let mut keys = HashSet::new();
        for (index, feature) in manifest.features.iter().enumerate() {
            let field = format!("features[{index}].key");
            self.slug(&field, &feature.key);
            self.distinct(&mut keys, field, &feature.key);
            self.text(
                &format!("features[{index}].description"),
                &feature.description,
                MAX_SHORT_DESCRIPTION,
            );
        }
    }

    fn menu_items(&mut self, manifest: &ModuleManifest, declared: &HashSet<&str>) {
        if !self.within("menu_items", manifest.menu_items.len(), MAX_MENU_ITEMS) {
            return;
        }
        for (index, item) in manifest.menu_items.iter().enumerate() {
            let field = |name: &str| format!("menu_items[{index}].{name}");
            self.required_text(&field("label"), &item.label, MAX_MENU_LABEL);
            let route_ok = item.route.starts_with('/')
                && item.route.len() <= MAX_ROUTE
                && !item
                    .route
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control());
            if !route_ok {
                self.add(
                    field("route"),
                    format!("must be an absolute path of at most {MAX_ROUTE} characters"),
                );
            }
            self.text(&field("icon"), &item.icon, MAX_ICON);
            if !item.required_permission.is_empty()
                && !declared.contains(item.required_permission.as_str())
            {
                self.add(
                    field("required_permission"),
                    "must be a permission this manifest declares",
                );
            }
        }
    }

    fn callbacks(&mut self, manifest: &ModuleManifest) {
        let mut seen = HashSet::new();
        for (index, callback) in manifest.callbacks.iter().enumerate() {
            let field = format!("callbacks[{index}].callback");
            match LifecycleCallback::try_from(callback.callback) {
                Ok(LifecycleCallback::Unspecified) | Err(_) => {
                    self.add(field, "must name a lifecycle callback");
                }
                Ok(_) => {
                    if !seen.insert(callback.callback) {
                        self.add(field, "is listed twice");
                    }
                }
            }
        }
    }

    fn health_check(&mut self, manifest: &ModuleManifest) {
        let Some(health) = &manifest.health_check else {
            return;
        };
        self.text("health_check.service", &health.service, MAX_HEALTH_SERVICE);
        let interval = match health.interval.map(Duration::try_from) {
            None => Some(Duration::from_secs(10)),
            Some(Ok(interval)) if (MIN_PROBE_INTERVAL..=MAX_PROBE_INTERVAL).contains(&interval) => {
                Some(interval)
            }
            Some(_) => {
                self.add("health_check.interval", "must be 1 s to 5 min");
                None
            }
        };
        if let Some(timeout) = health.timeout {
            let ceiling = interval.unwrap_or(MAX_PROBE_INTERVAL);
            let fits = Duration::try_from(timeout)
                .is_ok_and(|timeout| (MIN_PROBE_TIMEOUT..=ceiling).contains(&timeout));
            if !fits {
                self.add("health_check.timeout", "must be 100 ms up to the interval");
            }
        }
        if health.failure_threshold > MAX_FAILURE_THRESHOLD {
            self.add(
                "health_check.failure_threshold",
                format!("must be 0 to {MAX_FAILURE_THRESHOLD}"),
            );
        }
    }
}

#[cfg(test)]
mod tests;
