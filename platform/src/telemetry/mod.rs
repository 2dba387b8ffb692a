//! Structured logs through `tracing`; `RUST_LOG` filters (default `info`).
//! With `otlp_endpoint` set, traces too: see [`otlp`].

use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};

use crate::config::LogFormat;

pub mod otlp;

/// Installs the process's subscriber: logs, and trace export to `otlp`
/// (an `http://` OTLP/HTTP endpoint) when given. Spawns the exporter, so
/// it runs inside the runtime.
pub fn init(format: LogFormat, otlp: Option<&str>) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer().boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer().json().boxed(),
    };
    let traces = otlp.map(|endpoint| {
        let service = std::env::args()
            .next()
            .and_then(|program| {
                std::path::Path::new(&program)
                    .file_name()
                    .map(|name| name.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "plinth".to_owned());
        let (layer, exporter) = otlp::TraceLayer::new(endpoint, &service);
        tokio::spawn(exporter.run());
        layer.with_filter(otlp::interest())
    });
    tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(traces)
        .init();
}
