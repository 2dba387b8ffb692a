//! The manifest rules, one test each: the example manifest keeps them all,
//! and each test breaks one and expects it reported at its field path.

use plinth_api::{
    prost_types,
    registry::v1::{
        HealthCheck, ManifestCallback, ManifestFeature, ManifestPermission, ModuleDependency,
        ModuleManifest,
    },
};

use super::{document, json, violations};

fn example() -> ModuleManifest {
    document::parse(include_str!("../../example-manifest.yaml")).expect("the example parses")
}

fn config(value: serde_json::Value) -> prost_types::Struct {
    let serde_json::Value::Object(object) = value else {
        panic!("config documents are objects")
    };
    json::to_struct(object)
}

fn seconds(seconds: i64, nanos: i32) -> Option<prost_types::Duration> {
    Some(prost_types::Duration { seconds, nanos })
}

#[test]
fn the_example_manifest_keeps_every_rule() {
    assert_eq!(violations(&example()), []);
}

/// `name: "field" => |manifest| change;` — the change breaks one rule,
/// reported at `field`.
macro_rules! refused {
    ($($name:ident: $field:literal => |$manifest:ident| $change:expr;)+) => {
        $(
            #[test]
            fn $name() {
                let mut $manifest = example();
                $change;
                let found = violations(&$manifest);
                assert!(
                    found.iter().any(|violation| violation.field == $field),
                    "expected a violation at {}, got {found:?}",
                    $field
                );
            }
        )+
    };
}

