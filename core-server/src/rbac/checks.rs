//! The questions modules ask: may this user do this (here)? What may it do?
//! Where may it? Who may? A user may ask about itself; others need
//! `plinth:rbac:check` in the tenant.

use std::collections::BTreeSet;

use plinth_platform::{
    clock,
    error::ApiError,
    identity::Principal,
    permission::Grant,
    store::{
        rbac::{BindingScope, HeldBinding},
        tenants::PLATFORM_TENANT_ID,
        users::{UserFilter, UserStatus},
    },
};
use uuid::Uuid;

use super::{Consistency, Rbac, VersionToken, grants::Source};
use crate::{
    access::{Owner, Scope},
    listing::PageRequest,
    permissions::{MEMBERSHIP, RBAC_CHECK},
};

/// Whose permissions a question is about.
#[derive(Debug, Clone, Copy)]
pub struct Subject {
    pub tenant_id: Uuid,
    /// `None`: the user of the caller's bearer token.
    pub user_id: Option<Uuid>,
}

/// One permission to check, maybe in one company.
#[derive(Debug, Clone)]
pub struct CheckItem {
    pub permission: String,
    pub company_id: Option<Uuid>,
}

/// The answer to one [`CheckItem`].
#[derive(Debug, Clone)]
pub struct Checked {
    pub allowed: bool,
    /// The most specific grant that allowed it, when asked.
    pub granted_by: Option<Source>,
    /// For a role's grant: the binding of that role.
    pub binding: Option<HeldBinding>,
}

/// Where a user holds a permission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompanyLookup {
    /// Tenant-wide: every company.
    All,
    Some(BTreeSet<Uuid>),
}

/// Who holds a permission.
#[derive(Debug, Clone)]
pub struct UserLookup {
    pub tenant_id: Uuid,
    pub permission: String,
    pub company_id: Option<Uuid>,
    pub page: PageRequest,
    pub consistency: Consistency,
}

/// Whether every member of the tenant holds the permission.
fn held_by_membership(tenant_id: Uuid, permission: &str) -> bool {
    MEMBERSHIP.iter().any(|held| held.name == permission)
        || (tenant_id == PLATFORM_TENANT_ID && permission.starts_with("plinth:"))
}

impl Rbac {
    /// The binding through which the user holds `role_id` in `scope`, for
    /// an explanation (read only when one is asked for).
    async fn binding_of(
        &self,
        tenant_id: Uuid,
        user_id: Uuid,
        scope: BindingScope,
        role_id: Uuid,
    ) -> Result<Option<HeldBinding>, ApiError> {
        let read = self
            .store
            .rbac
            .user_bindings(tenant_id, user_id, scope, clock::now())
            .await?;
        Ok(read.and_then(|read| {
            read.bindings
                .into_iter()
                .find(|binding| binding.role_id == role_id)
        }))
    }

    /// The user a question is about, once the caller may ask about it.
    async fn subject(
        &self,
        principal: &Principal,
        subject: Subject,
        company_id: Option<Uuid>,
    ) -> Result<Uuid, ApiError> {
        let user_id = match (subject.user_id, &principal.user) {
            (Some(user_id), _) => user_id,
            (None, Some(user)) => user.user_id,
            (None, None) => {
                return Err(ApiError::invalid_field(
                    "user_id",
                    "is required without a bearer token",
                ));
            }
        };
        let scope = Scope::tenant(subject.tenant_id)
            .in_company(company_id)
            .owned_by(Owner::User(user_id));
        self.access
            .require_visible(principal, RBAC_CHECK, scope, "user")
            .await?;
        Ok(user_id)
    }

    /// Answers each item (saying why only when `explain`); the token
    /// covers them all (the oldest version any of them was answered at).
    pub async fn check(
        &self,
        principal: &Principal,
        subject: Subject,
        items: &[CheckItem],
        consistency: Consistency,
        explain: bool,
    ) -> Result<(Vec<Checked>, String), ApiError> {
        let tenant_id = subject.tenant_id;
        let freshness = consistency.freshness(tenant_id, "consistency.at_least_as_fresh")?;
        let user_id = self.subject(principal, subject, None).await?;
        for item in items {
            self.declarations.ensure_declared(&item.permission).await?;
        }
        let mut answers = Vec::with_capacity(items.len());
        let mut version = i64::MAX;
        for item in items {
            let scope = item
                .company_id
                .map_or(BindingScope::Tenant, BindingScope::Company);
            let effective = self
                .grants
                .effective(tenant_id, user_id, scope, freshness)
                .await?;
            version = version.min(effective.version);
            let found = effective.find(&item.permission);
            let granted_by = found.filter(|_| explain).cloned();
            let binding = match &granted_by {
                Some(Source::Role { role_id, .. }) => {
                    self.binding_of(tenant_id, user_id, scope, *role_id).await?
                }
                _ => None,
            };
            answers.push(Checked {
                allowed: found.is_some(),
                granted_by,
                binding,
            });
        }
        let token = VersionToken::rbac(tenant_id, version).encode();
        Ok((answers, token))
    }

