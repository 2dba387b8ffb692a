//! Roles, bindings, grants and declarations in the store.

use chrono::Duration;
use plinth_platform::{
    clock,
    store::{
        Reference, Store, StoreError,
        companies::{self, CompanyRecord},
        permissions::{self, PermissionRecord},
        rbac::{
            self, BindingScope, Holder, MAX_HOLDERS_READ, RoleBinding, RoleRecord,
            TENANT_ADMIN_ROLE,
        },
    },
};
use plinth_tests::Backend;
use uuid::Uuid;

use super::{committed, company_record, event, fresh_store, stored_tenant, stored_user};

crate::on_both_backends!(
    a_binding_across_tenants_is_refused_by_the_database,
    bindings_in_a_scope_skip_expired_and_other_company_ones,
    held_roles_of_many_holders_answer_each_in_the_order_asked,
    users_granted_finds_holders_through_wildcards_and_ancestors,
    every_rbac_write_can_bump_the_tenant_version,
    permanent_admins_are_counted_without_the_excluded_binding_or_user,
    declarations_are_upserted_and_found_by_prefix,
);

fn role(tenant_id: Uuid, key: &str, permissions: &[&str], parents: &[&RoleRecord]) -> RoleRecord {
    let now = clock::now();
    RoleRecord {
        id: Uuid::now_v7(),
        tenant_id,
        key: key.to_owned(),
        display_name: key.to_owned(),
        description: String::new(),
        system: key == TENANT_ADMIN_ROLE,
        permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
        parent_role_ids: parents.iter().map(|parent| parent.id).collect(),
        etag: "1".to_owned(),
        created_at: now,
        updated_at: now,
    }
}

fn binding(role: &RoleRecord, user_id: Uuid, company_id: Option<Uuid>) -> RoleBinding {
    RoleBinding {
        id: Uuid::now_v7(),
        tenant_id: role.tenant_id,
        user_id,
        role_id: role.id,
        company_id,
        created_at: clock::now(),
        expires_at: None,
    }
}

async fn bind(store: &Store, binding: &RoleBinding) -> Result<(), StoreError> {
    committed(store, async |tx| {
        rbac::bind(
            tx,
            binding,
            event("rbac.role.bound", Some(binding.tenant_id)),
        )
        .await
    })
    .await
}

async fn stored_role(store: &Store, role: &RoleRecord) {
    committed(store, async |tx| {
        rbac::insert_role(tx, role, event("rbac.role.created", Some(role.tenant_id))).await
    })
    .await
    .unwrap();
}

async fn stored_company(store: &Store, tenant_id: Uuid, code: &str) -> CompanyRecord {
    let company = company_record(tenant_id, code);
    committed(store, async |tx| {
        companies::insert(
            tx,
            &company,
            event("tenant.company.created", Some(tenant_id)),
        )
        .await
    })
    .await
    .unwrap();
    company
}

async fn a_binding_across_tenants_is_refused_by_the_database(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let acme = stored_tenant(&store, "acme").await;
    let globex = stored_tenant(&store, "globex").await;
    let acme_user = stored_user(&store, acme.id, "ada@acme.example").await.user;
    let globex_user = stored_user(&store, globex.id, "bob@globex.example")
        .await
        .user;
    let globex_company = stored_company(&store, globex.id, "hq").await;
    let acme_role = role(acme.id, "clerk", &["plinth:tenant:read"], &[]);
    stored_role(&store, &acme_role).await;

    let foreign_user = bind(&store, &binding(&acme_role, globex_user.id, None)).await;
    let foreign_company = bind(
        &store,
        &binding(&acme_role, acme_user.id, Some(globex_company.id)),
    )
    .await;
    let mut foreign_tenant = binding(&acme_role, globex_user.id, None);
    foreign_tenant.tenant_id = globex.id;
    let foreign_role = bind(&store, &foreign_tenant).await;

    for refused in [foreign_user, foreign_company, foreign_role] {
        assert!(
            matches!(refused, Err(StoreError::MissingReference(_))),
            "{refused:?}"
        );
    }
    let parent_elsewhere = role(globex.id, "child", &[], &[&acme_role]);
    let refused = committed(&store, async |tx| {
        rbac::insert_role(tx, &parent_elsewhere, event("rbac.role.created", None)).await
    })
    .await;
    assert!(matches!(refused, Err(StoreError::MissingReference(_))));
    if backend == Backend::Postgres {
        let refused = bind(&store, &binding(&acme_role, globex_user.id, None)).await;
        assert!(matches!(
            refused,
            Err(StoreError::MissingReference(Reference::User))
        ));
    }
}

