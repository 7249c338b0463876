//! The two binaries' logic: parse flags, set up logging and endpoints, run,
//! and turn the outcome into an exit code. `src/bin/*` only call in here.

pub mod args;
mod bench;
mod check_config;
mod demo;
mod endpoints;
pub mod exit_status;
mod install_files;
mod location;
mod ls;
pub mod output;
mod peers;
mod retry;
mod settings;
mod systemd;

use std::process::ExitCode;

use std::path::Path;

use clap::{CommandFactory, FromArgMatches, Parser};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::EnvFilter;

use self::args::{Command, KeygenArgs, LogFormat, MoveArgs, RealizeArgs, RealizedArgs};
use self::endpoints::Endpoints;
use self::exit_status::ExitStatus;
use self::output::report::Report;
use self::output::{Display, Settings};
use self::retry::Backoff;
use crate::mover::{
    cannot_list, move_listed, stop_pair, MoveFileError, MoveOptions, MoveSummary, Selection,
    StopHandle, StopReason, StopSignal,
};
use crate::server::{Daemon, DaemonConfig, Limits, StartError};
use crate::service::ServiceError;
use crate::telemetry::{self, Pushgateway};
use crate::throttle::{Rate, Throttle};

/// A failure of the command as a whole, with its exit status.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad flags or configuration: [`ExitStatus::Usage`].
    #[error("{0}")]
    Usage(String),
    /// Anything else that stops the run: [`ExitStatus::Failed`].
    #[error("{0}")]
    Failed(String),
    /// A daemon could not be reached or the connection was lost: the run
    /// retries until it succeeds or is stopped.
    #[error("{0}")]
    Unreachable(String),
}

impl CliError {
    fn status(&self) -> ExitStatus {
        match self {
            CliError::Usage(_) => ExitStatus::Usage,
            CliError::Failed(_) | CliError::Unreachable(_) => ExitStatus::Failed,
        }
    }

    fn exit_code(&self) -> ExitCode {
        self.status().into()
    }

    /// A failure to reach or use an endpoint: the run retries it when
    /// reconnecting may cure it, and fails otherwise. Every such failure is
    /// sorted here.
    pub(crate) fn lost_or_failed(retryable: bool, message: String) -> Self {
        match retryable {
            true => CliError::Unreachable(message),
            false => CliError::Failed(message),
        }
    }
}

impl From<ServiceError> for CliError {
    fn from(err: ServiceError) -> Self {
        CliError::lost_or_failed(err.is_retryable(), err.to_string())
    }
}

impl From<MoveFileError> for CliError {
    fn from(err: MoveFileError) -> Self {
        CliError::lost_or_failed(err.is_retryable(), err.to_string())
    }
}

/// Entry point of `realize`.
pub fn realize_main() -> ExitCode {
    let matches = RealizeArgs::command().get_matches();
    let args = RealizeArgs::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let transfer = &args.transfer;
    let level = match (transfer.verbose, &transfer.log_file) {
        (0, None) => "off",
        (0 | 1, _) => "info",
        (2, _) => "debug",
        _ => "trace",
    };
    if let Err(err) = init_logging(level, transfer.log_format, transfer.log_file.as_deref()) {
        eprintln!("realize: {err}");
        return err.exit_code();
    }
    let result = match args.command {
        Some(Command::Keygen(keygen)) => run_keygen(&keygen),
        Some(Command::Demo(demo)) => runtime().and_then(|rt| rt.block_on(demo::run(&demo))),
        Some(Command::Bench(bench)) => runtime().and_then(|rt| rt.block_on(bench::run(&bench))),
        Some(Command::Ls(ls)) => runtime().and_then(|rt| rt.block_on(ls::run(&ls))),
        Some(Command::Completions(completions)) => {
            install_files::print_completions(completions.shell);
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Man(man)) => {
            install_files::write_man_pages(&man.out).map(|()| ExitCode::SUCCESS)
        }
        None => transfer
            .selection
            .selection(&matches)
            .map_err(CliError::Usage)
            .and_then(|selection| {
                let run = run_reported(transfer, &selection);
                runtime().and_then(|rt| rt.block_on(run))
            }),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("realize: {err}");
            err.exit_code()
        }
    }
}

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

/// Logs to `file`, or stderr, in `format`; `RUST_LOG` overrides `default`.
fn init_logging(default: &str, format: LogFormat, file: Option<&Path>) -> Result<(), CliError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let (writer, ansi) = match file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| CliError::Usage(format!("--log-file {}: {e}", path.display())))?;
            (BoxMakeWriter::new(std::sync::Mutex::new(file)), false)
        }
        None => (
            BoxMakeWriter::new(std::io::stderr),
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
        ),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => builder.with_ansi(ansi).init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Journal => builder
            .with_ansi(false)
            .event_format(systemd::JournalLines::default())
            .init(),
    }
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Runtime::new()
        .map_err(|e| CliError::Failed(format!("cannot start the async runtime: {e}")))
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

