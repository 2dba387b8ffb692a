//! A real core for a module's own tests: the embedded default (SQLite in a
//! temporary directory, caches in process) serving every core service and
//! the registry on an ephemeral loopback port, in the test's process.
//!
//! ```no_run
//! # async fn example() -> Result<(), plinth_client::testing::TestError> {
//! use plinth_client::testing::TestCore;
//!
//! let core = TestCore::start().await?;
//! let key = core.publish_module(&std::fs::read_to_string("manifest.yaml")?).await?;
//! let module = core.client(&key)?;
//! let acme = core.tenant("acme", "stock", r#"{"warehouse": "north"}"#).await?;
//! let alice = core.user(&acme, &["stock:item:count"]).await?;
//! # let _ = (module, alice);
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use plinth_api::{
    auth::v1::{CreateApiKeyRequest, CreateUserRequest, LoginRequest},
    rbac::v1::{AssignRoleRequest, CreateRoleRequest},
    registry::v1::{ActivateModuleRequest, RegisterModuleRequest},
    tenant::v1::{CreateTenantRequest, EnableModulesRequest, ModuleEnablement},
};
use plinth_platform::config::Config;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

use crate::{Client, ClientBuilder};

pub type TestError = Box<dyn std::error::Error + Send + Sync>;

/// The password of every user a [`TestCore`] makes.
pub const PASSWORD: &str = "correct horse battery staple 42";

/// A tenant made by [`Provisioner::tenant`].
#[derive(Debug, Clone)]
pub struct TestTenant {
    pub id: String,
    pub code: String,
}

/// A user of a tenant, signed in.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub tenant_id: String,
    pub user_id: String,
    pub email: String,
    pub access_token: String,
    /// The RBAC consistency token of the user's grant.
    pub consistency_token: String,
}

/// A running core; stopped when dropped.
pub struct TestCore {
    endpoint: String,
    operator_key: String,
    data: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

impl TestCore {
    /// Starts a fresh core on an ephemeral loopback port and waits for its
    /// first operator key.
    pub async fn start() -> Result<TestCore, TestError> {
        TestCore::start_on(TcpListener::bind("127.0.0.1:0").await?).await
    }

    /// Starts a fresh core on `listener`.
    pub async fn start_on(listener: TcpListener) -> Result<TestCore, TestError> {
        let data = tempfile::tempdir()?;
        let config = Config {
            data_dir: data.path().to_owned(),
            shutdown_grace_seconds: 1,
            admin_listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            ..Config::default()
        };
        let endpoint = format!("http://{}", listener.local_addr()?);
        let (shutdown, stop) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let stopped = async {
                stop.await.ok();
            };
            if let Err(error) = core_server::run(config, listener, stopped).await {
                tracing::error!(%error, "the test core stopped");
            }
        });
        let key_file = data.path().join(core_server::BOOTSTRAP_KEY_FILE);
        let mut operator_key = String::new();
        for _ in 0..400 {
            operator_key = tokio::fs::read_to_string(&key_file)
                .await
                .unwrap_or_default();
            if !operator_key.is_empty() || server.is_finished() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        if operator_key.is_empty() {
            return Err("the test core did not start".into());
        }
        Ok(TestCore {
            endpoint,
            operator_key: operator_key.trim().to_owned(),
            data,
            shutdown: Some(shutdown),
            server: Some(server),
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The core's data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        self.data.path()
    }

    /// A client with the operator key: may do anything.
    pub fn operator(&self) -> Result<Client, TestError> {
        self.client(&self.operator_key)
    }

    /// A client presenting `api_key`.
    pub fn client(&self, api_key: &str) -> Result<Client, TestError> {
        Ok(self.client_builder(api_key).connect_lazy()?)
    }

    /// A client builder for this core presenting `api_key`.
    pub fn client_builder(&self, api_key: &str) -> ClientBuilder {
        Client::builder(self.endpoint.clone()).api_key(api_key)
    }

    /// The setup helpers below, on this core's operator client.
    pub fn provisioner(&self) -> Result<Provisioner, TestError> {
        Ok(Provisioner::new(self.operator()?))
    }

    /// See [`Provisioner::publish_module`].
    pub async fn publish_module(&self, manifest: &str) -> Result<String, TestError> {
        self.provisioner()?.publish_module(manifest).await
    }

    /// See [`Provisioner::tenant`].
    pub async fn tenant(
        &self,
        code: &str,
        module_id: &str,
        tenant_config: &str,
    ) -> Result<TestTenant, TestError> {
        self.provisioner()?
            .tenant(code, module_id, tenant_config)
            .await
    }

    /// See [`Provisioner::user`].
    pub async fn user(
        &self,
        tenant: &TestTenant,
        permissions: &[&str],
    ) -> Result<TestUser, TestError> {
        self.provisioner()?.user(tenant, permissions).await
    }

    /// See [`Provisioner::grant`].
    pub async fn grant(
        &self,
        tenant_id: &str,
        user_id: &str,
        permissions: &[&str],
    ) -> Result<String, TestError> {
        self.provisioner()?
            .grant(tenant_id, user_id, permissions)
            .await
    }

    /// Stops the core, waiting for it to finish.
    pub async fn stop(&mut self) {
        self.shutdown.take().map(|shutdown| shutdown.send(()));
        if let Some(server) = self.server.take() {
            server.await.ok();
        }
    }
}

impl Drop for TestCore {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            shutdown.send(()).ok();
        }
    }
}

