//! What a careless client or an attacker sends: oversized and malformed
//! fields, overflowing numbers, unknown enum values, bodies that do not
//! decode. Each gets a clear, small error, and the server keeps serving.

use bytes::{Buf, BufMut};
use plinth_api::{
    auth::v1::{
        CreateApiKeyRequest, CreateUserRequest, ListApiKeysRequest, ListUsersRequest, LoginRequest,
        LogoutRequest, RefreshRequest, RotateApiKeyRequest, SetPasswordRequest, UpdateUserRequest,
        WhoAmIRequest,
    },
    tenant::v1::{
        CreateCompanyRequest, CreateTenantRequest, GetTenantRequest, ListCompaniesRequest,
        ListTenantsRequest, SetTenantStatusRequest, UpdateCompanyRequest, UpdateTenantRequest,
        get_tenant_request,
    },
};
use plinth_platform::identity::api_keys::NewApiKey;
use plinth_tests::{Backend, Credentials, Sandbox, create_key, error_reason, violated_fields};
use tonic::{
    Code, Status,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    codegen::http::uri::PathAndQuery,
};

use crate::tenants::create_tenant;

crate::on_both_backends!(
    api_key_lifetimes_past_ten_years_or_the_timestamp_range_are_field_violations,
    a_rotation_grace_past_seven_days_or_negative_is_a_field_violation,
    a_huge_repeated_field_costs_one_violation,
    many_bad_fields_answer_the_first_few_and_a_count,
    a_key_for_an_unknown_tenant_is_not_found_not_internal,
    unknown_enum_values_are_refused_not_ignored,
    an_address_with_two_at_signs_is_not_an_email,
    oversized_text_and_control_characters_are_refused,
    every_other_bounded_field_is_refused_past_its_limit,
    an_undecodable_body_is_invalid_argument_with_its_reason,
    an_unknown_method_is_unimplemented_with_its_reason,
    an_internal_error_in_the_identity_layer_carries_the_request_id,
);

/// Errors stay small: a client's default limits always read them whole.
const MAX_ERROR_BYTES: usize = 4096;

fn error_size(status: &Status) -> usize {
    status.message().len() + status.details().len()
}

fn assert_violation(result: Result<impl std::fmt::Debug, Status>, field: &str) {
    let status = result.expect_err(field);
    assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
    assert!(
        violated_fields(&status)
            .iter()
            .any(|violated| violated == field),
        "{field}: {:?}",
        violated_fields(&status)
    );
    assert!(error_size(&status) < MAX_ERROR_BYTES, "{field}");
}

fn key_request(ttl_seconds: i64, ttl_nanos: i32) -> CreateApiKeyRequest {
    CreateApiKeyRequest {
        name: "worker".to_owned(),
        ttl: Some(prost_types::Duration {
            seconds: ttl_seconds,
            nanos: ttl_nanos,
        }),
        ..Default::default()
    }
}

async fn api_key_lifetimes_past_ten_years_or_the_timestamp_range_are_field_violations(
    backend: Backend,
) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;

    for (seconds, nanos) in [
        (10_000_000_000_000, 0),
        (315_576_000_000, 0),
        (11 * 366 * 24 * 3600, 0),
        (i64::MAX, 999_999_999),
        (-60, 0),
        (3600, -1),
        (3600, 1_000_000_000),
        (59, 0),
    ] {
        let result = operator
            .auth
            .create_api_key(key_request(seconds, nanos))
            .await;
        assert_violation(result, "ttl");
    }
    let year = operator
        .auth
        .create_api_key(key_request(365 * 24 * 3600, 0))
        .await
        .expect("a year is fine")
        .into_inner();
    let expires_at = year.api_key.unwrap().expires_at.unwrap();
    assert!(
        (0..253_402_300_800).contains(&expires_at.seconds),
        "within year 9999"
    );
}

