//! The daemon under systemd: `Type=notify` readiness through
//! `NOTIFY_SOCKET`, and log lines the journal files under their level.

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::harness::*;

/// A daemon configuration of `keys`' "daemon" listening on `listen`,
/// serving `dir` to "client".
fn write_config(keys: &Keys, listen: &str, dir: &Path) -> PathBuf {
    let config = keys.dir.path().join("realized.toml");
    let toml = format!(
        "listen = \"{listen}\"\nkey = \"daemon.key\"\ncert = \"daemon.crt\"\n\
         [dirs]\nd = {:?}\n[peers]\nclient = \"client.crt\"\n",
        dir.display().to_string()
    );
    std::fs::write(&config, toml).unwrap();
    config
}

/// `realized --config config`, its stderr written to `log`.
fn realized(config: &Path, log: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_realized"));
    command
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    command
}

/// The next datagram on `socket`, as text.
fn receive(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let len = socket
        .recv(&mut buf)
        .expect("a notification within the timeout");
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

/// Waits up to 10 s for `needle` in the file `log`, and returns the file.
fn wait_for(log: &Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(log).unwrap();
        if text.contains(needle) {
            return text;
        }
        assert!(Instant::now() < deadline, "{needle:?} not logged:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends SIGTERM to `child` and returns its exit code.
fn terminate(child: &mut Child) -> Option<i32> {
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap().code()
}

#[test]
fn daemon_tells_systemd_it_is_ready_once_it_listens_and_when_it_stops() {
    let keys = Keys::generate(&["daemon", "client"]);
    let served = TempDir::new().unwrap();
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let config = write_config(&keys, &listen, served.path());
    let notify_path = keys.dir.path().join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let log = keys.dir.path().join("realized.log");
    let mut daemon = realized(&config, &log)
        .env("NOTIFY_SOCKET", &notify_path)
        .spawn()
        .unwrap();

    let ready = receive(&notify);
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    assert!(
        ready
            .lines()
            .any(|l| l == format!("STATUS=listening on {listen}")),
        "{ready:?}"
    );
    // Ready means listening: the port is the daemon's already.
    let taken = std::net::UdpSocket::bind(&listen).unwrap_err();
    assert_eq!(taken.kind(), std::io::ErrorKind::AddrInUse);

    assert_eq!(terminate(&mut daemon), Some(0));
    let stopping = receive(&notify);
    assert_eq!(stopping, "STOPPING=1\n");
}

#[test]
fn warnings_carry_the_journal_warning_level() {
    let keys = Keys::generate(&["daemon", "client", "stranger"]);
    let (src, served) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    write_file(src.path(), "f", b"data");
    let config = write_config(&keys, "127.0.0.1:0", served.path());
    let daemon = Daemon::start_with_args(&config, &["--log-format", "journal"]);
    let args = to_daemon(&keys, src.path(), &daemon, "d", "stranger", "daemon");
    assert_eq!(
        realize().args(&args).output().unwrap().status.code(),
        Some(1)
    );

    let log = daemon.wait_for_log("refused connection");
    let refused = log.lines().find(|l| l.contains("refused connection"));
    assert!(refused.unwrap().starts_with("<4> WARN "), "{log}");
    let listening = log.lines().find(|l| l.contains("listening"));
    assert!(listening.unwrap().starts_with("<6> INFO "), "{log}");
}

#[test]
fn the_error_that_stops_the_daemon_carries_the_journal_error_level() {
    let keys = Keys::generate(&["daemon", "client"]);
    let missing = keys.dir.path().join("gone");
    let config = write_config(&keys, "127.0.0.1:0", &missing);
    for check in [false, true] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_realized"));
        command.args(["--log-format", "journal", "--config"]);
        command.arg(&config);
        if check {
            command.arg("--check-config");
        }
        let out = command.output().unwrap();
        assert_eq!(out.status.code(), Some(if check { 2 } else { 1 }));
        let err = stderr(&out);
        assert!(err.starts_with("<3>realized: "), "{err}");
        assert!(err.contains(&missing.display().to_string()), "{err}");
    }
}

#[test]
fn daemon_writes_journal_lines_when_stderr_is_the_journal_stream() {
    let keys = Keys::generate(&["daemon", "client"]);
    let served = TempDir::new().unwrap();
    let config = write_config(&keys, "127.0.0.1:0", served.path());
    for journal in [true, false] {
        let log = keys.dir.path().join(format!("journal-{journal}.log"));
        let mut command = realized(&config, &log);
        // systemd names the stream it gives as stderr by device and inode;
        // any other stream (here the file's neighbour) is not the journal.
        let named = if journal {
            log.clone()
        } else {
            keys.dir.path().join("realized.toml")
        };
        let stat = std::fs::metadata(named).unwrap();
        command.env("JOURNAL_STREAM", format!("{}:{}", stat.dev(), stat.ino()));
        let mut daemon = command.spawn().unwrap();
        let text = wait_for(&log, "listening");
        terminate(&mut daemon);
        let listening = text.lines().find(|l| l.contains("listening")).unwrap();
        assert_eq!(
            listening.starts_with("<6> INFO realize::server: listening"),
            journal,
            "{text}"
        );
    }
}