async fn bindings_in_a_scope_skip_expired_and_other_company_ones(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let acme = stored_tenant(&store, "acme").await;
    let user = stored_user(&store, acme.id, "ada@acme.example").await.user;
    let north = stored_company(&store, acme.id, "north").await;
    let south = stored_company(&store, acme.id, "south").await;
    let viewer = role(acme.id, "viewer", &["inventory:item:read"], &[]);
    let clerk = role(acme.id, "clerk", &["inventory:item:write"], &[&viewer]);
    let approver = role(acme.id, "approver", &["finance:invoice:approve"], &[]);
    let auditor = role(acme.id, "auditor", &["audit:log:read"], &[]);
    for role in [&viewer, &clerk, &approver, &auditor] {
        stored_role(&store, role).await;
    }
    bind(&store, &binding(&clerk, user.id, None)).await.unwrap();
    bind(&store, &binding(&approver, user.id, Some(north.id)))
        .await
        .unwrap();
    let mut expired = binding(&auditor, user.id, None);
    expired.expires_at = Some(clock::now() + Duration::milliseconds(50));
    bind(&store, &expired).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(60)).await;

    let bound = |scope| {
        let store = store.clone();
        async move {
            let read = store
                .rbac
                .user_bindings(acme.id, user.id, scope, clock::now())
                .await
                .unwrap()
                .unwrap();
            let mut roles: Vec<Uuid> = read.bindings.iter().map(|b| b.role_id).collect();
            roles.sort();
            roles
        }
    };
    let sorted = |mut ids: Vec<Uuid>| {
        ids.sort();
        ids
    };
    assert_eq!(bound(BindingScope::Tenant).await, [clerk.id]);
    assert_eq!(
        bound(BindingScope::Company(north.id)).await,
        sorted(vec![clerk.id, approver.id])
    );
    assert_eq!(bound(BindingScope::Company(south.id)).await, [clerk.id]);
    assert_eq!(
        bound(BindingScope::Every).await,
        sorted(vec![clerk.id, approver.id])
    );
    let foreign_company = store
        .rbac
        .user_bindings(
            acme.id,
            user.id,
            BindingScope::Company(Uuid::now_v7()),
            clock::now(),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(!foreign_company.company_found);
    let stranger = store
        .rbac
        .user_bindings(Uuid::now_v7(), user.id, BindingScope::Tenant, clock::now())
        .await
        .unwrap();
    assert_eq!(stranger, None);
    let mut expiring = binding(&viewer, user.id, None);
    let expiry = clock::now() + Duration::days(1);
    expiring.expires_at = Some(expiry);
    bind(&store, &expiring).await.unwrap();
    let holder = Holder {
        tenant_id: acme.id,
        user_id: user.id,
        scope: BindingScope::Company(north.id),
    };
    let held = store
        .rbac
        .held_roles(&[holder], clock::now())
        .await
        .unwrap()[0]
        .clone()
        .unwrap();
    let mut role_ids = held.role_ids.clone();
    role_ids.sort();
    assert_eq!(role_ids, sorted(vec![approver.id, clerk.id, viewer.id]));
    let until = held.valid_until.expect("the viewer binding expires");
    assert!((until - expiry).abs() < Duration::milliseconds(1));
    let roles = store.rbac.tenant_roles(acme.id).await.unwrap();
    let stored_clerk = roles.iter().find(|role| role.id == clerk.id).unwrap();
    assert_eq!(stored_clerk.parent_role_ids, [viewer.id]);
    assert_eq!(stored_clerk.permissions, ["inventory:item:write"]);
}

