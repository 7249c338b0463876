//! What a bench run measured, turned into the figures a user reads (goodput,
//! round trip, loss, congestion) and printed as an aligned report or as one
//! JSON object.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use indicatif::HumanBytes;
use serde::Serialize;

use super::BenchLimit;
use crate::protocol::PathSample;

/// The side that sent a direction's data: its path statistics describe the
/// direction (the receiver only sends acknowledgements).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Sender {
    /// `realize`, sending to the daemon.
    Command,
    /// `realized`, sending to the command.
    Daemon,
}

impl Sender {
    /// The side that receives what this one sends.
    pub(crate) fn other(self) -> Self {
        match self {
            Sender::Command => Sender::Daemon,
            Sender::Daemon => Sender::Command,
        }
    }
}

/// The raw figures of one direction of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Measurement {
    /// Payload bytes that arrived.
    pub bytes: u64,
    /// From the start of the run to the end of the direction's last stream.
    pub elapsed: Duration,
    /// The sender's path statistics before the run.
    pub before: PathSample,
    /// The sender's path statistics after the run.
    pub after: PathSample,
    /// Who sent.
    pub sender: Sender,
    /// Bytes of the UDP datagrams the receiver sent back during the run:
    /// its acknowledgements, when this direction ran alone; none when both
    /// directions ran at once and the receiver's own data hides them.
    pub returned_bytes: Option<u64>,
}

/// The figures of one direction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct DirectionReport {
    /// Payload bytes that arrived.
    pub bytes: u64,
    /// Seconds from the start of the run to the end of the last stream.
    pub seconds: f64,
    /// Payload bits per second, in millions (10^6).
    pub goodput_mbit_per_second: f64,
    /// Payload bytes per second, in MiB (2^20).
    pub goodput_mib_per_second: f64,
    /// Whose path statistics the figures below are.
    pub path_measured_by: Sender,
    /// Smoothed round-trip time at the end, in milliseconds.
    pub rtt_ms: f64,
    /// Smallest round-trip time seen on the connection, in milliseconds.
    pub min_rtt_ms: f64,
    /// `rtt_ms` minus `min_rtt_ms`: how long packets waited in queues along
    /// the path at the end of the run.
    pub queueing_delay_ms: f64,
    /// The sender's congestion window at the end, in bytes.
    pub cwnd_bytes: u64,
    /// Packets the sender sent during the run.
    pub sent_packets: u64,
    /// Of those, packets declared lost; their data was sent again.
    pub lost_packets: u64,
    /// `lost_packets` as a percentage of `sent_packets`.
    pub loss_percent: f64,
    /// Bytes of the packets declared lost.
    pub lost_bytes: u64,
    /// Times the sender's congestion controller cut its window.
    pub congestion_events: u64,
    /// UDP payload bytes the sender sent during the run.
    pub wire_bytes: u64,
    /// `wire_bytes` per payload byte: QUIC overhead and retransmissions;
    /// none when no payload arrived.
    pub wire_bytes_per_payload_byte: Option<f64>,
    /// UDP payload bytes the receiver sent back, acknowledgements for the
    /// most part: what this direction costs the return path. Measured only
    /// when the direction ran alone.
    pub return_bytes: Option<u64>,
    /// `return_bytes` per payload byte; none when either is missing.
    pub return_bytes_per_payload_byte: Option<f64>,
}

impl From<&Measurement> for DirectionReport {
    fn from(m: &Measurement) -> Self {
        let seconds = m.elapsed.as_secs_f64();
        let per_second = |value: f64| if seconds > 0.0 { value / seconds } else { 0.0 };
        let sent_packets = m.after.sent_packets.saturating_sub(m.before.sent_packets);
        let lost_packets = m.after.lost_packets.saturating_sub(m.before.lost_packets);
        let wire_bytes = m.after.sent_bytes.saturating_sub(m.before.sent_bytes);
        let per_payload_byte = |bytes: u64| (m.bytes > 0).then(|| bytes as f64 / m.bytes as f64);
        Self {
            bytes: m.bytes,
            seconds,
            goodput_mbit_per_second: per_second(m.bytes as f64 * 8.0 / 1e6),
            goodput_mib_per_second: per_second(m.bytes as f64 / (1u64 << 20) as f64),
            path_measured_by: m.sender,
            rtt_ms: m.after.rtt_us as f64 / 1000.0,
            min_rtt_ms: m.after.min_rtt_us as f64 / 1000.0,
            queueing_delay_ms: m.after.rtt_us.saturating_sub(m.after.min_rtt_us) as f64 / 1000.0,
            cwnd_bytes: m.after.cwnd,
            sent_packets,
            lost_packets,
            loss_percent: percent(lost_packets, sent_packets),
            lost_bytes: m.after.lost_bytes.saturating_sub(m.before.lost_bytes),
            congestion_events: m
                .after
                .congestion_events
                .saturating_sub(m.before.congestion_events),
            wire_bytes,
            wire_bytes_per_payload_byte: per_payload_byte(wire_bytes),
            return_bytes: m.returned_bytes,
            return_bytes_per_payload_byte: m.returned_bytes.and_then(per_payload_byte),
        }
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    match whole {
        0 => 0.0,
        _ => part as f64 * 100.0 / whole as f64,
    }
}

/// Everything a bench run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct BenchReport {
    /// The daemon's address.
    pub daemon: SocketAddr,
    /// Streams per direction.
    pub streams: usize,
    /// How long the run was asked to last, if it was timed.
    pub duration_seconds: Option<f64>,
    /// The bytes each direction was asked to carry, if it was sized.
    pub size_bytes: Option<u64>,
    /// From the command to the daemon, if measured.
    pub send: Option<DirectionReport>,
    /// From the daemon to the command, if measured.
    pub receive: Option<DirectionReport>,
}

