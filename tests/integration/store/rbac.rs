//! Roles and bindings, as far as the core uses them before RBAC.

use plinth_platform::{
    clock,
    store::{
        Store,
        rbac::{self, RoleBinding, RoleRecord, TENANT_ADMIN_ROLE},
    },
};
use plinth_tests::Backend;
use uuid::Uuid;

use super::{committed, event, events_of, fresh_store, stored_tenant, stored_user};

crate::on_both_backends!(
    a_tenant_wide_binding_to_the_admin_role_makes_a_tenant_admin,
    a_company_binding_or_another_role_does_not,
);

fn role(tenant_id: Uuid, key: &str, system: bool) -> RoleRecord {
    let now = clock::now();
    RoleRecord {
        id: Uuid::now_v7(),
        tenant_id,
        key: key.to_owned(),
        display_name: key.to_owned(),
        description: String::new(),
        system,
        permissions: vec!["plinth:*".to_owned()],
        etag: "1".to_owned(),
        created_at: now,
        updated_at: now,
    }
}

async fn bind(store: &Store, role: &RoleRecord, user_id: Uuid, company_id: Option<Uuid>) {
    let binding = RoleBinding {
        id: Uuid::now_v7(),
        tenant_id: role.tenant_id,
        user_id,
        role_id: role.id,
        company_id,
        created_at: clock::now(),
    };
    committed(store, async |tx| {
        rbac::bind(tx, &binding, event("rbac.role.bound", Some(role.tenant_id))).await
    })
    .await
    .unwrap();
}

async fn stored_role(store: &Store, role: &RoleRecord) {
    committed(store, async |tx| {
        rbac::insert_role(tx, role, event("rbac.role.created", Some(role.tenant_id))).await
    })
    .await
    .unwrap();
}

async fn a_tenant_wide_binding_to_the_admin_role_makes_a_tenant_admin(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let acme = stored_tenant(&store, "acme").await;
    let user = stored_user(&store, acme.id, "ada@acme.example").await.user;
    let admin = role(acme.id, TENANT_ADMIN_ROLE, true);
    stored_role(&store, &admin).await;
    assert!(!store.rbac.is_tenant_admin(user.id).await.unwrap());

    bind(&store, &admin, user.id, None).await;

    assert!(store.rbac.is_tenant_admin(user.id).await.unwrap());
    assert_eq!(events_of(&store, &acme.id.to_string()).await.len(), 4);
}

async fn a_company_binding_or_another_role_does_not(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let acme = stored_tenant(&store, "acme").await;
    let user = stored_user(&store, acme.id, "ada@acme.example").await.user;
    let admin = role(acme.id, TENANT_ADMIN_ROLE, true);
    let lookalike = role(acme.id, "admins", false);
    stored_role(&store, &admin).await;
    stored_role(&store, &lookalike).await;

    bind(&store, &admin, user.id, Some(Uuid::now_v7())).await;
    bind(&store, &lookalike, user.id, None).await;

    assert!(!store.rbac.is_tenant_admin(user.id).await.unwrap());
}
