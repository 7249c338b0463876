//! The move algorithm in process: two local services, no sockets.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tempfile::TempDir;

use super::*;
use crate::model::{Attributes, Delta, FileStamp, Hash, RootIdentity, Skipped};
use crate::protocol::{ErrorKind, RealizeError};
use crate::service::local::LocalService;
use crate::service::{FileReader, FileWriter, Listing, ServiceError};

/// Every call the mover made, in order.
#[derive(Default, Clone)]
struct Recording(Arc<Mutex<Vec<String>>>);

impl Recording {
    fn push(&self, event: String) {
        self.0.lock().unwrap().push(event);
    }
    fn events(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
    /// Events of one file, in order, with `inc` amounts summed.
    fn file(&self, path: &str) -> (Vec<String>, u64) {
        let prefix = format!("{path}:");
        let mut stages = Vec::new();
        let mut bytes = 0;
        for event in self.events() {
            let Some(rest) = event.strip_prefix(&prefix) else {
                continue;
            };
            match rest.strip_prefix("inc ") {
                Some(n) => bytes += n.parse::<u64>().unwrap(),
                None => stages.push(rest.to_string()),
            }
        }
        stages.dedup();
        (stages, bytes)
    }
}

impl Progress for Recording {
    fn set_length(&mut self, total_files: usize, total_bytes: u64) {
        self.push(format!("set_length {total_files} {total_bytes}"));
    }
    fn skipped(&mut self, entry: &Skipped) {
        self.push(format!("skipped {}", entry.path));
    }
    fn left_out(&mut self, path: &str, why: LeftOut) {
        self.push(format!("left out {path} {why:?}"));
    }
    fn for_file(&mut self, path: &RelPath, bytes: u64) -> Box<dyn FileProgress> {
        self.push(format!("{path}:for_file {bytes}"));
        Box::new(FileRecording {
            log: self.clone(),
            path: path.to_string(),
        })
    }
    fn error(&mut self, err: &MoveFileError) {
        self.push(format!("error {err}"));
    }
    fn warn(&mut self, message: &str) {
        self.push(format!("warn {message}"));
    }
    fn planned(&mut self, path: &RelPath, bytes: u64, plan: Plan) {
        self.push(format!("{path}:planned {bytes} {plan:?}"));
    }
    fn plan_failed(&mut self, path: &RelPath, err: &MoveFileError) {
        self.push(format!("{path}:plan failed {err}"));
    }
}

struct FileRecording {
    log: Recording,
    path: String,
}

impl FileRecording {
    fn push(&self, what: &str) {
        self.log.push(format!("{}:{what}", self.path));
    }
}

impl FileProgress for FileRecording {
    fn verifying(&mut self) {
        self.push("verifying");
    }
    fn resuming(&mut self, kept: u64) {
        self.push(&format!("resuming {kept}"));
    }
    fn replacing(&mut self) {
        self.push("replacing");
    }
    fn moving(&mut self) {
        self.push("moving");
    }
    fn inc(&mut self, bytes: u64) {
        self.push(&format!("inc {bytes}"));
    }
    fn deleting(&mut self) {
        self.push("deleting");
    }
    fn success(&mut self) {
        self.push("success");
    }
    fn error(&mut self, _err: &MoveFileError) {
        self.push("error");
    }
}

fn dir() -> DirectoryId {
    DirectoryId::new("d").unwrap()
}

/// `service`'s directory `dir`, as the mover sees it.
fn at<'a>(service: &'a dyn Service, dir: &'a DirectoryId) -> Endpoint<'a> {
    Endpoint { service, dir }
}

fn read(root: &Path, path: &str) -> Vec<u8> {
    std::fs::read(root.join(path)).unwrap()
}

fn write(root: &Path, path: &str, data: &[u8]) {
    let full = root.join(path);
    std::fs::create_dir_all(full.parent().unwrap()).unwrap();
    std::fs::write(full, data).unwrap();
}

/// Moves `dir()` with default options; the move must start.
async fn run(
    source: &dyn Service,
    destination: &dyn Service,
    progress: &mut dyn Progress,
) -> MoveSummary {
    let dir = dir();
    run_between(at(source, &dir), at(destination, &dir), progress)
        .await
        .unwrap()
}

/// Moves everything from `source` to `destination` with default options.
async fn run_between(
    source: Endpoint<'_>,
    destination: Endpoint<'_>,
    progress: &mut dyn Progress,
) -> Result<MoveSummary, MoveFileError> {
    move_files(source, destination, None, &MoveOptions::default(), progress).await
}

fn services() -> (TempDir, TempDir, LocalService, LocalService) {
    let (src, dst) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let source = LocalService::single(dir(), src.path()).unwrap();
    let destination = LocalService::single(dir(), dst.path()).unwrap();
    (src, dst, source, destination)
}

#[tokio::test]
async fn moves_every_file_and_reports_each_stage() {
    let (src, dst, source, destination) = services();
    let big = vec![7u8; 1_000_000];
    write(src.path(), "a/big", &big);
    write(src.path(), "a/b/small", b"small");
    write(src.path(), "empty", b"");
    let mut progress = Recording::default();
    let options = MoveOptions {
        parallel: 2,
        ..MoveOptions::default()
    };
    let summary = move_files(
        at(&source, &dir()),
        at(&destination, &dir()),
        None,
        &options,
        &mut progress,
    )
    .await
    .unwrap();

    assert_eq!(
        summary,
        MoveSummary {
            moved: 3,
            bytes_sent: 1_000_005,
            ..MoveSummary::default()
        }
    );
    assert_eq!(std::fs::read(dst.path().join("a/big")).unwrap(), big);
    assert_eq!(
        std::fs::read(dst.path().join("a/b/small")).unwrap(),
        b"small"
    );
    assert!(dst.path().join("empty").exists());
    assert_eq!(
        std::fs::read_dir(src.path()).unwrap().count(),
        0,
        "emptied dirs removed"
    );

    let events = progress.events();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.starts_with("set_length"))
            .count(),
        1
    );
    assert_eq!(events[0], "set_length 3 1000005");
    for (path, size) in [("a/big", 1_000_000), ("a/b/small", 5), ("empty", 0)] {
        let (stages, bytes) = progress.file(path);
        assert_eq!(
            stages,
            [
                format!("for_file {size}"),
                "moving".into(),
                "verifying".into(),
                "deleting".into(),
                "success".into()
            ],
            "{path}"
        );
        assert_eq!(bytes, size, "{path}");
    }
}