impl BenchReport {
    /// The report of a run against `daemon` with `streams` streams per
    /// direction, limited by `limit`.
    pub(crate) fn new(
        daemon: SocketAddr,
        streams: usize,
        limit: BenchLimit,
        send: Option<Measurement>,
        receive: Option<Measurement>,
    ) -> Self {
        let (duration_seconds, size_bytes) = match limit {
            BenchLimit::Duration(duration) => (Some(duration.as_secs_f64()), None),
            BenchLimit::Size(size) => (None, Some(size)),
        };
        Self {
            daemon,
            streams,
            duration_seconds,
            size_bytes,
            send: send.as_ref().map(DirectionReport::from),
            receive: receive.as_ref().map(DirectionReport::from),
        }
    }

    /// The report as one line of JSON.
    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a report holds no map keys or failing values")
    }

    fn limit(&self) -> String {
        match (self.duration_seconds, self.size_bytes) {
            (Some(seconds), _) => format!("{seconds} s"),
            (None, Some(size)) => format!("{} each way", HumanBytes(size)),
            (None, None) => "no limit".into(),
        }
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "bench of {}: {} streams per direction, {}",
            self.daemon,
            self.streams,
            self.limit()
        )?;
        if let Some(send) = &self.send {
            write!(f, "\nsend: command to daemon\n{send}")?;
        }
        if let Some(receive) = &self.receive {
            write!(f, "\nreceive: daemon to command\n{receive}")?;
        }
        Ok(())
    }
}

