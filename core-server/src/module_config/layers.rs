//! Configuration layers as written: read one (secrets opened), replace one
//! whole or patch it, each write validated for every scope it affects and
//! sealed before it is stored.

use plinth_platform::{
    audit::AuditDraft,
    clock,
    error::{ApiError, Violations},
    identity::Principal,
    store::{
        StoreError, Tx,
        module_configs::{self, ConfigLayerRecord},
        tenant_modules,
    },
};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{
    ModuleConfigs,
    document::{self, merge_patch},
    etag_of,
    secrets::{self, LayerKey, REDACTED},
};
use crate::{
    access::Scope,
    auth::signing::KeyEncryptionKey,
    enablement::{VersionToken, catalog::ModuleVersion, running_version},
    permissions::{MODULE_CONFIG_READ, MODULE_CONFIG_WRITE},
    tenant::lock_writable,
};

/// Audit details carry the written layer (secrets redacted) up to this
/// size; a larger one is described by its etag alone.
const MAX_AUDITED_DOCUMENT: usize = 16 * 1024;

/// How a layer changes.
#[derive(Debug, Clone)]
pub enum LayerChange {
    /// The whole layer, replacing the one of this etag.
    Replace {
        document: Map<String, Value>,
        etag: String,
    },
    /// A JSON Merge Patch over the layer, maybe only over this etag.
    Patch {
        patch: Map<String, Value>,
        etag: Option<String>,
    },
}

/// A layer to write, already validated and merged.
pub struct LayerWrite<'a> {
    pub key: LayerKey<'a>,
    pub layer: Map<String, Value>,
}

/// A layer of a module in a tenant or company, as asked for.
#[derive(Debug, Clone)]
pub struct LayerAddress {
    pub module_id: String,
    pub tenant_id: Uuid,
    pub company_id: Option<Uuid>,
}

impl LayerAddress {
    fn key(&self) -> LayerKey<'_> {
        LayerKey {
            tenant_id: self.tenant_id,
            module_id: &self.module_id,
            company_id: self.company_id,
        }
    }
}

/// A layer as read or written: its document (secrets opened) and etag.
#[derive(Debug, Clone)]
pub struct Layer {
    pub document: String,
    pub etag: String,
}

/// The layer that was never written.
fn empty_layer() -> Layer {
    Layer {
        document: "{}".to_owned(),
        etag: etag_of("{}"),
    }
}

impl ModuleConfigs {
    pub async fn layer(
        &self,
        principal: &Principal,
        address: LayerAddress,
    ) -> Result<Layer, ApiError> {
        self.authorize(principal, &address, MODULE_CONFIG_READ)
            .await?;
        let stored = self
            .store
            .module_configs
            .layer(address.tenant_id, &address.module_id, address.company_id)
            .await?;
        match stored {
            Some(stored) => Ok(Layer {
                document: serde_json::to_string(&open_layer(&self.encryption, &stored)?)
                    .map_err(StoreError::from)?,
                etag: stored.etag,
            }),
            None => Ok(empty_layer()),
        }
    }

    /// Writes a layer of a module the tenant holds; the layer as written
    /// and the consistency token of the change.
    pub async fn set_layer(
        &self,
        principal: &Principal,
        address: LayerAddress,
        change: LayerChange,
    ) -> Result<(Layer, String), ApiError> {
        self.authorize(principal, &address, MODULE_CONFIG_WRITE)
            .await?;
        let mut tx = self.store.begin().await?;
        lock_writable(&mut tx, address.tenant_id).await?;
        let record = tenant_modules::modules_in(&mut tx, address.tenant_id)
            .await?
            .into_iter()
            .find(|record| record.module_id == address.module_id && record.state.is_held())
            .ok_or_else(|| ApiError::ModuleNotEnabled {
                module_id: address.module_id.clone(),
                state: "not enabled".to_owned(),
            })?;
        let version = running_version(&self.catalog, &record)
            .await?
            .ok_or_else(|| ApiError::ModuleNotEnabled {
                module_id: address.module_id.clone(),
                state: "without an active version".to_owned(),
            })?;
        let current = module_configs::layer_in(
            &mut tx,
            address.tenant_id,
            &address.module_id,
            address.company_id,
        )
        .await?;
        let current_etag = current
            .as_ref()
            .map_or_else(|| empty_layer().etag, |layer| layer.etag.clone());
        let current_layer = match &current {
            Some(stored) => open_layer(&self.encryption, stored)?,
            None => Map::new(),
        };
        let expected_etag = match &change {
            LayerChange::Replace { etag, .. } => Some(etag),
            LayerChange::Patch { etag, .. } => etag.as_ref(),
        };
        if let Some(expected) = expected_etag
            && *expected != current_etag
        {
            return Err(ApiError::EtagMismatch {
                resource_type: "module config",
                current_etag,
            });
        }
        let layer = match change {
            LayerChange::Replace { document, .. } => document,
            LayerChange::Patch { patch, .. } => {
                let mut merged = Value::Object(current_layer);
                merge_patch(&mut merged, &Value::Object(patch));
                match merged {
                    Value::Object(layer) => layer,
                    _ => unreachable!("an object patched by an object stays an object"),
                }
            }
        };
        let written = write_layer(
            &mut tx,
            &self.encryption,
            principal,
            &version,
            LayerWrite {
                key: address.key(),
                layer,
            },
        )
        .await?;
        let modules_version = tenant_modules::bump_version(&mut tx, address.tenant_id).await?;
        tx.commit().await?;
        let token = self.committed(address.tenant_id, modules_version).await;
        Ok((written, token))
    }

