//! Metrics and logs, checked against real parts: a daemon's `/metrics`
//! scraped during and after a move, a real Prometheus Pushgateway, and the
//! daemon's JSON log lines.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::harness::*;

fn daemon_config(keys: &Keys, dst: &std::path::Path, metrics_port: u16) -> std::path::PathBuf {
    let config = keys.dir.path().join("observed.toml");
    let metrics = format!("metrics = \"127.0.0.1:{metrics_port}\"\n");
    let toml = metrics + &daemon_toml("daemon", &[("d", dst)], &["client"]);
    std::fs::write(&config, toml).unwrap();
    config
}

#[test]
fn daemon_metrics_count_moves_and_refusals() {
    let keys = Keys::generate(&["client", "daemon", "stranger"]);
    let (src, dst) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let sizes = [4 << 20, 1000, 0];
    for (i, size) in sizes.iter().enumerate() {
        write_file(src.path(), &format!("f{i}"), &pattern(i as u64, *size));
    }
    let port = free_tcp_port();
    let daemon = Daemon::start_with_config(&daemon_config(&keys, dst.path(), port));
    let url = format!("http://127.0.0.1:{port}/metrics");

    // During a throttled move: one connection open.
    let args = to_daemon(&keys, src.path(), &daemon, "d", "client", "daemon");
    let mut mover = realize()
        .args(&args)
        .args(["--throttle-up", "2M", "-q"])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let open = http_get(&url).and_then(|m| sample(&m, "realize_connections_open", &[]));
        if open == Some(1.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no open connection seen: {:?}",
            http_get(&url)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(mover.wait().unwrap().success());

    // A stranger is refused.
    let stranger = to_daemon(&keys, src.path(), &daemon, "d", "stranger", "daemon");
    assert_eq!(
        realize().args(&stranger).output().unwrap().status.code(),
        Some(1)
    );
    daemon.wait_for_log("refused connection");

    let metrics = http_get(&url).expect("/metrics answers");
    let client = ["peer=\"client\"", "method=\"copy\""];
    assert_eq!(
        sample(&metrics, "realize_files_received_total", &client),
        Some(3.0),
        "{metrics}"
    );
    let total: usize = sizes.iter().sum();
    assert_eq!(
        sample(&metrics, "realize_received_bytes_total", &client),
        Some(total as f64)
    );
    let refused = ["reason=\"unknown_certificate\""];
    assert_eq!(
        sample(&metrics, "realize_connections_refused_total", &refused),
        Some(1.0)
    );
    assert_eq!(
        sample(&metrics, "realize_connections_accepted_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "realize_rpc_requests_total",
            &["op=\"delete\"", "status=\"ok\""]
        ),
        None,
        "deletes are local here"
    );
    assert!(
        metrics.contains("# HELP realize_files_received_total Files received and made final"),
        "{metrics}"
    );
    assert!(
        metrics.contains("process_resident_memory_bytes"),
        "process metrics: {metrics}"
    );
    let version = format!("version=\"{}\"", env!("CARGO_PKG_VERSION"));
    assert_eq!(
        sample(&metrics, "realize_build_info", &[&version]),
        Some(1.0),
        "{metrics}"
    );

    // Packet counts are counters that hold what the closed connection sent
    // and received, up to its end: hundreds of datagrams for 4 MiB received,
    // some acknowledgements sent.
    for (counter, least) in [
        ("realize_path_received_datagrams_total", 100.0),
        ("realize_path_sent_packets_total", 1.0),
        ("realize_path_lost_packets_total", 0.0),
    ] {
        assert!(
            metrics.contains(&format!("# TYPE {counter} counter")),
            "{metrics}"
        );
        let packets = sample(&metrics, counter, &["peer=\"client\""]);
        assert!(
            packets.is_some_and(|packets| packets >= least),
            "{counter} = {packets:?}: {metrics}"
        );
    }
    assert_eq!(
        sample(
            &metrics,
            "realize_send_limit_bytes_per_second",
            &["peer=\"client\""]
        ),
        Some(f64::INFINITY),
        "no [send_limits] and no --throttle-down: unlimited, {metrics}"
    );
}

/// A real Pushgateway on loopback, over http, or over https with a
/// certificate of its own authority.
struct Gateway {
    process: Child,
    url: String,
    /// The authority's certificate (PEM) and its folder, for https.
    tls: Option<(TempDir, std::path::PathBuf)>,
}

impl Gateway {
    fn start() -> Self {
        Self::spawn("http", None, &[])
    }

    /// A gateway that serves https only, with a certificate for 127.0.0.1
    /// signed by an authority no system trusts.
    fn start_https() -> Self {
        let dir = TempDir::new().unwrap();
        let authority_key = rcgen::KeyPair::generate().unwrap();
        let mut authority = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        authority.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let authority_cert = authority.self_signed(&authority_key).unwrap();
        let issuer = rcgen::Issuer::new(authority, authority_key);
        let server_key = rcgen::KeyPair::generate().unwrap();
        let server = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&server_key, &issuer)
            .unwrap();
        let file = |name: &str, text: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let ca = file("ca.crt", authority_cert.pem());
        let cert = file("server.crt", server.pem());
        let key = file("server.key", server_key.serialize_pem());
        let web = file(
            "web.yml",
            format!(
                "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
                cert.display(),
                key.display()
            ),
        );
        let flag = format!("--web.config.file={}", web.display());
        Self::spawn("https", Some((dir, ca)), &[&flag])
    }

    fn spawn(scheme: &str, tls: Option<(TempDir, std::path::PathBuf)>, flags: &[&str]) -> Self {
        let port = free_tcp_port();
        let process = Command::new("prometheus-pushgateway")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(flags)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus-pushgateway is installed (.ci/run installs it)");
        let gateway = Self {
            process,
            url: format!("{scheme}://127.0.0.1:{port}"),
            tls,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while gateway.get("/-/ready").is_none() {
            assert!(Instant::now() < deadline, "the Pushgateway did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        gateway
    }

    /// The body of a GET of `path`, trusting the gateway's authority.
    fn get(&self, path: &str) -> Option<String> {
        let url = format!("{}{path}", self.url);
        let Some((_, ca)) = &self.tls else {
            return http_get(&url);
        };
        let pem = std::fs::read(ca).unwrap();
        let authority = ureq::tls::Certificate::from_pem(&pem).unwrap();
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::new_with_certs(&[authority]))
            .unversioned_rustls_crypto_provider(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .build();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        agent
            .get(&url)
            .call()
            .ok()?
            .body_mut()
            .read_to_string()
            .ok()
    }

    /// Moves `src` into `dst`, pushing to this gateway as job `nightly`;
    /// the command trusts the gateway's authority through `SSL_CERT_FILE`.
    fn push_run(
        &self,
        src: &std::path::Path,
        dst: &std::path::Path,
        instance: &str,
    ) -> std::process::Output {
        let mut command = realize();
        command.args([
            "--src-path",
            src.to_str().unwrap(),
            "--dst-path",
            dst.to_str().unwrap(),
            "--metrics-pushgateway",
            &self.url,
            "--metrics-job",
            "nightly",
            "--metrics-instance",
            instance,
        ]);
        if let Some((_, ca)) = &self.tls {
            command.env("SSL_CERT_FILE", ca);
        }
        command.output().unwrap()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

#[test]
#[ignore = "needs prometheus-pushgateway (.ci/deps installs it)"]
fn the_command_pushes_its_metrics_to_a_pushgateway() {
    let gateway = Gateway::start();
    let (src, dst) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    write_file(src.path(), "a", &pattern(1, 5000));
    write_file(src.path(), "b/c", &pattern(2, 7000));
    let out = gateway.push_run(src.path(), dst.path(), "host-a");
    assert!(out.status.success(), "{}", stderr(&out));
    let pushed = gateway.get("/metrics").unwrap();
    let group = ["job=\"nightly\"", "instance=\"host-a\""];
    let copied = [group[0], group[1], "method=\"copy\""];
    assert_eq!(
        sample(&pushed, "realize_files_moved_total", &copied),
        Some(2.0),
        "{pushed}"
    );
    assert_eq!(
        sample(&pushed, "realize_moved_bytes_total", &group),
        Some(12000.0),
        "{pushed}"
    );
    let version = format!("version=\"{}\"", env!("CARGO_PKG_VERSION"));
    assert_eq!(
        sample(
            &pushed,
            "realize_build_info",
            &[group[0], group[1], &version]
        ),
        Some(1.0),
        "{pushed}"
    );
}

#[test]
fn a_failed_push_is_a_warning_and_exit_code_12() {
    let (src, dst) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    write_file(src.path(), "a", b"data");
    let nobody = format!("http://127.0.0.1:{}", free_tcp_port());
    let out = run(&[
        "--src-path",
        src.path().to_str().unwrap(),
        "--dst-path",
        dst.path().to_str().unwrap(),
        "--metrics-pushgateway",
        &nobody,
    ]);
    assert_eq!(out.status.code(), Some(12), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("warning: pushing metrics to"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read(dst.path().join("a")).unwrap(),
        b"data",
        "the move itself succeeded"
    );
}

#[test]
fn daemon_json_logs_parse_and_carry_the_documented_fields() {
    let keys = Keys::generate(&["client", "daemon", "stranger"]);
    let (src, dst) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    write_file(src.path(), "logged.txt", b"some content");
    let config = daemon_config(&keys, dst.path(), free_tcp_port());
    let daemon = Daemon::start_with_args(&config, &["--log-format", "json"]);
    let args = to_daemon(&keys, src.path(), &daemon, "d", "client", "daemon");
    assert!(realize().args(&args).output().unwrap().status.success());
    let stranger = to_daemon(&keys, src.path(), &daemon, "d", "stranger", "daemon");
    realize().args(&stranger).output().unwrap();
    daemon.wait_for_log("refused connection");
    let log = daemon.log();
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let find = |message: &str| {
        events
            .iter()
            .find(|e| {
                e["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(message))
            })
            .unwrap_or_else(|| panic!("no {message:?} in {log}"))
    };
    let finalised = find("file finalised");
    for field in ["peer", "dir", "path", "size", "hash", "timestamp", "level"] {
        assert!(!finalised[field].is_null(), "{field} missing: {finalised}");
    }
    assert_eq!(finalised["path"], "logged.txt");
    let refused = find("refused connection");
    assert_eq!(
        refused["fingerprint"],
        keys.fingerprint("stranger").as_str()
    );
    assert!(!refused["remote"].is_null());
    let key = std::fs::read_to_string(keys.key("daemon")).unwrap();
    let secret = key.lines().nth(1).unwrap();
    assert!(
        !log.contains("PRIVATE KEY") && !log.contains(secret),
        "key material logged"
    );
}

#[test]
#[ignore = "needs prometheus-pushgateway (.ci/deps installs it)"]
fn a_run_that_fails_still_pushes_its_metrics() {
    let gateway = Gateway::start();
    let (src, dst) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    write_file(src.path(), "fine", b"ok");
    write_file(src.path(), "blocked", b"cannot land");
    std::fs::create_dir_all(dst.path().join("blocked/dir")).unwrap();
    let out = gateway.push_run(src.path(), dst.path(), "host-b");
    assert_eq!(out.status.code(), Some(23), "{}", stderr(&out));
    let pushed = gateway.get("/metrics").unwrap();
    let group = ["job=\"nightly\"", "instance=\"host-b\""];
    assert_eq!(
        sample(&pushed, "realize_files_failed_total", &group),
        Some(1.0),
        "{pushed}"
    );
    assert_eq!(
        sample(&pushed, "realize_files_moved_total", &group),
        Some(1.0),
        "{pushed}"
    );
}

#[test]
#[ignore = "needs prometheus-pushgateway (.ci/deps installs it)"]
fn the_command_pushes_over_https_to_a_gateway_its_system_trusts() {
    let gateway = Gateway::start_https();
    let (src, dst) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    write_file(src.path(), "a", &pattern(3, 3000));
    let out = gateway.push_run(src.path(), dst.path(), "host-c");
    assert!(out.status.success(), "{}", stderr(&out));
    let pushed = gateway.get("/metrics").unwrap();
    let group = ["job=\"nightly\"", "instance=\"host-c\""];
    assert_eq!(
        sample(&pushed, "realize_moved_bytes_total", &group),
        Some(3000.0),
        "{pushed}"
    );

    // Without the authority, the push is refused, and says why.
    write_file(src.path(), "b", &pattern(4, 10));
    let untrusted = realize()
        .args([
            "--src-path",
            src.path().to_str().unwrap(),
            "--dst-path",
            dst.path().to_str().unwrap(),
            "--metrics-pushgateway",
            &gateway.url,
        ])
        .env_remove("SSL_CERT_FILE")
        .output()
        .unwrap();
    assert_eq!(untrusted.status.code(), Some(12), "{}", stderr(&untrusted));
    assert!(
        stderr(&untrusted).contains("certificate"),
        "{}",
        stderr(&untrusted)
    );
}
