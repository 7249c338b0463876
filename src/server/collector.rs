//! Removing abandoned partial files and putting back files whose delete a
//! crash interrupted: when the daemon starts, then periodically (see
//! `service::local::collection`).

use std::time::Duration;

use crate::service::local::LocalService;
use crate::telemetry;

/// The longest time between two collections.
const LONGEST_INTERVAL: Duration = Duration::from_secs(3600);

/// Collects the abandoned partial files of `service`, those unchanged for
/// `max_age`, now and then every `max_age` or every hour, whichever is
/// shorter: a partial file goes at most that long after it has become
/// abandoned. Runs until dropped.
pub(super) async fn run(service: LocalService, max_age: Duration) {
    let mut tick = tokio::time::interval(max_age.min(LONGEST_INTERVAL));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let collected = service.collect_abandoned(max_age).await;
        metrics::counter!(telemetry::PARTIALS_COLLECTED).increment(collected.files);
        metrics::counter!(telemetry::PARTIAL_BYTES_COLLECTED).increment(collected.bytes);
        if collected.files > 0 {
            tracing::info!(
                files = collected.files,
                bytes = collected.bytes,
                max_age = %humantime::format_duration(max_age),
                "collected abandoned partial files"
            );
        }
    }
}
