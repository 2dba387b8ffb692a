//! Signup: a tenant, its tenant-admin role, its first admin and the modules
//! of its industry template (asked before), in one transaction.

use plinth_platform::{
    error::ApiError,
    identity::{Principal, PrincipalKind},
    store::{
        tenant_modules::TenantModuleRecord,
        tenants::{self, TenantRecord, TenantStatus},
        users,
    },
};
use uuid::Uuid;

use super::{Tenants, lifecycle::code_taken, tenant_event};
use crate::{
    access::Scope,
    auth::{
        throttle::Throttle,
        users::{UserInput, new_user, user_event},
    },
    permissions::TENANT_SIGNUP,
    rbac::seed_tenant,
    templates::enablement_of,
};

#[derive(Debug, Clone)]
pub struct SignUp {
    pub tenant_code: String,
    pub tenant_name: String,
    pub admin: UserInput,
    /// An industry template's code and the optional modules chosen.
    pub template: Option<(String, Vec<String>)>,
}

/// A signed-up tenant.
pub struct SignedUp {
    pub tenant: TenantRecord,
    pub admin_user_id: Uuid,
    /// The modules its template enabled, with the version each runs.
    pub modules: Vec<(TenantModuleRecord, String)>,
}

/// Signup by callers without credentials.
pub struct OpenSignup {
    /// Whether configuration allows it at all.
    pub allowed: bool,
    /// Each signup counts; past the free ones a peer waits ever longer.
    pub per_peer: Throttle,
}

/// Anonymous signups a peer address gets before it must wait.
pub const FREE_SIGNUPS_PER_PEER: u32 = 5;

impl Tenants {
    /// Creates a tenant with its first admin. Anonymous callers may sign up
    /// only where configuration allows it, and are throttled per peer.
    pub async fn sign_up(
        &self,
        principal: &Principal,
        sign_up: SignUp,
    ) -> Result<SignedUp, ApiError> {
        if principal.kind() == PrincipalKind::Anonymous {
            self.admit_anonymous_signup(principal).await?;
        } else {
            self.access
                .require(principal, TENANT_SIGNUP, Scope::platform())
                .await?;
        }
        let mut tenant = TenantRecord::new(
            sign_up.tenant_code,
            sign_up.tenant_name,
            TenantStatus::Active,
        );
        let prepared = match &sign_up.template {
            Some((code, optional)) => {
                let template = self.templates.active(code).await?;
                let command = enablement_of(&template, tenant.id, optional)?;
                tenant.industry = code.clone();
                Some(
                    self.enablements
                        .prepare_new_tenant(principal, &tenant, &command)
                        .await?,
                )
            }
            None => None,
        };
        let admin = new_user(&self.passwords, tenant.id, &tenant.code, sign_up.admin).await?;
        let mut tx = self.store.begin().await?;
        let created =
            tenant_event(principal, "tenant.created", &tenant).with_details(serde_json::json!({
                "code": tenant.code,
                "signup": true,
                "industry": tenant.industry,
            }));
        tenants::insert(&mut tx, &tenant, created)
            .await
            .map_err(code_taken)?;
        users::insert(
            &mut tx,
            &admin,
            user_event(principal, "auth.user.created", &admin.user),
        )
        .await?;
        seed_tenant(&mut tx, principal, &tenant, Some(admin.user.id)).await?;
        let written = match prepared {
            Some(prepared) => Some(
                self.enablements
                    .write_prepared(&mut tx, principal, tenant.id, prepared)
                    .await?,
            ),
            None => None,
        };
        tx.commit().await?;
        let modules = match written {
            Some((version, rbac_version, modules)) => {
                self.enablements
                    .published(tenant.id, version, rbac_version)
                    .await;
                modules
            }
            None => Vec::new(),
        };
        Ok(SignedUp {
            admin_user_id: admin.user.id,
            tenant,
            modules,
        })
    }

    async fn admit_anonymous_signup(&self, principal: &Principal) -> Result<(), ApiError> {
        if !self.open_signup.allowed {
            return Err(ApiError::PermissionDenied {
                permission: TENANT_SIGNUP.name.to_owned(),
            });
        }
        let peer = principal
            .peer_address
            .map(|address| address.ip().to_string())
            .unwrap_or_default();
        if let Err(retry_after) = self.open_signup.per_peer.check(&peer).await {
            return Err(ApiError::RateLimited {
                scope: "peer",
                retry_after,
            });
        }
        self.open_signup.per_peer.count(&peer).await;
        Ok(())
    }
}
