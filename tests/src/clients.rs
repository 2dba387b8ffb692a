//! How tests call a sandbox: credentials on every call, a client of each
//! service, and keys made straight in the store.

use plinth_platform::identity::api_keys::{IssuedApiKey, NewApiKey};
use tonic::{
    metadata::MetadataValue,
    service::{Interceptor, interceptor::InterceptedService},
    transport::Channel,
};

use crate::Sandbox;

/// Adds `x-api-key` and/or `authorization: Bearer` to every call.
#[derive(Clone, Default)]
pub struct Credentials {
    api_key: Option<MetadataValue<tonic::metadata::Ascii>>,
    bearer: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl Credentials {
    pub fn api_key(key: &str) -> Credentials {
        Credentials {
            api_key: Some(key.parse().expect("ascii api key")),
            bearer: None,
        }
    }

    /// No credentials at all.
    pub fn anonymous() -> Credentials {
        Credentials {
            api_key: None,
            bearer: None,
        }
    }

    pub fn bearer(access_token: &str) -> Credentials {
        Credentials {
            api_key: None,
            bearer: Some(
                format!("Bearer {access_token}")
                    .parse()
                    .expect("ascii token"),
            ),
        }
    }

    /// A module key acting for the user of `access_token`.
    pub fn module_for_user(key: &str, access_token: &str) -> Credentials {
        Credentials {
            api_key: Credentials::api_key(key).api_key,
            bearer: Credentials::bearer(access_token).bearer,
        }
    }
}

impl Interceptor for Credentials {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(key) = &self.api_key {
            request.metadata_mut().insert("x-api-key", key.clone());
        }
        if let Some(bearer) = &self.bearer {
            request
                .metadata_mut()
                .insert("authorization", bearer.clone());
        }
        Ok(request)
    }
}

/// A channel that presents credentials on every call.
pub type KeyedChannel = InterceptedService<Channel, Credentials>;

/// Makes keys straight in the sandbox's store, as another replica would.
pub async fn create_key(sandbox: &Sandbox, new_key: NewApiKey) -> IssuedApiKey {
    let store = sandbox.database.open_store().await;
    let mut tx = store.begin().await.expect("begin");
    let issued = plinth_platform::identity::api_keys::insert_new(
        &mut tx,
        new_key,
        plinth_platform::audit::Actor::default(),
        "",
    )
    .await
    .expect("create api key");
    tx.commit().await.expect("commit");
    issued
}

/// A connected client of each core service, all presenting one API key.
#[derive(Clone)]
pub struct Clients {
    pub auth: plinth_api::auth::v1::auth_service_client::AuthServiceClient<KeyedChannel>,
    pub tenants: plinth_api::tenant::v1::tenant_service_client::TenantServiceClient<KeyedChannel>,
    pub rbac: plinth_api::rbac::v1::rbac_service_client::RbacServiceClient<KeyedChannel>,
    pub registry:
        plinth_api::registry::v1::module_registry_service_client::ModuleRegistryServiceClient<
            KeyedChannel,
        >,
    pub audit: plinth_api::audit::v1::audit_service_client::AuditServiceClient<KeyedChannel>,
}

impl Sandbox {
    /// Clients that present `key` on every call.
    pub async fn clients(&self, key: &str) -> Clients {
        self.clients_with(Credentials::api_key(key)).await
    }

    /// Clients that present `credentials` on every call.
    pub async fn clients_with(&self, credentials: Credentials) -> Clients {
        Clients::over(self.channel().await, credentials)
    }

    /// Clients with the bootstrap operator key.
    pub async fn operator(&self) -> Clients {
        self.clients(&self.operator_key).await
    }
}

impl Clients {
    /// Clients on `channel` (plaintext or TLS) presenting `credentials`.
    pub fn over(channel: Channel, credentials: Credentials) -> Clients {
        Clients {
            auth: plinth_api::auth::v1::auth_service_client::AuthServiceClient::with_interceptor(
                channel.clone(),
                credentials.clone(),
            ),
            tenants: plinth_api::tenant::v1::tenant_service_client::TenantServiceClient::with_interceptor(
                channel.clone(),
                credentials.clone(),
            ),
            rbac: plinth_api::rbac::v1::rbac_service_client::RbacServiceClient::with_interceptor(
                channel.clone(),
                credentials.clone(),
            ),
            registry: plinth_api::registry::v1::module_registry_service_client::ModuleRegistryServiceClient::with_interceptor(
                channel.clone(),
                credentials.clone(),
            ),
            audit: plinth_api::audit::v1::audit_service_client::AuditServiceClient::with_interceptor(
                channel,
                credentials,
            ),
        }
    }

    /// Creates tenant `code` (named after it) and returns its id.
    pub async fn create_tenant(&mut self, code: &str) -> String {
        self.tenants
            .create_tenant(plinth_api::tenant::v1::CreateTenantRequest {
                code: code.to_owned(),
                name: code.to_owned(),
                ..Default::default()
            })
            .await
            .expect("the tenant is created")
            .into_inner()
            .tenant
            .expect("the answer holds the tenant")
            .id
    }
}

/// A new key of `module_id`, made in the store.
pub async fn module_key(sandbox: &Sandbox, module_id: &str) -> String {
    create_key(
        sandbox,
        NewApiKey {
            name: module_id.to_owned(),
            module_id: Some(module_id.to_owned()),
            ..NewApiKey::default()
        },
    )
    .await
    .secret
}
