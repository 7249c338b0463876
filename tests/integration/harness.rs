//! Test harness: real binaries, real certificates made by `realize keygen`,
//! a real daemon on 127.0.0.1.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The `realize` binary, keeping what it learns of paths in this test
/// run's own state folder, not the user's.
pub fn realize() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_realize"));
    command.env("XDG_STATE_HOME", state_home());
    command
}

/// The `XDG_STATE_HOME` of the commands this test run starts.
fn state_home() -> &'static Path {
    static STATE_HOME: std::sync::OnceLock<TempDir> = std::sync::OnceLock::new();
    STATE_HOME
        .get_or_init(|| TempDir::new().expect("a state folder"))
        .path()
}

/// Runs `realize` with `args` and returns its output.
pub fn run(args: &[&str]) -> Output {
    realize().args(args).output().expect("realize runs")
}

/// Keys made by `realize keygen` in a fresh folder.
pub struct Keys {
    pub dir: TempDir,
}

impl Keys {
    /// Generates one identity per name.
    pub fn generate(names: &[&str]) -> Self {
        let dir = TempDir::new().unwrap();
        for name in names {
            let out = run(&[
                "keygen",
                "--name",
                name,
                "--out",
                dir.path().to_str().unwrap(),
            ]);
            assert!(out.status.success(), "keygen {name}: {out:?}");
        }
        Self { dir }
    }

    pub fn key(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.key"))
    }

    pub fn cert(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.crt"))
    }

    /// The fingerprint `keygen` printed is recomputed from the file here
    /// through the library, to check messages that name it.
    pub fn fingerprint(&self, name: &str) -> String {
        let identity =
            realize::transport::identity::Identity::load(&self.key(name), &self.cert(name))
                .unwrap();
        identity.fingerprint().to_string()
    }

    /// The flags of this host's identity as `client`.
    pub fn identity_args(&self, client: &str) -> Vec<String> {
        vec![
            "--key".into(),
            self.key(client).display().to_string(),
            "--cert".into(),
            self.cert(client).display().to_string(),
        ]
    }

    /// The client flags to reach the one daemon whose certificate is
    /// `daemon`'s, through `--peers`.
    pub fn client_args(&self, client: &str, daemon: &str) -> Vec<String> {
        let mut args = self.identity_args(client);
        args.extend(["--peers".into(), self.cert(daemon).display().to_string()]);
        args
    }

    /// The client flags of a move from the daemon `src` to the daemon
    /// `dst`: each side names the certificate its daemon must present.
    pub fn relay_args(&self, client: &str, src: &str, dst: &str) -> Vec<String> {
        let mut args = self.identity_args(client);
        args.extend([
            "--src-peer".into(),
            self.cert(src).display().to_string(),
            "--dst-peer".into(),
            self.cert(dst).display().to_string(),
        ]);
        args
    }

    /// A peers file holding the certificates of all `daemons`.
    pub fn peers_file(&self, daemons: &[&str]) -> PathBuf {
        let peers = self
            .dir
            .path()
            .join(format!("peers-{}.pem", daemons.join("-")));
        let pem: String = daemons
            .iter()
            .map(|d| std::fs::read_to_string(self.cert(d)).unwrap())
            .collect();
        std::fs::write(&peers, pem).unwrap();
        peers
    }
}

/// The configuration of the daemon `name` (its key and certificate in the
/// keys' folder), on any port of 127.0.0.1, serving `dirs` to `peers`.
pub fn daemon_toml(name: &str, dirs: &[(&str, &Path)], peers: &[&str]) -> String {
    daemon_toml_at("127.0.0.1:0", name, dirs, peers)
}

/// [`daemon_toml`] listening on `listen`.
pub fn daemon_toml_at(listen: &str, name: &str, dirs: &[(&str, &Path)], peers: &[&str]) -> String {
    let mut toml =
        format!("listen = \"{listen}\"\nkey = \"{name}.key\"\ncert = \"{name}.crt\"\n[dirs]\n");
    for (id, path) in dirs {
        toml.push_str(&format!("{id} = {:?}\n", path.display().to_string()));
    }
    toml.push_str("[peers]\n");
    for peer in peers {
        toml.push_str(&format!("{peer} = \"{peer}.crt\"\n"));
    }
    toml
}

/// A running `realized`, killed on drop.
pub struct Daemon {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
    pub config: PathBuf,
}

