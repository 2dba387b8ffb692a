//! The load of the fault tests and `plinth-chaos`: a module with one
//! permission, users who hold it, never hold it, or hold it on and off, and
//! per replica a client-rs client (with its retries) that checks, records
//! audit events and heartbeats an instance; then the checks that nothing
//! acknowledged was lost.

use std::{
    collections::HashSet,
    sync::Arc,
    time::{Duration, Instant},
};

use plinth_api::{
    audit::v1::{
        EventInput, Outcome, QueryEventsRequest, VerifyChainRequest, query_events_request,
        verify_chain_request,
    },
    rbac::v1::{
        AssignRoleRequest, AssignRoleResponse, CheckRequest, Consistency, CreateRoleRequest,
        UnassignRoleRequest, consistency,
    },
    registry::v1::{HeartbeatRequest, RegisterInstanceRequest},
};
use plinth_client::{
    Client,
    testing::{Provisioner, TestTenant, TestUser},
};

use crate::cluster::Cluster;

pub const MANIFEST: &str = r#"
id: ledger
version: "1.0.0"
display_name: Ledger
permissions:
  - name: ledger:entry:read
    description: Read entries.
"#;

pub const PERMISSION: &str = "ledger:entry:read";

/// What the load needs: the module's key, a tenant with the module, a user
/// who holds the permission, one who never does, and one whose grant the
/// test turns on and off through `role_id`.
pub struct Ledger {
    pub module_key: String,
    pub tenant: TestTenant,
    pub reader: TestUser,
    pub outsider: TestUser,
    pub churned: TestUser,
    pub role_id: String,
}