fn run_keygen(args: &KeygenArgs) -> Result<ExitCode, CliError> {
    let made = crate::transport::identity::generate(&args.name, &args.out)
        .map_err(|e| CliError::Failed(e.to_string()))?;
    println!(
        "wrote {} and {}",
        made.key_path.display(),
        made.cert_path.display()
    );
    println!("fingerprint {}", made.fingerprint);
    Ok(ExitCode::SUCCESS)
}

/// How often a long run pushes its metrics to a Pushgateway.
const PUSH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// What a run has done so far, kept outside its attempts so that the end
/// of the run sees it whatever the outcome.
#[derive(Default)]
struct Run {
    /// The display, made once the first attempt connects.
    display: Option<Display>,
    /// The totals of all attempts (see [`accumulate`]).
    total: MoveSummary,
    /// Why the run gave up retrying, if it did.
    gave_up: Option<String>,
}

/// Runs the move and, with `--json`, prints its report on stdout with the
/// code the command exits with: after every outcome but a usage error,
/// which prints no report.
async fn run_reported(args: &MoveArgs, selection: &Selection) -> Result<ExitCode, CliError> {
    let started = std::time::Instant::now();
    let mut run = Run::default();
    let result = run_with_metrics(args, selection, &mut run).await;
    let (status, error) = match &result {
        Ok(status) => (*status, run.gave_up.take()),
        Err(e) => (e.status(), Some(e.to_string())),
    };
    if args.json && !matches!(result, Err(CliError::Usage(_))) {
        let report = Report {
            exit_code: status.code(),
            error,
            dry_run: args.dry_run,
            source: args.source.as_given(),
            destination: args.destination.as_given(),
            elapsed: started.elapsed(),
            summary: &run.total,
            display: run.display.as_ref(),
        };
        println!("{}", report.to_json());
    }
    result.map(ExitCode::from)
}

/// Runs the move with the metrics the flags ask for: a `/metrics` listener
/// while it runs, and pushes to a Pushgateway during and at the end.
/// Returns the exit status.
async fn run_with_metrics(
    args: &MoveArgs,
    selection: &Selection,
    run: &mut Run,
) -> Result<ExitStatus, CliError> {
    let gateway = match &args.metrics_pushgateway {
        Some(url) => {
            let instance = match &args.metrics_instance {
                Some(instance) => instance.clone(),
                None => hostname(),
            };
            Some(Pushgateway::new(url, &args.metrics_job, &instance).map_err(CliError::Usage)?)
        }
        None => None,
    };
    if args.metrics_addr.is_none() && gateway.is_none() {
        return run_move(args, selection, run).await;
    }
    let handle = telemetry::install(args.metrics_addr).map_err(CliError::Usage)?;
    let periodic = gateway.clone().map(|gateway| {
        let handle = handle.clone();
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
    });
    // The final push happens whatever the outcome, failed runs included.
    let outcome = run_move(args, selection, run).await;
    if let Some(task) = periodic {
        task.abort();
    }
    let pushed = match &gateway {
        Some(gateway) => gateway.push(&handle).await,
        None => Ok(()),
    };
    let status = outcome?;
    match pushed {
        Ok(()) => Ok(status),
        Err(e) => {
            eprintln!("realize: warning: {e}");
            tracing::warn!("final metrics push failed: {e}");
            match status {
                ExitStatus::Moved => Ok(ExitStatus::MetricsPushFailed),
                status => Ok(status),
            }
        }
    }
}

/// This host's name, the default instance label of pushed metrics.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

async fn run_move(
    args: &MoveArgs,
    selection: &Selection,
    run: &mut Run,
) -> Result<ExitStatus, CliError> {
    let (stop, signal) = stop_pair();
    watch_interrupts(stop.clone());
    if let Some(limit) = args.max_duration {
        tokio::spawn(async move {
            tokio::time::sleep(limit).await;
            tracing::warn!(?limit, "time limit reached; stopping");
            stop.stop(StopReason::TimeLimit);
        });
    }
    let finished = run_attempts(args, selection, &signal, run).await?;
    match &run.display {
        Some(display) => display.finish(&run.total),
        None if signal.reason().is_some() => eprintln!("realize: no connection was made"),
        None => {}
    }
    let status = outcome_status(signal.reason(), finished, &run.total);
    let run_again = !matches!(status, ExitStatus::Moved | ExitStatus::Failed);
    if let (Some(reason), true) = (signal.reason(), run_again) {
        eprintln!(
            "realize: {}; run the same command again to continue",
            describe(reason)
        );
    }
    Ok(status)
}