#[tokio::test]
async fn identical_destination_copy_is_verified_not_sent() {
    let (src, dst, source, destination) = services();
    write(src.path(), "same", b"identical content");
    write(dst.path(), "same", b"identical content");
    write(src.path(), "differs", b"new content");
    write(dst.path(), "differs", b"old content"); // same size, other bytes
    let mut progress = Recording::default();
    let summary = run(&source, &destination, &mut progress).await;
    assert_eq!((summary.moved, summary.replaced), (2, 1));
    assert_eq!(summary.bytes_sent, 11, "only the differing file is sent");
    let (stages, bytes) = progress.file("same");
    assert_eq!(stages, ["for_file 17", "verifying", "deleting", "success"]);
    assert_eq!(bytes, 0);
    let (stages, _) = progress.file("differs");
    assert!(stages.contains(&"replacing".to_string()), "{stages:?}");
    assert_eq!(
        std::fs::read(dst.path().join("differs")).unwrap(),
        b"new content"
    );
}

#[tokio::test]
async fn partial_destination_files_are_overwritten_and_source_partials_skipped() {
    let (src, dst, source, destination) = services();
    write(src.path(), "f", b"the real content");
    write(src.path(), ".realize~part.ignored", b"half a file");
    write(
        dst.path(),
        ".realize~part.f",
        b"garbage garbage garbage garbage",
    );
    let mut progress = Recording::default();
    let summary = run(&source, &destination, &mut progress).await;
    assert_eq!((summary.moved, summary.skipped, summary.failed), (1, 1, 0));
    assert_eq!(
        std::fs::read(dst.path().join("f")).unwrap(),
        b"the real content"
    );
    assert!(!dst.path().join(".realize~part.f").exists());
    assert!(
        src.path().join(".realize~part.ignored").exists(),
        "partials in the source stay"
    );
    assert!(progress.events().contains(&"skipped ignored".to_string()));
}

