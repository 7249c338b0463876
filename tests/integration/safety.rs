//! A move never loses a file, its metadata or its place: races at the
//! destination, metadata on every endpoint combination, listings of a tree
//! the command cannot wholly read.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use tempfile::TempDir;

use crate::harness::*;

#[test]
fn a_file_created_at_the_destination_after_the_listing_is_kept() {
    let keys = Keys::generate(&["client", "daemon"]);
    let (src, dst) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let data = pattern(7, 1 << 20);
    write_file(src.path(), "report.bin", &data);
    let daemon = Daemon::start(&keys, "daemon", &[("d", dst.path())], &["client"]);
    let mut args = to_daemon(&keys, src.path(), &daemon, "d", "client", "daemon");
    args.extend(["--throttle".into(), "256k".into()]);
    let mut command = realize().args(&args).spawn().unwrap();
    // Listed empty; while the file crosses, the user saves one of their own.
    wait_for_len(
        &dst.path().join(".realize~part.report.bin"),
        1,
        Some(&mut command),
    );
    write_file(dst.path(), "report.bin", b"the user's own report");
    let status = command.wait().unwrap();
    assert_eq!(status.code(), Some(23), "the file fails");
    assert_eq!(
        std::fs::read(dst.path().join("report.bin")).unwrap(),
        b"the user's own report",
        "the user's file is kept"
    );
    assert_eq!(
        std::fs::read(src.path().join("report.bin")).unwrap(),
        data,
        "and so is the source"
    );
    assert!(daemon
        .log()
        .contains("appeared there after the destination was listed"));
}

/// Files of varied modes and modification times in the past.
const METADATA_CASES: &[(&str, u32, u64)] = &[
    ("private.txt", 0o600, 1_000_000_007),
    ("script.sh", 0o755, 1_200_000_000),
    ("shared/notes.md", 0o640, 1_500_000_123),
    ("big.bin", 0o644, 1_600_000_000),
];

/// Writes the metadata cases under `root`; `big.bin` is 3 MiB.
fn write_metadata_cases(root: &Path) {
    for &(path, mode, secs) in METADATA_CASES {
        let size = if path == "big.bin" { 3 << 20 } else { 100 };
        write_file(root, path, &pattern(secs, size));
        set_metadata(&root.join(path), mode, secs);
    }
}

fn set_metadata(path: &Path, mode: u32, secs: u64) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    let mtime = SystemTime::UNIX_EPOCH + Duration::new(secs, 123_456_789);
    file.set_modified(mtime).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Checks that every metadata case arrived with its mode and mtime.
fn assert_metadata_kept(dst: &Path) {
    for &(path, mode, secs) in METADATA_CASES {
        let metadata = std::fs::metadata(dst.join(path)).unwrap();
        let mtime = SystemTime::UNIX_EPOCH + Duration::new(secs, 123_456_789);
        assert_eq!(metadata.modified().unwrap(), mtime, "{path}: mtime");
        assert_eq!(metadata.permissions().mode() & 0o7777, mode, "{path}: mode");
    }
}

/// Moves the metadata cases with `args` and checks what arrived.
fn assert_moves_metadata(src: &Path, dst: &Path, args: &[String]) {
    write_metadata_cases(src);
    let out = realize().args(args).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_metadata_kept(dst);
    assert!(is_empty_dir(src));
}

fn local_args(src: &Path, dst: &Path) -> Vec<String> {
    [
        "--src-path",
        src.to_str().unwrap(),
        "--dst-path",
        dst.to_str().unwrap(),
    ]
    .map(String::from)
    .into()
}

#[test]
fn mtime_and_mode_survive_local_to_local() {
    let (src, dst) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    assert_moves_metadata(src.path(), dst.path(), &local_args(src.path(), dst.path()));
}

#[test]
fn mtime_and_mode_survive_local_to_remote() {
    let keys = Keys::generate(&["client", "daemon"]);
    let (src, dst) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let daemon = Daemon::start(&keys, "daemon", &[("d", dst.path())], &["client"]);
    let args = to_daemon(&keys, src.path(), &daemon, "d", "client", "daemon");
    assert_moves_metadata(src.path(), dst.path(), &args);
}

#[test]
fn mtime_and_mode_survive_remote_to_local() {
    let keys = Keys::generate(&["client", "daemon"]);
    let (src, dst) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let daemon = Daemon::start(&keys, "daemon", &[("d", src.path())], &["client"]);
    let args = from_daemon(&keys, &daemon, "d", dst.path(), "client", "daemon");
    assert_moves_metadata(src.path(), dst.path(), &args);
}