/// Sets up what a module's tests need (its module, tenants, users and
/// grants) on any core, through an operator's client: a [`TestCore`]'s, or
/// one of a deployment's replicas.
pub struct Provisioner {
    operator: Client,
}

impl Provisioner {
    /// `operator` presents an operator key.
    pub fn new(operator: Client) -> Provisioner {
        Provisioner { operator }
    }

    /// Registers and activates the module of `manifest` (YAML or JSON, as
    /// `registry-server` reads manifests) and returns a new API key of that
    /// module.
    pub async fn publish_module(&self, manifest: &str) -> Result<String, TestError> {
        let manifest = registry_server::manifest::document::parse(manifest)?;
        let module_id = manifest.id.clone();
        let operator = &self.operator;
        operator
            .registry()
            .register_module(RegisterModuleRequest {
                manifest: Some(manifest),
            })
            .await?;
        operator
            .registry()
            .activate_module(ActivateModuleRequest {
                module_id: module_id.clone(),
                version: String::new(),
            })
            .await?;
        Ok(operator
            .auth()
            .create_api_key(CreateApiKeyRequest {
                name: module_id.clone(),
                module_id,
                ..Default::default()
            })
            .await?
            .into_inner()
            .secret)
    }

    /// Creates tenant `code` with `module_id` enabled and its tenant
    /// configuration set to `tenant_config` (a JSON object).
    pub async fn tenant(
        &self,
        code: &str,
        module_id: &str,
        tenant_config: &str,
    ) -> Result<TestTenant, TestError> {
        let operator = &self.operator;
        let id = operator
            .tenants()
            .create_tenant(CreateTenantRequest {
                code: code.to_owned(),
                name: code.to_owned(),
                ..Default::default()
            })
            .await?
            .into_inner()
            .tenant
            .ok_or("no tenant in the answer")?
            .id;
        operator
            .tenants()
            .enable_modules(EnableModulesRequest {
                tenant_id: id.clone(),
                modules: vec![ModuleEnablement {
                    module_id: module_id.to_owned(),
                    tenant_config: tenant_config.to_owned(),
                    ..Default::default()
                }],
                enable_dependencies: true,
            })
            .await?;
        Ok(TestTenant {
            id,
            code: code.to_owned(),
        })
    }

    /// A new user of `tenant` holding `permissions`, signed in.
    pub async fn user(
        &self,
        tenant: &TestTenant,
        permissions: &[&str],
    ) -> Result<TestUser, TestError> {
        let operator = &self.operator;
        let email = format!(
            "user-{}@{}.example",
            uuid::Uuid::now_v7().simple(),
            tenant.code
        );
        let user_id = operator
            .auth()
            .create_user(CreateUserRequest {
                tenant_id: tenant.id.clone(),
                email: email.clone(),
                display_name: "Test user".to_owned(),
                password: PASSWORD.to_owned(),
            })
            .await?
            .into_inner()
            .user
            .ok_or("no user in the answer")?
            .id;
        let consistency_token = self.grant(&tenant.id, &user_id, permissions).await?;
        let access_token = operator
            .auth()
            .login(LoginRequest {
                tenant_code: tenant.code.clone(),
                email: email.clone(),
                password: PASSWORD.to_owned(),
            })
            .await?
            .into_inner()
            .tokens
            .ok_or("no tokens in the answer")?
            .access_token;
        Ok(TestUser {
            tenant_id: tenant.id.clone(),
            user_id,
            email,
            access_token,
            consistency_token,
        })
    }

    /// Grants `permissions` to a user through a new role; the grant's
    /// consistency token.
    pub async fn grant(
        &self,
        tenant_id: &str,
        user_id: &str,
        permissions: &[&str],
    ) -> Result<String, TestError> {
        let rbac = self.operator.rbac();
        let role = rbac
            .clone()
            .create_role(CreateRoleRequest {
                tenant_id: tenant_id.to_owned(),
                key: format!("test-{}", uuid::Uuid::now_v7().simple()),
                display_name: "Test role".to_owned(),
                permissions: permissions
                    .iter()
                    .map(|&permission| permission.to_owned())
                    .collect(),
                ..Default::default()
            })
            .await?
            .into_inner()
            .role
            .ok_or("no role in the answer")?;
        Ok(rbac
            .clone()
            .assign_role(AssignRoleRequest {
                tenant_id: tenant_id.to_owned(),
                user_id: user_id.to_owned(),
                role_id: role.id,
                ..Default::default()
            })
            .await?
            .into_inner()
            .consistency_token)
    }
}
