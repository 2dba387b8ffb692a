//! Consistency across replicas: a token read back on another replica
//! reflects the write it came from; a revoked grant is refused everywhere
//! within a bound, measured.

use std::time::{Duration, Instant};

use plinth_api::rbac::v1::{CheckRequest, Consistency, UnassignRoleRequest, consistency};
use plinth_tests::{Backend, Sandbox, TestRedis, assert_refusal};
use tonic::Code;

use super::{allowed, assign, check_request, create_role, declare, tenant};

crate::on_both_backends!(
    a_token_reads_a_write_back_on_another_replica,
    a_revoked_grant_is_refused_by_the_other_replica_within_a_second,
);

fn requiring(request: CheckRequest, requirement: consistency::Requirement) -> CheckRequest {
    CheckRequest {
        consistency: Some(Consistency {
            requirement: Some(requirement),
        }),
        ..request
    }
}

async fn a_token_reads_a_write_back_on_another_replica(backend: Backend) {
    // No Redis: nothing tells the second replica; only the token does.
    let first = Sandbox::start(backend).await;
    let second = first.replica().await;
    declare(&first).await;
    let mut acme = tenant(&first, "acme").await;
    let ada = acme.member(&first, "ada").await;
    let admin = &mut acme.admin.clients;
    let reader = create_role(admin, &acme.id, "reader", &["finance:invoice:read"], &[]).await;
    let mut on_second = second.operator().await;
    let question = check_request(&acme.id, &ada.user_id, "finance:invoice:read", "");
    assert!(
        !allowed(
            &mut on_second,
            &acme.id,
            &ada.user_id,
            "finance:invoice:read",
            ""
        )
        .await
    );

    let (_, token) = assign(admin, &acme.id, &ada.user_id, &reader, "").await;

    let fresh = on_second
        .rbac
        .check(requiring(
            question.clone(),
            consistency::Requirement::AtLeastAsFresh(token.clone()),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(fresh.allowed);
    let answered_at = fresh.consistency_token.rsplit_once('.').unwrap().1;
    assert!(
        answered_at.parse::<i64>().unwrap() >= token.rsplit_once('.').unwrap().1.parse().unwrap()
    );
    let latest = on_second
        .rbac
        .check(requiring(
            question.clone(),
            consistency::Requirement::FullyConsistent(true),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(latest.allowed);
    let (tenant_part, _) = token.rsplit_once('.').unwrap();
    let from_the_future = on_second
        .rbac
        .check(requiring(
            question,
            consistency::Requirement::AtLeastAsFresh(format!("{tenant_part}.{}", i64::MAX)),
        ))
        .await
        .unwrap_err();
    assert_refusal(
        &from_the_future,
        Code::Unavailable,
        "ERROR_REASON_RBAC_VERSION_BEHIND",
    );
    let retry = tonic_types::StatusExt::get_details_retry_info(&from_the_future);
    assert!(retry.and_then(|info| info.retry_delay).is_some());
}

async fn a_revoked_grant_is_refused_by_the_other_replica_within_a_second(backend: Backend) {
    const REVOCATIONS: usize = 100;
    let redis = TestRedis::new();
    let first = Sandbox::start_with(backend, |config| redis.configure(config)).await;
    let second = first.replica().await;
    declare(&first).await;
    let mut acme = tenant(&first, "acme").await;
    let ada = acme.member(&first, "ada").await;
    let admin = &mut acme.admin.clients;
    let reader = create_role(admin, &acme.id, "reader", &["finance:invoice:read"], &[]).await;
    let mut on_second = second.operator().await;
    let mut latencies = Vec::with_capacity(REVOCATIONS);

    for _ in 0..REVOCATIONS {
        let (binding, _) = assign(admin, &acme.id, &ada.user_id, &reader, "").await;
        // The second replica has the grant compiled (and cached) first.
        while !allowed(
            &mut on_second,
            &acme.id,
            &ada.user_id,
            "finance:invoice:read",
            "",
        )
        .await
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let revoked_at = Instant::now();
        admin
            .rbac
            .unassign_role(UnassignRoleRequest {
                binding_id: binding.id,
            })
            .await
            .unwrap();
        while allowed(
            &mut on_second,
            &acme.id,
            &ada.user_id,
            "finance:invoice:read",
            "",
        )
        .await
        {
            assert!(
                revoked_at.elapsed() < Duration::from_secs(5),
                "never refused"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        latencies.push(revoked_at.elapsed());
    }

    latencies.sort();
    let p50 = latencies[REVOCATIONS / 2];
    let p99 = latencies[REVOCATIONS * 99 / 100];
    eprintln!(
        "revocation reached the other replica ({backend:?}): p50 {p50:?}, p99 {p99:?}, max {:?}",
        latencies[REVOCATIONS - 1]
    );
    assert!(
        latencies[REVOCATIONS - 1] < Duration::from_secs(1),
        "{latencies:?}"
    );
}
