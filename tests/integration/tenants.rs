//! TenantService: tenants, companies, limits and signup over real gRPC.

use plinth_api::tenant::v1::{
    CompanyCode, CreateCompanyRequest, CreateTenantRequest, GetCompanyRequest, GetTenantRequest,
    ListCompaniesRequest, ListTenantsRequest, SetTenantStatusRequest, SignupRequest, TenantLimits,
    TenantStatus, UpdateCompanyRequest, UpdateTenantRequest, get_company_request,
    get_tenant_request,
};
use plinth_platform::identity::api_keys::NewApiKey;
use plinth_tests::{
    Backend, Clients, Sandbox, all_at_once, assert_refusal, create_key, error_reason,
    violated_fields,
};
use tonic::Code;

crate::on_both_backends!(
    an_operator_creates_a_tenant_and_reads_it_by_id_and_code,
    a_tenant_code_is_unique,
    invalid_tenant_fields_are_all_reported,
    tenants_list_by_filter_and_page,
    tenant_status_follows_its_lifecycle,
    the_platform_tenant_cannot_be_suspended,
    deleting_a_tenant_hides_it_from_lists_and_keeps_its_code,
    the_company_limit_holds_under_concurrent_creation,
    company_codes_are_unique_within_a_tenant_only,
    a_module_key_cannot_create_tenants_and_the_refusal_is_audited,
    signup_creates_tenant_and_admin_when_open,
    anonymous_signup_is_refused_when_closed,
    anonymous_signups_are_rate_limited_per_peer,
);

pub async fn create_tenant(
    clients: &mut Clients,
    code: &str,
    limits: Option<TenantLimits>,
) -> plinth_api::tenant::v1::Tenant {
    creating(
        clients,
        CreateTenantRequest {
            limits,
            ..tenant_request(code)
        },
    )
    .await
    .unwrap()
}

fn tenant_request(code: &str) -> CreateTenantRequest {
    CreateTenantRequest {
        code: code.to_owned(),
        name: format!("Tenant {code}"),
        ..Default::default()
    }
}

async fn creating(
    clients: &mut Clients,
    request: CreateTenantRequest,
) -> Result<plinth_api::tenant::v1::Tenant, tonic::Status> {
    clients
        .tenants
        .create_tenant(request)
        .await
        .map(|response| response.into_inner().tenant.unwrap())
}

/// Asks for tenant `code`, for tests of refusals.
pub async fn try_create_tenant(
    clients: &mut Clients,
    code: &str,
) -> Result<plinth_api::tenant::v1::Tenant, tonic::Status> {
    creating(clients, tenant_request(code)).await
}

/// A tenant created in PROVISIONING.
pub async fn create_provisioning_tenant(
    clients: &mut Clients,
    code: &str,
) -> plinth_api::tenant::v1::Tenant {
    creating(
        clients,
        CreateTenantRequest {
            provisioning: true,
            ..tenant_request(code)
        },
    )
    .await
    .unwrap()
}

/// A tenant with limits, and the number of `attempts` creations in it,
/// started all at once, that succeeded; every other one met the limit.
pub async fn created_at_once<T, Create, Creation>(
    operator: &mut Clients,
    limits: TenantLimits,
    attempts: usize,
    create: Create,
) -> usize
where
    Create: Fn(Clients, String, usize) -> Creation,
    Creation: Future<Output = Result<T, tonic::Status>> + Send + 'static,
    T: Send + 'static,
{
    let tenant = create_tenant(operator, "acme", Some(limits)).await;
    create(operator.clone(), tenant.id.clone(), attempts)
        .await
        .expect("the first creation fits");
    let (created, refusals) = all_at_once(attempts, |index| {
        create(operator.clone(), tenant.id.clone(), index)
    })
    .await;
    for status in &refusals {
        assert_refusal(
            status,
            Code::FailedPrecondition,
            "ERROR_REASON_TENANT_LIMIT_REACHED",
        );
    }
    created
}

pub async fn create_company(
    clients: &mut Clients,
    tenant_id: &str,
    code: &str,
) -> Result<plinth_api::tenant::v1::Company, tonic::Status> {
    clients
        .tenants
        .create_company(CreateCompanyRequest {
            tenant_id: tenant_id.to_owned(),
            code: code.to_owned(),
            name: format!("Company {code}"),
        })
        .await
        .map(|response| response.into_inner().company.unwrap())
}

async fn an_operator_creates_a_tenant_and_reads_it_by_id_and_code(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;

    let created = create_tenant(&mut operator, "acme", None).await;

    assert_eq!(created.status(), TenantStatus::Active);
    for key in [
        get_tenant_request::Key::Id(created.id.clone()),
        get_tenant_request::Key::Code("acme".to_owned()),
    ] {
        let read = operator
            .tenants
            .get_tenant(GetTenantRequest { key: Some(key) })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(read.tenant.as_ref(), Some(&created));
    }
}

