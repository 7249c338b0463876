//! `realize bench`: measures the path to a daemon with generated data sent
//! through the real protocol, touching no disk on either side.
//!
//! [`run`] opens streams on one connection: discard streams
//! ([`DiscardStream`](crate::client::DiscardStream)) carry what the command
//! sends, generate streams ([`GeneratedStream`](crate::client::GeneratedStream))
//! what the daemon sends. They run for a duration or until a size has
//! crossed, and the bytes, the time and quinn's statistics of the sending
//! side's path make a [`BenchReport`].

mod report;
mod streams;

use std::future::Future;
use std::time::{Duration, Instant};

pub(crate) use self::report::{BenchReport, Measurement, Sender};
use self::streams::Carried;
use crate::client::RemoteService;
use crate::protocol::{PathSample, MAX_GENERATE_LEN};
use crate::service::ServiceError;
use crate::throttle::{Rate, Throttle};

/// Streams per direction unless asked otherwise.
pub(crate) const DEFAULT_STREAMS: usize = 8;
/// Most streams per direction.
pub(crate) const MAX_STREAMS: usize = 128;
/// Longest bench run.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(3600);
/// Shortest bench run.
pub(crate) const MIN_DURATION: Duration = Duration::from_secs(1);
/// Most bytes one direction of a bench run may carry.
pub(crate) const MAX_SIZE: u64 = MAX_GENERATE_LEN;

/// When the streams of a bench run stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchLimit {
    /// After this long.
    Duration(Duration),
    /// Once this many bytes have crossed, in each direction measured.
    Size(u64),
}

impl BenchLimit {
    /// The bytes each of `streams` streams carries: the size shared out, or
    /// the most a stream may carry when the clock decides. Streams with
    /// nothing to carry are left out.
    fn quotas(self, streams: usize) -> Vec<u64> {
        match self {
            BenchLimit::Duration(_) => vec![MAX_GENERATE_LEN; streams],
            BenchLimit::Size(size) => {
                let count = streams as u64;
                (0..count)
                    .map(|i| size / count + u64::from(i < size % count))
                    .filter(|&quota| quota > 0)
                    .collect()
            }
        }
    }

    fn deadline(self, started: Instant) -> Option<Instant> {
        match self {
            BenchLimit::Duration(duration) => Some(started + duration),
            BenchLimit::Size(_) => None,
        }
    }
}

/// Which way the generated data goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Directions {
    /// From the command to the daemon.
    Send,
    /// From the daemon to the command.
    Receive,
    /// Both at once, each on its own streams.
    Both,
}

impl Directions {
    fn sends(self) -> bool {
        matches!(self, Directions::Send | Directions::Both)
    }

    fn receives(self) -> bool {
        matches!(self, Directions::Receive | Directions::Both)
    }
}

/// What a bench run does.
#[derive(Debug, Clone)]
pub(crate) struct BenchOptions {
    /// Streams per direction, 1 to [`MAX_STREAMS`].
    pub streams: usize,
    /// When the streams stop.
    pub limit: BenchLimit,
    /// Which way the data goes.
    pub directions: Directions,
    /// Paces what the command sends.
    pub up: Throttle,
    /// The send limit asked of the daemon, when it sends.
    pub down: Option<Rate>,
}

/// Runs a bench over `remote`'s connection and reports what it measured.
pub(crate) async fn run(
    remote: &RemoteService,
    options: &BenchOptions,
) -> Result<BenchReport, ServiceError> {
    let daemon_sends = options.directions.receives();
    if let (true, Some(rate)) = (daemon_sends, options.down) {
        remote.configure(Some(rate)).await?;
    }
    let before = Samples::take(remote).await?;
    let (sent, received) = measure(remote, options).await?;
    let after = Samples::take(remote).await?;
    let alone = options.directions != Directions::Both;
    let measurement = |moved: Option<Carried>, sender: Sender| {
        let receiver = sender.other();
        moved.map(|moved| Measurement {
            bytes: moved.bytes,
            elapsed: moved.elapsed,
            before: before.of(sender),
            after: after.of(sender),
            sender,
            returned_bytes: alone.then(|| {
                let sent_bytes = |samples: &Samples| samples.of(receiver).sent_bytes;
                sent_bytes(&after).saturating_sub(sent_bytes(&before))
            }),
        })
    };
    Ok(BenchReport::new(
        remote.remote_address(),
        options.streams,
        options.limit,
        measurement(sent, Sender::Command),
        measurement(received, Sender::Daemon),
    ))
}

/// Opens the streams of both directions, starts the clock, and runs them
/// all at once; returns what was sent and what was received.
async fn measure(
    remote: &RemoteService,
    options: &BenchOptions,
) -> Result<(Option<Carried>, Option<Carried>), ServiceError> {
    let quotas = options.limit.quotas(options.streams);
    let sends = options.directions.sends().then_some(());
    let receives = options.directions.receives().then_some(());
    let discards = maybe(sends, |()| streams::open_discards(remote, &quotas)).await?;
    let generated = maybe(receives, |()| streams::open_generated(remote, &quotas)).await?;
    let started = Instant::now();
    let deadline = options.limit.deadline(started);
    tokio::try_join!(
        maybe(discards, |discards| {
            streams::send(discards, &quotas, deadline, &options.up, started)
        }),
        maybe(generated, |generated| {
            streams::receive(generated, deadline, started)
        }),
    )
}

/// Runs `work` on `input` if there is one.
async fn maybe<T, U, Work>(
    input: Option<T>,
    work: impl FnOnce(T) -> Work,
) -> Result<Option<U>, ServiceError>
where
    Work: Future<Output = Result<U, ServiceError>>,
{
    match input {
        Some(input) => work(input).await.map(Some),
        None => Ok(None),
    }
}

/// Both ends' path statistics at one moment.
struct Samples {
    command: PathSample,
    daemon: PathSample,
}

impl Samples {
    async fn take(remote: &RemoteService) -> Result<Self, ServiceError> {
        Ok(Self {
            daemon: remote.daemon_path_sample().await?,
            command: remote.path_sample(),
        })
    }

    fn of(&self, sender: Sender) -> PathSample {
        match sender {
            Sender::Command => self.command,
            Sender::Daemon => self.daemon,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_size_is_shared_out_between_streams() {
        assert_eq!(BenchLimit::Size(10).quotas(4), [3, 3, 2, 2]);
        assert_eq!(BenchLimit::Size(16 << 20).quotas(8), [2 << 20; 8]);
        assert_eq!(BenchLimit::Size(3).quotas(8), [1, 1, 1]);
        let timed = BenchLimit::Duration(Duration::from_secs(10));
        assert_eq!(timed.quotas(2), [MAX_GENERATE_LEN; 2]);
    }

    #[test]
    fn only_a_duration_sets_a_deadline() {
        let now = Instant::now();
        let timed = BenchLimit::Duration(Duration::from_secs(10));
        assert_eq!(timed.deadline(now), Some(now + Duration::from_secs(10)));
        assert_eq!(BenchLimit::Size(1).deadline(now), None);
    }
}