#[test]
fn mtime_and_mode_survive_remote_to_remote() {
    let keys = Keys::generate(&["client", "daemon-a", "daemon-b"]);
    let (src, dst) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let a = Daemon::start(&keys, "daemon-a", &[("d", src.path())], &["client"]);
    let b = Daemon::start(&keys, "daemon-b", &[("d", dst.path())], &["client"]);
    let mut args: Vec<String> = ["--src-addr", &a.addr(), "--dst-addr", &b.addr()]
        .map(String::from)
        .into();
    args.extend(["--directory-id".into(), "d".into()]);
    args.extend(keys.relay_args("client", "daemon-a", "daemon-b"));
    assert_moves_metadata(src.path(), dst.path(), &args);
}

#[test]
fn mtime_and_mode_survive_a_resume_and_an_identical_copy() {
    let keys = Keys::generate(&["client", "daemon"]);
    let (src, dst) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    write_metadata_cases(src.path());
    // Half of big.bin is already there as a partial file; notes.md is
    // there whole, with other metadata (copied without -p).
    let big = std::fs::read(src.path().join("big.bin")).unwrap();
    write_file(dst.path(), ".realize~part.big.bin", &big[..big.len() / 2]);
    let notes = std::fs::read(src.path().join("shared/notes.md")).unwrap();
    write_file(dst.path(), "shared/notes.md", &notes);
    let daemon = Daemon::start(&keys, "daemon", &[("d", dst.path())], &["client"]);
    let args = to_daemon(&keys, src.path(), &daemon, "d", "client", "daemon");
    let out = realize().args(&args).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_metadata_kept(dst.path());
    let log = daemon.log();
    let resumed = format!("path=big.bin size={} received={}", big.len(), big.len() / 2);
    assert!(log.contains(&resumed), "big.bin resumed:\n{log}");
    assert!(
        !log.contains("path=shared/notes.md"),
        "notes.md not sent:\n{log}"
    );
}

#[test]
#[ignore = "needs root, to run the command as nobody"]
fn an_unreadable_subdirectory_stays_the_rest_moves_and_the_exit_says_so() {
    // Root reads everything, so the command runs as `nobody`.
    let base = TempDir::new().unwrap();
    let (src, dst) = (base.path().join("src"), base.path().join("dst"));
    write_file(&src, "free/a.txt", b"a");
    write_file(&src, "locked/secret.txt", b"s");
    std::fs::create_dir_all(&dst).unwrap();
    for dir in [&src, &src.join("free"), &dst] {
        chown_nobody(dir);
    }
    chown_nobody(&src.join("free/a.txt"));
    std::fs::set_permissions(src.join("locked"), std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = as_nobody(base.path(), &local_args(&src, &dst));
    assert_eq!(out.status.code(), Some(23), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("dir/locked: unreadable; what is under it stays at the source"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(dst.join("free/a.txt")).unwrap(), b"a");
    assert_eq!(std::fs::read(src.join("locked/secret.txt")).unwrap(), b"s");
}

/// Runs `realize args` as the user `nobody`, from a copy of the binary in
/// `base` (which that user may then enter), since root ignores permissions.
fn as_nobody(base: &Path, args: &[String]) -> std::process::Output {
    let binary = base.join("realize");
    std::fs::copy(env!("CARGO_BIN_EXE_realize"), &binary).unwrap();
    std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&binary)
        .args(args)
        .output()
        .unwrap()
}

fn chown_nobody(path: &Path) {
    std::os::unix::fs::chown(path, Some(65534), Some(65534)).unwrap();
}

#[test]
fn two_sources_merged_at_once_into_one_destination_lose_no_file() {
    let keys = Keys::generate(&["client", "daemon"]);
    let (a, b, dst) = (
        TempDir::new().unwrap(),
        TempDir::new().unwrap(),
        TempDir::new().unwrap(),
    );
    // The same 300 names in both sources, each with its own content.
    let names: Vec<String> = (0..300).map(|i| format!("d{}/f{i}.txt", i % 7)).collect();
    for name in &names {
        write_file(a.path(), name, format!("from a: {name}").as_bytes());
        write_file(
            b.path(),
            name,
            format!("from b: {name} (longer)").as_bytes(),
        );
    }
    let daemon = Daemon::start(&keys, "daemon", &[("d", dst.path())], &["client"]);
    let run = |src: &Path| {
        let args = to_daemon(&keys, src, &daemon, "d", "client", "daemon");
        realize().args(&args).output().unwrap()
    };
    let (out_a, out_b) = std::thread::scope(|s| {
        let first = s.spawn(|| run(a.path()));
        let second = s.spawn(|| run(b.path()));
        (first.join().unwrap(), second.join().unwrap())
    });
    // Each version of each name is somewhere, at the destination or still
    // at its source, unless the other run listed it at the destination and
    // replaced it, which that run reports. Which run won is up to timing.
    for name in &names {
        let version_a = format!("from a: {name}");
        let version_b = format!("from b: {name} (longer)");
        let present: Vec<String> = [dst.path(), a.path(), b.path()]
            .iter()
            .filter_map(|root| std::fs::read_to_string(root.join(name)).ok())
            .collect();
        let replaced = |out: &std::process::Output| {
            stdout(out).contains(&format!("d/{name} (replaced a different file)"))
        };
        let expected = match (replaced(&out_a), replaced(&out_b)) {
            (false, false) => vec![version_a, version_b],
            (true, false) => vec![version_a],
            (false, true) => vec![version_b],
            (true, true) => panic!("{name}: both runs replaced it"),
        };
        let mut present = present;
        present.sort();
        assert_eq!(
            present,
            expected,
            "{name}: a version was lost\na: {}\nb: {}",
            stderr(&out_a),
            stderr(&out_b)
        );
    }
}

/// Files owned by other users at the source: (path, uid, gid).
const OWNED: &[(&str, u32, u32)] = &[("nobodys.txt", 65534, 65534), ("d/other.txt", 1234, 5678)];

fn write_owned(src: &Path) {
    for &(path, uid, gid) in OWNED {
        write_file(src, path, path.as_bytes());
        std::os::unix::fs::chown(src.join(path), Some(uid), Some(gid)).unwrap();
    }
}

fn owners(dst: &Path) -> Vec<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    OWNED
        .iter()
        .map(|(path, _, _)| {
            let metadata = std::fs::metadata(dst.join(path)).unwrap();
            (metadata.uid(), metadata.gid())
        })
        .collect()
}

