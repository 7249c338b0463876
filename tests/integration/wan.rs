//! Slow tests over an emulated WAN link (../shared/wanemu): two network
//! namespaces joined by a 100 Mbit/s link with 100 ms RTT. They need root and
//! /dev/net/tun, take about a minute, and run with `--include-ignored`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::harness::*;

/// A running emulated link; brought down on drop.
struct Link {
    name: &'static str,
    wanemu: PathBuf,
    process: Child,
}

impl Link {
    /// Builds wanemu if needed and brings up link `name`.
    fn up(name: &'static str, options: &[&str]) -> Self {
        let wanemu = build_wanemu();
        let log = std::env::temp_dir().join(format!("wanemu-{name}.log"));
        let process = Command::new(&wanemu)
            .args(["up", name])
            .args(options)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("wanemu starts (needs root and /dev/net/tun)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("\nready ")
            && !std::fs::read_to_string(&log)
                .unwrap_or_default()
                .starts_with("ready ")
        {
            assert!(
                Instant::now() < deadline,
                "wanemu not ready: {:?}",
                std::fs::read_to_string(&log)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            name,
            wanemu,
            process,
        }
    }

    fn set(&self, options: &[&str]) {
        let status = Command::new(&self.wanemu)
            .args(["set", self.name])
            .args(options)
            .status()
            .unwrap();
        assert!(status.success(), "wanemu set {options:?}");
    }

    fn side(&self, side: char) -> String {
        format!("{}-{side}", self.name)
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.process.id() as i32, libc::SIGTERM) };
        let _ = self.process.wait();
        let _ = Command::new(&self.wanemu)
            .args(["down", self.name])
            .status();
    }
}

/// A daemon on the far side of `link` (198.18.0.2:`port`) serving `dir` as
/// `d` to `keys`' client, with `keys`' daemon identity.
fn daemon_across(link: &Link, keys: &Keys, dir: &Path, port: u16) -> Daemon {
    let config = keys.dir.path().join(format!("wan-{port}.toml"));
    let listen = format!("198.18.0.2:{port}");
    let toml = daemon_toml_at(&listen, "daemon", &[("d", dir)], &["client"]);
    std::fs::write(&config, toml).unwrap();
    Daemon::start_in_namespace(&link.side('b'), &config)
}

/// The wanemu binary: built from ../shared/wanemu into this build's target.
fn build_wanemu() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/wanemu/Cargo.toml");
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("wanemu");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--quiet", "--manifest-path"])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "building wanemu from {}",
        manifest.display()
    );
    target.join("release/wanemu")
}

#[test]
#[ignore = "slow: needs root, /dev/net/tun and ../shared/wanemu"]
fn a_20_second_outage_mid_transfer_is_survived() {
    const SIZE: usize = 40 << 20;
    let link = Link::up(
        "rzoutage",
        &[
            "--delay-ms",
            "50",
            "--rate-mbit",
            "100",
            "--queue-ms",
            "100",
            "--seed",
            "1",
        ],
    );
    let keys = Keys::generate(&["client", "daemon"]);
    let (src, dst) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let data = pattern(41, SIZE);
    write_file(src.path(), "big.bin", &data);
    for i in 0..20 {
        write_file(src.path(), &format!("small/{i}.txt"), &pattern(i, 10_000));
    }
    let expected = snapshot(src.path());
    let _daemon = daemon_across(&link, &keys, dst.path(), 9771);

    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", &link.side('a')])
        .arg(env!("CARGO_BIN_EXE_realize"));
    command.args([
        "--src-path",
        src.path().to_str().unwrap(),
        "--dst-addr",
        "198.18.0.2:9771",
        "--directory-id",
        "d",
    ]);
    command.args(["--max-duration", "150s"]);
    command.args(keys.client_args("client", "daemon"));
    let run = std::thread::spawn(move || command.output().unwrap());

    let partial = dst.path().join(".realize~part.big.bin");
    wait_for_len(&partial, (SIZE / 8) as u64, None);
    link.set(&["--down"]);
    std::thread::sleep(Duration::from_secs(20));
    link.set(&["--up"]);

    let out = run.join().unwrap();
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("retrying in"),
        "the outage was noticed: {}",
        stderr(&out)
    );
    assert_eq!(snapshot(dst.path()), expected);
    assert!(is_empty_dir(src.path()));
}