impl Daemon {
    /// Starts `realized` as `name`, serving `dirs`, trusting `peers`.
    pub fn start(keys: &Keys, name: &str, dirs: &[(&str, &Path)], peers: &[&str]) -> Self {
        let config = keys.dir.path().join(format!("{name}.toml"));
        std::fs::write(&config, daemon_toml(name, dirs, peers)).unwrap();
        Self::start_with_config(&config)
    }

    /// [`Daemon::start`] with the log filter `filter` (`RUST_LOG`) instead
    /// of `info`.
    pub fn start_logging(keys: &Keys, name: &str, dirs: &[(&str, &Path)], filter: &str) -> Self {
        let config = keys.dir.path().join(format!("{name}.toml"));
        std::fs::write(&config, daemon_toml(name, dirs, &["client"])).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_realized"));
        command.env("RUST_LOG", filter);
        Self::spawn(command, &config)
    }

    /// Starts `realized --config config` and waits until it listens.
    pub fn start_with_config(config: &Path) -> Self {
        Self::spawn(Command::new(env!("CARGO_BIN_EXE_realized")), config)
    }

    /// Starts `realized --config config` with `args` added.
    pub fn start_with_args(config: &Path, args: &[&str]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_realized"));
        command.args(args);
        Self::spawn(command, config)
    }

    /// Starts `realized` inside the network namespace `netns`.
    pub fn start_in_namespace(netns: &str, config: &Path) -> Self {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", netns])
            .arg(env!("CARGO_BIN_EXE_realized"));
        Self::spawn(command, config)
    }

    fn spawn(mut command: Command, config: &Path) -> Self {
        if !command.get_envs().any(|(name, _)| name == "RUST_LOG") {
            command.env("RUST_LOG", "info");
        }
        let mut child = command
            .arg("--config")
            .arg(config)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("realized starts");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // `address=127.0.0.1:1234` in text logs, `"address":"..."` in JSON.
                let text = line.split("address=").nth(1).map(str::trim);
                let json = line
                    .split("\"address\":\"")
                    .nth(1)
                    .and_then(|a| a.split('"').next());
                if let Some(addr) = text.or(json) {
                    let _ = tx.send(addr.to_string());
                }
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("realized did not start: {}", log.lock().unwrap()));
        Self {
            child,
            addr: addr.parse().unwrap(),
            log,
            config: config.to_path_buf(),
        }
    }

    /// The address as a flag value.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Everything logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits up to 10 s for `needle` to appear in the log.
    pub fn wait_for_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{needle:?} not logged; log:\n{}", self.log())
    }

    /// The daemon's threads and open descriptors, from `/proc`.
    pub fn threads_and_fds(&self) -> (usize, usize) {
        let proc = PathBuf::from(format!("/proc/{}", self.child.id()));
        let status = std::fs::read_to_string(proc.join("status")).unwrap();
        let threads = status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap();
        let fds = std::fs::read_dir(proc.join("fd")).unwrap().count();
        (threads, fds)
    }

    /// How many of the daemon's descriptors are open on `file`.
    pub fn fds_on(&self, file: &Path) -> usize {
        let fds = PathBuf::from(format!("/proc/{}/fd", self.child.id()));
        std::fs::read_dir(fds)
            .unwrap()
            .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
            .filter(|target| target == file)
            .count()
    }

    /// The daemon's peak resident memory so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|kib| kib.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// Kills the daemon with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Starts a new daemon with the same configuration on the same address.
    pub fn restart(&self) -> Daemon {
        let config = self.config.with_extension("restarted.toml");
        let text = std::fs::read_to_string(&self.config)
            .unwrap()
            .replace("127.0.0.1:0", &self.addr());
        std::fs::write(&config, text).unwrap();
        let daemon = Daemon::start_with_config(&config);
        assert_eq!(daemon.addr, self.addr);
        daemon
    }

    /// Kills the daemon with SIGKILL and starts it again on the same
    /// address, as a service manager brings back a crashed daemon.
    pub fn crash_and_restart(&mut self) {
        self.kill();
        *self = self.restart();
    }

    /// Sends SIGHUP: the daemon reads its configuration again.
    pub fn hang_up(&self) {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGHUP) };
    }

    /// Sends SIGTERM and returns the exit status (waits up to 15 s).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "realized did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free TCP port on 127.0.0.1 (free when asked; tests use it at once).
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The body of an HTTP GET, or None if it fails.
pub fn http_get(url: &str) -> Option<String> {
    ureq::get(url)
        .config()
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .call()
        .ok()?
        .body_mut()
        .read_to_string()
        .ok()
}

