//! One attempt of a move: connect, check and list both sides, move what is
//! left, close.

use crate::cli::args::MoveArgs;
use crate::cli::endpoints::{self, OpenedEndpoints};
use crate::cli::output::{Display, Settings};
use crate::cli::CliError;
use crate::mover::{
    cannot_list, move_listed, Listings, MoveFileError, MoveOptions, MoveSummary, Selection,
    StopSignal,
};
use crate::throttle::{Rate, Throttle};

/// One attempt: connect, list both sides, move what is left, close.
/// `None` if the run was stopped before both sides were listed.
pub(super) async fn attempt(
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
    // The checks and listings go out with the daemons' `Hello`, a round
    // trip sooner; what they answer counts only once the daemons accepted.
    // A daemon may connect and then never answer: the stop must still end
    // the run, whatever the daemons do.
    let greetings = endpoints.take_greetings();
    let checked = async {
        tokio::join!(
            endpoints::greeted(greetings),
            check_and_list(&endpoints, args)
        )
    };
    let (greeted, (down, listings)) = tokio::select! {
        all = checked => all,
        _ = signal.stopped() => {
            endpoints.close(true).await;
            return Ok(None);
        }
    };
    if let Err(e) = greeted {
        endpoints.close(false).await;
        return Err(e);
    }
    let down = match down {
        Ok(down) => down,
        Err(e) => {
            endpoints.close(false).await;
            return Err(e);
        }
    };
    let options = options(args, selection, signal, down);
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

/// Checks that the sides may move into each other and sets the source's
/// send limit (returning the limit left to the mover, see [`limit_source`]),
/// while both sides are listed. The checks and the listings are round trips
/// to the daemons: they overlap. Listing changes nothing, so it may start
/// before the checks pass.
async fn check_and_list(
    endpoints: &OpenedEndpoints,
    args: &MoveArgs,
) -> (
    Result<Option<Rate>, CliError>,
    Result<Listings, MoveFileError>,
) {
    let checks = async {
        endpoints.refuse_overlap().await?;
        limit_source(endpoints, args.limits.down()).await
    };
    tokio::join!(checks, endpoints.list())
}

/// Applies `--throttle-down`: a remote source is asked to pace what it sends
/// (returns no local limit); a local source is paced by the mover.
async fn limit_source(
    endpoints: &OpenedEndpoints,
    down: Option<Rate>,
) -> Result<Option<Rate>, CliError> {
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

/// How the mover moves the listed files: `down` is the limit on what is
/// read from the source that is left to it.
fn options(
    args: &MoveArgs,
    selection: &Selection,
    signal: &StopSignal,
    down: Option<Rate>,
) -> MoveOptions {
    let up = args.limits.up();
    if let Some(up) = up {
        tracing::info!(direction = "up", limit = %up, "pacing what is sent to the destination");
    }
    MoveOptions {
        parallel: args.parallel,
        stop: signal.clone(),
        up: Throttle::new(up),
        down: Throttle::new(down),
        dry_run: args.dry_run,
        selection: selection.clone(),
    }
}