refused! {
    an_id_must_be_a_module_id: "id" => |m| m.id = "Inventory".into();
    a_reserved_id_is_refused: "id" => |m| m.id = "audit".into();
    a_version_must_be_semantic: "version" => |m| m.version = "1.4".into();
    a_display_name_is_required: "display_name" => |m| m.display_name = " ".into();
    a_display_name_is_bounded: "display_name" => |m| m.display_name = "x".repeat(201);
    text_refuses_control_characters: "description" => |m| m.description = "a\u{7}b".into();
    text_refuses_surrounding_white_space: "author" => |m| m.author = " Acme".into();
    a_category_must_be_a_slug: "category" => |m| m.category = "Operations".into();
    tags_must_be_slugs: "tags[0]" => |m| m.tags[0] = "two words".into();
    tags_must_be_distinct: "tags[1]" => |m| m.tags[1] = m.tags[0].clone();
    tags_are_bounded: "tags" => |m| m.tags = (0..21).map(|i| format!("tag-{i}")).collect();
    an_author_url_must_be_http: "author_url" => |m| m.author_url = "ftp://plinth.dev".into();
    a_repository_url_needs_a_host: "repository_url" => |m| m.repository_url = "https:///x".into();
    a_dependency_must_name_a_module_id: "dependencies[0].module_id" => |m| m.dependencies[0].module_id = "Finance".into();
    a_module_cannot_depend_on_itself: "dependencies[0].module_id" => |m| m.dependencies[0].module_id = "inventory".into();
    a_dependency_is_listed_once: "dependencies[1].module_id" => |m| m.dependencies.push(m.dependencies[0].clone());
    dependencies_are_bounded: "dependencies" => |m| m.dependencies = (0..51)
        .map(|i| ModuleDependency { module_id: format!("module_{i}"), ..ModuleDependency::default() })
        .collect();
    a_dependency_requirement_must_be_semver: "dependencies[0].version_requirement" => |m| m.dependencies[0].version_requirement = "=>2".into();
    a_platform_requirement_must_be_semver: "platform_requirement" => |m| m.platform_requirement = "latest".into();
    a_platform_requirement_must_be_met: "platform_requirement" => |m| m.platform_requirement = ">=99".into();
    a_permission_must_be_well_formed: "permissions[0].name" => |m| m.permissions[0].name = "inventory:item".into();
    a_permission_cannot_be_a_wildcard: "permissions[0].name" => |m| m.permissions[0].name = "inventory:item:*".into();
    a_permission_must_be_in_the_module_namespace: "permissions[0].name" => |m| m.permissions[0].name = "finance:invoice:read".into();
    a_permission_is_declared_once: "permissions[1].name" => |m| m.permissions[1].name = m.permissions[0].name.clone();
    a_permission_description_is_bounded: "permissions[0].description" => |m| m.permissions[0].description = "x".repeat(501);
    permissions_are_bounded: "permissions" => |m| m.permissions = (0..501)
        .map(|i| ManifestPermission { name: format!("inventory:res{i}:read"), description: String::new() })
        .collect();
    a_role_key_must_be_a_slug: "default_roles[0].key" => |m| m.default_roles[0].key = "Viewer".into();
    role_keys_are_distinct: "default_roles[1].key" => |m| m.default_roles[1].key = m.default_roles[0].key.clone();
    a_role_needs_a_display_name: "default_roles[0].display_name" => |m| m.default_roles[0].display_name.clear();
    a_role_needs_a_grant: "default_roles[0].grants" => |m| m.default_roles[0].grants.clear();
    a_role_grants_only_declared_permissions: "default_roles[0].grants[0]" => |m| m.default_roles[0].grants[0] = "inventory:item:delete".into();
    a_role_wildcard_stays_in_the_module_namespace: "default_roles[1].grants[0]" => |m| m.default_roles[1].grants[0] = "finance:*".into();
    a_role_cannot_grant_everything: "default_roles[1].grants[0]" => |m| m.default_roles[1].grants[0] = "*".into();
    a_role_grant_wildcard_is_a_whole_segment: "default_roles[1].grants[0]" => |m| m.default_roles[1].grants[0] = "inventory:it*".into();
    a_config_schema_must_be_a_json_schema: "config_schema" => |m| m.config_schema = Some(config(serde_json::json!({"type": "object", "minProperties": -1})));
    a_config_schema_describes_an_object: "config_schema" => |m| m.config_schema = Some(config(serde_json::json!({"type": "array"})));
    a_config_schema_has_no_external_references: "config_schema" => |m| m.config_schema = Some(config(serde_json::json!({"type": "object", "$ref": "https://example.com/schema.json"})));
    a_config_schema_is_bounded: "config_schema" => |m| m.config_schema = Some(config(serde_json::json!({"type": "object", "description": "x".repeat(65 * 1024)})));
    a_config_pattern_cannot_backtrack: "config_schema" => |m| m.config_schema = Some(config(serde_json::json!({"type": "object", "properties": {"code": {"type": "string", "pattern": "^(?=a)a$"}}})));
    config_defaults_must_validate: "config_defaults.low_stock_threshold" => |m| m.config_defaults = Some(config(serde_json::json!({"low_stock_threshold": "many"})));
    config_defaults_need_a_schema: "config_defaults" => |m| m.config_schema = None;
    a_feature_key_must_be_a_slug: "features[0].key" => |m| m.features[0].key = "Barcodes".into();
    feature_keys_are_distinct: "features[1].key" => |m| m.features.push(ManifestFeature { key: m.features[0].key.clone(), ..ManifestFeature::default() });
    a_menu_item_needs_a_label: "menu_items[0].label" => |m| m.menu_items[0].label.clear();
    a_menu_route_is_an_absolute_path: "menu_items[0].route" => |m| m.menu_items[0].route = "items".into();
    a_menu_permission_is_declared_by_the_manifest: "menu_items[0].required_permission" => |m| m.menu_items[0].required_permission = "finance:invoice:read".into();
    a_callback_must_be_named: "callbacks[0].callback" => |m| m.callbacks[0].callback = 0;
    an_unknown_callback_is_refused: "callbacks[0].callback" => |m| m.callbacks[0].callback = 99;
    a_callback_is_listed_once: "callbacks[1].callback" => |m| m.callbacks[1] = ManifestCallback { ..m.callbacks[0] };
    a_probe_interval_is_at_least_a_second: "health_check.interval" => |m| m.health_check = Some(HealthCheck { interval: seconds(0, 500_000_000), ..HealthCheck::default() });
    a_probe_interval_is_at_most_five_minutes: "health_check.interval" => |m| m.health_check = Some(HealthCheck { interval: seconds(301, 0), ..HealthCheck::default() });
    a_negative_probe_interval_is_refused: "health_check.interval" => |m| m.health_check = Some(HealthCheck { interval: seconds(-1, 0), ..HealthCheck::default() });
    a_probe_timeout_fits_the_interval: "health_check.timeout" => |m| m.health_check = Some(HealthCheck { interval: seconds(5, 0), timeout: seconds(6, 0), ..HealthCheck::default() });
    a_failure_threshold_is_bounded: "health_check.failure_threshold" => |m| m.health_check = Some(HealthCheck { failure_threshold: 11, ..HealthCheck::default() });
}

#[test]
fn every_violation_is_reported_at_once() {
    let mut manifest = example();
    manifest.version = "next".into();
    manifest.category = "Operations".into();
    manifest.menu_items[1].route = "counts".into();
    let fields: Vec<String> = violations(&manifest)
        .into_iter()
        .map(|violation| violation.field)
        .collect();
    assert_eq!(fields, ["version", "category", "menu_items[1].route"]);
}

#[test]
fn descriptions_never_echo_the_manifest() {
    let secret = "S3cret value";
    let mut manifest = example();
    manifest.config_defaults = Some(config(serde_json::json!({"units": secret})));
    manifest.tags[0] = secret.into();
    manifest.dependencies[0].version_requirement = secret.into();
    let found = violations(&manifest);
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(
        found
            .iter()
            .all(|violation| !violation.description.contains(secret))
    );
}