async fn a_rotation_grace_past_seven_days_or_negative_is_a_field_violation(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;
    let key = operator
        .auth
        .create_api_key(key_request(3600, 0))
        .await
        .unwrap()
        .into_inner()
        .api_key
        .unwrap();

    for seconds in [8 * 24 * 3600, -1, i64::MAX] {
        let result = operator
            .auth
            .rotate_api_key(RotateApiKeyRequest {
                id: key.id.clone(),
                grace_period: Some(prost_types::Duration { seconds, nanos: 0 }),
            })
            .await;
        assert_violation(result, "grace_period");
    }
}

async fn a_huge_repeated_field_costs_one_violation(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;

    // About 2 MB of scopes, each of them bad.
    let request = CreateApiKeyRequest {
        name: "worker".to_owned(),
        scopes: vec!["\u{7f}".repeat(2); 500_000],
        ..Default::default()
    };
    let status = operator.auth.create_api_key(request).await.unwrap_err();

    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["scopes"]);
    assert!(
        error_size(&status) < MAX_ERROR_BYTES,
        "{}",
        error_size(&status)
    );
    operator
        .auth
        .who_am_i(WhoAmIRequest {})
        .await
        .expect("still serving");
}

async fn many_bad_fields_answer_the_first_few_and_a_count(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;

    // 32 scopes (the most allowed), every one bad, and a bad name and ttl.
    let request = CreateApiKeyRequest {
        name: String::new(),
        scopes: vec![String::new(); 32],
        ttl: Some(prost_types::Duration {
            seconds: -1,
            nanos: 0,
        }),
        ..Default::default()
    };
    let status = operator.auth.create_api_key(request).await.unwrap_err();

    let violations = tonic_types::StatusExt::get_details_bad_request(&status)
        .unwrap()
        .field_violations;
    assert_eq!(violations.len(), 11, "ten shown and one summary");
    assert_eq!(violations[0].field, "name");
    assert_eq!(violations[10].description, "24 more violations not shown");
    assert!(error_size(&status) < MAX_ERROR_BYTES);
}

async fn a_key_for_an_unknown_tenant_is_not_found_not_internal(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;

    let status = operator
        .auth
        .create_api_key(CreateApiKeyRequest {
            name: "worker".to_owned(),
            tenant_id: uuid::Uuid::now_v7().to_string(),
            ..Default::default()
        })
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::NotFound);
    let info = tonic_types::StatusExt::get_details_error_info(&status).unwrap();
    assert_eq!(info.metadata["resource_type"], "tenant");
}

async fn unknown_enum_values_are_refused_not_ignored(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;
    let tenant = create_tenant(&mut operator, "acme", None).await;
    let tenant_id = || tenant.id.clone();

    let outcomes = [
        operator
            .tenants
            .list_tenants(ListTenantsRequest {
                status: 99,
                ..Default::default()
            })
            .await
            .map(drop),
        operator
            .tenants
            .list_companies(ListCompaniesRequest {
                tenant_id: tenant_id(),
                status: 99,
                ..Default::default()
            })
            .await
            .map(drop),
        operator
            .auth
            .list_users(ListUsersRequest {
                tenant_id: tenant_id(),
                status: -3,
                ..Default::default()
            })
            .await
            .map(drop),
        operator
            .auth
            .update_user(UpdateUserRequest {
                id: uuid::Uuid::now_v7().to_string(),
                status: Some(99),
                ..Default::default()
            })
            .await
            .map(drop),
        operator
            .tenants
            .set_tenant_status(SetTenantStatusRequest {
                id: tenant_id(),
                status: 99,
                reason: String::new(),
            })
            .await
            .map(drop),
    ];

    for outcome in outcomes {
        assert_violation(outcome, "status");
    }
}

async fn an_address_with_two_at_signs_is_not_an_email(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;
    let tenant = create_tenant(&mut operator, "acme", None).await;

    for email in ["a@b@example.com", "\"a b\"@example.com", "ada@[10.0.0.1]"] {
        let result = operator
            .auth
            .create_user(CreateUserRequest {
                tenant_id: tenant.id.clone(),
                email: email.to_owned(),
                display_name: "Ada".to_owned(),
                password: "rocket skates and anvils".to_owned(),
            })
            .await;
        assert_violation(result, "email");
    }
}