#[tokio::test]
async fn user_files_named_like_old_partial_files_move_and_are_never_truncated() {
    let (src, dst, source, destination) = services();
    write(src.path(), ".notes.part", b"a user's file");
    write(src.path(), "x", b"new x");
    write(dst.path(), ".x.part", b"another user's file");
    let summary = run(&source, &destination, &mut NoProgress).await;
    assert_eq!((summary.moved, summary.failed), (2, 0));
    assert_eq!(read(dst.path(), ".notes.part"), b"a user's file");
    assert_eq!(read(dst.path(), ".x.part"), b"another user's file");
    assert_eq!(read(dst.path(), "x"), b"new x");
}

/// A local service with one injected fault, as a full disk or a file still
/// being written by someone else would cause.
struct Faulty {
    inner: LocalService,
    root: std::path::PathBuf,
    fault: Fault,
}

enum Fault {
    /// Writing this path fails with "no space left".
    RefuseWrite(&'static str),
    /// The file grows as it is opened for reading.
    AppendOnOpen,
    /// The file grows after its first chunk is read.
    AppendWhileReading,
}

const APPENDED: &[u8] = b"appended by someone else";

fn append(file: &Path) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().append(true).open(file).unwrap();
    file.write_all(APPENDED).unwrap();
}

/// Appends to its file after delivering the first event.
struct GrowingReader {
    inner: Box<dyn FileReader>,
    file: std::path::PathBuf,
    grown: bool,
}

#[async_trait]
impl FileReader for GrowingReader {
    fn stamp(&self) -> FileStamp {
        self.inner.stamp()
    }
    async fn next(&mut self) -> Result<crate::service::ReadEvent, ServiceError> {
        let event = self.inner.next().await;
        if !std::mem::replace(&mut self.grown, true) {
            append(&self.file);
        }
        event
    }
}

#[async_trait]
impl Service for Faulty {
    async fn list(&self, dir: &DirectoryId) -> Result<Listing, ServiceError> {
        self.inner.list(dir).await
    }
    async fn read(
        &self,
        dir: &DirectoryId,
        path: &RelPath,
        delta: &Delta,
    ) -> Result<Box<dyn FileReader>, ServiceError> {
        let file = self.root.join(path.as_str());
        match self.fault {
            Fault::AppendOnOpen => append(&file),
            Fault::AppendWhileReading => {
                let inner = self.inner.read(dir, path, delta).await?;
                let grown = false;
                return Ok(Box::new(GrowingReader { inner, file, grown }));
            }
            Fault::RefuseWrite(_) => {}
        }
        self.inner.read(dir, path, delta).await
    }
    async fn write(
        &self,
        dir: &DirectoryId,
        path: &RelPath,
        plan: &WritePlan,
    ) -> Result<Box<dyn FileWriter>, ServiceError> {
        if matches!(self.fault, Fault::RefuseWrite(refused) if refused == path.as_str()) {
            let message = format!("{path}: no space left");
            return Err(RealizeError::new(ErrorKind::NoSpace, message).into());
        }
        self.inner.write(dir, path, plan).await
    }
    async fn block_hashes(
        &self,
        dir: &DirectoryId,
        path: &RelPath,
        state: FileState,
        block: u64,
        length: u64,
    ) -> Result<Vec<Hash>, ServiceError> {
        self.inner
            .block_hashes(dir, path, state, block, length)
            .await
    }
    async fn hash(&self, dir: &DirectoryId, path: &RelPath) -> Result<Hash, ServiceError> {
        self.inner.hash(dir, path).await
    }
    async fn root_identity(&self, dir: &DirectoryId) -> Result<RootIdentity, ServiceError> {
        self.inner.root_identity(dir).await
    }
    async fn delete(
        &self,
        dir: &DirectoryId,
        path: &RelPath,
        expected: FileStamp,
    ) -> Result<(), ServiceError> {
        self.inner.delete(dir, path, expected).await
    }
    async fn set_attributes(
        &self,
        dir: &DirectoryId,
        path: &RelPath,
        expected: FileStamp,
        attributes: Attributes,
    ) -> Result<(), ServiceError> {
        self.inner
            .set_attributes(dir, path, expected, attributes)
            .await
    }
}

