//! Checks, lookups and declared permissions: requests into questions,
//! answers into messages.

use plinth_api::rbac::v1::{self as proto, GrantSource};
use plinth_platform::{
    error::ApiError,
    identity,
    permission::MAX_PERMISSION_LENGTH,
    store::permissions::{PermissionFilter, PermissionRecord},
};
use tonic::{Request, Response};

use super::Answer;
use crate::{
    grpc::validate::{Fields, timestamp},
    rbac::{
        CheckItem, Checked, CompanyLookup, Declaration, MAX_BATCH_ITEMS, MAX_DECLARATIONS,
        MAX_PERMISSION_DESCRIPTION, PermissionListing, Rbac, Subject, UserLookup, grants::Source,
    },
};

fn subject(fields: &mut Fields, tenant_id: &str, user_id: &str) -> Subject {
    Subject {
        tenant_id: fields.id("tenant_id", tenant_id),
        user_id: fields.optional_id("user_id", user_id),
    }
}

fn explanation(checked: &Checked, permission: &str) -> proto::Explanation {
    let granted_by = checked.granted_by.as_ref().map(|source| {
        let pattern = source.pattern(permission).to_owned();
        match source {
            Source::Role {
                role_id,
                role,
                grant,
            } => proto::Grant {
                pattern,
                source: GrantSource::RoleBinding.into(),
                binding_id: checked
                    .binding
                    .as_ref()
                    .map(|binding| binding.id.to_string())
                    .unwrap_or_default(),
                role_id: role_id.to_string(),
                role_key: role.key.to_string(),
                granting_role_id: role.grants[*grant].granting_role_id.to_string(),
                granting_role_key: role.grants[*grant].granting_role_key.to_string(),
                company_id: checked
                    .binding
                    .as_ref()
                    .and_then(|binding| binding.company_id)
                    .map(|id| id.to_string())
                    .unwrap_or_default(),
            },
            Source::Membership => proto::Grant {
                pattern,
                source: GrantSource::Membership.into(),
                ..proto::Grant::default()
            },
            Source::PlatformAdmin => proto::Grant {
                pattern,
                source: GrantSource::PlatformAdmin.into(),
                ..proto::Grant::default()
            },
        }
    });
    proto::Explanation { granted_by }
}

fn permission_to_proto(record: PermissionRecord) -> proto::Permission {
    proto::Permission {
        name: record.name,
        module_id: record.module_id,
        description: record.description,
        created_at: Some(timestamp(record.created_at)),
    }
}

pub async fn check(
    rbac: &Rbac,
    request: Request<proto::CheckRequest>,
) -> Answer<proto::CheckResponse> {
    let principal = identity::principal(&request)?;
    let body = request.get_ref();
    let mut fields = Fields::default();
    let subject = subject(&mut fields, &body.tenant_id, &body.user_id);
    let item = CheckItem {
        permission: fields.permission("permission", &body.permission),
        company_id: fields.optional_id("company_id", &body.company_id),
    };
    let consistency = fields.rbac_consistency(body.consistency.as_ref());
    fields.finish()?;
    let (mut answers, consistency_token) = rbac
        .check(
            principal,
            subject,
            std::slice::from_ref(&item),
            consistency,
            body.explain,
        )
        .await?;
    let checked = answers
        .pop()
        .ok_or_else(|| ApiError::Internal("a check of one item answered nothing".into()))?;
    Ok(Response::new(proto::CheckResponse {
        allowed: checked.allowed,
        consistency_token,
        explanation: body
            .explain
            .then(|| explanation(&checked, &item.permission)),
    }))
}

pub async fn check_batch(
    rbac: &Rbac,
    request: Request<proto::CheckBatchRequest>,
) -> Answer<proto::CheckBatchResponse> {
    let principal = identity::principal(&request)?;
    let body = request.get_ref();
    let mut fields = Fields::default();
    let subject = subject(&mut fields, &body.tenant_id, &body.user_id);
    if body.items.is_empty() {
        fields.violation("items", "must have at least 1 element");
    }
    let items: Vec<CheckItem> = fields
        .bounded("items", &body.items, MAX_BATCH_ITEMS)
        .iter()
        .enumerate()
        .map(|(index, item)| CheckItem {
            permission: fields.permission(&format!("items[{index}].permission"), &item.permission),
            company_id: fields.optional_id(&format!("items[{index}].company_id"), &item.company_id),
        })
        .collect();
    let consistency = fields.rbac_consistency(body.consistency.as_ref());
    fields.finish()?;
    let (answers, consistency_token) = rbac
        .check(principal, subject, &items, consistency, body.explain)
        .await?;
    let results: Vec<proto::CheckResult> = items
        .iter()
        .zip(&answers)
        .map(|(item, checked)| proto::CheckResult {
            permission: item.permission.clone(),
            company_id: item.company_id.map(|id| id.to_string()).unwrap_or_default(),
            allowed: checked.allowed,
            explanation: body.explain.then(|| explanation(checked, &item.permission)),
        })
        .collect();
    Ok(Response::new(proto::CheckBatchResponse {
        all_allowed: answers.iter().all(|checked| checked.allowed),
        any_allowed: answers.iter().any(|checked| checked.allowed),
        results,
        consistency_token,
    }))
}