async fn oversized_text_and_control_characters_are_refused(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;
    let tenant = create_tenant(&mut operator, "acme", None).await;
    let megabyte = "x".repeat(1 << 20);

    let create = |industry: String, name: String| CreateTenantRequest {
        code: "other".to_owned(),
        name,
        industry,
        ..Default::default()
    };
    assert_violation(
        operator
            .tenants
            .create_tenant(create(megabyte.clone(), "Other".to_owned()))
            .await,
        "industry",
    );
    assert_violation(
        operator
            .tenants
            .create_tenant(create("retail\0".to_owned(), "Other".to_owned()))
            .await,
        "industry",
    );
    assert_violation(
        operator
            .tenants
            .create_tenant(create(String::new(), "Other\0Corp".to_owned()))
            .await,
        "name",
    );
    assert_violation(
        operator
            .tenants
            .update_tenant(UpdateTenantRequest {
                id: tenant.id.clone(),
                industry: Some(megabyte.clone()),
                ..Default::default()
            })
            .await,
        "industry",
    );
    assert_violation(
        operator
            .tenants
            .set_tenant_status(SetTenantStatusRequest {
                id: tenant.id.clone(),
                status: 3,
                reason: "r".repeat(501),
            })
            .await,
        "reason",
    );
    assert_violation(
        operator
            .auth
            .list_users(ListUsersRequest {
                tenant_id: tenant.id,
                email_prefix: megabyte,
                ..Default::default()
            })
            .await,
        "email_prefix",
    );
}

async fn every_other_bounded_field_is_refused_past_its_limit(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;
    let tenant = create_tenant(&mut operator, "acme", None).await;
    let company = operator
        .tenants
        .create_company(CreateCompanyRequest {
            tenant_id: tenant.id.clone(),
            code: "hq".to_owned(),
            name: "HQ".to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .company
        .unwrap();
    let mut anonymous = sandbox.clients_with(Credentials::default()).await;
    let long = |bytes: usize| "x".repeat(bytes);

    let refusals = [
        (
            "password",
            anonymous
                .auth
                .login(LoginRequest {
                    tenant_code: "acme".to_owned(),
                    email: "ada@acme.example".to_owned(),
                    password: long(513),
                })
                .await
                .map(drop),
        ),
        (
            "refresh_token",
            anonymous
                .auth
                .refresh(RefreshRequest {
                    refresh_token: long(129),
                })
                .await
                .map(drop),
        ),
        (
            "refresh_token",
            anonymous
                .auth
                .logout(LogoutRequest {
                    refresh_token: long(129),
                })
                .await
                .map(drop),
        ),
        (
            "current_password",
            operator
                .auth
                .set_password(SetPasswordRequest {
                    user_id: uuid::Uuid::now_v7().to_string(),
                    current_password: long(513),
                    new_password: "rocket skates and anvils".to_owned(),
                })
                .await
                .map(drop),
        ),
        (
            "module_id",
            operator
                .auth
                .list_api_keys(ListApiKeysRequest {
                    module_id: "Not A Module".to_owned(),
                    ..Default::default()
                })
                .await
                .map(drop),
        ),
        (
            "page_size",
            operator
                .auth
                .list_api_keys(ListApiKeysRequest {
                    page_size: 501,
                    ..Default::default()
                })
                .await
                .map(drop),
        ),
        (
            "page_token",
            operator
                .auth
                .list_api_keys(ListApiKeysRequest {
                    page_token: long(100),
                    ..Default::default()
                })
                .await
                .map(drop),
        ),
        (
            "display_name",
            operator
                .auth
                .create_user(CreateUserRequest {
                    tenant_id: tenant.id.clone(),
                    email: "ada@acme.example".to_owned(),
                    display_name: long(201),
                    password: "rocket skates and anvils".to_owned(),
                })
                .await
                .map(drop),
        ),
        (
            "name",
            operator
                .tenants
                .create_company(CreateCompanyRequest {
                    tenant_id: tenant.id.clone(),
                    code: "branch".to_owned(),
                    name: long(201),
                })
                .await
                .map(drop),
        ),
        (
            "name",
            operator
                .tenants
                .update_company(UpdateCompanyRequest {
                    id: company.id,
                    name: Some("Head\u{7}Office".to_owned()),
                    ..Default::default()
                })
                .await
                .map(drop),
        ),
        (
            "code_prefix",
            operator
                .tenants
                .list_companies(ListCompaniesRequest {
                    tenant_id: tenant.id,
                    code_prefix: long(255),
                    ..Default::default()
                })
                .await
                .map(drop),
        ),
        (
            "code",
            operator
                .tenants
                .get_tenant(GetTenantRequest {
                    key: Some(get_tenant_request::Key::Code(long(64))),
                })
                .await
                .map(drop),
        ),
        (
            "id",
            operator
                .tenants
                .get_tenant(GetTenantRequest {
                    key: Some(get_tenant_request::Key::Id(long(1000))),
                })
                .await
                .map(drop),
        ),
    ];

    for (field, refusal) in refusals {
        assert_violation(refusal, field);
    }
}

/// Sends and receives message bodies as raw bytes.
#[derive(Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, buffer: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buffer.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, buffer: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(buffer.copy_to_bytes(buffer.remaining()).to_vec()))
    }
}

