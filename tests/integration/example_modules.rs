//! The example modules of `examples/`, each its own process against a core
//! requiring mTLS, used as an operator and a tenant's users would: the
//! module publishes its manifest and registers an instance; it vetoes an
//! enable without its required setting and hears of the enable that has
//! it; it serves a user holding its permission (configured by the tenant,
//! recorded in the tenant's audit log) and refuses one without; stopped,
//! it deregisters. The Rust example runs from its environment the same way
//! (its users' API is tested in-process, in `client_rs`).

use std::{
    io::BufRead,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use plinth_api::{
    audit::v1::QueryEventsRequest,
    auth::v1::{CreateUserRequest, LoginRequest},
    rbac::v1::{AssignRoleRequest, CreateRoleRequest},
    registry::v1::{ActivateModuleRequest, DiscoverInstancesRequest, Instance},
    tenant::v1::{EnableModulesRequest, ModuleEnablement},
};
use plinth_tests::{
    Clients, MutualTls, assert_refusal, error_metadata, module_key, prepared, workspace_binary,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// What an example module does, as the test drives it.
struct Example {
    module: &'static str,
    /// The interpreter and the module's script.
    command: [PathBuf; 2],
    /// The tenant configuration the module needs, one without it, and what
    /// the module's veto of that one names.
    configured: &'static str,
    unconfigured: &'static str,
    vetoed_for: &'static str,
    /// What a user needs for the module's HTTP call, and that call.
    permission: &'static str,
    path: &'static str,
    body: &'static str,
    /// A field of the answer taken from the tenant's configuration.
    answered: (&'static str, &'static str),
    /// The audit action the call records.
    action: &'static str,
}

/// The example module's process: killed if the test ends before it stops.
struct ModuleProcess {
    child: Child,
    http: String,
}

impl Drop for ModuleProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The environment every example module reads: the core, its CA, the
/// module's key and client certificate, and the certificate its callback
/// server presents.
async fn module_environment(server: &MutualTls, module: &str) -> Vec<(&'static str, String)> {
    let key = module_key(&server.sandbox, module).await;
    let client = server.ca.module_certificate(module).unwrap();
    let (certificate, private_key) = server.client_files(module, &client);
    let serving = server.ca.server_certificate().unwrap();
    let (server_certificate, server_key) = server.client_files("callbacks", &serving);
    let path = |path: PathBuf| path.display().to_string();
    vec![
        ("PLINTH_TARGET", server.sandbox.address.to_string()),
        ("PLINTH_URL", format!("https://{}", server.sandbox.address)),
        ("PLINTH_CA", path(server.ca_file())),
        ("PLINTH_CERTIFICATE", path(certificate)),
        ("PLINTH_PRIVATE_KEY", path(private_key)),
        ("PLINTH_API_KEY", key),
        ("MODULE_SERVER_CERTIFICATE", path(server_certificate)),
        ("MODULE_SERVER_PRIVATE_KEY", path(server_key)),
    ]
}

async fn start(server: &MutualTls, example: &Example) -> ModuleProcess {
    let [program, script] = &example.command;
    let mut child = Command::new(program)
        .arg(script)
        .envs(module_environment(server, example.module).await)
        .stdout(Stdio::piped())
        .spawn()
        .expect("the module's runtime starts");
    let line = first_line(&mut child).await;
    let ready: serde_json::Value = serde_json::from_str(&line)
        .unwrap_or_else(|_| panic!("the module's first line is its address, got {line:?}"));
    ModuleProcess {
        child,
        http: ready["http"].as_str().unwrap().to_owned(),
    }
}

/// The module vetoes an enable with `unconfigured`, naming `vetoed_for`,
/// and allows one with `configured`.
async fn vetoes_then_allows(
    operator: &mut Clients,
    tenant_id: &str,
    module: &str,
    (unconfigured, vetoed_for): (&str, &str),
    configured: &str,
) {
    let enable = |tenant_config: &str| EnableModulesRequest {
        tenant_id: tenant_id.to_owned(),
        modules: vec![ModuleEnablement {
            module_id: module.to_owned(),
            tenant_config: tenant_config.to_owned(),
            ..ModuleEnablement::default()
        }],
        enable_dependencies: false,
    };
    let vetoed = operator
        .tenants
        .enable_modules(enable(unconfigured))
        .await
        .unwrap_err();
    assert_refusal(
        &vetoed,
        Code::FailedPrecondition,
        "ERROR_REASON_MODULE_VETOED",
    );
    let veto_reason = error_metadata(&vetoed, "veto_reason").unwrap_or_default();
    assert!(veto_reason.contains(vetoed_for), "{veto_reason}");
    operator
        .tenants
        .enable_modules(enable(configured))
        .await
        .expect("the module allows an enable with its setting");
}

/// The first line a module prints: where it serves.
async fn first_line(child: &mut Child) -> String {
    let stdout = child.stdout.take().unwrap();
    let first_line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .map(|_| line)
    });
    tokio::time::timeout(Duration::from_secs(30), first_line)
        .await
        .expect("the module says it serves within 30 s")
        .unwrap()
        .unwrap()
}