pub async fn ledger(cluster: &Cluster) -> Ledger {
    let operator = cluster.client(0, &cluster.operator_key, Duration::from_secs(10));
    let provisioner = Provisioner::new(operator.clone());
    let module_key = provisioner.publish_module(MANIFEST).await.unwrap();
    let tenant = provisioner.tenant("acme", "ledger", "{}").await.unwrap();
    let reader = provisioner.user(&tenant, &[PERMISSION]).await.unwrap();
    let outsider = provisioner.user(&tenant, &[]).await.unwrap();
    let churned = provisioner.user(&tenant, &[]).await.unwrap();
    let role_id = operator
        .rbac()
        .create_role(CreateRoleRequest {
            tenant_id: tenant.id.clone(),
            key: "churned-reader".to_owned(),
            display_name: "Churned reader".to_owned(),
            permissions: vec![PERMISSION.to_owned()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .role
        .unwrap()
        .id;
    Ledger {
        module_key,
        tenant,
        reader,
        outsider,
        churned,
        role_id,
    }
}

/// Asks `client` whether `user` holds the permission, at least as fresh as
/// `token` when given.
pub async fn check(
    client: &Client,
    ledger: &Ledger,
    user: &TestUser,
    token: Option<&str>,
) -> Result<bool, tonic::Status> {
    let consistency = token.map(|token| Consistency {
        requirement: Some(consistency::Requirement::AtLeastAsFresh(token.to_owned())),
    });
    Ok(client
        .rbac()
        .check(CheckRequest {
            tenant_id: ledger.tenant.id.clone(),
            user_id: user.user_id.clone(),
            permission: PERMISSION.to_owned(),
            consistency,
            ..Default::default()
        })
        .await?
        .into_inner()
        .allowed)
}

/// What one replica's load saw.
#[derive(Debug, Default)]
pub struct Tally {
    pub checks: u64,
    pub wrong_answers: u64,
    /// Calls to the core replica that failed (after client-rs's retries).
    pub errors: u64,
    /// Ids of the events the core acknowledged.
    pub acknowledged: Vec<String>,
    pub heartbeats: u64,
    /// Heartbeats to the registry-server that failed.
    pub heartbeat_errors: u64,
}

/// Checks both steady users and records batches of ten events through
/// `client`, and heartbeats an instance of its own through `registry`,
/// until `until`.
async fn steady_load(
    client: Client,
    registry: Client,
    ledger: Arc<Ledger>,
    until: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let instance_id = registry
        .registry()
        .register_instance(RegisterInstanceRequest {
            module_id: "ledger".to_owned(),
            version: "1.0.0".to_owned(),
            endpoint: "http://127.0.0.1:9".to_owned(),
            instance_key: uuid::Uuid::now_v7().to_string(),
            ..Default::default()
        })
        .await
        .ok()
        .and_then(|registered| registered.into_inner().instance)
        .map(|instance| instance.instance_id);
    let mut batch = 0;
    while Instant::now() < until {
        match &instance_id {
            Some(instance_id) => match registry
                .registry()
                .heartbeat(HeartbeatRequest {
                    instance_id: instance_id.clone(),
                    ..Default::default()
                })
                .await
            {
                Ok(_) => tally.heartbeats += 1,
                Err(_) => tally.heartbeat_errors += 1,
            },
            None => tally.heartbeat_errors += 1,
        }
        for (user, holds) in [(&ledger.reader, true), (&ledger.outsider, false)] {
            match check(&client, &ledger, user, None).await {
                Ok(allowed) => {
                    tally.checks += 1;
                    tally.wrong_answers += u64::from(allowed != holds);
                }
                Err(_) => tally.errors += 1,
            }
        }
        let events = (0..10)
            .map(|index| EventInput {
                action: "ledger.entry.posted".to_owned(),
                resource_type: "entry".to_owned(),
                resource_id: format!("{batch}-{index}"),
                outcome: Outcome::Success.into(),
                ..Default::default()
            })
            .collect();
        batch += 1;
        match client
            .record_events(&ledger.tenant.id, Some(&ledger.reader.user_id), events)
            .await
        {
            Ok(recorded) => tally
                .acknowledged
                .extend(recorded.events.into_iter().map(|event| event.id)),
            Err(_) => tally.errors += 1,
        }
    }
    tally
}

/// The steady loads, one per core replica.
pub struct Loads(Vec<tokio::task::JoinHandle<Tally>>);

/// One steady load per core replica, each on its own client of that
/// replica (and of the registry-server).
pub fn steady_loads(
    cluster: &Cluster,
    ledger: &Arc<Ledger>,
    replicas: usize,
    until: Instant,
) -> Loads {
    Loads(
        (0..replicas)
            .map(|index| {
                let client = cluster.client(index, &ledger.module_key, Duration::from_secs(3));
                let registry = cluster.client(
                    cluster.registry(),
                    &ledger.module_key,
                    Duration::from_secs(3),
                );
                tokio::spawn(steady_load(client, registry, ledger.clone(), until))
            })
            .collect(),
    )
}

impl Loads {
    /// What each load saw, once all have run their time.
    pub async fn finish(self) -> Tallies {
        let mut tallies = Vec::with_capacity(self.0.len());
        for load in self.0 {
            tallies.push(load.await.expect("a load ran to its end"));
        }
        Tallies(tallies)
    }

    /// Stops the loads where they are.
    pub fn abort(self) {
        for load in self.0 {
            load.abort();
        }
    }
}

/// What every replica's load saw, in replica order.
pub struct Tallies(pub Vec<Tally>);

impl Tallies {
    /// Every event any load had acknowledged.
    pub fn acknowledged(&self) -> Vec<String> {
        self.0
            .iter()
            .flat_map(|tally| tally.acknowledged.iter().cloned())
            .collect()
    }

    pub fn wrong_answers(&self) -> u64 {
        self.0.iter().map(|tally| tally.wrong_answers).sum()
    }

    pub fn checks(&self) -> u64 {
        self.0.iter().map(|tally| tally.checks).sum()
    }
}

impl std::fmt::Display for Tallies {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (index, tally) in self.0.iter().enumerate() {
            write!(
                formatter,
                "{}replica {index}: {} checks ({} wrong), {} failed calls after retries, {} heartbeats ({} failed)",
                if index == 0 { "" } else { "; " },
                tally.checks,
                tally.wrong_answers,
                tally.errors,
                tally.heartbeats,
                tally.heartbeat_errors
            )?;
        }
        Ok(())
    }
}

/// Binds the churned user to the role that holds the permission.
pub async fn grant_churned(
    operator: &Client,
    ledger: &Ledger,
) -> Result<AssignRoleResponse, tonic::Status> {
    Ok(operator
        .rbac()
        .assign_role(AssignRoleRequest {
            tenant_id: ledger.tenant.id.clone(),
            user_id: ledger.churned.user_id.clone(),
            role_id: ledger.role_id.clone(),
            ..Default::default()
        })
        .await?
        .into_inner())
}

/// Removes a binding; the change's consistency token.
pub async fn unbind(operator: &Client, binding_id: &str) -> Result<String, tonic::Status> {
    Ok(operator
        .rbac()
        .unassign_role(UnassignRoleRequest {
            binding_id: binding_id.to_owned(),
        })
        .await?
        .into_inner()
        .consistency_token)
}

/// Every acknowledged event is in the tenant's chain, and the chain
/// verifies; the number of events in it.
pub async fn assert_chain_holds(
    operator: &Client,
    ledger: &Ledger,
    acknowledged: &[String],
) -> i64 {
    let verified = operator
        .audit()
        .verify_chain(VerifyChainRequest {
            chain: Some(verify_chain_request::Chain::TenantId(
                ledger.tenant.id.clone(),
            )),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(verified.valid, "{verified:?}");
    let mut in_chain = HashSet::new();
    let mut page_token = String::new();
    loop {
        let page = operator
            .audit()
            .query_events(QueryEventsRequest {
                chain: Some(query_events_request::Chain::TenantId(
                    ledger.tenant.id.clone(),
                )),
                actor_module_id: "ledger".to_owned(),
                page_size: 1000,
                page_token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        in_chain.extend(page.events.into_iter().map(|event| event.id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let lost: Vec<_> = acknowledged
        .iter()
        .filter(|id| !in_chain.contains(*id))
        .collect();
    assert!(lost.is_empty(), "{} acknowledged events lost", lost.len());
    verified.events_checked
}
