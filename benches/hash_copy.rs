//! The hash-and-copy hot path: what moving one file costs on the local disk,
//! against the raw operations it is made of.
//!
//! For each input size (1 MiB, 64 MiB, 1 GiB) one Criterion group, annotated
//! with `Throughput::Bytes`, runs four functions on the same source file in
//! the same run:
//!
//! - `realize_local_move`: what the engine does for one file, through the
//!   public API. Two [`LocalService`]s over two directories with the same
//!   [`DirectoryId`]: `read(dir, path, &Delta::full())` on the source,
//!   `write(dir, path, size, &Delta::full())` on the destination (a fresh copy
//!   from byte 0), every [`ReadEvent::Data`] chunk pumped into the writer,
//!   then `finish` with the hash of [`ReadEvent::Done`]. This hashes on both
//!   sides (on the reading and the writing blocking threads), writes files
//!   of 1 MiB and more past the page cache (`O_DIRECT`, 1 MiB per write),
//!   fsyncs the partial file, renames it into place and fsyncs the directory. It runs on
//!   a multi-thread tokio runtime.
//! - `plain_copy`: the cost floor of the same durable copy. A plain loop reads
//!   the source and writes a partial file in [`CHUNK_SIZE`] chunks on the
//!   bench thread, then `sync_data`, rename and directory fsync. No hashing,
//!   no threads, no channels.
//! - `hash_only`: BLAKE3 of the source read in [`CHUNK_SIZE`] chunks
//!   (`blake3::Hasher::update`, one thread), nothing written. `realize` does
//!   this twice per file, once per side.
//! - `copy_file_range`: `std::fs::copy` (in-kernel `copy_file_range` on
//!   Linux) then `sync_data`: roughly what `cp` followed by `sync` costs, as
//!   an outside reference.
//!
//! How to read it: compare within a group, not across runs or machines.
//! `realize_local_move` against `plain_copy` is the price of verification
//! (two BLAKE3 passes) and of the thread handoffs on top of the same durable
//! copy. Against `hash_only`: realize hashes every byte twice, on two threads
//! that may run in parallel with each other and with the I/O. A move near
//! `hash_only` (or below it, when the two hashes do not overlap) is bound by
//! hashing; a move near `plain_copy` is bound by writing and fsync.
//! `copy_file_range` shows what the kernel alone achieves without moving the
//! bytes through user space.
//!
//! The source file is written and fsynced once per size, then read from the
//! page cache: the numbers are CPU, memory and destination-write cost, not the
//! source disk's read speed. Every writing iteration fsyncs its destination,
//! so the destination disk counts. Before each writing iteration the previous
//! destination is deleted and its directory fsynced (not timed), so that
//! freeing (and discarding) its blocks does not land in the next measurement.
//!
//! Files are created under Cargo's `CARGO_TARGET_TMPDIR` (`target/tmp`, a
//! real disk rather than a possible tmpfs `/tmp`), or under the directory in
//! `REALIZE_BENCH_DIR` if set; the 1 GiB group needs 2 GiB free there. Run
//! `cargo bench --bench hash_copy`, one size with `-- 64MiB`, or a single
//! pass of everything as a check with `-- --test`. Sampling is flat (the same
//! iteration count in every sample; fsync-bound iterations are too slow and
//! noisy for Criterion's linear regression), and the 1 GiB group is kept to
//! ten samples, so the whole run takes about three to four minutes.

use std::cell::OnceCell;
use std::fs::{self, File, OpenOptions};
use std::hint::black_box;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode, Throughput};
use realize::model::{Delta, DirectoryId, Hash, RelPath, WritePlan};
use realize::protocol::CHUNK_SIZE;
use realize::service::local::LocalService;
use realize::service::{ReadEvent, Service};
use tempfile::TempDir;
use tokio::runtime::Runtime;

const MIB: u64 = 1024 * 1024;
const FILE_NAME: &str = "input.bin";

/// One input size and how long to spend on it.
struct Case {
    label: &'static str,
    bytes: u64,
    sample_size: usize,
    warm_up: Duration,
    measurement: Duration,
}