fn source_owners() -> Vec<(u32, u32)> {
    OWNED.iter().map(|&(_, uid, gid)| (uid, gid)).collect()
}

#[test]
#[ignore = "needs root, to give files other owners"]
fn owners_are_kept_by_a_local_destination_asked_to() {
    let (src, dst) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    write_owned(src.path());
    let mut args = local_args(src.path(), dst.path());
    args.push("--keep-owner".into());
    let out = realize().args(&args).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(owners(dst.path()), source_owners());
}

#[test]
#[ignore = "needs root, to give files other owners"]
fn owners_are_kept_by_a_daemon_configured_to_and_only_then() {
    let keys = Keys::generate(&["client", "daemon"]);
    for keep in [true, false] {
        let (src, dst) = (TempDir::new().unwrap(), TempDir::new().unwrap());
        write_owned(src.path());
        let config = keys.dir.path().join(format!("keep-{keep}.toml"));
        let text = format!(
            "listen = \"127.0.0.1:0\"\nkey = \"daemon.key\"\ncert = \"daemon.crt\"\n\
             keep_owner = {keep}\n[dirs]\nd = {:?}\n[peers]\nclient = \"client.crt\"\n",
            dst.path().display().to_string()
        );
        std::fs::write(&config, text).unwrap();
        let daemon = Daemon::start_with_config(&config);
        let args = to_daemon(&keys, src.path(), &daemon, "d", "client", "daemon");
        let out = realize().args(&args).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let expected = match keep {
            true => source_owners(),
            false => vec![(0, 0); OWNED.len()],
        };
        assert_eq!(owners(dst.path()), expected, "keep_owner = {keep}");
    }
}

#[test]
#[ignore = "needs root, to run the command as nobody"]
fn keep_owner_is_refused_to_a_user_who_cannot_give_files_away() {
    let base = TempDir::new().unwrap();
    let (src, dst) = (base.path().join("src"), base.path().join("dst"));
    write_file(&src, "a", b"a");
    std::fs::create_dir(&dst).unwrap();
    for path in [&src, &src.join("a"), &dst] {
        chown_nobody(path);
    }
    let mut args = local_args(&src, &dst);
    args.push("--keep-owner".into());
    let out = as_nobody(base.path(), &args);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--keep-owner: keeping owners needs root"),
        "{}",
        stderr(&out)
    );
    assert!(src.join("a").exists());
}

