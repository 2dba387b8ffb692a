//! New connections per peer address, by GCRA: a peer that opens them
//! faster than its rate (past a burst) has the excess closed right after
//! accept, before any TLS or HTTP/2 work. A client keeps its connections
//! for long; only a flood (an attacker whose connections the server keeps
//! closing for abuse, reconnecting at once) comes near the limit.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Peers remembered before those back to a full burst are dropped.
const PRUNE_ABOVE: usize = 10_000;

pub struct ConnectionThrottle {
    interval: Duration,
    window: Duration,
    /// Each peer's theoretical arrival time of its next connection.
    peers: Mutex<HashMap<IpAddr, Instant>>,
}

impl ConnectionThrottle {
    /// `per_second` new connections per peer, `burst` at once.
    pub fn new(per_second: u32, burst: u32) -> ConnectionThrottle {
        let interval = Duration::from_secs(1) / per_second.max(1);
        ConnectionThrottle {
            interval,
            window: interval * burst.max(1),
            peers: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a new connection from `peer` is taken.
    pub fn admits(&self, peer: IpAddr) -> bool {
        let now = Instant::now();
        let mut peers = self
            .peers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if peers.len() > PRUNE_ABOVE {
            peers.retain(|_, arrival| *arrival > now);
        }
        let arrival = peers.entry(peer).or_insert(now);
        let next = (*arrival).max(now);
        if next > now + self.window - self.interval {
            return false;
        }
        *arrival = next + self.interval;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_gets_its_burst_then_its_rate_and_others_are_apart() {
        let throttle = ConnectionThrottle::new(10, 3);
        let peer = IpAddr::from([10, 0, 0, 1]);
        let admitted = (0..10).filter(|_| throttle.admits(peer)).count();
        assert_eq!(admitted, 3);
        assert!(throttle.admits(IpAddr::from([10, 0, 0, 2])));
        std::thread::sleep(Duration::from_millis(110));
        assert!(throttle.admits(peer));
        assert!(!throttle.admits(peer));
    }
}