const CASES: [Case; 3] = [
    Case {
        label: "1MiB",
        bytes: MIB,
        sample_size: 30,
        warm_up: Duration::from_secs(1),
        measurement: Duration::from_secs(4),
    },
    Case {
        label: "64MiB",
        bytes: 64 * MIB,
        sample_size: 15,
        warm_up: Duration::from_secs(2),
        measurement: Duration::from_secs(8),
    },
    Case {
        label: "1GiB",
        bytes: 1024 * MIB,
        sample_size: 10,
        warm_up: Duration::from_secs(1),
        measurement: Duration::from_secs(15),
    },
];

/// One size's source file, an empty destination root and the services over
/// both. Everything is removed when it is dropped.
struct Fixture {
    _base: TempDir,
    size: u64,
    /// BLAKE3 of the source, computed while generating it.
    hash: Hash,
    src_file: PathBuf,
    dst_root: PathBuf,
    dst_file: PathBuf,
    /// Where `plain_copy` writes before its rename, as realize does.
    dst_partial: PathBuf,
    dir: DirectoryId,
    path: RelPath,
    src: LocalService,
    dst: LocalService,
}

impl Fixture {
    fn create(size: u64) -> Self {
        let parent = match std::env::var_os("REALIZE_BENCH_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => PathBuf::from(env!("CARGO_TARGET_TMPDIR")),
        };
        fs::create_dir_all(&parent).expect("create the bench directory");
        let base = tempfile::Builder::new()
            .prefix("hash_copy-")
            .tempdir_in(&parent)
            .expect("create a temporary directory");
        let src_root = base.path().join("src");
        let dst_root = base.path().join("dst");
        fs::create_dir(&src_root).expect("create the source root");
        fs::create_dir(&dst_root).expect("create the destination root");

        let src_file = src_root.join(FILE_NAME);
        let hash = write_pseudo_random(&src_file, size).expect("generate the source file");
        File::open(&src_root)
            .and_then(|d| d.sync_all())
            .expect("fsync the source root");

        let dir = DirectoryId::new("bench").expect("valid directory id");
        let src = LocalService::single(dir.clone(), &src_root).expect("serve the source");
        let dst = LocalService::single(dir.clone(), &dst_root).expect("serve the destination");
        Self {
            _base: base,
            size,
            hash,
            src_file,
            dst_file: dst_root.join(FILE_NAME),
            dst_partial: dst_root.join(format!(".realize~part.{FILE_NAME}")),
            dst_root,
            dir,
            path: RelPath::new(FILE_NAME).expect("valid relative path"),
            src,
            dst,
        }
    }

    /// Untimed setup of every writing iteration: deletes what the previous
    /// one left and makes the deletion durable.
    fn clear_destination(&self) {
        for path in [&self.dst_file, &self.dst_partial] {
            match fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => panic!("remove {}: {e}", path.display()),
            }
        }
        sync_dir(&self.dst_root).expect("fsync the destination root");
    }
}

/// Writes `size` pseudo-random bytes (BLAKE3 XOF) to `path`, fsyncs them and
/// returns their BLAKE3 hash.
fn write_pseudo_random(path: &Path, size: u64) -> io::Result<Hash> {
    let mut seed = blake3::Hasher::new();
    seed.update(b"realize hash_copy bench");
    seed.update(&size.to_le_bytes());
    let mut xof = seed.finalize_xof();
    let mut hasher = blake3::Hasher::new();
    let mut file = File::create(path)?;
    let mut buf = vec![0u8; MIB as usize];
    let mut left = size;
    while left > 0 {
        let n = buf.len().min(left as usize);
        xof.fill(&mut buf[..n]);
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n])?;
        left -= n as u64;
    }
    file.sync_all()?;
    Ok(hasher.finalize().into())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Reads into `buf`, retrying on interruption; 0 at the end of the file.
fn read_some(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match file.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            result => return result,
        }
    }
}