impl fmt::Display for DirectionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ratio = |ratio: Option<f64>| ratio.map_or("-".into(), |ratio| format!("{ratio:.3}"));
        let returned = match self.return_bytes {
            Some(bytes) => format!(
                "{}, {} bytes per payload byte",
                HumanBytes(bytes),
                ratio(self.return_bytes_per_payload_byte)
            ),
            None => "- (both directions ran at once)".into(),
        };
        let lines = [
            (
                "payload",
                format!("{} in {:.2} s", HumanBytes(self.bytes), self.seconds),
            ),
            (
                "goodput",
                format!(
                    "{:.1} Mbit/s ({:.1} MiB/s)",
                    self.goodput_mbit_per_second, self.goodput_mib_per_second
                ),
            ),
            (
                "round trip",
                format!(
                    "{:.2} ms smoothed, {:.2} ms lowest, {:.2} ms queueing",
                    self.rtt_ms, self.min_rtt_ms, self.queueing_delay_ms
                ),
            ),
            (
                "lost and resent",
                format!(
                    "{} of {} packets ({:.3} %), {}",
                    self.lost_packets,
                    self.sent_packets,
                    self.loss_percent,
                    HumanBytes(self.lost_bytes)
                ),
            ),
            ("congestion events", self.congestion_events.to_string()),
            ("congestion window", HumanBytes(self.cwnd_bytes).to_string()),
            (
                "on the wire",
                format!(
                    "{} bytes per payload byte",
                    ratio(self.wire_bytes_per_payload_byte)
                ),
            ),
            ("sent back", returned),
        ];
        for (label, value) in lines {
            writeln!(f, "  {label:<18} {value}")?;
        }
        let measured_by = match self.path_measured_by {
            Sender::Command => "the command",
            Sender::Daemon => "the daemon",
        };
        writeln!(f, "  (path figures as {measured_by} sent)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(sent_packets: u64, lost_packets: u64, sent_bytes: u64) -> PathSample {
        PathSample {
            rtt_us: 40_500,
            min_rtt_us: 40_000,
            cwnd: 3 << 20,
            congestion_events: lost_packets / 10,
            sent_packets,
            lost_packets,
            lost_bytes: lost_packets * 1200,
            sent_bytes,
        }
    }

    fn measured(bytes: u64, seconds: u64) -> Measurement {
        Measurement {
            bytes,
            elapsed: Duration::from_secs(seconds),
            before: sample(1_000, 10, 1_000_000),
            after: sample(101_000, 60, 256_000_000),
            sender: Sender::Command,
            returned_bytes: Some(5_000_000),
        }
    }

    #[test]
    fn goodput_counts_payload_per_second_in_both_units() {
        let report = DirectionReport::from(&measured(250_000_000, 2));
        assert_eq!(report.goodput_mbit_per_second, 1000.0);
        assert!((report.goodput_mib_per_second - 119.209).abs() < 0.001);
        assert_eq!(report.seconds, 2.0);
    }

    #[test]
    fn path_figures_are_differences_over_the_run() {
        let report = DirectionReport::from(&measured(250_000_000, 2));
        assert_eq!(report.sent_packets, 100_000);
        assert_eq!(report.lost_packets, 50);
        assert_eq!(report.loss_percent, 0.05);
        assert_eq!(report.lost_bytes, 60_000);
        assert_eq!(report.congestion_events, 5);
        assert_eq!(report.wire_bytes, 255_000_000);
        assert_eq!(report.wire_bytes_per_payload_byte, Some(1.02));
        assert_eq!(report.rtt_ms, 40.5);
        assert_eq!(report.min_rtt_ms, 40.0);
        assert_eq!(report.queueing_delay_ms, 0.5);
        assert_eq!(report.cwnd_bytes, 3 << 20);
        assert_eq!(report.return_bytes, Some(5_000_000));
        assert_eq!(report.return_bytes_per_payload_byte, Some(0.02));
    }

    #[test]
    fn nothing_measured_divides_by_nothing() {
        let mut idle = measured(0, 0);
        idle.after = idle.before;
        let report = DirectionReport::from(&idle);
        assert_eq!(report.goodput_mbit_per_second, 0.0);
        assert_eq!(report.loss_percent, 0.0);
        assert_eq!(report.wire_bytes_per_payload_byte, None);
        assert_eq!(report.return_bytes_per_payload_byte, None);
    }

    #[test]
    fn a_return_path_shared_with_data_is_not_counted() {
        let mut both = measured(250_000_000, 2);
        both.returned_bytes = None;
        let report = DirectionReport::from(&both);
        assert_eq!(report.return_bytes_per_payload_byte, None);
        assert!(report.to_string().contains("sent back          - (both"));
    }

    fn report() -> BenchReport {
        BenchReport::new(
            "192.0.2.7:9771".parse().unwrap(),
            8,
            BenchLimit::Size(250_000_000),
            Some(measured(250_000_000, 2)),
            None,
        )
    }

    #[test]
    fn the_human_report_aligns_one_figure_per_line() {
        let text = report().to_string();
        let expected = "\
bench of 192.0.2.7:9771: 8 streams per direction, 238.42 MiB each way

send: command to daemon
  payload            238.42 MiB in 2.00 s
  goodput            1000.0 Mbit/s (119.2 MiB/s)
  round trip         40.50 ms smoothed, 40.00 ms lowest, 0.50 ms queueing
  lost and resent    50 of 100000 packets (0.050 %), 58.59 KiB
  congestion events  5
  congestion window  3.00 MiB
  on the wire        1.020 bytes per payload byte
  sent back          4.77 MiB, 0.020 bytes per payload byte
  (path figures as the command sent)
";
        assert_eq!(text, expected);
    }

    #[test]
    fn the_json_report_is_one_object_with_every_figure() {
        let json = report().to_json();
        assert!(!json.contains('\n'));
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["daemon"], "192.0.2.7:9771");
        assert_eq!(value["streams"], 8);
        assert_eq!(value["size_bytes"], 250_000_000);
        assert!(value["duration_seconds"].is_null());
        assert!(value["receive"].is_null());
        let send = &value["send"];
        assert_eq!(send["bytes"], 250_000_000);
        assert_eq!(send["goodput_mbit_per_second"], 1000.0);
        assert_eq!(send["path_measured_by"], "command");
        assert_eq!(send["lost_packets"], 50);
        assert_eq!(send["rtt_ms"], 40.5);
        assert_eq!(send["queueing_delay_ms"], 0.5);
        assert_eq!(send["return_bytes"], 5_000_000);
    }
}
