//! Module isolation: a module key sees the tenants that hold its module
//! and no other, whatever it asks about them.

use plinth_api::{
    auth::v1::VerifyTokenRequest,
    tenant::v1::{
        GetTenantRequest, IsModuleEnabledRequest, ListCompaniesRequest, ResolveModuleConfigRequest,
        get_tenant_request,
    },
};
use plinth_tests::{Backend, Clients, Sandbox, module_key};
use tonic::Code;

use super::{disable, enable, in_catalog, module};
use crate::rbac::{check_request, tenant};

crate::on_both_backends!(a_module_key_sees_only_tenants_that_hold_its_module);

/// The code of each thing a module asks about a tenant (and one of its
/// users, by id and by token), in a fixed order.
async fn answers(crm: &mut Clients, tenant_id: &str, user_id: &str, token: &str) -> Vec<Code> {
    let code =
        |result: Result<(), tonic::Status>| result.err().map_or(Code::Ok, |status| status.code());
    vec![
        code(
            crm.tenants
                .get_tenant(GetTenantRequest {
                    key: Some(get_tenant_request::Key::Id(tenant_id.to_owned())),
                })
                .await
                .map(drop),
        ),
        code(
            crm.tenants
                .list_companies(ListCompaniesRequest {
                    tenant_id: tenant_id.to_owned(),
                    ..ListCompaniesRequest::default()
                })
                .await
                .map(drop),
        ),
        code(
            crm.rbac
                .check(check_request(tenant_id, user_id, "crm:lead:read", ""))
                .await
                .map(drop),
        ),
        code(
            crm.auth
                .verify_token(VerifyTokenRequest {
                    access_token: token.to_owned(),
                })
                .await
                .map(drop),
        ),
        code(
            crm.tenants
                .is_module_enabled(IsModuleEnabledRequest {
                    tenant_id: tenant_id.to_owned(),
                    module_id: "crm".to_owned(),
                    ..IsModuleEnabledRequest::default()
                })
                .await
                .map(drop),
        ),
        code(
            crm.tenants
                .resolve_module_config(ResolveModuleConfigRequest {
                    module_id: "crm".to_owned(),
                    tenant_id: tenant_id.to_owned(),
                    ..ResolveModuleConfigRequest::default()
                })
                .await
                .map(drop),
        ),
    ]
}

async fn a_module_key_sees_only_tenants_that_hold_its_module(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let crm_manifest = plinth_api::registry::v1::ModuleManifest {
        permissions: vec![plinth_api::registry::v1::ManifestPermission {
            name: "crm:lead:read".to_owned(),
            description: String::new(),
        }],
        ..module("crm", &[])
    };
    in_catalog(&sandbox, &[crm_manifest]).await;
    let mut acme = tenant(&sandbox, "acme").await;
    let globex = tenant(&sandbox, "globex").await;
    enable(&mut acme.admin.clients, &acme.id, &["crm"], false)
        .await
        .unwrap();
    let mut crm = sandbox.clients(&module_key(&sandbox, "crm").await).await;

    let in_acme = answers(
        &mut crm,
        &acme.id,
        &acme.admin.user_id,
        &acme.admin.access_token,
    )
    .await;
    let in_globex = answers(
        &mut crm,
        &globex.id,
        &globex.admin.user_id,
        &globex.admin.access_token,
    )
    .await;
    disable(&mut acme.admin.clients, &acme.id, "crm", false)
        .await
        .unwrap();
    let after_disabling = answers(
        &mut crm,
        &acme.id,
        &acme.admin.user_id,
        &acme.admin.access_token,
    )
    .await;

    assert_eq!(in_acme, [Code::Ok; 6]);
    let hidden = [
        Code::NotFound,
        Code::PermissionDenied,
        Code::NotFound,
        Code::PermissionDenied,
        Code::NotFound,
        Code::NotFound,
    ];
    assert_eq!(in_globex, hidden);
    assert_eq!(after_disabling, hidden);
}