/// One file moved by the engine's local services: read, write, finish.
fn realize_local_move(rt: &Runtime, fx: &Fixture) -> Hash {
    rt.block_on(async {
        let delta = Delta::full();
        let mut reader = fx
            .src
            .read(&fx.dir, &fx.path, &delta)
            .await
            .expect("open the source");
        let plan = WritePlan {
            size: reader.stamp().size,
            delta,
            replaces: None,
            attributes: reader.stamp().attributes(),
        };
        let mut writer = fx
            .dst
            .write(&fx.dir, &fx.path, &plan)
            .await
            .expect("open the destination");
        loop {
            match reader.next().await.expect("read a chunk") {
                ReadEvent::Data(chunk) => writer.write(chunk).await.expect("write a chunk"),
                ReadEvent::Done(summary) => {
                    break writer.finish(summary.hash).await.expect("finish");
                }
            }
        }
    })
}

/// The same durable copy without hashing: read, write, fsync, rename, fsync
/// the directory.
fn plain_copy(fx: &Fixture) -> io::Result<u64> {
    let mut src = File::open(&fx.src_file)?;
    let mut dst = File::create(&fx.dst_partial)?;
    let mut buf = vec![0u8; CHUNK_SIZE];
    let mut copied = 0u64;
    loop {
        let n = read_some(&mut src, &mut buf)?;
        if n == 0 {
            break;
        }
        dst.write_all(&buf[..n])?;
        copied += n as u64;
    }
    dst.sync_data()?;
    fs::rename(&fx.dst_partial, &fx.dst_file)?;
    sync_dir(&fx.dst_root)?;
    Ok(copied)
}

/// BLAKE3 of the source, read in chunks, nothing written.
fn hash_only(fx: &Fixture) -> io::Result<Hash> {
    let mut src = File::open(&fx.src_file)?;
    let mut buf = vec![0u8; CHUNK_SIZE];
    let mut hasher = blake3::Hasher::new();
    loop {
        let n = read_some(&mut src, &mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}

/// `std::fs::copy` (the kernel copies) then `sync_data`.
fn fs_copy(fx: &Fixture) -> io::Result<u64> {
    let copied = fs::copy(&fx.src_file, &fx.dst_file)?;
    OpenOptions::new()
        .write(true)
        .open(&fx.dst_file)?
        .sync_data()?;
    Ok(copied)
}

fn hash_copy(c: &mut Criterion) {
    let rt = Runtime::new().expect("start the tokio runtime");
    for case in &CASES {
        // Created by the first benchmark the filter lets run, so that
        // `cargo bench -- 1MiB` does not generate the 1 GiB file.
        let fixture = OnceCell::new();
        let fixture = || fixture.get_or_init(|| Fixture::create(case.bytes));

        let mut group = c.benchmark_group(format!("hash_copy_{}", case.label));
        group
            .throughput(Throughput::Bytes(case.bytes))
            .sample_size(case.sample_size)
            .warm_up_time(case.warm_up)
            .measurement_time(case.measurement)
            .sampling_mode(SamplingMode::Flat);

        group.bench_function("realize_local_move", |b| {
            let fx = fixture();
            b.iter_batched(
                || fx.clear_destination(),
                |()| {
                    let hash = realize_local_move(&rt, fx);
                    assert_eq!(hash, fx.hash);
                    black_box(hash)
                },
                BatchSize::PerIteration,
            );
        });

        group.bench_function("plain_copy", |b| {
            let fx = fixture();
            b.iter_batched(
                || fx.clear_destination(),
                |()| {
                    let copied = plain_copy(fx).expect("plain copy");
                    assert_eq!(copied, fx.size);
                    black_box(copied)
                },
                BatchSize::PerIteration,
            );
        });

        group.bench_function("hash_only", |b| {
            let fx = fixture();
            b.iter(|| {
                let hash = hash_only(fx).expect("hash the source");
                assert_eq!(hash, fx.hash);
                black_box(hash)
            });
        });

        group.bench_function("copy_file_range", |b| {
            let fx = fixture();
            b.iter_batched(
                || fx.clear_destination(),
                |()| {
                    let copied = fs_copy(fx).expect("std::fs::copy");
                    assert_eq!(copied, fx.size);
                    black_box(copied)
                },
                BatchSize::PerIteration,
            );
        });

        group.finish();
    }
}

criterion_group!(benches, hash_copy);
criterion_main!(benches);