/// Runs attempts until one ends the run or `--retries` is spent, adding
/// each one's files to the run's total. Returns whether the last attempt listed
/// both sides and moved what it could, without failures a retry could cure:
/// only such an attempt knows what is left, `total` says nothing of one cut
/// short.
async fn run_attempts(
    args: &MoveArgs,
    selection: &Selection,
    signal: &StopSignal,
    run: &mut Run,
) -> Result<bool, CliError> {
    let mut backoff = Backoff::default();
    let mut retries = 0;
    loop {
        let outcome = attempt(args, selection, signal, &mut run.display).await;
        let finished = matches!(outcome, Ok(Some(_)));
        let reason = match outcome {
            Ok(None) => return Ok(false), // Stopped before listing.
            Ok(Some(summary)) => {
                accumulate(&mut run.total, &summary);
                if summary.retryable == 0 || signal.reason().is_some() {
                    return Ok(finished);
                }
                if summary.moved > 0 {
                    backoff.reset();
                    retries = 0;
                }
                format!("files lost their connection: {}", summary.retryable)
            }
            Err(CliError::Unreachable(reason)) => reason,
            Err(other) => return Err(other),
        };
        if signal.reason().is_some() {
            return Ok(finished);
        }
        if retries == args.retries {
            tracing::error!(retries, %reason, "giving up");
            let plural = if retries == 1 { "retry" } else { "retries" };
            let gave_up = format!("{reason}; gave up after {retries} {plural} (--retries)");
            eprintln!("realize: {gave_up}");
            run.gave_up = Some(gave_up);
            return Ok(false);
        }
        retries += 1;
        let delay = backoff.next_delay();
        metrics::counter!(telemetry::RETRIES).increment(1);
        tracing::warn!(?delay, %reason, retry = retries, "retrying");
        eprintln!(
            "realize: {reason}; retrying in {} ({retries}/{})",
            humantime::format_duration(delay),
            args.retries
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = signal.stopped() => return Ok(finished),
        }
    }
}

/// The exit status of a run, `finished` if its last attempt listed both sides
/// and moved what it could. Work is left when it did not — it was stopped
/// before both sides were listed, or lost its daemon and was stopped waiting to retry,
/// however many attempts connected before — or when the totals count files
/// not moved yet. A stop that comes when nothing is left to do (during the
/// final close) does not change the outcome. A run that gave up retrying
/// moved some files ([`ExitStatus::Partial`]) or none.
fn outcome_status(stop: Option<StopReason>, finished: bool, total: &MoveSummary) -> ExitStatus {
    let work_left = !finished || total.interrupted + total.not_started + total.retryable > 0;
    match stop {
        Some(StopReason::TimeLimit) if work_left => ExitStatus::TimeLimit,
        Some(StopReason::Interrupted) if work_left => ExitStatus::Interrupted,
        _ if !finished && total.moved == 0 => ExitStatus::Failed,
        _ if finished && total.failed == 0 => ExitStatus::Moved,
        _ => ExitStatus::Partial,
    }
}

/// One attempt: connect, list both sides, move what is left, close.
/// `None` if the run was stopped before both sides were listed.
async fn attempt(
    args: &MoveArgs,
    selection: &Selection,
    signal: &StopSignal,
    display: &mut Option<Display>,
) -> Result<Option<MoveSummary>, CliError> {
    let mut endpoints = tokio::select! {
        endpoints = endpoints::open(args) => endpoints?,
        _ = signal.stopped() => return Ok(None),
    };
    let display = display
        .get_or_insert_with(|| Display::new(endpoints.source.dir.clone(), Settings::new(args)));
    let up = args.limits.up();
    // The checks and the listings are round trips to the daemons: overlap
    // them. Listing changes nothing, so it may start before the checks pass.
    let checks = async {
        endpoints.refuse_overlap().await?;
        limit_source(&endpoints, args.limits.down()).await
    };
    let listing = endpoints.list();
    // A daemon may connect and then never answer: the stop must still end
    // the run, whatever the daemons do.
    let (down, listings) = tokio::select! {
        both = async { tokio::join!(checks, listing) } => both,
        _ = signal.stopped() => {
            endpoints.close(true).await;
            return Ok(None);
        }
    };
    let down = match down {
        Ok(down) => down,
        Err(e) => {
            endpoints.close(false).await;
            return Err(e);
        }
    };
    if let Some(up) = up {
        tracing::info!(direction = "up", limit = %up, "pacing what is sent to the destination");
    }
    let options = MoveOptions {
        parallel: args.parallel,
        stop: signal.clone(),
        up: Throttle::new(up),
        down: Throttle::new(down),
        dry_run: args.dry_run,
        selection: selection.clone(),
    };
    display.start_attempt();
    // A local destination that does not exist is made only now: a move
    // that cannot start (a source or subpath that cannot be listed, an
    // overlap) leaves nothing behind.
    let result = match listings {
        Ok(listings) => match endpoints.ready() {
            Ok((source, destination)) => {
                move_listed(source, destination, listings, &options, display).await
            }
            Err(err) => {
                endpoints.close(false).await;
                return Err(err);
            }
        },
        Err(err) => Err(cannot_list(&endpoints.source.dir, err, display)),
    };
    endpoints.close(signal.reason().is_some()).await;
    result.map(Some).map_err(CliError::from)
}

