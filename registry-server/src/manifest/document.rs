//! A manifest as a YAML or JSON file: the `ModuleManifest` message keyed by
//! its field names, durations written as in protobuf JSON ("10s", "0.5s")
//! and callbacks by their enum names ("LIFECYCLE_CALLBACK_TENANT_ENABLING").

use plinth_api::{
    prost_types,
    registry::v1::{
        HealthCheck, LifecycleCallback, ManifestCallback, ManifestFeature, ManifestPermission,
        ManifestRole, MenuItem, ModuleDependency, ModuleManifest,
    },
};
use serde::Deserialize;

use super::json;

/// Largest manifest file read.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;

/// Why a file is no manifest document.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("the file is over {MAX_FILE_BYTES} bytes")]
    TooLarge,
    #[error("{0}")]
    Malformed(String),
}

/// Reads a manifest from YAML (JSON being YAML too). Unknown fields are
/// refused, so a misspelt key cannot pass unnoticed.
pub fn parse(text: &str) -> Result<ModuleManifest, DocumentError> {
    if text.len() > MAX_FILE_BYTES {
        return Err(DocumentError::TooLarge);
    }
    let document: Document = serde_norway::from_str(text)
        .map_err(|error| DocumentError::Malformed(error.to_string()))?;
    document.into_manifest()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    id: String,
    version: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    author: String,
    #[serde(default)]
    author_url: String,
    #[serde(default)]
    repository_url: String,
    #[serde(default)]
    dependencies: Vec<Dependency>,
    #[serde(default)]
    platform_requirement: String,
    #[serde(default)]
    permissions: Vec<Permission>,
    #[serde(default)]
    default_roles: Vec<Role>,
    config_schema: Option<serde_json::Map<String, serde_json::Value>>,
    config_defaults: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    features: Vec<Feature>,
    #[serde(default)]
    menu_items: Vec<Menu>,
    #[serde(default)]
    callbacks: Vec<Callback>,
    health_check: Option<Health>,
    #[serde(default)]
    provisions_tenants: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Dependency {
    module_id: String,
    #[serde(default)]
    version_requirement: String,
    #[serde(default)]
    optional: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Permission {
    name: String,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Role {
    key: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    grants: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Feature {
    key: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    default_enabled: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Menu {
    label: String,
    route: String,
    #[serde(default)]
    icon: String,
    #[serde(default)]
    required_permission: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Callback {
    callback: String,
    #[serde(default)]
    optional: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Health {
    #[serde(default)]
    service: String,
    interval: Option<String>,
    timeout: Option<String>,
    #[serde(default)]
    failure_threshold: u32,
}

impl Document {
    fn into_manifest(self) -> Result<ModuleManifest, DocumentError> {
        let health_check = self
            .health_check
            .map(|health| {
                Ok::<_, DocumentError>(HealthCheck {
                    service: health.service,
                    interval: health.interval.as_deref().map(duration).transpose()?,
                    timeout: health.timeout.as_deref().map(duration).transpose()?,
                    failure_threshold: health.failure_threshold,
                })
            })
            .transpose()?;
        Ok(ModuleManifest {
            id: self.id,
            version: self.version,
            display_name: self.display_name,
            description: self.description,
            category: self.category,
            tags: self.tags,
            author: self.author,
            author_url: self.author_url,
            repository_url: self.repository_url,
            dependencies: self
                .dependencies
                .into_iter()
                .map(|dependency| ModuleDependency {
                    module_id: dependency.module_id,
                    version_requirement: dependency.version_requirement,
                    optional: dependency.optional,
                })
                .collect(),
            platform_requirement: self.platform_requirement,
            permissions: self
                .permissions
                .into_iter()
                .map(|permission| ManifestPermission {
                    name: permission.name,
                    description: permission.description,
                })
                .collect(),
            default_roles: self
                .default_roles
                .into_iter()
                .map(|role| ManifestRole {
                    key: role.key,
                    display_name: role.display_name,
                    description: role.description,
                    grants: role.grants,
                })
                .collect(),
            config_schema: self.config_schema.map(json::to_struct),
            config_defaults: self.config_defaults.map(json::to_struct),
            features: self
                .features
                .into_iter()
                .map(|feature| ManifestFeature {
                    key: feature.key,
                    description: feature.description,
                    default_enabled: feature.default_enabled,
                })
                .collect(),
            menu_items: self
                .menu_items
                .into_iter()
                .map(|item| MenuItem {
                    label: item.label,
                    route: item.route,
                    icon: item.icon,
                    required_permission: item.required_permission,
                })
                .collect(),
            callbacks: self
                .callbacks
                .into_iter()
                .map(|callback| ManifestCallback {
                    // An unknown name stays unspecified, which the rules refuse.
                    callback: LifecycleCallback::from_str_name(&callback.callback)
                        .unwrap_or(LifecycleCallback::Unspecified)
                        .into(),
                    optional: callback.optional,
                })
                .collect(),
            health_check,
            provisions_tenants: self.provisions_tenants,
        })
    }
}

/// A protobuf JSON duration: seconds with up to 9 decimals and an "s".
fn duration(text: &str) -> Result<prost_types::Duration, DocumentError> {
    let malformed =
        || DocumentError::Malformed("durations look like \"10s\" or \"0.5s\"".to_owned());
    let seconds = text.strip_suffix('s').ok_or_else(malformed)?;
    let (whole, fraction) = seconds.split_once('.').unwrap_or((seconds, ""));
    if whole.is_empty()
        || fraction.len() > 9
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(malformed());
    }
    let seconds: i64 = whole.parse().map_err(|_| malformed())?;
    let nanos: i32 = format!("{fraction:0<9}").parse().map_err(|_| malformed())?;
    Ok(prost_types::Duration { seconds, nanos })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_protobuf_json_writes_them() {
        assert_eq!(
            duration("0.25s").unwrap(),
            prost_types::Duration {
                seconds: 0,
                nanos: 250_000_000
            }
        );
        assert_eq!(duration("10s").unwrap().seconds, 10);
        for bad in [
            "10",
            "s",
            "-1s",
            "1.0000000001s",
            "99999999999999999999s",
            "1e3s",
        ] {
            assert!(duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        let error = parse("id: stock\nversion: 1.0.0\nversoin: 2\n").unwrap_err();
        assert!(error.to_string().contains("versoin"));
    }
}