async fn held_roles_of_many_holders_answer_each_in_the_order_asked(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let acme = stored_tenant(&store, "acme").await;
    let globex = stored_tenant(&store, "globex").await;
    let north = stored_company(&store, acme.id, "north").await;
    let viewer = role(acme.id, "viewer", &["inventory:item:read"], &[]);
    let approver = role(acme.id, "approver", &["finance:invoice:approve"], &[]);
    let outsider_role = role(globex.id, "viewer", &["inventory:item:read"], &[]);
    for role in [&viewer, &approver, &outsider_role] {
        stored_role(&store, role).await;
    }
    let ann = stored_user(&store, acme.id, "ann@acme.example").await.user;
    let bob = stored_user(&store, acme.id, "bob@acme.example").await.user;
    let outsider = stored_user(&store, globex.id, "eve@globex.example")
        .await
        .user;
    bind(&store, &binding(&viewer, ann.id, None)).await.unwrap();
    bind(&store, &binding(&approver, bob.id, Some(north.id)))
        .await
        .unwrap();
    bind(&store, &binding(&outsider_role, outsider.id, None))
        .await
        .unwrap();
    let holder = |tenant_id, user_id, scope| Holder {
        tenant_id,
        user_id,
        scope,
    };
    let asked = [
        holder(acme.id, bob.id, BindingScope::Company(north.id)),
        holder(acme.id, outsider.id, BindingScope::Tenant),
        holder(acme.id, ann.id, BindingScope::Company(Uuid::now_v7())),
        holder(globex.id, outsider.id, BindingScope::Every),
        holder(acme.id, bob.id, BindingScope::Tenant),
    ];
    let held = store.rbac.held_roles(&asked, clock::now()).await.unwrap();
    let summary: Vec<Option<(Vec<Uuid>, bool)>> = held
        .into_iter()
        .map(|held| held.map(|held| (held.role_ids, held.company_found)))
        .collect();
    assert_eq!(
        summary,
        [
            Some((vec![approver.id], true)),
            None,
            Some((vec![viewer.id], false)),
            Some((vec![outsider_role.id], true)),
            Some((vec![], true)),
        ]
    );
    let too_many = vec![asked[0]; MAX_HOLDERS_READ + 1];
    assert!(
        store
            .rbac
            .held_roles(&too_many, clock::now())
            .await
            .is_err()
    );
    assert!(
        store
            .rbac
            .held_roles(&[], clock::now())
            .await
            .unwrap()
            .is_empty()
    );
}

async fn users_granted_finds_holders_through_wildcards_and_ancestors(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let acme = stored_tenant(&store, "acme").await;
    let north = stored_company(&store, acme.id, "north").await;
    let base = role(acme.id, "base", &["inventory:*"], &[]);
    let child = role(acme.id, "child", &[], &[&base]);
    let other = role(acme.id, "other", &["finance:*"], &[]);
    for role in [&base, &child, &other] {
        stored_role(&store, role).await;
    }
    let through_parent = stored_user(&store, acme.id, "a@acme.example").await.user;
    let in_north = stored_user(&store, acme.id, "b@acme.example").await.user;
    let unrelated = stored_user(&store, acme.id, "c@acme.example").await.user;
    bind(&store, &binding(&child, through_parent.id, None))
        .await
        .unwrap();
    bind(&store, &binding(&base, in_north.id, Some(north.id)))
        .await
        .unwrap();
    bind(&store, &binding(&other, unrelated.id, None))
        .await
        .unwrap();
    let grants = [
        "inventory:item:read".to_owned(),
        "inventory:item:*".to_owned(),
        "inventory:*".to_owned(),
        "*".to_owned(),
    ];
    let page = plinth_platform::store::Page {
        after: None,
        limit: 10,
    };

    let tenant_wide = store
        .rbac
        .users_granted(acme.id, &grants, None, clock::now(), page)
        .await
        .unwrap();
    let in_company = store
        .rbac
        .users_granted(acme.id, &grants, Some(north.id), clock::now(), page)
        .await
        .unwrap();

    assert_eq!(tenant_wide, [through_parent.id]);
    assert_eq!(in_company, [through_parent.id, in_north.id]);
}

