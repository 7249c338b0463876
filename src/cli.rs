//! The two binaries' logic: parse flags, set up logging and endpoints, run,
//! and turn the outcome into an exit code. `src/bin/*` only call in here.
//!
//! `realize` reads top-down from [`realize_main`]: parse the flags, set up
//! logging, run the subcommand or the move (`run`, the command's main
//! flow), exit with the status the outcome calls for.

pub mod args;
mod bench;
mod check_config;
mod demo;
mod endpoints;
pub mod exit_status;
mod install_files;
mod keygen;
mod location;
mod logging;
mod ls;
pub mod output;
mod peers;
mod run;
mod settings;
mod systemd;

use std::future::Future;
use std::process::ExitCode;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use tokio::signal::unix::{signal, Signal, SignalKind};

use self::args::{Command, LogFormat, MoveArgs, RealizeArgs, RealizedArgs};
use self::exit_status::ExitStatus;
use self::logging::init_logging;
use crate::mover::MoveFileError;
use crate::server::{Daemon, DaemonConfig, Limits, StartError};
use crate::service::ServiceError;
use crate::telemetry;

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

/// Entry point of `realize`: parse the flags, set up logging, run the
/// command, exit with the status its outcome calls for.
pub fn realize_main() -> ExitCode {
    let matches = RealizeArgs::command().get_matches();
    let args = RealizeArgs::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let transfer = &args.transfer;
    let log_file = transfer.log_file.as_deref();
    let level = logging::level(transfer.verbose, log_file);
    let result = init_logging(level, transfer.log_format, log_file)
        .and_then(|()| run_command(args.command, transfer, &matches));
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("realize: {err}");
            err.exit_code()
        }
    }
}

/// Runs the subcommand, or without one the move `transfer` asks for
/// (`matches` says in which order its selection flags stood).
fn run_command(
    command: Option<Command>,
    transfer: &MoveArgs,
    matches: &ArgMatches,
) -> Result<ExitCode, CliError> {
    match command {
        Some(Command::Keygen(keygen)) => keygen::run(&keygen),
        Some(Command::Demo(demo)) => block_on(demo::run(&demo)),
        Some(Command::Bench(bench)) => block_on(bench::run(&bench)),
        Some(Command::Ls(ls)) => block_on(ls::run(&ls)),
        Some(Command::Completions(completions)) => {
            install_files::print_completions(completions.shell);
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Man(man)) => {
            install_files::write_man_pages(&man.out).map(|()| ExitCode::SUCCESS)
        }
        None => {
            let selection = transfer
                .selection
                .selection(matches)
                .map_err(CliError::Usage)?;
            block_on(run::run(transfer, &selection))
        }
    }
}

/// Runs `task`, a command of `realize`, on a runtime of its own.
fn block_on<T>(task: impl Future<Output = Result<T, CliError>>) -> Result<T, CliError> {
    tokio::runtime::Runtime::new()
        .map_err(|e| CliError::Failed(format!("cannot start the async runtime: {e}")))?
        .block_on(task)
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