pub async fn list_user_permissions(
    rbac: &Rbac,
    request: Request<proto::ListUserPermissionsRequest>,
) -> Answer<proto::ListUserPermissionsResponse> {
    let principal = identity::principal(&request)?;
    let body = request.get_ref();
    let mut fields = Fields::default();
    let subject = subject(&mut fields, &body.tenant_id, &body.user_id);
    let company_id = fields.optional_id("company_id", &body.company_id);
    let consistency = fields.rbac_consistency(body.consistency.as_ref());
    fields.finish()?;
    let (permissions, consistency_token) = rbac
        .user_permissions(principal, subject, company_id, consistency)
        .await?;
    Ok(Response::new(proto::ListUserPermissionsResponse {
        permissions,
        consistency_token,
    }))
}

pub async fn lookup_companies(
    rbac: &Rbac,
    request: Request<proto::LookupCompaniesRequest>,
) -> Answer<proto::LookupCompaniesResponse> {
    let principal = identity::principal(&request)?;
    let body = request.get_ref();
    let mut fields = Fields::default();
    let subject = subject(&mut fields, &body.tenant_id, &body.user_id);
    let permission = fields.permission("permission", &body.permission);
    let consistency = fields.rbac_consistency(body.consistency.as_ref());
    fields.finish()?;
    let (companies, consistency_token) = rbac
        .lookup_companies(principal, subject, &permission, consistency)
        .await?;
    let (all_companies, company_ids) = match companies {
        CompanyLookup::All => (true, Vec::new()),
        CompanyLookup::Some(ids) => (false, ids.iter().map(|id| id.to_string()).collect()),
    };
    Ok(Response::new(proto::LookupCompaniesResponse {
        all_companies,
        company_ids,
        consistency_token,
    }))
}

pub async fn lookup_users(
    rbac: &Rbac,
    request: Request<proto::LookupUsersRequest>,
) -> Answer<proto::LookupUsersResponse> {
    let principal = identity::principal(&request)?;
    let body = request.get_ref();
    let mut fields = Fields::default();
    let lookup = UserLookup {
        tenant_id: fields.id("tenant_id", &body.tenant_id),
        permission: fields.permission("permission", &body.permission),
        company_id: fields.optional_id("company_id", &body.company_id),
        page: fields.page(body.page_size, &body.page_token),
        consistency: fields.rbac_consistency(body.consistency.as_ref()),
    };
    fields.finish()?;
    let (users, next_page_token, consistency_token) = rbac.lookup_users(principal, lookup).await?;
    Ok(Response::new(proto::LookupUsersResponse {
        user_ids: users.iter().map(|id| id.to_string()).collect(),
        next_page_token,
        consistency_token,
    }))
}

pub async fn register_permissions(
    rbac: &Rbac,
    request: Request<proto::RegisterPermissionsRequest>,
) -> Answer<proto::RegisterPermissionsResponse> {
    let principal = identity::principal(&request)?;
    let body = request.get_ref();
    let mut fields = Fields::default();
    let module_id = fields.module_id("module_id", &body.module_id);
    if body.permissions.is_empty() {
        fields.violation("permissions", "must have at least 1 element");
    }
    let namespace = format!("{module_id}:");
    let mut declarations: Vec<Declaration> = Vec::new();
    for (index, declaration) in fields
        .bounded("permissions", &body.permissions, MAX_DECLARATIONS)
        .iter()
        .enumerate()
    {
        let field = format!("permissions[{index}]");
        let name = fields.permission(&format!("{field}.name"), &declaration.name);
        if !module_id.is_empty() && !name.is_empty() && !name.starts_with(&namespace) {
            fields.violation(
                &format!("{field}.name"),
                "must lie in the module_id namespace",
            );
        }
        if declarations.iter().any(|seen| seen.name == name) && !name.is_empty() {
            fields.violation(&format!("{field}.name"), "is declared twice");
        }
        let description = fields.text(
            &format!("{field}.description"),
            &declaration.description,
            MAX_PERMISSION_DESCRIPTION,
        );
        declarations.push(Declaration { name, description });
    }
    fields.finish()?;
    let stored = rbac
        .register_permissions(principal, module_id, declarations)
        .await?;
    Ok(Response::new(proto::RegisterPermissionsResponse {
        permissions: stored.into_iter().map(permission_to_proto).collect(),
    }))
}

/// The name a permission page starts after, from its opaque token.
fn name_after(fields: &mut Fields, page_token: &str) -> Option<String> {
    if page_token.is_empty() {
        return None;
    }
    let name = (page_token.len() <= 2 * MAX_PERMISSION_LENGTH)
        .then(|| hex::decode(page_token).ok())
        .flatten()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|name| plinth_platform::permission::check_permission(name).is_ok());
    if name.is_none() {
        fields.violation("page_token", "is not a token from a previous response");
    }
    name
}

pub async fn list_permissions(
    rbac: &Rbac,
    request: Request<proto::ListPermissionsRequest>,
) -> Answer<proto::ListPermissionsResponse> {
    let principal = identity::principal(&request)?;
    let body = request.get_ref();
    let mut fields = Fields::default();
    let module_id =
        (!body.module_id.is_empty()).then(|| fields.module_id("module_id", &body.module_id));
    let name_prefix = fields.prefix("name_prefix", &body.name_prefix);
    // Names, not ids, mark the page: only the size is read the common way.
    let size = fields.page(body.page_size, "").size;
    let after = name_after(&mut fields, &body.page_token);
    fields.finish()?;
    let listing = PermissionListing {
        filter: PermissionFilter {
            module_id,
            name_prefix,
            after,
        },
        size,
    };
    let (permissions, next) = rbac.list_permissions(principal, listing).await?;
    Ok(Response::new(proto::ListPermissionsResponse {
        permissions: permissions.into_iter().map(permission_to_proto).collect(),
        next_page_token: next.map(hex::encode).unwrap_or_default(),
    }))
}