async fn every_rbac_write_can_bump_the_tenant_version(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let acme = stored_tenant(&store, "acme").await;
    assert_eq!(store.rbac.rbac_version(acme.id).await.unwrap(), Some(0));

    let first = committed(&store, async |tx| rbac::bump_version(tx, acme.id).await)
        .await
        .unwrap();
    let second = committed(&store, async |tx| rbac::bump_version(tx, acme.id).await)
        .await
        .unwrap();

    assert_eq!((first, second), (1, 2));
    assert_eq!(store.rbac.rbac_version(acme.id).await.unwrap(), Some(2));
    assert_eq!(store.rbac.rbac_version(Uuid::now_v7()).await.unwrap(), None);
}

async fn permanent_admins_are_counted_without_the_excluded_binding_or_user(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let acme = stored_tenant(&store, "acme").await;
    let admin_role = role(acme.id, TENANT_ADMIN_ROLE, &["*"], &[]);
    stored_role(&store, &admin_role).await;
    let ada = stored_user(&store, acme.id, "ada@acme.example").await.user;
    let bob = stored_user(&store, acme.id, "bob@acme.example").await.user;
    let ada_binding = binding(&admin_role, ada.id, None);
    bind(&store, &ada_binding).await.unwrap();
    let mut temporary = binding(&admin_role, bob.id, None);
    temporary.expires_at = Some(clock::now() + Duration::days(1));
    bind(&store, &temporary).await.unwrap();

    let count = |except_binding, except_user| {
        let store = store.clone();
        async move {
            committed(&store, async |tx| {
                rbac::count_permanent_admins(tx, acme.id, except_binding, except_user).await
            })
            .await
            .unwrap()
        }
    };
    assert_eq!(count(None, None).await, 1);
    assert_eq!(count(Some(ada_binding.id), None).await, 0);
    assert_eq!(count(None, Some(ada.id)).await, 0);
    assert_eq!(count(Some(temporary.id), Some(bob.id)).await, 1);
}

async fn declarations_are_upserted_and_found_by_prefix(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let declaration = |name: &str, description: &str| PermissionRecord {
        name: name.to_owned(),
        module_id: "inventory".to_owned(),
        description: description.to_owned(),
        created_at: clock::now(),
    };
    let declare = |records: Vec<PermissionRecord>| {
        let store = store.clone();
        async move {
            committed(&store, async |tx| {
                permissions::declare(tx, &records, event("rbac.permissions.declared", None)).await
            })
            .await
            .unwrap()
        }
    };
    declare(vec![declaration("inventory:item:read", "Read items")]).await;
    let again = declare(vec![declaration("inventory:item:read", "Read every item")]).await;

    assert_eq!(again[0].description, "Read every item");
    assert!(
        store
            .permissions
            .is_declared("inventory:item:read")
            .await
            .unwrap()
    );
    assert!(
        !store
            .permissions
            .is_declared("inventory:item:write")
            .await
            .unwrap()
    );
    assert!(
        store
            .permissions
            .any_declared_under("inventory:")
            .await
            .unwrap()
    );
    assert!(
        store
            .permissions
            .any_declared_under("inventory:item:")
            .await
            .unwrap()
    );
    assert!(
        !store
            .permissions
            .any_declared_under("inventory:stock:")
            .await
            .unwrap()
    );
    assert!(!store.permissions.any_declared_under("inv:").await.unwrap());
}