async fn a_tenant_code_is_unique(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;
    create_tenant(&mut operator, "acme", None).await;

    let status = try_create_tenant(&mut operator, "acme").await.unwrap_err();

    assert_refusal(&status, Code::AlreadyExists, "ERROR_REASON_ALREADY_EXISTS");
}

async fn invalid_tenant_fields_are_all_reported(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;

    let status = operator
        .tenants
        .create_tenant(CreateTenantRequest {
            code: "Not A Slug".to_owned(),
            name: "  ".to_owned(),
            limits: Some(TenantLimits {
                max_users: -1,
                max_companies: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&status),
        ["code", "name", "limits.max_users"]
    );
}

async fn tenants_list_by_filter_and_page(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;
    for code in ["shop-a", "shop-b", "shop-c", "mill-a"] {
        create_tenant(&mut operator, code, None).await;
    }

    let mut codes = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = operator
            .tenants
            .list_tenants(ListTenantsRequest {
                code_prefix: "shop-".to_owned(),
                page_size: 2,
                page_token: page_token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        codes.extend(page.tenants.into_iter().map(|tenant| tenant.code));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }

    assert_eq!(codes, ["shop-a", "shop-b", "shop-c"]);
    let bad_token = operator
        .tenants
        .list_tenants(ListTenantsRequest {
            page_token: "garbage".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&bad_token), ["page_token"]);
}

async fn set_status(
    operator: &mut Clients,
    id: &str,
    status: TenantStatus,
) -> Result<TenantStatus, tonic::Status> {
    operator
        .tenants
        .set_tenant_status(SetTenantStatusRequest {
            id: id.to_owned(),
            status: status.into(),
            reason: "test".to_owned(),
        })
        .await
        .map(|response| response.into_inner().tenant.unwrap().status())
}

async fn tenant_status_follows_its_lifecycle(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;
    let tenant = create_provisioning_tenant(&mut operator, "acme").await;
    assert_eq!(tenant.status(), TenantStatus::Provisioning);

    let skipping = set_status(&mut operator, &tenant.id, TenantStatus::Suspended)
        .await
        .unwrap_err();
    assert_eq!(skipping.code(), Code::FailedPrecondition);
    for next in [
        TenantStatus::Active,
        TenantStatus::Suspended,
        TenantStatus::Active,
        TenantStatus::Suspended,
        TenantStatus::Inactive,
    ] {
        assert_eq!(
            set_status(&mut operator, &tenant.id, next).await.unwrap(),
            next
        );
    }
    let reopening = set_status(&mut operator, &tenant.id, TenantStatus::Active)
        .await
        .unwrap_err();
    assert_eq!(reopening.code(), Code::FailedPrecondition);
}

async fn the_platform_tenant_cannot_be_suspended(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;
    let platform = operator
        .tenants
        .get_tenant(GetTenantRequest {
            key: Some(get_tenant_request::Key::Code("platform".to_owned())),
        })
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();

    let status = set_status(&mut operator, &platform.id, TenantStatus::Suspended)
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::FailedPrecondition);
}

async fn deleting_a_tenant_hides_it_from_lists_and_keeps_its_code(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;
    let tenant = create_tenant(&mut operator, "gone", None).await;

    operator
        .tenants
        .delete_tenant(plinth_api::tenant::v1::DeleteTenantRequest {
            id: tenant.id.clone(),
        })
        .await
        .unwrap();

    let listed = operator
        .tenants
        .list_tenants(ListTenantsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.tenants.iter().all(|listed| listed.id != tenant.id));
    let reuse = operator
        .tenants
        .create_tenant(CreateTenantRequest {
            code: "gone".to_owned(),
            name: "Again".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(reuse.code(), Code::AlreadyExists);
    let renamed = operator
        .tenants
        .update_tenant(UpdateTenantRequest {
            id: tenant.id,
            name: Some("Still here".to_owned()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renamed.tenant.unwrap().status(), TenantStatus::Deleted);
}

async fn the_company_limit_holds_under_concurrent_creation(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;
    let limits = TenantLimits {
        max_users: 0,
        max_companies: 3,
    };

    let created = created_at_once(
        &mut operator,
        limits,
        8,
        |mut clients, tenant_id, index| async move {
            create_company(&mut clients, &tenant_id, &format!("branch-{index}")).await
        },
    )
    .await;

    assert_eq!(created, 2, "exactly the two free places were taken");
}

async fn company_codes_are_unique_within_a_tenant_only(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;
    let acme = create_tenant(&mut operator, "acme", None).await;
    let globex = create_tenant(&mut operator, "globex", None).await;
    let hq = create_company(&mut operator, &acme.id, "hq").await.unwrap();
    create_company(&mut operator, &globex.id, "hq")
        .await
        .unwrap();

    let duplicate = create_company(&mut operator, &acme.id, "hq")
        .await
        .unwrap_err();
    assert_eq!(duplicate.code(), Code::AlreadyExists);

    let by_code = operator
        .tenants
        .get_company(GetCompanyRequest {
            key: Some(get_company_request::Key::Code(CompanyCode {
                tenant_id: acme.id.clone(),
                code: "hq".to_owned(),
            })),
        })
        .await
        .unwrap()
        .into_inner()
        .company
        .unwrap();
    assert_eq!(by_code, hq);
    let archived = operator
        .tenants
        .update_company(UpdateCompanyRequest {
            id: hq.id,
            status: Some(plinth_api::tenant::v1::CompanyStatus::Archived.into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .company
        .unwrap();
    assert_eq!(
        archived.status(),
        plinth_api::tenant::v1::CompanyStatus::Archived
    );
    let listed = operator
        .tenants
        .list_companies(ListCompaniesRequest {
            tenant_id: acme.id,
            status: plinth_api::tenant::v1::CompanyStatus::Active.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(listed.companies.is_empty());
}

async fn a_module_key_cannot_create_tenants_and_the_refusal_is_audited(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let module_key = create_key(
        &sandbox,
        NewApiKey {
            name: "finance".to_owned(),
            module_id: Some("finance".to_owned()),
            ..NewApiKey::default()
        },
    )
    .await;
    let mut module = sandbox.clients(&module_key.secret).await;

    let status = try_create_tenant(&mut module, "sneaky").await.unwrap_err();

    assert_refusal(
        &status,
        Code::PermissionDenied,
        "ERROR_REASON_PERMISSION_DENIED",
    );
    let store = sandbox.database.open_store().await;
    let platform_chain = store.audit.read_chain("platform", 1, 100).await.unwrap();
    let denial = platform_chain
        .iter()
        .find(|event| event.action == "access.denied")
        .expect("denial recorded");
    assert_eq!(denial.actor.module_id, "finance");
    assert_eq!(denial.resource_id, "plinth:tenant:create");
}

fn signup_request(code: &str) -> SignupRequest {
    SignupRequest {
        tenant_code: code.to_owned(),
        tenant_name: "Initech".to_owned(),
        admin_email: "Peter@Initech.example".to_owned(),
        admin_display_name: "Peter".to_owned(),
        admin_password: "tps reports are due friday".to_owned(),
        ..Default::default()
    }
}

async fn signup_creates_tenant_and_admin_when_open(backend: Backend) {
    let sandbox = Sandbox::start_with(backend, |config| config.open_signup = Some(true)).await;
    let mut anonymous = plinth_api::tenant::v1::tenant_service_client::TenantServiceClient::new(
        sandbox.channel().await,
    );

    let signed_up = anonymous
        .signup(signup_request("initech"))
        .await
        .unwrap()
        .into_inner();

    let tenant = signed_up.tenant.unwrap();
    assert_eq!(tenant.code, "initech");
    let mut operator = sandbox.operator().await;
    let admin = operator
        .auth
        .get_user(plinth_api::auth::v1::GetUserRequest {
            id: signed_up.admin_user_id,
        })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(admin.email, "peter@initech.example");
    assert_eq!(admin.tenant_id, tenant.id);
}

async fn anonymous_signup_is_refused_when_closed(backend: Backend) {
    let sandbox = Sandbox::start_with(backend, |config| config.open_signup = Some(false)).await;
    let mut anonymous = plinth_api::tenant::v1::tenant_service_client::TenantServiceClient::new(
        sandbox.channel().await,
    );

    let status = anonymous
        .signup(signup_request("initech"))
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::PermissionDenied);
    let mut operator = sandbox.operator().await;
    operator
        .tenants
        .signup(signup_request("initech"))
        .await
        .expect("operators may always sign up tenants");
}

async fn anonymous_signups_are_rate_limited_per_peer(backend: Backend) {
    let sandbox = Sandbox::start_with(backend, |config| config.open_signup = Some(true)).await;
    let mut anonymous = plinth_api::tenant::v1::tenant_service_client::TenantServiceClient::new(
        sandbox.channel().await,
    );

    for index in 0..5 {
        anonymous
            .signup(signup_request(&format!("shop-{index}")))
            .await
            .unwrap();
    }
    let limited = anonymous
        .signup(signup_request("shop-5"))
        .await
        .unwrap_err();

    assert_eq!(limited.code(), Code::ResourceExhausted);
    assert_eq!(
        error_reason(&limited).as_deref(),
        Some("ERROR_REASON_RATE_LIMITED")
    );
    let mut operator = sandbox.operator().await;
    operator
        .tenants
        .signup(signup_request("shop-5"))
        .await
        .expect("operators are not limited");
}