    /// The caller may read or write the layer: in the tenant (NOT_FOUND for
    /// other tenants' ids) and, for a company's, the company is the
    /// tenant's.
    async fn authorize(
        &self,
        principal: &Principal,
        address: &LayerAddress,
        permission: plinth_platform::permission::catalog::Permission,
    ) -> Result<(), ApiError> {
        let scope = Scope::tenant(address.tenant_id).in_company(address.company_id);
        self.access
            .require_visible(principal, permission, scope, "tenant")
            .await?;
        if let Some(company_id) = address.company_id {
            self.enablement
                .company_tenant(company_id, Some(address.tenant_id))
                .await?;
        }
        Ok(())
    }

    /// After a committed configuration change.
    pub(super) async fn committed(&self, tenant_id: Uuid, version: i64) -> String {
        self.enablement.learn(tenant_id, version);
        self.invalidator
            .changed(plinth_platform::invalidation::Change::Modules { tenant_id, version })
            .await;
        VersionToken::modules(tenant_id, version).encode()
    }
}

/// A stored layer with its secrets opened.
pub fn open_layer(
    encryption: &KeyEncryptionKey,
    stored: &ConfigLayerRecord,
) -> Result<Map<String, Value>, ApiError> {
    let layer = document::parse_object(&stored.document)
        .map_err(|problem| ApiError::Internal(format!("stored layer: {problem}").into()))?;
    let key = LayerKey {
        tenant_id: stored.tenant_id,
        module_id: &stored.module_id,
        company_id: stored.company_id,
    };
    secrets::open(encryption, key, layer)
        .ok_or_else(|| ApiError::Internal("a sealed configuration value does not open".into()))
}

/// Validates a layer in the transaction that writes it (the tenant
/// locked): the merged document of its own scope and, for a tenant's
/// layer, of each company with a layer; then seals and stores it, records
/// the change and audits it (secrets redacted).
pub async fn write_layer(
    tx: &mut Tx,
    encryption: &KeyEncryptionKey,
    principal: &Principal,
    version: &ModuleVersion,
    write: LayerWrite<'_>,
) -> Result<Layer, ApiError> {
    let LayerWrite { key, layer } = write;
    let stored = module_configs::layers_in(tx, key.tenant_id, key.module_id).await?;
    let mut opened = Vec::with_capacity(stored.len());
    for record in &stored {
        opened.push((record.company_id, open_layer(encryption, record)?));
    }
    let tenant_layer = match key.company_id {
        None => layer.clone(),
        Some(_) => opened
            .iter()
            .find(|(company_id, _)| company_id.is_none())
            .map(|(_, layer)| layer.clone())
            .unwrap_or_default(),
    };
    let schema = &version.config;
    let mut violations = Violations::default();
    let mut check = |prefix: String, document: Value| {
        for violation in schema.violations(&document) {
            violations.push(
                &format!("{prefix}{}", violation.pointer),
                violation.description,
            );
        }
    };
    match key.company_id {
        Some(_) => check(
            String::new(),
            document::resolve(&schema.defaults, [&tenant_layer, &layer]),
        ),
        None => {
            check(String::new(), document::resolve(&schema.defaults, [&layer]));
            for (company_id, company_layer) in &opened {
                if let Some(company_id) = company_id {
                    check(
                        format!("companies/{company_id}"),
                        document::resolve(&schema.defaults, [&layer, company_layer]),
                    );
                }
            }
        }
    }
    if !violations.is_empty() {
        return Err(ApiError::ConfigSchemaViolation {
            module_id: key.module_id.to_owned(),
            violations,
        });
    }
    let text = serde_json::to_string(&layer).map_err(StoreError::from)?;
    let etag = etag_of(&text);
    let sealed = secrets::seal(encryption, schema, key, &layer);
    let record = ConfigLayerRecord {
        tenant_id: key.tenant_id,
        module_id: key.module_id.to_owned(),
        company_id: key.company_id,
        document: serde_json::to_string(&sealed).map_err(StoreError::from)?,
        etag: etag.clone(),
        updated_at: clock::now(),
    };
    let redacted = secrets::replace_secrets(schema, &layer, |_, _| Value::from(REDACTED));
    let redacted_text = serde_json::to_string(&redacted).map_err(StoreError::from)?;
    let mut details = serde_json::json!({
        "module_id": key.module_id,
        "company_id": key.company_id,
        "etag": etag,
    });
    if redacted_text.len() <= MAX_AUDITED_DOCUMENT {
        details["document"] = Value::Object(redacted);
    }
    let event = AuditDraft::new(
        principal.actor(),
        "tenant.module_config.updated",
        "module_config",
        key.module_id,
    )
    .in_tenant(Some(key.tenant_id))
    .with_request_id(&principal.request_id)
    .with_details(details);
    let mut event = event;
    event.company_id = key.company_id;
    module_configs::put_layer(tx, &record, event).await?;
    module_configs::record_change(tx, key.module_id, Some(key.tenant_id), key.company_id).await?;
    Ok(Layer {
        document: text,
        etag,
    })
}
