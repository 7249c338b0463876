//! `realize demo`: a real move over QUIC on loopback with no setup. Keys are
//! generated, a daemon is started in process on an ephemeral port, a tree of
//! files is generated and moved to it with the progress display, and the
//! result is checked.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use super::args::DemoArgs;
use super::output::{Display, Settings, Verbosity};
use super::CliError;
use crate::client::{Client, ExpectedDaemon};
use crate::model::{DirectoryId, Hash};
use crate::mover::{move_files, Endpoint, MoveOptions, MoveSummary};
use crate::server::{Daemon, DaemonConfig};
use crate::service::local::LocalService;
use crate::service::Service;
use crate::transport::endpoint::Tuning;
use crate::transport::identity::{generate, load_certificates, GeneratedIdentity, Identity};

/// Runs the demo; exit code 0 if every file arrived intact.
pub(super) async fn run(args: &DemoArgs) -> Result<ExitCode, CliError> {
    let work = tempfile::Builder::new()
        .prefix("realize-demo-")
        .tempdir()
        .map_err(|e| failed(&e))?;
    let [certs, src, dst] = ["certs", "src", "dst"].map(|d| work.path().join(d));
    for d in [&certs, &src, &dst] {
        std::fs::create_dir_all(d).map_err(|e| failed(&e))?;
    }
    println!("demo: working in {}", work.path().display());
    let daemon_id = generate("demo-daemon", &certs).map_err(|e| failed(&e))?;
    let client_id = generate("demo-client", &certs).map_err(|e| failed(&e))?;
    println!("demo: daemon key {}", daemon_id.fingerprint);
    println!("demo: client key {}", client_id.fingerprint);

    let dir = DirectoryId::new("demo").expect("valid id");
    let daemon = DemoDaemon::start(&daemon_id, &client_id, &dir, &dst)?;
    println!(
        "demo: realized listening on {} (QUIC, mutual TLS)",
        daemon.addr
    );
    let (files, bytes) =
        generate_tree(&src, args.files, args.max_mib << 20).map_err(|e| failed(&e))?;
    println!(
        "demo: moving {files} files ({}) to {}",
        indicatif::HumanBytes(bytes),
        daemon.addr
    );
    let expected = tree_digest(&src).await?;
    let summary = move_to(&daemon, &client_id, &daemon_id, &dir, &src).await?;
    daemon.stop().await;

    let arrived = tree_digest(&dst).await?;
    let source_left = tree_digest(&src).await?;
    if arrived == expected && source_left.is_empty() && summary.failed == 0 {
        println!("demo: all {files} files arrived intact and the source is empty");
        Ok(ExitCode::SUCCESS)
    } else {
        Err(CliError::Failed(
            "demo: the destination does not match the source".into(),
        ))
    }
}

fn failed(e: &dyn std::fmt::Display) -> CliError {
    CliError::Failed(e.to_string())
}

/// The demo's daemon, run in this process on an ephemeral loopback port.
struct DemoDaemon {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl DemoDaemon {
    /// Serves `dst` as `dir` to the client `client`, with the key `daemon`.
    fn start(
        daemon: &GeneratedIdentity,
        client: &GeneratedIdentity,
        dir: &DirectoryId,
        dst: &Path,
    ) -> Result<Self, CliError> {
        let config = DaemonConfig {
            listen: "127.0.0.1:0".parse().expect("valid address"),
            key: daemon.key_path.clone(),
            cert: daemon.cert_path.clone(),
            metrics: None,
            dirs: [(dir.clone(), dst.to_path_buf())].into(),
            peers: [("demo-client".to_string(), client.cert_path.clone())].into(),
            send_limits: Default::default(),
            keep_owner: false,
            limits: Default::default(),
        };
        let daemon = Daemon::bind(&config, &Tuning::default()).map_err(|e| failed(&e))?;
        let addr = daemon.local_addr().map_err(|e| failed(&e))?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        // The demo's daemon is never reloaded; the sender lives as long as it.
        let (_reload, reloads) = tokio::sync::mpsc::channel(1);
        let task = tokio::spawn(daemon.run(
            async {
                let _ = stopped.await;
            },
            reloads,
        ));
        Ok(Self { addr, stop, task })
    }

    /// Stops the daemon and waits until it has.
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Moves every file of `src` to `daemon`'s `dir` as the command does, with
/// its progress display.
async fn move_to(
    daemon: &DemoDaemon,
    client_id: &GeneratedIdentity,
    daemon_id: &GeneratedIdentity,
    dir: &DirectoryId,
    src: &Path,
) -> Result<MoveSummary, CliError> {
    let identity =
        Identity::load(&client_id.key_path, &client_id.cert_path).map_err(|e| failed(&e))?;
    let daemon_cert = load_certificates(&daemon_id.cert_path).map_err(|e| failed(&e))?;
    let expected = ExpectedDaemon::new(&daemon_cert[0], "the demo daemon's certificate")
        .map_err(|e| failed(&e))?;
    let client = Client::new(&identity, &Tuning::default()).map_err(|e| failed(&e))?;
    let remote = client
        .connect(daemon.addr, &expected)
        .await
        .map_err(|e| failed(&e))?;
    let local = LocalService::single(dir.clone(), src).map_err(|e| failed(&e))?;
    let settings = Settings {
        verbosity: Verbosity::Normal,
        dry_run: false,
        json: false,
        stats: None,
    };
    let mut display = Display::new(dir.clone(), settings);
    let source = Endpoint {
        service: &local,
        dir,
    };
    let destination = Endpoint {
        service: &remote,
        dir,
    };
    let moved = move_files(
        source,
        destination,
        None,
        &MoveOptions::default(),
        &mut display,
    )
    .await;
    let summary = moved.map_err(|e| failed(&e))?;
    display.finish(&summary);
    let closing = remote.close(false);
    client.shutdown(vec![closing], false).await;
    Ok(summary)
}

/// Writes `count` files of pseudo-random content in a few nested folders;
/// the first is `max_bytes` long, the rest small. Returns (files, bytes).
fn generate_tree(root: &Path, count: usize, max_bytes: u64) -> std::io::Result<(usize, u64)> {
    let mut total = 0;
    for i in 0..count {
        let size = if i == 0 {
            max_bytes
        } else {
            (i as u64 * 7919) % (256 << 10)
        };
        let path = root.join(format!("folder {}/sub-{}/file-{i}.bin", i % 5, i % 3));
        std::fs::create_dir_all(path.parent().expect("has a parent"))?;
        let mut data = vec![0u8; size as usize];
        let mut hasher = blake3::Hasher::new();
        hasher.update(&(i as u64).to_le_bytes());
        hasher.finalize_xof().fill(&mut data);
        std::fs::write(path, data)?;
        total += size;
    }
    Ok((count, total))
}

/// Relative path and BLAKE3 of every file under `root`, sorted by path.
async fn tree_digest(root: &Path) -> Result<Vec<(String, Hash)>, CliError> {
    let dir = DirectoryId::new("digest").expect("valid id");
    let service = LocalService::single(dir.clone(), root).map_err(|e| failed(&e))?;
    let listing = service.list(&dir).await.map_err(|e| failed(&e))?;
    let mut digest = Vec::new();
    for file in listing.files {
        let hash = service
            .hash(&dir, &file.path)
            .await
            .map_err(|e| failed(&e))?;
        digest.push((file.path.to_string(), hash));
    }
    Ok(digest)
}
