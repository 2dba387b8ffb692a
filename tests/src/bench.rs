//! The load generator behind `plinth-bench`: N connections × M calls in
//! flight for a fixed time after a warm-up, latency in an HDR histogram.

use std::{
    future::Future,
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use tonic::transport::{Channel, Endpoint};

/// How hard and how long to push.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub connections: usize,
    pub in_flight_per_connection: usize,
    pub warm_up: Duration,
    pub duration: Duration,
}

/// What one RPC achieved.
#[derive(Debug, Clone)]
pub struct Measurement {
    pub name: String,
    pub calls: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub latency: Histogram<u64>,
}

impl Measurement {
    pub fn calls_per_second(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }

    /// Latency at `quantile` (0..=1), in microseconds.
    pub fn latency_micros(&self, quantile: f64) -> u64 {
        self.latency.value_at_quantile(quantile)
    }
}

/// Opens `count` separate HTTP/2 connections to `address`.
pub async fn connect(address: std::net::SocketAddr, count: usize) -> anyhow::Result<Vec<Channel>> {
    let endpoint = Endpoint::from_shared(format!("http://{address}"))?.tcp_nodelay(true);
    let mut channels = Vec::with_capacity(count);
    for _ in 0..count {
        channels.push(endpoint.connect().await?);
    }
    Ok(channels)
}

/// Runs `call` (made per worker from its connection) under `load`.
pub async fn measure<MakeCall, Call, CallFuture>(
    name: &str,
    channels: &[Channel],
    load: Load,
    make_call: MakeCall,
) -> Measurement
where
    MakeCall: Fn(Channel) -> Call,
    Call: FnMut() -> CallFuture + Send + 'static,
    CallFuture: Future<Output = Result<(), tonic::Status>> + Send,
{
    let start = Instant::now();
    let measuring_from = start + load.warm_up;
    let until = measuring_from + load.duration;
    let mut workers = Vec::new();
    for channel in channels {
        for _ in 0..load.in_flight_per_connection {
            let mut call = make_call(channel.clone());
            workers.push(tokio::spawn(async move {
                let mut latency = new_histogram();
                let (mut calls, mut errors) = (0_u64, 0_u64);
                loop {
                    let began = Instant::now();
                    if began >= until {
                        break;
                    }
                    let result = call().await;
                    if began < measuring_from {
                        continue;
                    }
                    match result {
                        Ok(()) => {
                            calls += 1;
                            let micros =
                                began.elapsed().as_micros().min(u128::from(u64::MAX)) as u64;
                            latency.saturating_record(micros.max(1));
                        }
                        Err(_) => errors += 1,
                    }
                }
                (calls, errors, latency)
            }));
        }
    }
    let mut measurement = Measurement {
        name: name.to_owned(),
        calls: 0,
        errors: 0,
        elapsed: load.duration,
        latency: new_histogram(),
    };
    for worker in workers {
        let (calls, errors, latency) = worker.await.expect("bench worker");
        measurement.calls += calls;
        measurement.errors += errors;
        measurement
            .latency
            .add(&latency)
            .expect("histograms share bounds");
    }
    measurement
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}
