//! `plinth-chaos`: the fault tests' deployment (three core-server replicas
//! and a registry-server on a PostgreSQL and a Redis of its own) under the
//! same load for minutes, while faults come one after another: a replica
//! killed with SIGKILL and started again, PostgreSQL crashing and coming
//! back, Redis killed and started again. It ends by checking that no
//! answer was wrong and no acknowledged event was lost, and prints what
//! each fault cost.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use clap::Parser;
use plinth_api::rbac::v1::ListRoleBindingsRequest;
use plinth_client::Client;
use plinth_tests::{
    TestRedis,
    cluster::{Cluster, PrivatePostgres, PrivateRedis},
    load::{Ledger, assert_chain_holds, check, grant_churned, ledger, steady_loads, unbind},
};
use tonic_health::pb::health_check_response::ServingStatus;

/// Faults under load, then the bill.
#[derive(Parser)]
struct Args {
    /// How long the load runs
    #[arg(long, default_value_t = 120)]
    seconds: u64,
    /// Seconds between the start of one fault and the next
    #[arg(long, default_value_t = 10)]
    fault_every: u64,
    /// Seconds a killed or crashed part stays down
    #[arg(long, default_value_t = 2)]
    down_for: u64,
}

const REPLICAS: usize = 3;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    plinth_tests::install_crypto_provider();
    let postgres = PrivatePostgres::start().await;
    postgres.create_database("plinth");
    let mut redis_server = PrivateRedis::start().await;
    let redis = TestRedis::at(&redis_server.url);
    let mut cluster = Cluster::start(REPLICAS, &postgres.url("plinth"), &redis).await;
    let ledger = Arc::new(ledger(&cluster).await);
    let operator = cluster.client(0, &cluster.operator_key, Duration::from_secs(10));
    let observers: Vec<Client> = (0..REPLICAS)
        .map(|index| cluster.client(index, &ledger.module_key, Duration::from_secs(3)))
        .collect();

    let until = Instant::now() + Duration::from_secs(args.seconds);
    let loads = steady_loads(&cluster, &ledger, REPLICAS, until);
    let churn = Churn::default();
    let churning = tokio::spawn(churn.clone().run(
        operator.clone(),
        observers,
        ledger.clone(),
        until,
    ));
    let down_for = Duration::from_secs(args.down_for);
    let mut fault = 0;
    while Instant::now() + Duration::from_secs(args.fault_every) < until {
        tokio::time::sleep(Duration::from_secs(args.fault_every) - down_for).await;
        match fault % 3 {
            0 => {
                let index = (fault / 3) % REPLICAS;
                cluster.kill(index);
                tokio::time::sleep(down_for).await;
                let took = cluster.start_replica(index).await;
                println!("kill -9 of replica {index}: back {took:?} after its start");
            }
            1 => {
                postgres.crash();
                tokio::time::sleep(down_for).await;
                postgres.start_server();
                let back = Instant::now();
                for index in 0..REPLICAS {
                    let limit = Duration::from_secs(30);
                    cluster
                        .health_becomes(index, ServingStatus::Serving, back, limit)
                        .await;
                }
                println!(
                    "PostgreSQL crash: every replica SERVING {:?} after it was back",
                    back.elapsed()
                );
            }
            _ => {
                redis_server.kill();
                tokio::time::sleep(down_for).await;
                redis_server.restart().await;
                println!("Redis killed for {down_for:?} and started again");
            }
        }
        fault += 1;
    }
    let tallies = loads.finish().await;
    churning.await?;

    let acknowledged = tallies.acknowledged();
    let in_chain = assert_chain_holds(&operator, &ledger, &acknowledged).await;
    let wrong = tallies.wrong_answers() + churn.wrong.load(Ordering::Relaxed);
    println!(
        "{} s, {fault} faults: {} events acknowledged, 0 lost, {in_chain} in the verified chain",
        args.seconds,
        acknowledged.len()
    );
    println!(
        "wrong answers: {wrong} (steady checks {}, grant changes {} checked at their consistency tokens)",
        tallies.checks(),
        churn.changes.load(Ordering::Relaxed)
    );
    println!("{tallies}");
    anyhow::ensure!(wrong == 0, "{wrong} wrong answers");
    Ok(())
}

/// Grants and revokes the churned user's role on replica 0, checking each
/// change on every replica at the change's consistency token.
#[derive(Clone, Default)]
struct Churn {
    changes: Arc<AtomicU64>,
    wrong: Arc<AtomicU64>,
}

impl Churn {
    async fn run(
        self,
        operator: Client,
        observers: Vec<Client>,
        ledger: Arc<Ledger>,
        until: Instant,
    ) {
        while Instant::now() < until {
            let Ok(assigned) = grant_churned(&operator, &ledger).await else {
                // It may have landed all the same: start again from no grant.
                self.unbind_all(&operator, &ledger).await;
                continue;
            };
            self.observe(&observers, &ledger, &assigned.consistency_token, true)
                .await;
            let Some(binding) = assigned.binding else {
                continue;
            };
            // Retried until it lands: the next grant needs this one gone.
            loop {
                match unbind(&operator, &binding.id).await {
                    Ok(token) => {
                        self.observe(&observers, &ledger, &token, false).await;
                        break;
                    }
                    Err(status) if status.code() == tonic::Code::NotFound => break,
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }
    }

    /// Removes every binding of the churned user, retrying until done.
    async fn unbind_all(&self, operator: &Client, ledger: &Ledger) {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let Ok(listed) = operator
                .rbac()
                .list_role_bindings(ListRoleBindingsRequest {
                    tenant_id: ledger.tenant.id.clone(),
                    user_id: ledger.churned.user_id.clone(),
                    ..Default::default()
                })
                .await
            else {
                continue;
            };
            let mut unbound = true;
            for binding in listed.into_inner().bindings {
                let unassigned = unbind(operator, &binding.id).await;
                unbound &= unassigned.is_ok()
                    || unassigned.is_err_and(|status| status.code() == tonic::Code::NotFound);
            }
            if unbound {
                return;
            }
        }
    }

    /// Every replica that answers must answer `holds` at `token`.
    async fn observe(&self, observers: &[Client], ledger: &Ledger, token: &str, holds: bool) {
        self.changes.fetch_add(1, Ordering::Relaxed);
        for observer in observers {
            if let Ok(allowed) = check(observer, ledger, &ledger.churned, Some(token)).await
                && allowed != holds
            {
                self.wrong.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