/// Applies `--throttle-down`: a remote source is asked to pace what it sends
/// (returns no local limit); a local source is paced by the mover.
async fn limit_source(endpoints: &Endpoints, down: Option<Rate>) -> Result<Option<Rate>, CliError> {
    let (Some(remote), Some(rate)) = (endpoints.source.remote(), down) else {
        return Ok(down);
    };
    let in_force = remote.configure(Some(rate)).await.map_err(|e| {
        let message = format!("cannot set the source's send limit: {e}");
        CliError::lost_or_failed(e.is_retryable(), message)
    })?;
    let show = in_force.map_or("unlimited".into(), |r| r.to_string());
    tracing::info!(direction = "down", requested = %rate, in_force = %show, "source send limit set");
    Ok(None)
}

/// Adds an attempt to the run's totals: moved files and bytes add up, the
/// last attempt says what is still failed, skipped or interrupted.
fn accumulate(total: &mut MoveSummary, attempt: &MoveSummary) {
    *total = MoveSummary {
        moved: total.moved + attempt.moved,
        replaced: total.replaced + attempt.replaced,
        bytes_sent: total.bytes_sent + attempt.bytes_sent,
        ..*attempt
    };
}

/// The first Ctrl-C (or SIGTERM) stops the move cleanly; a second Ctrl-C
/// exits at once.
fn watch_interrupts(stop: StopHandle) {
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
        eprintln!("realize: interrupted; stopping (press Ctrl-C again to quit at once)");
        stop.stop(StopReason::Interrupted);
        let _ = tokio::signal::ctrl_c().await;
        std::process::exit(i32::from(ExitStatus::Interrupted.code()));
    });
}

fn describe(reason: StopReason) -> &'static str {
    match reason {
        StopReason::TimeLimit => "stopped at the --max-duration limit",
        StopReason::Interrupted => "interrupted",
    }
}

/// The daemon's configuration file, validated, with the flags that
/// override it applied.
fn load_daemon_config(args: &RealizedArgs) -> Result<DaemonConfig, CliError> {
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
fn start_error(args: &RealizedArgs, error: StartError) -> CliError {
    match error {
        StartError::SharedKey(_) => CliError::Failed(format!("{}: {error}", args.config.display())),
        error => CliError::Failed(error.to_string()),
    }
}

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
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    async move {
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = term.recv() => {},
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_follow_what_is_left_to_do() {
        let done = MoveSummary {
            moved: 3,
            ..MoveSummary::default()
        };
        let cut = MoveSummary {
            moved: 1,
            interrupted: 1,
            not_started: 1,
            ..MoveSummary::default()
        };
        let failed = MoveSummary {
            moved: 2,
            failed: 1,
            ..MoveSummary::default()
        };
        assert_eq!(outcome_status(None, true, &done), ExitStatus::Moved);
        assert_eq!(outcome_status(None, true, &failed), ExitStatus::Partial);
        // Gave up retrying, before or after files moved.
        assert_eq!(
            outcome_status(None, false, &MoveSummary::default()),
            ExitStatus::Failed
        );
        assert_eq!(outcome_status(None, false, &failed), ExitStatus::Partial);
        assert_eq!(
            outcome_status(Some(StopReason::TimeLimit), true, &cut),
            ExitStatus::TimeLimit
        );
        assert_eq!(
            outcome_status(Some(StopReason::Interrupted), true, &cut),
            ExitStatus::Interrupted
        );
        assert_eq!(
            outcome_status(Some(StopReason::TimeLimit), false, &MoveSummary::default()),
            ExitStatus::TimeLimit
        );
        // Stopped waiting to retry after an attempt that connected but lost
        // its daemon before it could list: nothing is known to be done.
        assert_eq!(
            outcome_status(
                Some(StopReason::Interrupted),
                false,
                &MoveSummary::default()
            ),
            ExitStatus::Interrupted
        );
        // The limit reached during shutdown, with every file moved.
        assert_eq!(
            outcome_status(Some(StopReason::TimeLimit), true, &done),
            ExitStatus::Moved
        );
        assert_eq!(
            outcome_status(Some(StopReason::Interrupted), true, &failed),
            ExitStatus::Partial
        );
    }
}
