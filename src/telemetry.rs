//! Metrics: every name with its help text, and the exporters of both
//! binaries (a Prometheus `/metrics` listener, process metrics, and pushes to
//! a Pushgateway for the command, which may not live long enough to be
//! scraped). The code that counts uses the names defined here.

use std::net::SocketAddr;
use std::time::Duration;

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Connections accepted after mutual TLS (daemon).
pub const CONNECTIONS_ACCEPTED: &str = "realize_connections_accepted_total";
/// Connections refused, by `reason` (daemon).
pub const CONNECTIONS_REFUSED: &str = "realize_connections_refused_total";
/// Connections open now (daemon).
pub const CONNECTIONS_OPEN: &str = "realize_connections_open";
/// Control requests, by `op` and `status` (daemon).
pub const RPC_REQUESTS: &str = "realize_rpc_requests_total";
/// Control request latency, by `op` (daemon).
pub const RPC_DURATION: &str = "realize_rpc_duration_seconds";
/// Files made final, by `peer` and `method` (`copy`, `resume`) (daemon).
pub const FILES_RECEIVED: &str = "realize_files_received_total";
/// File bytes received, by `peer` and `method` (daemon).
pub const BYTES_RECEIVED: &str = "realize_received_bytes_total";
/// Files read to the end for a peer, by `peer` and `method` (daemon).
pub const FILES_SENT: &str = "realize_files_sent_total";
/// File bytes sent, by `peer` and `method` (daemon).
pub const BYTES_SENT: &str = "realize_sent_bytes_total";
/// Failed requests and streams, by error `kind` (daemon).
pub const ERRORS: &str = "realize_errors_total";
/// The send limit in force, by `peer`; 0 when unlimited (daemon).
pub const SEND_LIMIT: &str = "realize_send_limit_bytes_per_second";
/// Smoothed round-trip time, by `peer` (daemon).
pub const PATH_RTT: &str = "realize_path_rtt_seconds";
/// Congestion window, by `peer` (daemon).
pub const PATH_CWND: &str = "realize_path_congestion_window_bytes";
/// UDP datagrams sent, by `peer` (daemon).
pub const PATH_SENT_PACKETS: &str = "realize_path_sent_packets";
/// Packets declared lost, by `peer` (daemon).
pub const PATH_LOST_PACKETS: &str = "realize_path_lost_packets";
/// UDP datagrams received, by `peer` (daemon).
pub const PATH_RECEIVED_DATAGRAMS: &str = "realize_path_received_datagrams";
/// Files moved, by `method` (`copy`, `resume`, `existing`) (command).
pub const FILES_MOVED: &str = "realize_files_moved_total";
/// Files that failed, by `kind` (command).
pub const FILES_FAILED: &str = "realize_files_failed_total";
/// File bytes sent to the destination (command).
pub const BYTES_MOVED: &str = "realize_moved_bytes_total";
/// Bytes a resume did not have to send again: by the command, and by the
/// daemon for what it received, by `peer`.
pub const BYTES_SAVED: &str = "realize_resume_saved_bytes_total";
/// Reconnections after a lost connection (command).
pub const RETRIES: &str = "realize_retries_total";

/// Buckets of [`RPC_DURATION`], in seconds: a hash of a large file takes
/// seconds, a delete a fraction of a millisecond.
const RPC_BUCKETS: &[f64] = &[0.0005, 0.002, 0.01, 0.05, 0.25, 1.0, 5.0, 30.0];