#[tokio::test]
async fn one_failure_is_counted_and_the_others_go_on() {
    let (src, dst, source, destination) = services();
    for name in ["a", "b", "c", "d"] {
        write(src.path(), name, name.as_bytes());
    }
    let destination = Faulty {
        inner: destination,
        root: dst.path().to_path_buf(),
        fault: Fault::RefuseWrite("c"),
    };
    let mut progress = Recording::default();
    let summary = run(&source, &destination, &mut progress).await;
    assert_eq!((summary.moved, summary.failed), (3, 1));
    assert_eq!(
        std::fs::read(src.path().join("c")).unwrap(),
        b"c",
        "failed source kept"
    );
    assert!(!dst.path().join("c").exists());
    for name in ["a", "b", "d"] {
        assert!(dst.path().join(name).exists() && !src.path().join(name).exists());
    }
    let (stages, _) = progress.file("c");
    assert_eq!(stages.last().unwrap(), "error");
    assert_eq!(
        stages
            .iter()
            .filter(|s| *s == "error" || *s == "success")
            .count(),
        1
    );
}

#[tokio::test]
async fn a_source_that_changes_is_kept_and_reported() {
    let (src, dst, source, destination) = services();
    write(src.path(), "log.txt", b"first lines");
    let source = Faulty {
        inner: source,
        root: src.path().to_path_buf(),
        fault: Fault::AppendOnOpen,
    };
    let summary = run(&source, &destination, &mut NoProgress).await;
    assert_eq!((summary.moved, summary.failed), (0, 1));
    assert_eq!(
        std::fs::read(src.path().join("log.txt")).unwrap(),
        [&b"first lines"[..], APPENDED].concat()
    );
    assert!(
        !dst.path().join("log.txt").exists(),
        "no final file from a changing source"
    );
}

#[tokio::test]
async fn unknown_directory_fails_the_whole_move() {
    let (_src, _dst, source, destination) = services();
    let mut progress = Recording::default();
    let other = DirectoryId::new("other").unwrap();
    let err = run_between(at(&source, &other), at(&destination, &other), &mut progress)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, MoveFileError::Service { side: Side::Source, source } if source.kind == ErrorKind::UnknownDirectory),
        "{err:?}"
    );
    assert_eq!(
        progress.events().len(),
        1,
        "reported once: {:?}",
        progress.events()
    );
}

/// Writes `data` at the source and `partial` as the destination's partial
/// file, moves, and returns the summary and the recorded progress.
async fn resume_case(data: &[u8], partial: &[u8]) -> (MoveSummary, Recording, Vec<u8>) {
    let (src, dst, source, destination) = services();
    write(src.path(), "f.bin", data);
    write(dst.path(), ".realize~part.f.bin", partial);
    let mut progress = Recording::default();
    let summary = run(&source, &destination, &mut progress).await;
    let arrived = std::fs::read(dst.path().join("f.bin")).unwrap();
    assert!(!dst.path().join(".realize~part.f.bin").exists());
    assert!(!src.path().join("f.bin").exists());
    (summary, progress, arrived)
}

fn pseudo_random(len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    blake3::Hasher::new().finalize_xof().fill(&mut data);
    data
}

#[tokio::test]
async fn resume_sends_only_the_missing_tail() {
    let data = pseudo_random(5 << 20);
    let kept = 3 * (1 << 20) + 12345;
    let (summary, progress, arrived) = resume_case(&data, &data[..kept]).await;
    assert_eq!(arrived, data);
    assert_eq!(summary.bytes_sent, (data.len() - kept) as u64);
    let (stages, bytes) = progress.file("f.bin");
    assert_eq!(stages[1], format!("resuming {kept}"));
    assert_eq!(bytes, summary.bytes_sent);
}