    /// Every grant the user holds, sorted.
    pub async fn user_permissions(
        &self,
        principal: &Principal,
        subject: Subject,
        company_id: Option<Uuid>,
        consistency: Consistency,
    ) -> Result<(Vec<String>, String), ApiError> {
        let tenant_id = subject.tenant_id;
        let freshness = consistency.freshness(tenant_id, "consistency.at_least_as_fresh")?;
        let user_id = self.subject(principal, subject, company_id).await?;
        let scope = company_id.map_or(BindingScope::Tenant, BindingScope::Company);
        let effective = self
            .grants
            .effective(tenant_id, user_id, scope, freshness)
            .await?;
        let grants = effective.role_set.listing.clone();
        let token = VersionToken::rbac(tenant_id, effective.version);
        Ok((grants, token.encode()))
    }

    /// The companies where the user holds the permission, read from the
    /// store (always the latest).
    pub async fn lookup_companies(
        &self,
        principal: &Principal,
        subject: Subject,
        permission: &str,
        consistency: Consistency,
    ) -> Result<(CompanyLookup, String), ApiError> {
        let tenant_id = subject.tenant_id;
        consistency.freshness(tenant_id, "consistency.at_least_as_fresh")?;
        let user_id = self.subject(principal, subject, None).await?;
        self.declarations.ensure_declared(permission).await?;
        let read = self
            .store
            .rbac
            .user_bindings(tenant_id, user_id, BindingScope::Every, clock::now())
            .await?
            .ok_or(ApiError::NotFound {
                resource_type: "user",
            })?;
        let token = VersionToken::rbac(tenant_id, read.version).encode();
        if !read.user_active {
            return Ok((CompanyLookup::Some(BTreeSet::new()), token));
        }
        if held_by_membership(tenant_id, permission) {
            return Ok((CompanyLookup::All, token));
        }
        let roles = self.grants.roles(tenant_id, read.version).await?;
        let mut companies = BTreeSet::new();
        for binding in &read.bindings {
            if roles
                .role(binding.role_id)
                .is_some_and(|role| role.covers(permission))
            {
                match binding.company_id {
                    None => return Ok((CompanyLookup::All, token)),
                    Some(company_id) => {
                        companies.insert(company_id);
                    }
                }
            }
        }
        Ok((CompanyLookup::Some(companies), token))
    }

    /// Active users holding the permission (tenant-wide, or in the
    /// company), by id; read from the store.
    pub async fn lookup_users(
        &self,
        principal: &Principal,
        lookup: UserLookup,
    ) -> Result<(Vec<Uuid>, String, String), ApiError> {
        let UserLookup {
            tenant_id,
            permission,
            company_id,
            page,
            consistency,
        } = lookup;
        consistency.freshness(tenant_id, "consistency.at_least_as_fresh")?;
        let scope = Scope::tenant(tenant_id).in_company(company_id);
        self.access
            .require_visible(principal, RBAC_CHECK, scope, "tenant")
            .await?;
        self.declarations.ensure_declared(&permission).await?;
        if let Some(company_id) = company_id {
            let company = self.store.companies.get_company(company_id).await?;
            if company.is_none_or(|company| company.tenant_id != tenant_id) {
                return Err(ApiError::NotFound {
                    resource_type: "company",
                });
            }
        }
        // The version first: what is read after it is at least as new.
        let version = self
            .store
            .rbac
            .rbac_version(tenant_id)
            .await?
            .ok_or(ApiError::NotFound {
                resource_type: "tenant",
            })?;
        let users = if held_by_membership(tenant_id, &permission) {
            let filter = UserFilter {
                status: Some(UserStatus::Active),
                email_prefix: None,
            };
            self.store
                .users
                .list_users(tenant_id, &filter, page.store_page())
                .await?
                .into_iter()
                .map(|user| user.id)
                .collect()
        } else {
            let [resource, namespace, everything] = Grant::wildcards_over(&permission);
            let grants = [permission, resource, namespace, everything];
            self.store
                .rbac
                .users_granted(
                    tenant_id,
                    &grants,
                    company_id,
                    clock::now(),
                    page.store_page(),
                )
                .await?
        };
        let (users, next) = page.finish(users, |id| *id);
        let token = VersionToken::rbac(tenant_id, version).encode();
        Ok((users, next, token))
    }
}
