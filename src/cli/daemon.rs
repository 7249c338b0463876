//! The daemon's entry point: its configuration, loaded and reloaded on
//! SIGHUP, its runtime, readiness and stop signals for the service manager,
//! and the line that reports what stopped it.

use std::process::ExitCode;

use clap::Parser;
use tokio::signal::unix::{signal, Signal, SignalKind};

use super::args::{LogFormat, RealizedArgs};
use super::exit_status::ExitStatus;
use super::logging::init_logging;
use super::{check_config, systemd, CliError};
use crate::server::{Daemon, DaemonConfig, Limits, StartError};
use crate::telemetry;

/// Entry point of `realized`.
pub fn realized_main() -> ExitCode {
    let args = RealizedArgs::parse();
    let log_format = args.log_format();
    init_logging("info", log_format, None).expect("stderr needs no setup");
    let fatal = |err: CliError| eprintln!("{}", fatal_line(log_format, &err));
    if args.check_config {
        return check_config::run(&args, fatal);
    }
    let result = load_daemon_config(&args)
        .and_then(|config| daemon_runtime(&config.limits)?.block_on(run_daemon(&args, config)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            fatal(err);
            ExitStatus::Failed.into()
        }
    }
}

/// The line the daemon prints on stderr for the error that stops it: the
/// journal files it as an error.
fn fatal_line(format: LogFormat, err: &CliError) -> String {
    let prefix = match format {
        LogFormat::Journal => systemd::level_prefix(tracing::Level::ERROR),
        LogFormat::Text | LogFormat::Json => "",
    };
    format!("{prefix}realized: {err}")
}

/// The daemon's runtime, whose blocking pool has a thread for all the work
/// its connections may keep busy at once: no connection waits for a thread
/// another holds.
fn daemon_runtime(limits: &Limits) -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(limits.blocking_threads())
        .build()
        .map_err(|e| CliError::Failed(format!("cannot start the async runtime: {e}")))
}

/// The daemon's configuration file, validated, with the flags that
/// override it applied.
pub(super) fn load_daemon_config(args: &RealizedArgs) -> Result<DaemonConfig, CliError> {
    let path = &args.config;
    if let Err(e) = std::fs::metadata(path) {
        if e.kind() == std::io::ErrorKind::NotFound {
            return Err(CliError::Usage(format!(
                "{}: no such file; write the daemon's configuration there (see \
                 `realized --help` and the README's guide) or name it with --config FILE",
                path.display()
            )));
        }
    }
    let mut config = DaemonConfig::load(path).map_err(|e| CliError::Usage(e.to_string()))?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    Ok(config)
}

/// A daemon that cannot start with its configuration, the message naming
/// the file where the fault is the configuration's own.
pub(super) fn start_error(args: &RealizedArgs, error: StartError) -> CliError {
    match error {
        StartError::SharedKey(_) => CliError::Failed(format!("{}: {error}", args.config.display())),
        error => CliError::Failed(error.to_string()),
    }
}

/// Runs the daemon until SIGINT or SIGTERM, reloading its configuration on
/// each SIGHUP.
async fn run_daemon(args: &RealizedArgs, config: DaemonConfig) -> Result<(), CliError> {
    if let Some(addr) = config.metrics {
        telemetry::install(Some(addr)).map_err(CliError::Failed)?;
        tracing::info!(metrics = %addr, "serving metrics at /metrics");
    }
    // Installed before the daemon listens: a SIGHUP never ends it.
    let hangups = signal(SignalKind::hangup()).expect("installing a SIGHUP handler");
    let daemon =
        Daemon::bind(&config, &args.transport.tuning()).map_err(|e| start_error(args, e))?;
    let (reload, reloads) = tokio::sync::mpsc::channel(1);
    let reader = tokio::spawn(read_config_on_hangup(args.clone(), hangups, reload));
    // Handled from here on: a service manager may stop the daemon as soon
    // as it is told the daemon is ready.
    let shutdown = shutdown_signal();
    let address = daemon
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    systemd::notify_ready(&address);
    let stopping = async {
        shutdown.await;
        systemd::notify_stopping();
    };
    daemon.run(stopping, reloads).await;
    reader.abort();
    Ok(())
}

/// Reads the configuration again on each SIGHUP and hands it to the daemon;
/// one that cannot be read is logged and the daemon keeps its own.
async fn read_config_on_hangup(
    args: RealizedArgs,
    mut hangups: Signal,
    daemon: tokio::sync::mpsc::Sender<DaemonConfig>,
) {
    while hangups.recv().await.is_some() {
        tracing::info!(config = %args.config.display(), "SIGHUP: reloading the configuration");
        match load_daemon_config(&args) {
            Ok(config) => {
                if daemon.send(config).await.is_err() {
                    return;
                }
            }
            Err(e) => crate::server::log_reload_refused(&e),
        }
    }
}

/// Completes on SIGINT or SIGTERM, received from the call on.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    let mut interrupt = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    async move {
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = term.recv() => {},
        }
    }
}
