//! `realize bench` against a real daemon: generated data crosses both ways,
//! the report holds what a user checks, the daemon's disk is untouched and
//! its metrics count the bytes. Rate bounds are wide: a loaded machine must
//! not flake them.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tempfile::TempDir;

use crate::harness::*;

const SIZE: u64 = 16 << 20;

/// A daemon serving an empty folder, with metrics on a free port.
struct Setup {
    keys: Keys,
    served: TempDir,
    daemon: Daemon,
    metrics: String,
}

fn setup() -> Setup {
    let keys = Keys::generate(&["client", "daemon"]);
    let served = TempDir::new().unwrap();
    let port = free_tcp_port();
    let config = daemon_config(&keys, served.path(), port);
    let daemon = Daemon::start_with_config(&config);
    Setup {
        keys,
        served,
        daemon,
        metrics: format!("http://127.0.0.1:{port}/metrics"),
    }
}

fn daemon_config(keys: &Keys, served: &Path, metrics_port: u16) -> PathBuf {
    let config = keys.dir.path().join("bench.toml");
    let metrics = format!("metrics = \"127.0.0.1:{metrics_port}\"\n");
    let toml = metrics + &daemon_toml("daemon", &[("d", served)], &["client"]);
    std::fs::write(&config, toml).unwrap();
    config
}

impl Setup {
    /// Runs `realize bench` against the daemon with `extra` flags.
    fn bench(&self, extra: &[&str]) -> std::process::Output {
        realize()
            .args(["bench", &self.daemon.addr()])
            .args(self.keys.client_args("client", "daemon"))
            .args(extra)
            .output()
            .unwrap()
    }

    /// Runs `realize bench --json` with `extra` flags; it must succeed.
    fn report(&self, extra: &[&str]) -> Value {
        let out = self.bench(&[&["--json"][..], extra].concat());
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)))
    }

    /// The daemon's count of bench bytes in `direction`.
    fn bench_bytes(&self, direction: &str) -> Option<f64> {
        let metrics = http_get(&self.metrics).expect("/metrics answers");
        let labels = ["peer=\"client\"", &format!("direction=\"{direction}\"")];
        sample(&metrics, "realize_bench_bytes_total", &labels)
    }

    fn assert_disk_untouched(&self) {
        assert!(
            is_empty_dir(self.served.path()),
            "the bench created files: {:?}",
            snapshot(self.served.path())
        );
    }
}

/// Checks the figures a user reads for one direction.
fn assert_direction(report: &Value, bytes: u64, measured_by: &str) {
    assert_eq!(report["bytes"], bytes, "{report}");
    assert!(report["goodput_mbit_per_second"].as_f64().unwrap() > 0.0);
    assert!(report["goodput_mib_per_second"].as_f64().unwrap() > 0.0);
    assert!(report["seconds"].as_f64().unwrap() > 0.0);
    assert!(report["rtt_ms"].as_f64().is_some(), "{report}");
    assert!(report["min_rtt_ms"].as_f64().is_some(), "{report}");
    assert!(report["cwnd_bytes"].as_u64().unwrap() > 0);
    assert!(report["sent_packets"].as_u64().unwrap() > 0);
    assert!(report["loss_percent"].as_f64().unwrap() >= 0.0);
    let wire = report["wire_bytes_per_payload_byte"].as_f64().unwrap();
    assert!(
        (1.0..1.5).contains(&wire),
        "wire bytes per payload byte: {wire}"
    );
    assert_eq!(report["path_measured_by"], measured_by);
    let queueing = report["queueing_delay_ms"].as_f64().unwrap();
    assert!(queueing >= 0.0, "{report}");
    // The receiver sent back acknowledgements, a few bytes for each
    // packet of payload.
    let returned = report["return_bytes_per_payload_byte"].as_f64().unwrap();
    assert!(
        (0.0001..0.2).contains(&returned),
        "return bytes per payload byte: {returned}"
    );
}

#[test]
fn bench_sends_a_size_to_the_daemon_which_drops_it() {
    let s = setup();
    let report = s.report(&["--size", "16M"]);
    assert_eq!(report["streams"], 8);
    assert_eq!(report["size_bytes"], SIZE);
    assert!(report["receive"].is_null());
    assert_direction(&report["send"], SIZE, "command");
    s.assert_disk_untouched();
    assert_eq!(s.bench_bytes("received"), Some(SIZE as f64));
    assert_eq!(s.bench_bytes("sent"), None);
    let log = s.daemon.wait_for_log("bench stream served");
    assert!(log.contains("direction=\"received\""), "{log}");
}

/// Path MTU discovery raises the datagram size above Ethernet's where the
/// path carries more: loopback does, and bigger packets cost less work
/// per byte.
#[test]
fn bench_on_loopback_sends_datagrams_larger_than_ethernet_frames() {
    let s = setup();
    let report = s.report(&["--size", "64M"]);
    let send = &report["send"];
    let wire = send["wire_bytes"].as_f64().unwrap();
    let packets = send["sent_packets"].as_f64().unwrap();
    let average = wire / packets;
    assert!(
        average > 2_000.0,
        "average datagram of {average:.0} bytes; Ethernet carries at most 1,472: {send}"
    );
}