#[tokio::test]
async fn resume_resends_only_damaged_blocks() {
    let data = pseudo_random(5 << 20);
    let mut partial = data[..4 << 20].to_vec();
    partial[(2 << 20) + 500] ^= 0xff; // one flipped byte in block 2
    partial[(2 << 20) + 900_000] ^= 0x01; // and another in the same block
    let (summary, _, arrived) = resume_case(&data, &partial).await;
    assert_eq!(arrived, data);
    // One 1 MiB block re-sent, plus the 1 MiB tail.
    assert_eq!(summary.bytes_sent, 2 << 20);
}

#[tokio::test]
async fn a_partial_longer_than_the_source_is_replaced() {
    let data = pseudo_random(100_000);
    let (summary, _, arrived) = resume_case(&data, &pseudo_random(200_000)).await;
    assert_eq!(arrived, data);
    assert_eq!(summary.bytes_sent, data.len() as u64);
}

#[tokio::test]
async fn a_source_appended_during_its_transfer_is_kept_and_moved_next_run() {
    let (src, dst, source, destination) = services();
    let data = pseudo_random(3 << 20);
    write(src.path(), "growing.log", &data);
    let growing = Faulty {
        inner: source.clone(),
        root: src.path().to_path_buf(),
        fault: Fault::AppendWhileReading,
    };
    let mut progress = Recording::default();
    let summary = run(&growing, &destination, &mut progress).await;
    assert_eq!((summary.moved, summary.failed), (0, 1));
    assert_eq!(progress.file("growing.log").0.last().unwrap(), "error");
    assert!(
        !dst.path().join("growing.log").exists(),
        "the old version is not made final"
    );
    let now = std::fs::read(src.path().join("growing.log")).unwrap();
    assert_eq!(
        now.len(),
        data.len() + APPENDED.len(),
        "the source is kept, appended"
    );

    // The next run moves the new version, resuming from what was sent.
    let summary = run(&source, &destination, &mut NoProgress).await;
    assert_eq!((summary.moved, summary.failed), (1, 0));
    assert_eq!(std::fs::read(dst.path().join("growing.log")).unwrap(), now);
}

#[tokio::test]
async fn stopping_keeps_partials_and_starts_nothing_new() {
    let (src, dst, source, destination) = services();
    let data = pseudo_random(8 << 20);
    write(src.path(), "a-first.bin", &data);
    for name in ["b", "c", "d"] {
        write(src.path(), name, name.as_bytes());
    }
    let (stop, signal) = stop_pair();
    let options = MoveOptions {
        parallel: 1,
        stop: signal,
        ..MoveOptions::default()
    };
    // Stop as soon as the first file has started sending.
    let mut progress = StopOnFirstByte {
        inner: Recording::default(),
        stop,
    };
    let summary = move_files(
        at(&source, &dir()),
        at(&destination, &dir()),
        None,
        &options,
        &mut progress,
    )
    .await
    .unwrap();
    assert_eq!(
        (summary.moved, summary.interrupted, summary.not_started),
        (0, 1, 3)
    );
    assert_eq!(std::fs::read(src.path().join("a-first.bin")).unwrap(), data);
    assert!(!dst.path().join("a-first.bin").exists());
    let kept = std::fs::metadata(dst.path().join(".realize~part.a-first.bin"))
        .unwrap()
        .len();
    assert!(kept > 0 && kept < data.len() as u64, "partial kept: {kept}");

    // The next run resumes the partial file and moves everything.
    let summary = run(&source, &destination, &mut NoProgress).await;
    assert_eq!(summary.moved, 4);
    assert!(summary.bytes_sent < data.len() as u64 + 3);
    assert_eq!(std::fs::read(dst.path().join("a-first.bin")).unwrap(), data);
}

/// Progress that stops the move at the first byte sent.
struct StopOnFirstByte {
    inner: Recording,
    stop: StopHandle,
}

