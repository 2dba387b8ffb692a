//! HTTP/2 abuse against a core-server in a process of its own (so that its
//! memory is its own): each attack is cut off or contained, the server's
//! memory stays bounded, and a well-behaved client on its own connection
//! keeps being served. The strict latency figures (p99 within 2× of the
//! unloaded p99) are `plinth-bench --abuse-only`'s, on a quiet machine;
//! here other tests share the cores, so latency is only bounded loosely.

use std::time::{Duration, Instant};

use plinth_tests::{
    abuse::{self, Served},
    bench::{ServerProcess, core_server_command, free_address},
    core_server_binary,
};

const MIB: u64 = 1024 * 1024;

/// A core-server process on the embedded default, with `args` added.
struct Target {
    server: ServerProcess,
    _data: tempfile::TempDir,
}

impl Target {
    async fn start(args: &[&str]) -> Target {
        let data = tempfile::tempdir().unwrap();
        let address = free_address().unwrap();
        let mut command = core_server_command(&core_server_binary(), address, data.path());
        command.args(args);
        let (server, _) = ServerProcess::start(command, address).await.unwrap();
        Target {
            server,
            _data: data,
        }
    }
}

/// Served well enough while sharing the machine with other tests: no
/// errors, and a p99 that an attack that got through would blow past.
fn assert_served(during: Served, before: Served) {
    assert_eq!(during.errors, 0, "{during:?}");
    assert!(during.calls > 100, "{during:?}");
    assert!(
        during.p99 <= (before.p99 * 4).max(Duration::from_millis(25)),
        "p99 {:?} under attack against {:?} before",
        during.p99,
        before.p99
    );
}

/// What an attack that runs for two seconds beside a well-behaved client
/// did, what that client saw before and during it, and what the server's
/// memory grew by.
struct UnderAttack {
    attack: abuse::Attack,
    before: Served,
    during: Served,
    grown: u64,
}

async fn under_attack<Run, Ran>(name: &str, attack: Run) -> UnderAttack
where
    Run: FnOnce(std::net::SocketAddr, Instant) -> Ran,
    Ran: Future<Output = abuse::Attack> + Send + 'static,
{
    let target = Target::start(&[]).await;
    let address = target.server.address;
    let before = abuse::well_behaved(address, Duration::from_millis(500)).await;
    let resident_before = target.server.resident_bytes();

    let until = Instant::now() + Duration::from_secs(2);
    let (attack, during) = tokio::join!(
        tokio::spawn(attack(address, until)),
        abuse::well_behaved(address, Duration::from_secs(2)),
    );
    let attack = attack.unwrap();
    let grown = target
        .server
        .resident_bytes()
        .saturating_sub(resident_before);
    eprintln!(
        "{name}: {attack:?}; served {during:?} (before {before:?}); grew {} MiB",
        grown / MIB
    );
    UnderAttack {
        attack,
        before,
        during,
        grown,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_resets_get_their_connections_closed_while_others_are_served() {
    let UnderAttack {
        attack,
        before,
        during,
        grown,
    } = under_attack("rapid reset", abuse::rapid_reset).await;

    assert!(attack.closed_by_server >= 1, "{attack:?}");
    assert!(
        attack.streams / attack.connections.max(1) < 10_000,
        "each connection is cut off early: {attack:?}"
    );
    assert_served(during, before);
    assert!(grown < 64 * MIB, "grew {} MiB", grown / MIB);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuation_flood_is_cut_off_within_a_few_frames() {
    let target = Target::start(&[]).await;
    let address = target.server.address;
    let resident_before = target.server.resident_bytes();

    let attack = abuse::continuation_flood(address, Instant::now() + Duration::from_secs(1)).await;

    eprintln!("continuation flood: {attack:?}");
    // Every connection but the last, which the attack's end may cut first.
    assert!(
        attack.closed_by_server + 1 >= attack.connections,
        "{attack:?}"
    );
    // 64 MiB offered per connection; what got written fits socket buffers.
    assert!(
        attack.bytes / attack.connections.max(1) < 16 * MIB,
        "{attack:?}"
    );
    let grown = target
        .server
        .resident_bytes()
        .saturating_sub(resident_before);
    assert!(grown < 32 * MIB, "grew {} MiB", grown / MIB);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_header_lists_are_refused_while_others_are_served() {
    let UnderAttack {
        attack,
        before,
        during,
        grown,
    } = under_attack("header flood", abuse::header_flood).await;

    assert!(attack.closed_by_server >= 1, "{attack:?}");
    assert_served(during, before);
    assert!(grown < 32 * MIB, "grew {} MiB", grown / MIB);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_read_are_closed_by_keepalive() {
    let target = Target::start(&[
        "--http2-keepalive-seconds",
        "1",
        "--http2-keepalive-timeout-seconds",
        "1",
    ])
    .await;
    let address = target.server.address;
    let resident_before = target.server.resident_bytes();

    let stalled = abuse::never_reading(address, 20, 100).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resident_stalled = target.server.resident_bytes();
    let during = abuse::well_behaved(address, Duration::from_millis(500)).await;
    let closed = abuse::wait_closed(stalled, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let resident_after = target.server.resident_bytes();

    eprintln!(
        "never reading: RSS {} MiB before, {} MiB with 2000 stalled calls, {} MiB after; {closed} closed; served {during:?}",
        resident_before / MIB,
        resident_stalled / MIB,
        resident_after / MIB
    );
    assert_eq!(closed, 20, "keepalive closed every stalled connection");
    assert_eq!(during.errors, 0);
    assert!(
        resident_stalled.saturating_sub(resident_before) < 256 * MIB,
        "{} MiB held",
        resident_stalled.saturating_sub(resident_before) / MIB
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_opening_connections_past_its_burst_has_the_excess_closed_at_once() {
    let target = Target::start(&[
        "--new-connections-per-peer-per-second",
        "10",
        "--new-connections-per-peer-burst",
        "50",
    ])
    .await;
    let address = target.server.address;

    let flood = abuse::idle(address, 200, 1).await.unwrap();
    let closed = abuse::wait_closed(flood, Duration::from_secs(2)).await;
    let others = abuse::idle(address, 20, 20).await.unwrap();
    let others_closed = abuse::wait_closed(others, Duration::from_millis(500)).await;

    eprintln!("200 connections from one peer: {closed} closed at once");
    // The burst of 50, and a few more as the rate refills while it opens.
    assert!((120..=150).contains(&closed), "{closed} closed");
    assert_eq!(others_closed, 0, "other peers are apart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_connections_from_a_hundred_peers_cost_little_memory() {
    let target = Target::start(&[]).await;
    let address = target.server.address;
    let before = abuse::well_behaved(address, Duration::from_millis(500)).await;
    let resident_before = target.server.resident_bytes();

    let idle = abuse::idle(address, 10_000, 100).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let resident_idle = target.server.resident_bytes();
    let during = abuse::well_behaved(address, Duration::from_secs(1)).await;
    drop(idle);

    let per_connection = resident_idle.saturating_sub(resident_before) / 10_000;
    eprintln!(
        "10,000 idle connections from 100 peers: RSS {} MiB before, {} MiB held ({per_connection} bytes each); served {during:?} (before {before:?})",
        resident_before / MIB,
        resident_idle / MIB
    );
    assert!(per_connection < 32 * 1024, "{per_connection} bytes each");
    assert_served(during, before);
}