/// Sends SIGTERM and expects a clean exit within 10 s.
async fn terminate(mut module: ModuleProcess) {
    let terminated = Command::new("kill")
        .args(["-TERM", &module.child.id().to_string()])
        .status()
        .unwrap();
    assert!(terminated.success());
    let exited = tokio::task::spawn_blocking(move || {
        let status = module.child.wait();
        (module, status)
    });
    let (_module, status) = tokio::time::timeout(Duration::from_secs(10), exited)
        .await
        .expect("the module stops within 10 s")
        .unwrap();
    assert!(status.unwrap().success());
}

/// One HTTP/1.1 call to the module: its status and JSON answer.
async fn http(
    address: &str,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: &str,
) -> (u16, serde_json::Value) {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let authorization = bearer
        .map(|token| format!("authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n{authorization}\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or_default())
}

/// A user of `tenant_id`, holding `permissions` through a role of their own
/// when there are any, logged in: (user id, access token).
async fn user(
    operator: &mut Clients,
    tenant_id: &str,
    name: &str,
    permissions: &[&str],
) -> (String, String) {
    let email = format!("{name}@acme.example");
    let password = "correct horse battery staple";
    let user_id = operator
        .auth
        .create_user(CreateUserRequest {
            tenant_id: tenant_id.to_owned(),
            email: email.clone(),
            display_name: name.to_owned(),
            password: password.to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap()
        .id;
    if !permissions.is_empty() {
        let role_id = operator
            .rbac
            .create_role(CreateRoleRequest {
                tenant_id: tenant_id.to_owned(),
                key: format!("{name}-role"),
                display_name: name.to_owned(),
                permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
                ..CreateRoleRequest::default()
            })
            .await
            .unwrap()
            .into_inner()
            .role
            .unwrap()
            .id;
        operator
            .rbac
            .assign_role(AssignRoleRequest {
                tenant_id: tenant_id.to_owned(),
                user_id: user_id.clone(),
                role_id,
                ..AssignRoleRequest::default()
            })
            .await
            .unwrap();
    }
    let token = operator
        .auth
        .login(LoginRequest {
            tenant_code: "acme".to_owned(),
            email,
            password: password.to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap()
        .access_token;
    (user_id, token)
}

/// The module's registered instances, as discovery lists them.
async fn instances(operator: &mut Clients, module: &str) -> Vec<Instance> {
    operator
        .registry
        .discover_instances(DiscoverInstancesRequest {
            module_id: module.to_owned(),
            ..DiscoverInstancesRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .instances
}

async fn the_example_serves_its_tenants_users_over_mtls(example: Example) {
    let server = MutualTls::start().await;
    let mut operator = server.operator().await;
    let module = start(&server, &example).await;
    operator
        .registry
        .activate_module(ActivateModuleRequest {
            module_id: example.module.to_owned(),
            version: String::new(),
        })
        .await
        .expect("the module published its manifest");
    let tenant_id = operator.create_tenant("acme").await;
    vetoes_then_allows(
        &mut operator,
        &tenant_id,
        example.module,
        (example.unconfigured, example.vetoed_for),
        example.configured,
    )
    .await;
    let told = async {
        loop {
            let (_, told) = http(&module.http, "GET", "/tenants", None, "").await;
            if told["tenants"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t == &tenant_id)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), told)
        .await
        .expect("the module hears of the enable");

    let (clerk_id, clerk) = user(&mut operator, &tenant_id, "clerk", &[example.permission]).await;
    let (_, visitor) = user(&mut operator, &tenant_id, "visitor", &[]).await;
    let (status, answer) = http(
        &module.http,
        "POST",
        example.path,
        Some(&clerk),
        example.body,
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    let (field, configured) = example.answered;
    assert_eq!(
        answer[field], configured,
        "answered from the tenant's configuration"
    );
    let (status, _) = http(
        &module.http,
        "POST",
        example.path,
        Some(&visitor),
        example.body,
    )
    .await;
    assert_eq!(status, 403, "a user without the permission is refused");
    let (status, _) = http(
        &module.http,
        "POST",
        example.path,
        Some("forged"),
        example.body,
    )
    .await;
    assert_eq!(status, 401, "a token the core does not know is refused");
    for (bearer, body, status, case) in [
        (None, example.body, 401, "a call without a token"),
        (Some(clerk.as_str()), "{not json", 400, "a malformed body"),
        (Some(clerk.as_str()), "{}", 400, "a body without the fields"),
        (
            Some(clerk.as_str()),
            "[1, 2]",
            400,
            "a body that is no object",
        ),
    ] {
        let (answered, _) = http(&module.http, "POST", example.path, bearer, body).await;
        assert_eq!(answered, status, "{case}");
    }

    let recorded = operator
        .audit
        .query_events(QueryEventsRequest {
            chain: Some(
                plinth_api::audit::v1::query_events_request::Chain::TenantId(tenant_id.clone()),
            ),
            actions: vec![example.action.to_owned()],
            ..QueryEventsRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(recorded.len(), 1, "one event for the one call served");
    let actor = recorded[0].actor.clone().unwrap();
    assert_eq!(
        (actor.user_id.as_str(), actor.module_id.as_str()),
        (clerk_id.as_str(), example.module)
    );

    let serving = instances(&mut operator, example.module).await;
    assert_eq!(serving.len(), 1, "the module registered one instance");
    let health = HealthClient::new(server.channel_to(&serving[0].endpoint).await)
        .check(HealthCheckRequest::default())
        .await
        .expect("the module answers the registry's probe over mTLS")
        .into_inner();
    assert_eq!(health.status(), ServingStatus::Serving);

    terminate(module).await;
    let left = instances(&mut operator, example.module).await;
    assert!(left.is_empty(), "the stopped module deregistered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_inventory_module_serves_its_tenants_users_over_mtls() {
    the_example_serves_its_tenants_users_over_mtls(Example {
        module: "inventory",
        command: [
            prepared("target/python/bin/python"),
            prepared("examples/inventory-python/inventory.py"),
        ],
        configured: r#"{"warehouse": "north", "low_stock_threshold": 5}"#,
        unconfigured: "",
        vetoed_for: "warehouse",
        permission: "inventory:stock:count",
        path: "/counts",
        body: r#"{"item": "bolt", "quantity": 3}"#,
        answered: ("warehouse", "north"),
        action: "inventory.stock.counted",
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_crm_module_serves_its_tenants_users_over_mtls() {
    the_example_serves_its_tenants_users_over_mtls(Example {
        module: "crm",
        command: [
            PathBuf::from("node"),
            prepared("examples/crm-typescript/dist/crm.js"),
        ],
        configured: r#"{"pipeline": "inbound"}"#,
        unconfigured: r#"{"follow_up_days": 3}"#,
        vetoed_for: "pipeline",
        permission: "crm:contact:write",
        path: "/contacts",
        body: r#"{"name": "Wile E."}"#,
        answered: ("pipeline", "inbound"),
        action: "crm.contact.created",
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_stock_binary_runs_from_its_environment_over_mtls() {
    let server = MutualTls::start().await;
    let mut operator = server.operator().await;
    let manifest = registry_server::manifest::document::parse(include_str!(
        "../../examples/stock-rust/manifest.yaml"
    ))
    .unwrap();
    crate::registry::register(&mut operator, manifest)
        .await
        .unwrap();
    operator
        .registry
        .activate_module(ActivateModuleRequest {
            module_id: "stock".to_owned(),
            version: String::new(),
        })
        .await
        .unwrap();
    let mut child = Command::new(workspace_binary("stock-module"))
        .envs(module_environment(&server, "stock").await)
        .stdout(Stdio::piped())
        .spawn()
        .expect("the stock module starts");
    let address = first_line(&mut child).await;
    let module = ModuleProcess {
        child,
        http: String::new(),
    };
    let mut serving = instances(&mut operator, "stock").await;
    for _ in 0..100 {
        if !serving.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        serving = instances(&mut operator, "stock").await;
    }
    assert_eq!(serving.len(), 1, "the module registered one instance");
    assert_eq!(serving[0].endpoint, format!("https://{}", address.trim()));
    let health = HealthClient::new(server.channel_to(&serving[0].endpoint).await)
        .check(HealthCheckRequest::default())
        .await
        .expect("the module answers health over mTLS")
        .into_inner();
    assert_eq!(health.status(), ServingStatus::Serving);

    let tenant_id = operator.create_tenant("initech").await;
    vetoes_then_allows(
        &mut operator,
        &tenant_id,
        "stock",
        ("{}", "warehouse"),
        r#"{"warehouse": "north"}"#,
    )
    .await;

    terminate(module).await;
    let left = instances(&mut operator, "stock").await;
    assert!(left.is_empty(), "the stopped module deregistered");
}