impl Progress for StopOnFirstByte {
    fn set_length(&mut self, files: usize, bytes: u64) {
        self.inner.set_length(files, bytes);
    }
    fn skipped(&mut self, entry: &Skipped) {
        self.inner.skipped(entry);
    }
    fn for_file(&mut self, path: &RelPath, bytes: u64) -> Box<dyn FileProgress> {
        Box::new(StopOnInc {
            inner: self.inner.for_file(path, bytes),
            stop: self.stop.clone(),
        })
    }
    fn error(&mut self, err: &MoveFileError) {
        self.inner.error(err);
    }
    fn warn(&mut self, message: &str) {
        self.inner.warn(message);
    }
    fn left_out(&mut self, path: &str, why: LeftOut) {
        self.inner.left_out(path, why);
    }
    fn planned(&mut self, path: &RelPath, bytes: u64, plan: Plan) {
        self.inner.planned(path, bytes, plan);
    }
    fn plan_failed(&mut self, path: &RelPath, err: &MoveFileError) {
        self.inner.plan_failed(path, err);
    }
}

struct StopOnInc {
    inner: Box<dyn FileProgress>,
    stop: StopHandle,
}

impl FileProgress for StopOnInc {
    fn verifying(&mut self) {
        self.inner.verifying();
    }
    fn resuming(&mut self, kept: u64) {
        self.inner.resuming(kept);
    }
    fn replacing(&mut self) {
        self.inner.replacing();
    }
    fn moving(&mut self) {
        self.inner.moving();
    }
    fn inc(&mut self, bytes: u64) {
        self.inner.inc(bytes);
        self.stop.stop(StopReason::Interrupted);
    }
    fn deleting(&mut self) {
        self.inner.deleting();
    }
    fn success(&mut self) {
        self.inner.success();
    }
    fn error(&mut self, err: &MoveFileError) {
        self.inner.error(err);
    }
}

#[tokio::test]
async fn names_that_differ_only_by_case_are_warned_about() {
    let (src, _dst, source, destination) = services();
    write(src.path(), "Report.txt", b"upper");
    write(src.path(), "report.txt", b"lower");
    write(src.path(), "other.txt", b"other");
    let mut progress = Recording::default();
    run(&source, &destination, &mut progress).await;
    let warnings: Vec<_> = progress
        .events()
        .into_iter()
        .filter(|e| e.starts_with("warn "))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("Report.txt and report.txt differ only by case"),
        "{warnings:?}"
    );
}

#[tokio::test]
async fn a_subpath_moves_only_what_lies_under_it_and_a_missing_one_changes_nothing() {
    let (src, dst, source, destination) = services();
    write(src.path(), "a/b/one", b"one");
    write(src.path(), "a/b-sibling", b"sibling");
    write(src.path(), "top", b"top");
    write(dst.path(), "elsewhere", b"kept");
    let options = MoveOptions::default();
    let under = |path: &str| Some(RelPath::new(path).unwrap());
    let mut progress = Recording::default();
    let summary = move_files(
        at(&source, &dir()),
        at(&destination, &dir()),
        under("a/b").as_ref(),
        &options,
        &mut progress,
    )
    .await
    .unwrap();
    assert_eq!((summary.moved, summary.skipped, summary.failed), (1, 0, 0));
    assert_eq!(read(dst.path(), "a/b/one"), b"one");
    assert_eq!(read(src.path(), "a/b-sibling"), b"sibling");
    assert_eq!(read(src.path(), "top"), b"top");
    assert_eq!(read(dst.path(), "elsewhere"), b"kept");
    assert_eq!(progress.events()[0], "set_length 1 3");

    let summary = move_files(
        at(&source, &dir()),
        at(&destination, &dir()),
        under("top").as_ref(),
        &options,
        &mut progress,
    )
    .await
    .unwrap();
    assert_eq!(summary.moved, 1);
    assert_eq!(read(dst.path(), "top"), b"top");

    let err = move_files(
        at(&source, &dir()),
        at(&destination, &dir()),
        under("a/b").as_ref(),
        &options,
        &mut progress,
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "source: a/b does not exist in the source directory"
    );
    assert_eq!(read(src.path(), "a/b-sibling"), b"sibling");
}