/// The value of the sample of `metric` whose labels include all `labels`
/// (`name="value"` strings) in a Prometheus text exposition.
pub fn sample(exposition: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    exposition
        .lines()
        .filter(|line| line.starts_with(metric) && !line.starts_with('#'))
        .filter(|line| line[metric.len()..].starts_with(['{', ' ']))
        .find(|line| labels.iter().all(|label| line.contains(label)))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

/// Waits (up to two minutes) until the file at `path` holds at least `len`
/// bytes; fails early if `command` ends first.
pub fn wait_for_len(path: &Path, len: u64, mut command: Option<&mut Child>) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) < len {
        assert!(
            Instant::now() < deadline,
            "{} did not grow to {len} bytes",
            path.display()
        );
        if let Some(command) = command.as_mut() {
            assert!(
                command.try_wait().unwrap().is_none(),
                "the command ended too soon"
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Arguments that move `src` into directory `dir` of `daemon`, connecting as
/// `client` and expecting the certificate of `daemon_name`.
pub fn to_daemon(
    keys: &Keys,
    src: &Path,
    daemon: &Daemon,
    dir: &str,
    client: &str,
    daemon_name: &str,
) -> Vec<String> {
    let mut args: Vec<String> = [
        "--src-path",
        src.to_str().unwrap(),
        "--dst-addr",
        &daemon.addr(),
        "--directory-id",
        dir,
    ]
    .map(String::from)
    .into();
    args.extend(keys.client_args(client, daemon_name));
    args
}

/// Arguments that move directory `dir` of `daemon` into the local `dst`,
/// connecting as `client` and expecting the certificate of `daemon_name`.
pub fn from_daemon(
    keys: &Keys,
    daemon: &Daemon,
    dir: &str,
    dst: &Path,
    client: &str,
    daemon_name: &str,
) -> Vec<String> {
    let mut args: Vec<String> = [
        "--src-addr",
        &daemon.addr(),
        "--dst-path",
        dst.to_str().unwrap(),
        "--directory-id",
        dir,
    ]
    .map(String::from)
    .into();
    args.extend(keys.client_args(client, daemon_name));
    args
}

/// Writes the standard test tree: nested folders, an empty file, a 20 MiB
/// file, names with spaces and non-ASCII characters.
pub fn make_tree(root: &Path) {
    let files: &[(&str, usize)] = &[
        ("top.txt", 1000),
        ("empty", 0),
        ("big/twenty.bin", 20 << 20),
        ("a/b/c/deep.dat", 70_000),
        ("with space/name with spaces.txt", 12),
        ("ünïcødé/日本語.txt", 333),
        ("a/sibling.bin", 256 * 1024 + 1),
    ];
    for (i, (path, size)) in files.iter().enumerate() {
        write_file(root, path, &pattern(i as u64, *size));
    }
}

/// Deterministic pseudo-random content.
pub fn pattern(seed: u64, size: usize) -> Vec<u8> {
    let mut data = vec![0u8; size];
    let mut hasher = blake3::Hasher::new();
    hasher.update(&seed.to_le_bytes());
    hasher.finalize_xof().fill(&mut data);
    data
}

pub fn write_file(root: &Path, path: &str, data: &[u8]) {
    let full = root.join(path);
    std::fs::create_dir_all(full.parent().unwrap()).unwrap();
    std::fs::write(full, data).unwrap();
}

/// Relative path → BLAKE3 of every regular file under `root`.
pub fn snapshot(root: &Path) -> BTreeMap<String, String> {
    paths(root)
        .into_iter()
        .filter(|path| !path.ends_with('/'))
        .map(|path| {
            let hash = blake3::hash(&std::fs::read(root.join(&path)).unwrap());
            (path, hash.to_hex().to_string())
        })
        .collect()
}

/// Every path under `root`, relative, folders ending in `/`: everything a
/// user would find there, whatever its name.
pub fn paths(root: &Path) -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    walk(root, root, &mut paths);
    paths
}

fn walk(root: &Path, dir: &Path, paths: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let rel = path.strip_prefix(root).unwrap().to_string_lossy();
        if entry.file_type().unwrap().is_dir() {
            paths.insert(format!("{rel}/"));
            walk(root, &path, paths);
        } else {
            paths.insert(rel.into_owned());
        }
    }
}

/// Whether `dir` holds nothing at all (no files, no folders).
pub fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().next().is_none()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