/// The paths the daemon logged as made final (`file finalised path=P`).
fn finalised(log: &str) -> std::collections::BTreeSet<String> {
    log.lines()
        .filter(|line| line.contains("file finalised"))
        .filter_map(|line| line.split(" path=").nth(1)?.split(' ').next())
        .map(String::from)
        .collect()
}

#[test]
fn sigterm_lets_the_daemon_finish_the_writes_it_started_and_a_later_run_moves_the_rest() {
    const FILES: usize = 3000;
    let keys = Keys::generate(&["client", "daemon"]);
    let (src, dst) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    for i in 0..FILES {
        write_file(src.path(), &format!("f{i:05}"), &pattern(i as u64, 4096));
    }
    let before = snapshot(src.path());
    let mut daemon = Daemon::start(&keys, "daemon", &[("d", dst.path())], &["client"]);
    let mut command = realize();
    command.args(to_daemon(
        &keys,
        src.path(),
        &daemon,
        "d",
        "client",
        "daemon",
    ));
    command.args(["--retries", "0"]);
    let run = std::thread::spawn(move || command.output().unwrap());

    // Stopped while small files are being finished in batches.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while finalised(&daemon.log()).len() < FILES / 10 {
        assert!(std::time::Instant::now() < deadline, "{}", daemon.log());
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(daemon.terminate().code(), Some(0), "{}", daemon.log());

    // Every file the daemon made final, it finished before exiting (its
    // write answered and logged); the others are untouched or partial.
    let log = daemon.log();
    let logged = finalised(&log);
    let made_final: std::collections::BTreeSet<String> = paths(dst.path())
        .into_iter()
        .filter(|path| !path.starts_with(".realize~part."))
        .collect();
    assert!(made_final.len() < FILES, "stopped before the end");
    let unlogged: Vec<_> = made_final.difference(&logged).collect();
    assert!(
        unlogged.is_empty(),
        "{} files made final after the daemon stopped finishing: {unlogged:?}",
        unlogged.len()
    );
    let copies = snapshot(dst.path());
    for path in &made_final {
        assert_eq!(copies[path], before[path], "{path}");
    }
    let out = run.join().unwrap();
    assert!(!out.status.success(), "{}", stderr(&out));

    // A later run moves everything, each file intact.
    let daemon = daemon.restart();
    let args = to_daemon(&keys, src.path(), &daemon, "d", "client", "daemon");
    let out = realize().args(&args).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(snapshot(dst.path()), before);
    assert!(is_empty_dir(src.path()));
}

/// What a source holds after a process was killed while it deleted
/// `notes/f.txt`: the file under a private deleting name (see
/// `service::local::names`), which a listing skips.
fn leave_an_interrupted_delete(src: &Path, data: &[u8]) {
    write_file(
        src,
        "notes/.realize~del.0123456789abcdef01234567.f.txt",
        data,
    );
}

#[test]
fn a_file_whose_delete_a_killed_command_interrupted_is_moved_by_the_next_run() {
    let (src, dst) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let data = pattern(3, 100_000);
    leave_an_interrupted_delete(src.path(), &data);
    let out = realize()
        .args(local_args(src.path(), dst.path()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(std::fs::read(dst.path().join("notes/f.txt")).unwrap(), data);
    assert!(is_empty_dir(src.path()), "{:?}", paths(src.path()));
}

#[test]
fn a_file_whose_delete_a_killed_daemon_interrupted_is_put_back_when_it_starts() {
    let keys = Keys::generate(&["client", "daemon"]);
    let (src, dst) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let data = pattern(4, 100_000);
    leave_an_interrupted_delete(src.path(), &data);
    let daemon = Daemon::start(&keys, "daemon", &[("d", src.path())], &["client"]);
    daemon.wait_for_log("put back a file whose delete was interrupted");
    assert_eq!(std::fs::read(src.path().join("notes/f.txt")).unwrap(), data);
    let args = from_daemon(&keys, &daemon, "d", dst.path(), "client", "daemon");
    let out = realize().args(&args).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(std::fs::read(dst.path().join("notes/f.txt")).unwrap(), data);
    assert!(is_empty_dir(src.path()), "{:?}", paths(src.path()));
}
