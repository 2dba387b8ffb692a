//! The RBAC population the bench checks against: many users, each bound to
//! many roles (some per company, the roles inheriting from one another),
//! written straight into the server's store in large transactions, as a
//! bulk import would.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use plinth_api::rbac::v1::{
    CheckBatchRequest, CheckItem, CheckRequest, ListUserPermissionsRequest,
    rbac_service_client::RbacServiceClient,
};
use plinth_platform::{
    audit::{Actor, AuditDraft},
    clock,
    store::{
        Store, StoreError,
        companies::{self, CompanyRecord, CompanyStatus},
        permissions::{self, PermissionRecord},
        rbac::{self, RoleBinding, RoleRecord},
        users::{self, NewUser, UserRecord, UserStatus},
    },
};
use tonic::transport::Channel;
use uuid::Uuid;

use super::{
    Load, Measurement, ServerProcess,
    report::{CHECK_BATCH, CHECK_CACHED, CHECK_COMPILED, LIST_PERMISSIONS},
};
use crate::Credentials;

/// Users whose effective grants stay cached through a measurement.
const HOT_USERS: usize = 100;

/// The namespace of the bench's permissions.
pub const MODULE: &str = "bench";
/// Companies of the tenant; company bindings spread over them.
pub const COMPANIES: usize = 8;
/// Roles, each granting two permissions of its own resource; every fifth
/// starts a chain of parents.
pub const ROLES: usize = 20;
/// Users written per transaction.
const USERS_PER_TRANSACTION: usize = 500;

/// What the bench checks: ids as the API spells them.
pub struct Population {
    pub user_ids: Vec<String>,
    pub company_ids: Vec<String>,
}

/// `bench:res<i>:<action>`.
pub fn permission(resource: usize, action: &str) -> String {
    format!("{MODULE}:res{resource}:{action}")
}

fn draft(action: &str, tenant_id: Option<Uuid>) -> AuditDraft {
    AuditDraft::new(Actor::default(), action, "bench", "import").in_tenant(tenant_id)
}

/// Declares the permissions, then writes the companies, the roles and
/// `users` users each bound to `bindings_per_user` roles (at most [`ROLES`];
/// the last two per company), and bumps the tenant's RBAC version.
pub async fn populate(
    store: &Store,
    tenant_id: Uuid,
    users: usize,
    bindings_per_user: usize,
) -> Result<Population, StoreError> {
    let now = clock::now();
    let declarations: Vec<PermissionRecord> = (0..ROLES)
        .flat_map(|resource| ["read", "write"].map(|action| permission(resource, action)))
        .map(|name| PermissionRecord {
            name,
            module_id: MODULE.to_owned(),
            description: String::new(),
            created_at: now,
        })
        .collect();
    let mut tx = store.begin().await?;
    permissions::declare(
        &mut tx,
        &declarations,
        draft("rbac.permissions.declared", None),
    )
    .await?;
    let mut company_ids = Vec::with_capacity(COMPANIES);
    for index in 0..COMPANIES {
        let company = CompanyRecord {
            id: Uuid::now_v7(),
            tenant_id,
            code: format!("company-{index}"),
            name: format!("Company {index}"),
            status: CompanyStatus::Active,
            created_at: now,
            updated_at: now,
        };
        companies::insert(
            &mut tx,
            &company,
            draft("tenant.company.created", Some(tenant_id)),
        )
        .await?;
        company_ids.push(company.id);
    }
    let mut roles: Vec<RoleRecord> = Vec::with_capacity(ROLES);
    for index in 0..ROLES {
        let parent = roles.last().filter(|_| index % 5 != 0).map(|role| role.id);
        let role = RoleRecord {
            id: Uuid::now_v7(),
            tenant_id,
            key: format!("role-{index}"),
            display_name: format!("Role {index}"),
            description: String::new(),
            system: false,
            permissions: vec![permission(index, "read"), permission(index, "write")],
            parent_role_ids: parent.into_iter().collect(),
            etag: "1".to_owned(),
            created_at: now,
            updated_at: now,
        };
        rbac::insert_role(&mut tx, &role, draft("rbac.role.created", Some(tenant_id))).await?;
        roles.push(role);
    }
    tx.commit().await?;

    let bound = bindings_per_user.min(ROLES);
    let mut user_ids = Vec::with_capacity(users);
    for chunk_start in (0..users).step_by(USERS_PER_TRANSACTION) {
        let mut tx = store.begin().await?;
        for index in chunk_start..(chunk_start + USERS_PER_TRANSACTION).min(users) {
            let user = NewUser {
                user: UserRecord {
                    id: Uuid::now_v7(),
                    tenant_id,
                    email: format!("user{index}@bench.example"),
                    display_name: format!("User {index}"),
                    status: UserStatus::Active,
                    created_at: now,
                    updated_at: now,
                    last_login_at: None,
                },
                // Never used to log in.
                password_hash: "$argon2id$v=19$m=19456,t=2,p=1$YmVuY2hzYWx0$YmVuY2hoYXNo"
                    .to_owned(),
            };
            users::insert(&mut tx, &user, draft("auth.user.created", Some(tenant_id))).await?;
            for (position, role) in roles.iter().take(bound).enumerate() {
                let company_id =
                    (position + 2 >= bound).then(|| company_ids[(index + position) % COMPANIES]);
                let binding = RoleBinding {
                    id: Uuid::now_v7(),
                    tenant_id,
                    user_id: user.user.id,
                    role_id: role.id,
                    company_id,
                    created_at: now,
                    expires_at: None,
                };
                rbac::bind(&mut tx, &binding, draft("rbac.role.bound", Some(tenant_id))).await?;
            }
            user_ids.push(user.user.id.to_string());
        }
        tx.commit().await?;
    }
    let mut tx = store.begin().await?;
    rbac::bump_version(&mut tx, tenant_id).await?;
    tx.commit().await?;
    Ok(Population {
        user_ids,
        company_ids: company_ids.iter().map(Uuid::to_string).collect(),
    })
}

