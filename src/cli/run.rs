//! The move, the command's main flow: attempts run until the work is done,
//! the retries are spent or a stop comes; then the user, and with `--json` a
//! script, learns how it ended.
//!
//! Each step wraps the next with one concern: [`run`] the JSON report,
//! [`metrics_export::around`] the metrics, [`run_until_stopped`] the stops
//! (Ctrl-C, SIGTERM, `--max-duration`) and the exit status, [`run_attempts`]
//! the retries, [`attempt::attempt`] one connection.

mod attempt;
mod metrics_export;
mod retry;

use std::process::ExitCode;
use std::time::Instant;

use self::retry::Backoff;
use super::args::MoveArgs;
use super::exit_status::ExitStatus;
use super::output::report::Report;
use super::output::Display;
use super::CliError;
use crate::mover::{stop_pair, MoveSummary, Selection, StopHandle, StopReason, StopSignal};
use crate::telemetry;

/// Runs the move `args` ask for and returns the code the command exits
/// with. With `--json`, prints the report on stdout after every outcome but
/// a usage error, which prints no report.
pub(super) async fn run(args: &MoveArgs, selection: &Selection) -> Result<ExitCode, CliError> {
    let started = Instant::now();
    let mut run = Run::default();
    let result = metrics_export::around(args, run_until_stopped(args, selection, &mut run)).await;
    if args.output.json && !matches!(result, Err(CliError::Usage(_))) {
        print_report(args, started, &result, run);
    }
    result.map(ExitCode::from)
}

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

/// Prints the `--json` report of a run that ended with `result`.
fn print_report(
    args: &MoveArgs,
    started: Instant,
    result: &Result<ExitStatus, CliError>,
    run: Run,
) {
    let (status, error) = match result {
        Ok(status) => (*status, run.gave_up),
        Err(e) => (e.status(), Some(e.to_string())),
    };
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

/// Runs attempts until the work is done or a stop comes (Ctrl-C, SIGTERM,
/// `--max-duration`), shows the totals and returns the exit status. A run
/// stopped with work left says how to continue it.
async fn run_until_stopped(
    args: &MoveArgs,
    selection: &Selection,
    run: &mut Run,
) -> Result<ExitStatus, CliError> {
    let (stop, signal) = stop_pair();
    stop_on_interrupt(stop.clone());
    if let Some(limit) = args.max_duration {
        stop_at_time_limit(stop, limit);
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
        let outcome = attempt::attempt(args, selection, signal, &mut run.display).await;
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
            run.gave_up = Some(give_up(&reason, retries));
            return Ok(false);
        }
        retries += 1;
        let delay = backoff.next_delay();
        if !wait_to_retry(&reason, delay, retries, args.retries, signal).await {
            return Ok(finished);
        }
    }
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

/// Tells the user the run gives up after `retries` retries, `reason` the
/// last failure, and returns what the report says of it.
fn give_up(reason: &str, retries: u32) -> String {
    tracing::error!(retries, %reason, "giving up");
    let plural = if retries == 1 { "retry" } else { "retries" };
    let gave_up = format!("{reason}; gave up after {retries} {plural} (--retries)");
    eprintln!("realize: {gave_up}");
    gave_up
}

/// Tells the user the run retries in `delay` (retry `retry` of `most`)
/// and waits; false if the run was stopped while waiting.
async fn wait_to_retry(
    reason: &str,
    delay: std::time::Duration,
    retry: u32,
    most: u32,
    signal: &StopSignal,
) -> bool {
    metrics::counter!(telemetry::RETRIES).increment(1);
    tracing::warn!(?delay, %reason, retry, "retrying");
    eprintln!(
        "realize: {reason}; retrying in {} ({retry}/{most})",
        humantime::format_duration(delay),
    );
    tokio::select! {
        () = tokio::time::sleep(delay) => true,
        _ = signal.stopped() => false,
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

/// The first Ctrl-C (or SIGTERM) stops the move cleanly; a second Ctrl-C
/// exits at once.
fn stop_on_interrupt(stop: StopHandle) {
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

/// `--max-duration`: the move stops once `limit` has passed.
fn stop_at_time_limit(stop: StopHandle, limit: std::time::Duration) {
    tokio::spawn(async move {
        tokio::time::sleep(limit).await;
        tracing::warn!(?limit, "time limit reached; stopping");
        stop.stop(StopReason::TimeLimit);
    });
}

/// What stopped the run, as the user is told.
fn describe(reason: StopReason) -> &'static str {
    match reason {
        StopReason::TimeLimit => "stopped at the --max-duration limit",
        StopReason::Interrupted => "interrupted",
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
