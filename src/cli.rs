//! The two binaries' logic: parse flags, set up logging and endpoints, run,
//! and turn the outcome into an exit code. `src/bin/*` only call in here.
//!
//! `realize` reads top-down from [`realize_main`]: parse the flags, set up
//! logging, run the subcommand or the move (`run`, the command's main
//! flow), exit with the status the outcome calls for.

pub mod args;
mod bench;
mod check_config;
mod daemon;
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

pub use self::daemon::realized_main;

use std::future::Future;
use std::process::ExitCode;

use clap::{ArgMatches, CommandFactory, FromArgMatches};

use self::args::{Command, MoveArgs, RealizeArgs};
use self::exit_status::ExitStatus;
use self::logging::init_logging;
use crate::mover::{MoveFileError, MAX_PARALLEL};
use crate::service::ServiceError;

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
            refuse_subcommand_as_source(transfer.source.src.as_deref())?;
            let selection = transfer
                .selection
                .selection(matches)
                .map_err(CliError::Usage)?;
            block_on(run::run(transfer, &selection))
        }
    }
}

/// Refuses a SRC spelled like a subcommand: options written before a
/// subcommand belong to the move, so `realize --config F ls nas` parses as
/// a move of a local `ls` into a local `nas`. A folder of that name is
/// still reachable as `./ls`.
fn refuse_subcommand_as_source(src: Option<&str>) -> Result<(), CliError> {
    let Some(src) = src else { return Ok(()) };
    if RealizeArgs::command().find_subcommand(src).is_none() {
        return Ok(());
    }
    Err(CliError::Usage(format!(
        "`{src}` is a subcommand: write its options after it (realize {src} [OPTIONS] ...); \
         to move a local folder named {src}, write ./{src}"
    )))
}

/// Runs `task`, a command of `realize`, on a runtime of its own.
fn block_on<T>(task: impl Future<Output = Result<T, CliError>>) -> Result<T, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(COMMAND_BLOCKING_THREADS)
        .build()
        .map_err(|e| CliError::Failed(format!("cannot start the async runtime: {e}")))?
        .block_on(task)
}

/// The most threads of the command's blocking pool (made as needed). A
/// file in flight from one local directory to another holds a reading and
/// a writing thread at once, and listings and hashes take a few more: no
/// file may wait for a thread another one holds, or the move stalls.
const COMMAND_BLOCKING_THREADS: usize = 2 * MAX_PARALLEL + 64;