/// Checks by the module key about users of the imported tenant: a hot set
/// whose grants stay compiled, and every (user, company) in turn, which the
/// server compiles from the store each time (the cycle outlasts the
/// compiled sets' lifetime): the cost of the first check after a change.
pub async fn measure(
    load: Load,
    core: &ServerProcess,
    channels: &[Channel],
    module_key: &str,
    tenant_id: &str,
    population: &Population,
) -> Vec<Measurement> {
    let key = Credentials::api_key(module_key);
    let tenant_id = tenant_id.to_owned();
    let users = Arc::new(population.user_ids.clone());
    let companies = Arc::new(population.company_ids.clone());
    let next = Arc::new(AtomicUsize::new(0));
    let client_of = |channel| RbacServiceClient::with_interceptor(channel, key.clone());
    let hot_user = {
        let (users, next) = (users.clone(), next.clone());
        move || users[next.fetch_add(1, Ordering::Relaxed) % HOT_USERS.min(users.len())].clone()
    };
    let check = {
        let tenant_id = tenant_id.clone();
        move |user_id: String, company_id: String| CheckRequest {
            tenant_id: tenant_id.clone(),
            user_id,
            permission: permission(3, "read"),
            company_id,
            ..CheckRequest::default()
        }
    };

    let cached = super::measure(CHECK_CACHED, core, channels, load, |channel| {
        let (client, hot_user, check) = (client_of(channel), hot_user.clone(), check.clone());
        move || {
            let mut client = client.clone();
            let request = check(hot_user(), String::new());
            async move { allowed(client.check(request).await?.into_inner().allowed) }
        }
    })
    .await;

    let batch = super::measure(CHECK_BATCH, core, channels, load, |channel| {
        let (client, hot_user, tenant_id) =
            (client_of(channel), hot_user.clone(), tenant_id.clone());
        move || {
            let mut client = client.clone();
            let request = CheckBatchRequest {
                tenant_id: tenant_id.clone(),
                user_id: hot_user(),
                items: (0..10)
                    .map(|resource| CheckItem {
                        permission: permission(resource, "write"),
                        company_id: String::new(),
                    })
                    .collect(),
                ..CheckBatchRequest::default()
            };
            async move { allowed(client.check_batch(request).await?.into_inner().all_allowed) }
        }
    })
    .await;

    let listing = super::measure(LIST_PERMISSIONS, core, channels, load, |channel| {
        let (client, hot_user, tenant_id) =
            (client_of(channel), hot_user.clone(), tenant_id.clone());
        move || {
            let mut client = client.clone();
            let request = ListUserPermissionsRequest {
                tenant_id: tenant_id.clone(),
                user_id: hot_user(),
                ..ListUserPermissionsRequest::default()
            };
            async move {
                client.list_user_permissions(request).await?;
                Ok(())
            }
        }
    })
    .await;

    let compiled = super::measure(CHECK_COMPILED, core, channels, load, |channel| {
        let (client, check) = (client_of(channel), check.clone());
        let (users, companies, next) = (users.clone(), companies.clone(), next.clone());
        move || {
            let mut client = client.clone();
            let turn = next.fetch_add(1, Ordering::Relaxed);
            let user_id = users[turn % users.len()].clone();
            let company_id = companies[(turn / users.len()) % companies.len()].clone();
            let request = check(user_id, company_id);
            async move { allowed(client.check(request).await?.into_inner().allowed) }
        }
    })
    .await;
    vec![cached, batch, listing, compiled]
}

/// A check the fixture grants that came back refused is a bench failure.
fn allowed(allowed: bool) -> Result<(), tonic::Status> {
    if allowed {
        Ok(())
    } else {
        Err(tonic::Status::internal("a granted permission was refused"))
    }
}