#[tokio::test]
async fn a_dry_run_plans_each_file_and_writes_nothing() {
    let (src, dst, source, destination) = services();
    write(src.path(), "new", b"new");
    write(src.path(), "same", b"identical");
    write(dst.path(), "same", b"identical");
    write(src.path(), "changed", b"the source's");
    write(dst.path(), "changed", b"another file");
    write(src.path(), "resumed", b"0123456789");
    write(dst.path(), ".realize~part.resumed", b"01234");
    let before = (tree(src.path()), tree(dst.path()));
    let mut progress = Recording::default();
    let options = MoveOptions {
        dry_run: true,
        ..MoveOptions::default()
    };
    let summary = move_files(
        at(&source, &dir()),
        at(&destination, &dir()),
        None,
        &options,
        &mut progress,
    )
    .await
    .unwrap();
    assert_eq!(before, (tree(src.path()), tree(dst.path())));
    let planned: Vec<String> = progress
        .events()
        .into_iter()
        .filter(|e| e.contains(":planned"))
        .collect();
    assert_eq!(
        planned,
        [
            "changed:planned 12 Send { kept: 0, replaces: true }",
            "new:planned 3 Send { kept: 0, replaces: false }",
            "resumed:planned 10 Send { kept: 5, replaces: false }",
            "same:planned 9 AlreadyThere",
        ]
    );
    assert_eq!(
        summary,
        MoveSummary {
            moved: 4,
            replaced: 1,
            resumed: 1,
            bytes_sent: 12 + 3 + 5,
            ..MoveSummary::default()
        }
    );
}

#[tokio::test]
async fn files_the_selection_leaves_out_stay_and_are_counted() {
    let (src, dst, source, destination) = services();
    write(src.path(), "keep.jpg", b"jpg");
    write(src.path(), "tmp/upload", b"partial upload");
    let exclude = selection::Pattern::new("tmp/").unwrap();
    let options = MoveOptions {
        selection: Selection::new(vec![(selection::Action::Exclude, exclude)], None).unwrap(),
        ..MoveOptions::default()
    };
    let mut progress = Recording::default();
    let summary = move_files(
        at(&source, &dir()),
        at(&destination, &dir()),
        None,
        &options,
        &mut progress,
    )
    .await
    .unwrap();
    assert_eq!((summary.moved, summary.excluded), (1, 1));
    assert_eq!(read(dst.path(), "keep.jpg"), b"jpg");
    assert_eq!(read(src.path(), "tmp/upload"), b"partial upload");
    assert!(progress
        .events()
        .contains(&"left out tmp/upload Excluded".to_string()));
}

/// Every file under `root` with its content, modification time and mode.
fn tree(root: &Path) -> Vec<(String, Vec<u8>, std::time::SystemTime, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut files: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let meta = std::fs::metadata(&path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let mode = meta.permissions().mode();
            (
                name,
                std::fs::read(&path).unwrap_or_default(),
                meta.modified().unwrap(),
                mode,
            )
        })
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn each_side_is_reached_under_its_own_directory_id() {
    let (src, dst, decoy) = (
        TempDir::new().unwrap(),
        TempDir::new().unwrap(),
        TempDir::new().unwrap(),
    );
    let (photos, archive) = (
        DirectoryId::new("photos").unwrap(),
        DirectoryId::new("archive").unwrap(),
    );
    let source = LocalService::single(photos.clone(), src.path()).unwrap();
    // The destination also serves an id like the source's: a move that
    // reached it under the source's id would land there.
    let destination = LocalService::new([
        (photos.clone(), decoy.path().to_path_buf()),
        (archive.clone(), dst.path().to_path_buf()),
    ])
    .unwrap();
    write(src.path(), "new/a.jpg", b"new");
    write(src.path(), "same.jpg", b"identical");
    write(dst.path(), "same.jpg", b"identical");
    write(decoy.path(), "same.jpg", b"other content");
    let mut progress = Recording::default();
    let summary = run_between(
        at(&source, &photos),
        at(&destination, &archive),
        &mut progress,
    )
    .await
    .unwrap();

    assert_eq!(
        (summary.moved, summary.failed, summary.bytes_sent),
        (2, 0, 3)
    );
    assert_eq!(read(dst.path(), "new/a.jpg"), b"new");
    assert_eq!(read(dst.path(), "same.jpg"), b"identical");
    assert_eq!(read(decoy.path(), "same.jpg"), b"other content");
    assert!(!decoy.path().join("new").exists());
    assert_eq!(std::fs::read_dir(src.path()).unwrap().count(), 0);
}
