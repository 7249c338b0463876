//! The metrics of a move: a `/metrics` listener while it runs, pushes to a
//! Pushgateway during the run and at its end.

use std::future::Future;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::task::JoinHandle;

use crate::cli::args::MoveArgs;
use crate::cli::exit_status::ExitStatus;
use crate::cli::CliError;
use crate::telemetry::{self, Pushgateway};

/// How often a long run pushes its metrics to a Pushgateway.
const PUSH_INTERVAL: Duration = Duration::from_secs(30);

/// Runs `run` with the metrics the flags ask for and returns its exit
/// status. The final push happens whatever the outcome, failed runs
/// included; when it fails, a run that moved everything exits with
/// [`ExitStatus::MetricsPushFailed`].
pub(super) async fn around(
    args: &MoveArgs,
    run: impl Future<Output = Result<ExitStatus, CliError>>,
) -> Result<ExitStatus, CliError> {
    let gateway = gateway(args)?;
    if args.metrics_addr.is_none() && gateway.is_none() {
        return run.await;
    }
    let handle = telemetry::install(args.metrics_addr).map_err(CliError::Usage)?;
    let periodic = gateway
        .clone()
        .map(|gateway| push_periodically(gateway, handle.clone()));
    let outcome = run.await;
    if let Some(task) = periodic {
        task.abort();
    }
    let pushed = match &gateway {
        Some(gateway) => gateway.push(&handle).await,
        None => Ok(()),
    };
    let status = outcome?;
    Ok(match pushed {
        Ok(()) => status,
        Err(e) => final_push_failed(status, &e),
    })
}

/// The Pushgateway of `--metrics-pushgateway`, if given, with the job and
/// instance labels of the flags.
fn gateway(args: &MoveArgs) -> Result<Option<Pushgateway>, CliError> {
    let Some(url) = &args.metrics_pushgateway else {
        return Ok(None);
    };
    let instance = args.metrics_instance.clone().unwrap_or_else(hostname);
    Pushgateway::new(url, &args.metrics_job, &instance)
        .map(Some)
        .map_err(CliError::Usage)
}

/// This host's name, the default instance label of pushed metrics.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Pushes to `gateway` every [`PUSH_INTERVAL`], from one interval on; a
/// failed push is logged and the next one tries again.
fn push_periodically(gateway: Pushgateway, handle: PrometheusHandle) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PUSH_INTERVAL);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = gateway.push(&handle).await {
                tracing::warn!("periodic metrics push failed: {e}");
            }
        }
    })
}

/// Warns of a failed final push, `error`, and returns the exit status of a
/// run that ended with `status`.
fn final_push_failed(status: ExitStatus, error: &str) -> ExitStatus {
    eprintln!("realize: warning: {error}");
    tracing::warn!("final metrics push failed: {error}");
    match status {
        ExitStatus::Moved => ExitStatus::MetricsPushFailed,
        status => status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pushgateway_help_states_the_interval() {
        let every = format!("every {} s", PUSH_INTERVAL.as_secs());
        let help = crate::cli::args::help_of(None, "metrics_pushgateway");
        assert!(help.contains(&every), "{help}");
    }
}