#[test]
fn bench_receive_reads_generated_data_from_the_daemon() {
    let s = setup();
    let report = s.report(&["--size", "16M", "--receive", "--streams", "3"]);
    assert_eq!(report["streams"], 3);
    assert!(report["send"].is_null());
    assert_direction(&report["receive"], SIZE, "daemon");
    s.assert_disk_untouched();
    assert_eq!(s.bench_bytes("sent"), Some(SIZE as f64));
    assert_eq!(s.bench_bytes("received"), None);
}

#[test]
fn bench_measures_both_directions_for_a_duration() {
    let s = setup();
    let report = s.report(&["--send", "--receive", "--duration", "2s"]);
    assert_eq!(report["duration_seconds"], 2.0);
    for direction in ["send", "receive"] {
        let figures = &report[direction];
        let bytes = figures["bytes"].as_u64().unwrap();
        assert!(bytes > 0, "{direction}: {figures}");
        let seconds = figures["seconds"].as_f64().unwrap();
        assert!((2.0..10.0).contains(&seconds), "{direction}: {seconds} s");
        // Each side's acknowledgements ride with its own data.
        assert!(figures["return_bytes"].is_null(), "{direction}: {figures}");
    }
    s.assert_disk_untouched();
    // The daemon counts what it sent, in flight when the time ran out included.
    let sent = s.bench_bytes("sent").unwrap();
    assert!(sent >= report["receive"]["bytes"].as_f64().unwrap());
}

#[test]
fn bench_prints_an_aligned_report_by_default() {
    let s = setup();
    let out = s.bench(&["--size", "4M"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!("bench of {}: 8 streams", s.daemon.addr())),
        "{text}"
    );
    for label in [
        "send: command to daemon",
        "  payload            4.00 MiB in ",
        "  goodput            ",
        "  round trip         ",
        "  lost and resent    ",
        "  congestion window  ",
        "  sent back          ",
    ] {
        assert!(text.contains(label), "{label:?} missing:\n{text}");
    }
}

#[test]
fn bench_throttle_up_paces_what_the_command_sends() {
    let s = setup();
    let report = s.report(&["--size", "3M", "--throttle-up", "1M"]);
    assert_about_one_mib_per_second(&report["send"]);
}

#[test]
fn bench_throttle_down_makes_the_daemon_pace_itself() {
    let s = setup();
    let report = s.report(&["--receive", "--duration", "3s", "--throttle", "1M"]);
    assert_about_one_mib_per_second(&report["receive"]);
    let log = s.daemon.wait_for_log("send limit changed");
    assert!(log.contains("new=1.00 MiB/s"), "{log}");
}

fn assert_about_one_mib_per_second(figures: &Value) {
    let rate = figures["goodput_mib_per_second"].as_f64().unwrap();
    assert!((0.5..1.5).contains(&rate), "{rate} MiB/s: {figures}");
}

#[test]
fn bench_usage_errors_exit_2() {
    let s = setup();
    let cases: &[(&[&str], &str)] = &[
        (&["--size", "1G", "--duration", "5s"], "cannot be used with"),
        (&["--size", "lots"], "is not a size"),
        (&["--streams", "0"], "from 1 to 128"),
        (&["--duration", "2h"], "from 1s to 1h"),
    ];
    for (extra, message) in cases {
        let out = s.bench(extra);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(message),
            "{extra:?}: {}",
            stderr(&out)
        );
    }
    let out = run(&["bench", &s.daemon.addr()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--key is required"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bench_says_why_when_the_daemon_stops_during_the_run() {
    let mut s = setup();
    let bench = realize()
        .args(["bench", &s.daemon.addr(), "--send"])
        .args(s.keys.client_args("client", "daemon"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    s.daemon.wait_for_log("connection accepted");
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(s.daemon.terminate().success());
    let out = bench.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("lost: closed by peer: daemon shutting down"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty(), "no report: {}", stdout(&out));
}

#[test]
fn bench_measures_only_the_daemon_it_names() {
    let s = setup();
    let out = run(&[
        "keygen",
        "--name",
        "other",
        "--out",
        s.keys.dir.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let both = s.keys.peers_file(&["daemon", "other"]);
    let bench = |trust: &[&str]| {
        realize()
            .args(["bench", &s.daemon.addr(), "--size", "1M"])
            .args(s.keys.identity_args("client"))
            .args(["--peers", both.to_str().unwrap()])
            .args(trust)
            .output()
            .unwrap()
    };
    let out = bench(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        format!(
            "realize: --peers {} holds 2 certificates; name the one the daemon at {} must \
             present with --peer FILE\n",
            both.display(),
            s.daemon.addr()
        )
    );
    let other = s.keys.cert("other");
    let out = bench(&["--peer", other.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "it presented certificate {}",
            s.keys.fingerprint("daemon")
        )),
        "{}",
        stderr(&out)
    );
    let daemon = s.keys.cert("daemon");
    let out = bench(&["--peer", daemon.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    s.assert_disk_untouched();
}
