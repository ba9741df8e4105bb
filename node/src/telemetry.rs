//! Logs (`tracing`) and metrics (`metrics`, rendered for Prometheus at `/metrics`).

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// Logs go to stderr; `RUST_LOG` filters (default `info`).
/// The log filter when `RUST_LOG` is not set. openraft's replication logs two to four lines per
/// failed call to a down peer; `pbx_cluster` logs the runs of failures instead.
pub const DEFAULT_LOG_FILTER: &str = "info,openraft=warn,openraft::replication=off,\
                                      openraft::engine::handler::replication_handler=error";

pub fn init_tracing(json: bool) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Installs the process-wide Prometheus recorder once and returns its handle.
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ])
                .map(PrometheusBuilder::build_recorder)
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            // A second recorder in one process (tests) is harmless: the first one wins.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}