/// Registers the help text and unit of every metric.
pub fn describe() {
    describe_counter!(
        CONNECTIONS_ACCEPTED,
        "Connections accepted after mutual TLS."
    );
    describe_counter!(CONNECTIONS_REFUSED, "Connections refused, by reason.");
    describe_gauge!(CONNECTIONS_OPEN, "Connections open now.");
    describe_counter!(RPC_REQUESTS, "Control requests served, by op and status.");
    describe_histogram!(
        RPC_DURATION,
        Unit::Seconds,
        "Time to serve a control request, by op."
    );
    describe_counter!(
        FILES_RECEIVED,
        "Files received and made final, by peer and method."
    );
    describe_counter!(
        BYTES_RECEIVED,
        Unit::Bytes,
        "File bytes received, by peer and method."
    );
    describe_counter!(
        FILES_SENT,
        "Files read to the end for a peer, by peer and method."
    );
    describe_counter!(
        BYTES_SENT,
        Unit::Bytes,
        "File bytes sent, by peer and method."
    );
    describe_counter!(ERRORS, "Failed requests and streams, by error kind.");
    describe_gauge!(
        SEND_LIMIT,
        "Send limit in force for a peer's connection; 0 is none."
    );
    describe_gauge!(
        PATH_RTT,
        Unit::Seconds,
        "Smoothed round-trip time of a peer's connection."
    );
    describe_gauge!(
        PATH_CWND,
        Unit::Bytes,
        "Congestion window of a peer's connection."
    );
    describe_gauge!(
        PATH_SENT_PACKETS,
        "UDP datagrams sent on a peer's connection."
    );
    describe_gauge!(PATH_LOST_PACKETS, "Packets lost on a peer's connection.");
    describe_gauge!(
        PATH_RECEIVED_DATAGRAMS,
        "UDP datagrams received on a peer's connection."
    );
    describe_counter!(
        FILES_MOVED,
        "Files moved, by method (copy, resume, existing)."
    );
    describe_counter!(FILES_FAILED, "Files that failed to move, by kind.");
    describe_counter!(
        BYTES_MOVED,
        Unit::Bytes,
        "File bytes sent to the destination."
    );
    describe_counter!(
        BYTES_SAVED,
        Unit::Bytes,
        "Bytes a resume did not send again."
    );
    describe_counter!(RETRIES, "Reconnections after a lost connection.");
}

/// Installs the metrics recorder, serving `/metrics` on `listen` if given,
/// and starts collecting process metrics. Call inside a tokio runtime.
pub fn install(listen: Option<SocketAddr>) -> Result<PrometheusHandle, String> {
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(RPC_DURATION.into()), RPC_BUCKETS)
        .map_err(|e| e.to_string())?;
    let handle = match listen {
        Some(addr) => {
            let (recorder, exporter) = builder
                .with_http_listener(addr)
                .build()
                .map_err(|e| format!("metrics listener on {addr}: {e}"))?;
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).map_err(|e| e.to_string())?;
            tokio::spawn(exporter);
            handle
        }
        None => builder.install_recorder().map_err(|e| e.to_string())?,
    };
    describe();
    let process = metrics_process::Collector::default();
    process.describe();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            process.collect();
        }
    });
    Ok(handle)
}

/// Where and as whom the command pushes its metrics.
#[derive(Debug, Clone)]
pub struct Pushgateway {
    /// `http://HOST:PORT/metrics/job/JOB/instance/INSTANCE`.
    url: String,
}

impl Pushgateway {
    /// A gateway at `base` (`http://HOST:PORT`), grouping by job and instance.
    pub fn new(base: &str, job: &str, instance: &str) -> Result<Self, String> {
        if !base.starts_with("http://") {
            return Err(format!(
                "{base}: the Pushgateway URL must start with http://"
            ));
        }
        let segment = |s: &str| {
            if s.is_empty() || s.contains('/') {
                Err(format!(
                    "{s:?}: job and instance must be non-empty and contain no '/'"
                ))
            } else {
                Ok(s.to_string())
            }
        };
        Ok(Self {
            url: format!(
                "{}/metrics/job/{}/instance/{}",
                base.trim_end_matches('/'),
                segment(job)?,
                segment(instance)?
            ),
        })
    }

    /// Replaces the group's metrics with `handle`'s, within 10 s.
    pub async fn push(&self, handle: &PrometheusHandle) -> Result<(), String> {
        let body = handle.render();
        let url = self.url.clone();
        tokio::task::spawn_blocking(move || {
            ureq::put(&url)
                .timeout(Duration::from_secs(10))
                .set("Content-Type", "text/plain; version=0.0.4")
                .send_string(&body)
                .map(|_| ())
                .map_err(|e| format!("pushing metrics to {url}: {e}"))
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_urls_group_by_job_and_instance() {
        let gateway = Pushgateway::new("http://gw:9091/", "nightly", "host-a").unwrap();
        assert_eq!(
            gateway.url,
            "http://gw:9091/metrics/job/nightly/instance/host-a"
        );
        assert!(Pushgateway::new("gw:9091", "j", "i").is_err());
        assert!(Pushgateway::new("http://gw", "a/b", "i").is_err());
        assert!(Pushgateway::new("http://gw", "j", "").is_err());
    }
}