async fn raw_call(sandbox: &Sandbox, path: &'static str, body: Vec<u8>) -> Result<Vec<u8>, Status> {
    let mut grpc = tonic::client::Grpc::new(sandbox.channel().await);
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(body);
    request
        .metadata_mut()
        .insert("x-api-key", sandbox.operator_key.parse().unwrap());
    grpc.unary(request, PathAndQuery::from_static(path), RawCodec)
        .await
        .map(tonic::Response::into_inner)
}

async fn an_undecodable_body_is_invalid_argument_with_its_reason(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;

    let status = raw_call(
        &sandbox,
        "/plinth.auth.v1.AuthService/VerifyToken",
        vec![0xff, 0xff, 0xff],
    )
    .await
    .unwrap_err();

    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        error_reason(&status).as_deref(),
        Some("ERROR_REASON_MALFORMED_MESSAGE")
    );
}

async fn an_unknown_method_is_unimplemented_with_its_reason(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;

    for path in [
        "/plinth.auth.v1.AuthService/NoSuchMethod",
        "/plinth.audit.v1.AuditService/NoSuchMethod",
    ] {
        let status = raw_call(&sandbox, path, Vec::new()).await.unwrap_err();
        assert_eq!(status.code(), Code::Unimplemented, "{path}");
        assert_eq!(
            error_reason(&status).as_deref(),
            Some("ERROR_REASON_UNIMPLEMENTED"),
            "{path}"
        );
    }
}

async fn an_internal_error_in_the_identity_layer_carries_the_request_id(backend: Backend) {
    let sandbox = Sandbox::start(backend).await;
    let mut operator = sandbox.operator().await;
    let tenant = create_tenant(&mut operator, "acme", None).await;
    let key = create_key(
        &sandbox,
        NewApiKey {
            name: "acme worker".to_owned(),
            tenant_id: Some(tenant.id.parse().unwrap()),
            ..NewApiKey::default()
        },
    )
    .await;
    // A status no server writes: reading it fails inside the identity layer.
    sandbox
        .database
        .run_sql("UPDATE tenants SET status = 'corrupt' WHERE code = 'acme'")
        .await;

    let mut request = tonic::Request::new(WhoAmIRequest {});
    request
        .metadata_mut()
        .insert("x-request-id", "find-me-in-the-logs".parse().unwrap());
    let status = sandbox
        .clients(&key.secret)
        .await
        .auth
        .who_am_i(request)
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::Internal);
    let info = tonic_types::StatusExt::get_details_error_info(&status).unwrap();
    assert_eq!(info.metadata["request_id"], "find-me-in-the-logs");
    assert!(status.message().contains("find-me-in-the-logs"));
    assert!(!status.message().contains("corrupt"), "no detail leaks");
}
