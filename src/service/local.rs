//! [`LocalService`]: the [`Service`] over local roots, used in process and by
//! the daemon to serve its peers.

mod caller;
mod collection;
mod completion;
mod direct;
mod durability;
mod exclusive;
mod finisher;
mod gathered;
mod listing;
mod names;
mod partial;
mod place;
mod reader;
mod root;
mod threads;
mod workers;
mod writer;

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

pub use collection::Collected;
pub use exclusive::PartialClaim;
pub use listing::{
    BatchLimit, Batches, Walk, DEFAULT_LISTING_DEPTH, ENTRY_OVERHEAD, MAX_LISTING_DEPTH,
};
pub use reader::ReadBudget;
pub use root::Root;
pub use writer::LocalWriter;

use self::durability::DirSyncer;
use self::exclusive::PartialLocks;
use self::partial::WriteTarget;
use self::reader::LocalReader;
use self::threads::{blocking, for_caller, on_blocking_thread, Threads};
use self::workers::Requester;
use super::{FileReader, FileWriter, Listing, Service, ServiceError};
use crate::model::{
    Attributes, Delta, DirectoryId, FileStamp, FileState, Hash, RelPath, RootIdentity, WritePlan,
    MAX_BLOCKS, MIN_BLOCK_SIZE,
};
use crate::protocol::{ErrorKind, RealizeError};

/// The directories of this host, each a root that requests cannot leave.
#[derive(Debug, Clone)]
pub struct LocalService {
    roots: Arc<HashMap<DirectoryId, Arc<Root>>>,
    syncer: Arc<DirSyncer>,
    /// The threads of the blocking work (see `threads`).
    threads: Threads,
    partials: Arc<PartialLocks>,
    /// Bounds the bytes this service's reads hold in memory.
    read_budget: ReadBudget,
    /// Whether written files get their source's owner.
    keep_owners: bool,
    /// Components a listed or written path may have at most.
    depth: usize,
}

/// Opens each directory of `dirs`; every path must be an existing directory.
fn open_roots(
    dirs: impl IntoIterator<Item = (DirectoryId, PathBuf)>,
) -> io::Result<Arc<HashMap<DirectoryId, Arc<Root>>>> {
    let roots = dirs
        .into_iter()
        .map(|(id, path)| {
            let root = Root::open(&path).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("directory {id} ({}): {e}", path.display()),
                )
            })?;
            Ok((id, Arc::new(root)))
        })
        .collect::<io::Result<_>>()?;
    Ok(Arc::new(roots))
}

impl LocalService {
    /// Serves `dirs`; every path must be an existing directory.
    pub fn new(dirs: impl IntoIterator<Item = (DirectoryId, PathBuf)>) -> io::Result<Self> {
        Ok(Self {
            roots: open_roots(dirs)?,
            syncer: Arc::<DirSyncer>::default(),
            threads: Threads::start()?,
            partials: Arc::default(),
            read_budget: ReadBudget::default(),
            keep_owners: false,
            depth: DEFAULT_LISTING_DEPTH,
        })
    }

    /// A service of `dirs` with default options that shares this one's
    /// workers and locks on partial files: writers of both exclude each
    /// other, and collecting abandoned partial files through either sees
    /// the writers of both.
    pub fn serving(
        &self,
        dirs: impl IntoIterator<Item = (DirectoryId, PathBuf)>,
    ) -> io::Result<Self> {
        Ok(Self {
            roots: open_roots(dirs)?,
            read_budget: ReadBudget::default(),
            keep_owners: false,
            depth: DEFAULT_LISTING_DEPTH,
            ..self.clone()
        })
    }

    /// The ids of the directories served, in order.
    pub fn dir_ids(&self) -> Vec<DirectoryId> {
        let mut ids: Vec<DirectoryId> = self.roots.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Lists and writes paths of at most `depth` components (the daemon's
    /// `listing_depth`) instead of [`DEFAULT_LISTING_DEPTH`].
    pub fn with_listing_depth(mut self, depth: usize) -> Self {
        self.depth = depth;
        self
    }

    /// Starts a listing of `dir` that is read batch by batch, each batch
    /// at most `limit`.
    pub async fn list_in_batches(
        &self,
        dir: &DirectoryId,
        limit: BatchLimit,
    ) -> Result<Batches, RealizeError> {
        let root = self.root(dir)?;
        let depth = self.depth;
        let walk = on_blocking_thread(move || Walk::start(&root, depth)).await?;
        Ok(Batches::new(walk, limit))
    }

    /// This service with reads bounded by `budget` of their own, apart from
    /// every other clone's: the daemon gives each connection one, so a peer
    /// that does not read what it asked for holds up only itself.
    pub fn with_read_budget(&self, budget: ReadBudget) -> Self {
        Self {
            read_budget: budget,
            ..self.clone()
        }
    }

    /// Gives every file written here its source's owner (numeric user and
    /// group ids, as `rsync -o -g --numeric-ids`). Only root may give files
    /// away, so this fails for any other user.
    pub fn keeping_owners(mut self) -> io::Result<Self> {
        if !rustix::process::geteuid().is_root() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "keeping owners needs root: only root may give files to other users",
            ));
        }
        self.keep_owners = true;
        Ok(self)
    }

    /// `attributes` as this service applies them: without an owner unless
    /// it keeps owners.
    fn applied(&self, attributes: Attributes) -> Attributes {
        Attributes {
            owner: attributes.owner.filter(|_| self.keep_owners),
            ..attributes
        }
    }

    /// The same service, queuing its blocking work as `peer`'s: the threads
    /// shared by every peer serve the peers in turn (see `workers`), so
    /// one peer's backlog cannot hold up the others.
    pub fn for_peer(&self, peer: &str) -> Self {
        Self {
            threads: self.threads.for_requester(Requester::new(peer)),
            ..self.clone()
        }
    }

    /// Refuses new writes, waits until every write under way has ended
    /// (its file final, or its partial file holding what arrived), then
    /// stops the threads this service and the services sharing its
    /// workers use (see `threads`).
    pub async fn shutdown(&self) {
        self.threads.shutdown().await;
    }

    /// Serves one directory.
    pub fn single(id: DirectoryId, path: &Path) -> io::Result<Self> {
        Self::new([(id, path.to_path_buf())])
    }

    /// The canonical root of `dir`, if served.
    pub fn root_path(&self, dir: &DirectoryId) -> Option<&Path> {
        self.roots.get(dir).map(|root| root.path())
    }

    /// Opens the partial file of `path` like [`Service::write`], with the
    /// concrete writer, whose [`LocalWriter::superseded`] tells when a newer
    /// transfer of the same file wants it.
    pub async fn open_writer(
        &self,
        dir: &DirectoryId,
        path: &RelPath,
        plan: &WritePlan,
    ) -> Result<LocalWriter, RealizeError> {
        plan.delta
            .validate(plan.size)
            .map_err(|e| RealizeError::new(ErrorKind::Protocol, format!("{path}: {e}")))?;
        self.check_depth(path)?;
        let root = self.root(dir)?;
        let display = path.clone();
        let place = self
            .threads
            .ops()
            .run(move || root.resolve_creating(&display))
            .await?;
        let claim = self.partials.claim(&self.claim_key(dir, path)).await;
        if claim.is_superseded() {
            let message = format!("{path}: a newer transfer of this file took over");
            return Err(RealizeError::new(ErrorKind::Superseded, message));
        }
        let token = self.threads.start_write(path)?;
        let mut plan = plan.clone();
        plan.attributes = self.applied(plan.attributes);
        let target = WriteTarget {
            place: Arc::new(place),
            plan,
        };
        let (syncer, finisher) = (self.syncer.clone(), self.threads.finisher());
        LocalWriter::open(target, claim, token, syncer, finisher).await
    }

    /// Refuses a path deeper than a listing here descends: a file written
    /// there could never be listed, so never moved on or seen again.
    fn check_depth(&self, path: &RelPath) -> Result<(), RealizeError> {
        let depth = path.components().count();
        if depth <= self.depth {
            return Ok(());
        }
        let message = format!(
            "{path}: {depth} levels deep, deeper than the {} a listing here descends \
             (listing_depth), so it could never be listed",
            self.depth
        );
        Err(RealizeError::new(ErrorKind::InvalidPath, message))
    }

    /// Removes, in every served directory, each partial file that no
    /// writer holds and that has not changed for `max_age`, and puts back
    /// every file whose delete a crash interrupted (see `collection`). A
    /// directory that cannot be walked is logged and skipped.
    pub async fn collect_abandoned(&self, max_age: Duration) -> Collected {
        // An age beyond what the clock can count back: no partial file is
        // older.
        self.collect(SystemTime::now().checked_sub(max_age)).await
    }

    /// Puts back, in every served directory, every file whose delete a
    /// crash interrupted, so that a move finds it again (see
    /// `collection`). The command does this for a local source.
    pub async fn put_back_interrupted_deletes(&self) -> Collected {
        self.collect(None).await
    }

    /// Walks every root, collecting as [`collection::collect`] does.
    async fn collect(&self, partials_changed_before: Option<SystemTime>) -> Collected {
        let (roots, depth) = (self.roots.clone(), self.depth);
        let collecting = on_blocking_thread(move || {
            let mut collected = Collected::default();
            for (id, root) in roots.iter() {
                match collection::collect(root, depth, partials_changed_before) {
                    Ok(more) => collected += more,
                    Err(e) => tracing::warn!(dir = %id, "cannot collect abandoned files: {e}"),
                }
            }
            Ok(collected)
        });
        collecting.await.unwrap_or_else(|e| {
            tracing::warn!("cannot collect abandoned files: {e}");
            Collected::default()
        })
    }

    /// What identifies one partial file among all roots, for its claim.
    fn claim_key(&self, dir: &DirectoryId, path: &RelPath) -> PathBuf {
        let root = self.roots.get(dir).map_or(Path::new(""), |r| r.path());
        root.join(path.as_str())
    }

    fn root(&self, dir: &DirectoryId) -> Result<Arc<Root>, RealizeError> {
        self.roots.get(dir).cloned().ok_or_else(|| {
            RealizeError::new(
                ErrorKind::UnknownDirectory,
                format!("no directory with id '{dir}' is served here"),
            )
        })
    }
}

#[async_trait]
impl Service for LocalService {
    async fn list(&self, dir: &DirectoryId) -> Result<Listing, ServiceError> {
        let root = self.root(dir)?;
        let depth = self.depth;
        let mut listing = blocking(move || listing::list(&root, depth)).await?;
        listing.sort();
        Ok(listing)
    }

    async fn read(
        &self,
        dir: &DirectoryId,
        path: &RelPath,
        delta: &Delta,
    ) -> Result<Box<dyn FileReader>, ServiceError> {
        let root = self.root(dir)?;
        let display = path.clone();
        let delta = delta.clone();
        let budget = self.read_budget.clone();
        let runtime = tokio::runtime::Handle::current();
        let reader = self
            .threads
            .ops()
            .run(move || {
                let (file, stamp) = root.resolve(&display)?.open_final()?;
                delta.validate(stamp.size).map_err(|e| {
                    RealizeError::new(ErrorKind::Protocol, format!("{display}: {e}"))
                })?;
                LocalReader::open(file, stamp, delta, display, &budget, &runtime)
            })
            .await?;
        Ok(Box::new(reader))
    }

    async fn write(
        &self,
        dir: &DirectoryId,
        path: &RelPath,
        plan: &WritePlan,
    ) -> Result<Box<dyn FileWriter>, ServiceError> {
        Ok(Box::new(self.open_writer(dir, path, plan).await?))
    }

    async fn hash(&self, dir: &DirectoryId, path: &RelPath) -> Result<Hash, ServiceError> {
        let root = self.root(dir)?;
        let display = path.clone();
        let hashed = for_caller(move |caller| {
            let place = root.resolve(&display)?;
            let (file, _) = place.open_final()?;
            let io = |e| RealizeError::io(&display, &e);
            let mut hasher = blake3::Hasher::new();
            hasher.update_reader(caller.reading(&file)).map_err(io)?;
            // The hash vouches for content that survives a crash: a copy
            // left by an interrupted run may not have been synced yet.
            file.sync_all().map_err(io)?;
            place.dir().sync_all().map_err(io)?;
            Ok(hasher.finalize().into())
        });
        Ok(hashed.await?)
    }

    async fn block_hashes(
        &self,
        dir: &DirectoryId,
        path: &RelPath,
        state: FileState,
        block_size: u64,
        length: u64,
    ) -> Result<Vec<Hash>, ServiceError> {
        if block_size < MIN_BLOCK_SIZE || length.div_ceil(block_size) > MAX_BLOCKS {
            let message =
                format!("{path}: {length} bytes in blocks of {block_size} is out of bounds");
            return Err(RealizeError::new(ErrorKind::Protocol, message).into());
        }
        let root = self.root(dir)?;
        let display = path.clone();
        let hashed = for_caller(move |caller| {
            let place = root.resolve(&display)?;
            let (file, stamp) = match state {
                FileState::Final => place.open_final()?,
                FileState::Partial => place.open_partial()?,
            };
            if stamp.size < length {
                let message = format!("{display}: has {} bytes, fewer than {length}", stamp.size);
                return Err(RealizeError::new(ErrorKind::SourceChanged, message));
            }
            hash_blocks(caller.reading(file), block_size, length)
                .map_err(|e| RealizeError::io(&display, &e))
        });
        Ok(hashed.await?)
    }

    async fn root_identity(&self, dir: &DirectoryId) -> Result<RootIdentity, ServiceError> {
        let root = self.root(dir)?;
        blocking(move || {
            let stat = rustix::fs::fstat(root.fd())
                .map_err(|e| RealizeError::io("directory root", &e.into()))?;
            Ok(RootIdentity {
                machine: machine_id().to_string(),
                path: root.path().to_string_lossy().into_owned(),
                device: stat.st_dev,
                inode: stat.st_ino,
            })
        })
        .await
    }

    async fn delete(
        &self,
        dir: &DirectoryId,
        path: &RelPath,
        expected: FileStamp,
    ) -> Result<(), ServiceError> {
        let root = self.root(dir)?;
        let display = path.clone();
        let deleted = self.threads.ops().run(move || {
            root.resolve(&display)?.delete(&expected)?;
            root.remove_empty_parents(&display);
            Ok(())
        });
        Ok(deleted.await?)
    }

    async fn set_attributes(
        &self,
        dir: &DirectoryId,
        path: &RelPath,
        expected: FileStamp,
        attributes: Attributes,
    ) -> Result<(), ServiceError> {
        let root = self.root(dir)?;
        let display = path.clone();
        let attributes = self.applied(attributes);
        blocking(move || {
            root.resolve(&display)?
                .set_attributes(&expected, &attributes)
        })
        .await
    }
}

/// This machine's id: `/etc/machine-id`, else the host name.
fn machine_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        [
            "/etc/machine-id",
            "/var/lib/dbus/machine-id",
            "/proc/sys/kernel/hostname",
        ]
        .iter()
        .find_map(|file| {
            let id = fs::read_to_string(file).ok()?.trim().to_string();
            (!id.is_empty()).then_some(id)
        })
        .unwrap_or_default()
    })
}

/// BLAKE3 of each `block_size` block of the first `length` bytes of `file`.
fn hash_blocks(file: impl Read, block_size: u64, length: u64) -> io::Result<Vec<Hash>> {
    let mut reader = std::io::BufReader::with_capacity(crate::protocol::CHUNK_SIZE, file);
    let mut hashes = Vec::with_capacity(length.div_ceil(block_size) as usize);
    let mut position = 0;
    while position < length {
        let len = block_size.min(length - position);
        let mut hasher = blake3::Hasher::new();
        let copied = io::copy(&mut (&mut reader).take(len), &mut hasher)?;
        if copied != len {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank"));
        }
        hashes.push(hasher.finalize().into());
        position += len;
    }
    Ok(hashes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::os::unix::fs::MetadataExt;

    /// A plan to write a file of `size` bytes where none is.
    fn new_file(size: u64, delta: Delta) -> WritePlan {
        WritePlan {
            size,
            delta,
            replaces: None,
            attributes: Attributes {
                modified_ns: 1_600_000_000_123_456_789,
                mode: 0o640,
                owner: None,
            },
        }
    }

    /// The names in `dir`.
    fn names(dir: &Path) -> Vec<std::ffi::OsString> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect()
    }

    /// Writes `data[delta.offset..]` over whatever the partial file holds
    /// and finishes; returns the final file's bytes.
    async fn write_whole(service: &LocalService, root: &Path, data: &[u8], offset: u64) -> Vec<u8> {
        let (dir, path) = (DirectoryId::new("d").unwrap(), RelPath::new("big").unwrap());
        let delta = Delta {
            patches: Vec::new(),
            offset,
        };
        let size = data.len() as u64;
        let mut writer = service
            .write(&dir, &path, &new_file(size, delta))
            .await
            .unwrap();
        for piece in data[offset as usize..].chunks(100_000) {
            writer.write(Bytes::copy_from_slice(piece)).await.unwrap();
        }
        let hash: Hash = blake3::hash(data).into();
        assert_eq!(writer.finish(hash).await.unwrap(), hash);
        fs::read(root.join("big")).unwrap()
    }

    #[tokio::test]
    async fn large_files_written_past_the_page_cache_land_whole() {
        let root = tempfile::tempdir().unwrap();
        let service = LocalService::single(DirectoryId::new("d").unwrap(), root.path()).unwrap();
        let data: Vec<u8> = (0..3 * 1024 * 1024 + 777u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        assert_eq!(write_whole(&service, root.path(), &data, 0).await, data);
        // Resumes at an aligned and at an odd offset keep the prefix.
        for offset in [1 << 20, 1_000_001] {
            fs::write(
                root.path().join(".realize~part.big"),
                &data[..offset as usize],
            )
            .unwrap();
            fs::remove_file(root.path().join("big")).unwrap();
            assert_eq!(
                write_whole(&service, root.path(), &data, offset).await,
                data
            );
        }
    }

    #[tokio::test]
    async fn small_files_finishing_together_land_except_the_one_that_fails() {
        let root = tempfile::tempdir().unwrap();
        let dir = DirectoryId::new("d").unwrap();
        let service = LocalService::single(dir.clone(), root.path()).unwrap();
        let mut writers = Vec::new();
        for i in 0..40u32 {
            let path = RelPath::new(format!("sub{}/f{i}", i % 3)).unwrap();
            let data = format!("file {i}").into_bytes();
            let mut writer = service
                .write(&dir, &path, &new_file(data.len() as u64, Delta::full()))
                .await
                .unwrap();
            writer.write(Bytes::from(data.clone())).await.unwrap();
            // File 7 claims a hash its bytes do not have.
            let hash: Hash = blake3::hash(if i == 7 { b"other" } else { &data }).into();
            writers.push(writer.finish(hash));
        }
        let results = futures::future::join_all(writers).await;
        for (i, result) in results.into_iter().enumerate() {
            let (name, partial) = (
                format!("sub{}/f{i}", i % 3),
                format!("sub{}/.realize~part.f{i}", i % 3),
            );
            if i == 7 {
                match result {
                    Err(ServiceError::Realize(e)) => assert_eq!(e.kind, ErrorKind::HashMismatch),
                    other => panic!("file 7: {other:?}"),
                }
                assert!(!root.path().join(&name).exists());
                assert!(root.path().join(&partial).exists(), "kept for a resume");
            } else {
                result.unwrap();
                assert_eq!(
                    fs::read(root.path().join(&name)).unwrap(),
                    format!("file {i}").into_bytes()
                );
                assert!(!root.path().join(&partial).exists());
            }
        }
    }

    #[tokio::test]
    async fn an_abandoned_write_keeps_what_arrived_in_the_partial_file() {
        // A small file (gathered in memory) and a large one (its own thread).
        for size in [10, 1 << 20] {
            let root = tempfile::tempdir().unwrap();
            let dir = DirectoryId::new("d").unwrap();
            let service = LocalService::single(dir.clone(), root.path()).unwrap();
            let path = RelPath::new("f").unwrap();
            let mut writer = service
                .write(&dir, &path, &new_file(size, Delta::full()))
                .await
                .unwrap();
            writer.write(Bytes::from_static(b"arrived")).await.unwrap();
            drop(writer);
            // A blocking thread writes the bytes out after the drop.
            let partial = root.path().join(".realize~part.f");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while fs::read(&partial).ok().as_deref() != Some(b"arrived") {
                assert!(
                    std::time::Instant::now() < deadline,
                    "size {size}: {partial:?}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            assert!(!root.path().join("f").exists());
        }
    }

    #[tokio::test]
    async fn a_transfer_that_outlived_the_run_that_moved_its_file_leaves_no_partial_file() {
        // A small file (gathered in memory) and a large one (its own thread).
        for size in [10, 1 << 20] {
            let root = tempfile::tempdir().unwrap();
            let dir = DirectoryId::new("d").unwrap();
            let service = LocalService::single(dir.clone(), root.path()).unwrap();
            let path = RelPath::new("f").unwrap();
            // A later run moved the file; the stream of a killed run, which
            // listed nothing there, only now gets its turn.
            fs::write(root.path().join("f"), b"moved").unwrap();
            let stale = service
                .write(&dir, &path, &new_file(size, Delta::full()))
                .await;
            if let Ok(mut writer) = stale {
                let _ = writer.write(Bytes::from_static(b"arrived")).await;
                drop(writer);
                // A blocking thread would write the bytes out after the drop.
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            assert_eq!(
                names(root.path()),
                ["f"],
                "size {size}: only the moved file"
            );
            assert_eq!(fs::read(root.path().join("f")).unwrap(), b"moved");
        }
    }

    #[tokio::test]
    async fn a_transfer_whose_name_was_taken_before_it_wrote_writes_no_partial_file() {
        // A small file (gathered in memory) and a large one (its own thread).
        for size in [10, 1 << 20] {
            let data = vec![7u8; size];
            // The run listed nothing there. Then an older transfer of the
            // same source (a killed run's) made the file final, or a user
            // saved another.
            for (there, settles) in [(data.clone(), true), (b"the user's".to_vec(), false)] {
                let root = tempfile::tempdir().unwrap();
                let dir = DirectoryId::new("d").unwrap();
                let service = LocalService::single(dir.clone(), root.path()).unwrap();
                let path = RelPath::new("f").unwrap();
                fs::write(root.path().join("f"), &there).unwrap();
                let mut writer = service
                    .write(&dir, &path, &new_file(size as u64, Delta::full()))
                    .await
                    .unwrap();
                writer.write(Bytes::from(data.clone())).await.unwrap();
                // A crash now must leave nothing that no run would remove:
                // the next run finds the file moved and looks no further.
                assert!(
                    !root.path().join(".realize~part.f").exists(),
                    "size {size}: a partial file that could never be committed"
                );
                let hash: Hash = blake3::hash(&data).into();
                let result = writer.finish(hash).await;
                assert_eq!(names(root.path()), ["f"], "size {size}");
                assert_eq!(fs::read(root.path().join("f")).unwrap(), there);
                if settles {
                    assert_eq!(result.unwrap(), hash, "size {size}");
                    let mode = fs::metadata(root.path().join("f")).unwrap().mode() & 0o777;
                    assert_eq!(mode, 0o640, "size {size}: the planned attributes");
                    continue;
                }
                match result {
                    Err(ServiceError::Realize(e)) => {
                        assert_eq!(e.kind, ErrorKind::DestinationChanged, "{e}")
                    }
                    other => panic!("size {size}: {:?}", other.map(|_| ())),
                }
            }
        }
    }

    #[tokio::test]
    async fn two_services_never_write_one_partial_file_at_once() {
        let root = tempfile::tempdir().unwrap();
        let dir = DirectoryId::new("d").unwrap();
        // Two services over one root stand for two processes.
        let first = LocalService::single(dir.clone(), root.path()).unwrap();
        let second = LocalService::single(dir.clone(), root.path()).unwrap();
        let path = RelPath::new("f").unwrap();
        // A large file's partial file is locked from the start...
        let large = 1 << 20;
        let writer = first
            .write(&dir, &path, &new_file(large, Delta::full()))
            .await
            .unwrap();
        let refused = |result: Result<_, ServiceError>| match result {
            Err(ServiceError::Realize(e)) => {
                assert_eq!(e.kind, ErrorKind::Superseded);
                assert!(e.message.contains("another process"), "{e}");
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("two writers on one partial file"),
        };
        refused(
            second
                .write(&dir, &path, &new_file(large, Delta::full()))
                .await
                .map(|_| ()),
        );
        // ...a small file's, gathered in memory, when it is written.
        let mut small = second
            .write(&dir, &path, &new_file(2, Delta::full()))
            .await
            .unwrap();
        small.write(Bytes::from_static(b"hi")).await.unwrap();
        refused(small.finish(blake3::hash(b"hi").into()).await.map(|_| ()));
        assert!(!root.path().join("f").exists());
        // Once the first is done, the file is free again.
        drop(writer);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match second
                .write(&dir, &path, &new_file(large, Delta::full()))
                .await
            {
                Ok(_) => break,
                Err(_) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await
                }
                Err(e) => panic!("still locked: {e}"),
            }
        }
    }

    #[tokio::test]
    async fn owners_are_kept_only_when_asked_and_allowed() {
        let (dir, path) = (DirectoryId::new("d").unwrap(), RelPath::new("f").unwrap());
        let nobody = crate::model::Owner {
            uid: 65534,
            gid: 65534,
        };
        let mut plan = new_file(2, Delta::full());
        plan.attributes.owner = Some(nobody);
        for keep in [false, true] {
            let root = tempfile::tempdir().unwrap();
            let service = LocalService::single(dir.clone(), root.path()).unwrap();
            let service = match (keep, service.keeping_owners()) {
                (false, _) => LocalService::single(dir.clone(), root.path()).unwrap(),
                (true, Ok(keeping)) => keeping,
                (true, Err(e)) => {
                    assert!(!rustix::process::geteuid().is_root());
                    assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
                    return;
                }
            };
            let mut writer = service.write(&dir, &path, &plan).await.unwrap();
            writer.write(Bytes::from_static(b"hi")).await.unwrap();
            writer.finish(blake3::hash(b"hi").into()).await.unwrap();
            let metadata = fs::metadata(root.path().join("f")).unwrap();
            let owner = (metadata.uid(), metadata.gid());
            if keep {
                assert_eq!(owner, (nobody.uid, nobody.gid));
            } else {
                let me = (rustix::process::geteuid(), rustix::process::getegid());
                assert_eq!(owner, (me.0.as_raw(), me.1.as_raw()));
            }
        }
    }

    #[tokio::test]
    async fn a_write_deeper_than_a_listing_descends_is_refused_and_creates_nothing() {
        let root = tempfile::tempdir().unwrap();
        let dir = DirectoryId::new("d").unwrap();
        let service = LocalService::single(dir.clone(), root.path()).unwrap();
        let depth = listing::DEFAULT_LISTING_DEPTH;
        let deepest = RelPath::new(vec!["d"; depth].join("/")).unwrap();
        let plan = new_file(2, Delta::full());
        let mut writer = service.write(&dir, &deepest, &plan).await.unwrap();
        writer.write(Bytes::from_static(b"hi")).await.unwrap();
        writer.finish(blake3::hash(b"hi").into()).await.unwrap();
        fs::remove_dir_all(root.path().join("d")).unwrap();
        let deeper = RelPath::new(vec!["d"; depth + 1].join("/")).unwrap();
        match service.write(&dir, &deeper, &plan).await {
            Err(ServiceError::Realize(e)) => {
                assert_eq!(e.kind, ErrorKind::InvalidPath, "{e}");
                assert!(e.message.contains("listing_depth"), "{e}");
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
        assert_eq!(fs::read_dir(root.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn abandoned_partials_are_collected_in_every_root_and_any_age_is_safe() {
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        fs::write(one.path().join(".realize~part.a"), b"12").unwrap();
        fs::write(two.path().join(".realize~part.b"), b"345").unwrap();
        let service = LocalService::new([
            (DirectoryId::new("one").unwrap(), one.path().to_path_buf()),
            (DirectoryId::new("two").unwrap(), two.path().to_path_buf()),
        ])
        .unwrap();
        // Older than the clock can count back: nothing is that old.
        let none = service.collect_abandoned(Duration::MAX).await;
        assert_eq!(none, Collected::default());
        let all = service.collect_abandoned(Duration::ZERO).await;
        assert_eq!(
            all,
            Collected {
                files: 2,
                bytes: 5,
                put_back: 0
            }
        );
        assert_eq!(fs::read_dir(one.path()).unwrap().count(), 0);
        assert_eq!(fs::read_dir(two.path()).unwrap().count(), 0);
    }

    /// Bytes this process has read so far (`rchar` of `/proc/self/io`).
    fn bytes_read() -> u64 {
        let io = fs::read_to_string("/proc/self/io").unwrap();
        let line = io.lines().find(|l| l.starts_with("rchar:")).unwrap();
        line["rchar:".len()..].trim().parse().unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_small_file_is_finished_while_a_resume_of_a_huge_partial_file_is_hashed() {
        let root = tempfile::tempdir().unwrap();
        let dir = DirectoryId::new("d").unwrap();
        let service = LocalService::single(dir.clone(), root.path()).unwrap();
        // A resume that sends 10 bytes after a kept prefix of 4 GiB (sparse:
        // no disk is used, but every byte is read and hashed).
        let prefix = 4 << 30;
        let partial = fs::File::create(root.path().join(".realize~part.huge")).unwrap();
        partial.set_len(prefix).unwrap();
        let resume = Delta {
            patches: Vec::new(),
            offset: prefix,
        };
        let (finished, mut order) = tokio::sync::mpsc::unbounded_channel();
        let before = bytes_read();
        let huge = tokio::spawn({
            let (service, dir, finished) = (service.for_peer("a"), dir.clone(), finished.clone());
            async move {
                let path = RelPath::new("huge").unwrap();
                let plan = new_file(prefix + 10, resume);
                let mut writer = service.write(&dir, &path, &plan).await?;
                writer.write(Bytes::from_static(b"0123456789")).await?;
                // Not the file's hash: the whole file is hashed all the same.
                let result = writer.finish(blake3::hash(b"other").into()).await;
                finished.send("huge").unwrap();
                result
            }
        });
        // Once a gibibyte of the prefix has been read, another peer's small
        // file comes.
        while bytes_read() - before < 1 << 30 {
            assert!(!huge.is_finished(), "{:?}", huge.await);
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let small = service.for_peer("b");
        let path = RelPath::new("small").unwrap();
        let mut writer = small
            .write(&dir, &path, &new_file(2, Delta::full()))
            .await
            .unwrap();
        writer.write(Bytes::from_static(b"hi")).await.unwrap();
        writer.finish(blake3::hash(b"hi").into()).await.unwrap();
        finished.send("small").unwrap();
        match huge.await.unwrap() {
            Err(ServiceError::Realize(e)) => assert_eq!(e.kind, ErrorKind::HashMismatch, "{e}"),
            other => panic!("{:?}", other.map(|_| ())),
        }
        let order = [order.recv().await.unwrap(), order.recv().await.unwrap()];
        assert_eq!(order, ["small", "huge"]);
    }

    #[tokio::test]
    async fn a_resume_whose_partial_file_is_gone_leaves_no_empty_one() {
        let root = tempfile::tempdir().unwrap();
        let dir = DirectoryId::new("d").unwrap();
        let service = LocalService::single(dir.clone(), root.path()).unwrap();
        let path = RelPath::new("f").unwrap();
        let resume = Delta {
            patches: Vec::new(),
            offset: 100_000,
        };
        let refused = service.write(&dir, &path, &new_file(200_000, resume)).await;
        match refused {
            Err(ServiceError::Realize(e)) => assert_eq!(e.kind, ErrorKind::Protocol, "{e}"),
            other => panic!("{:?}", other.map(|_| ())),
        }
        assert_eq!(fs::read_dir(root.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn a_name_taken_by_the_same_content_meanwhile_is_success_and_leaves_no_partial() {
        let dir = DirectoryId::new("d").unwrap();
        let path = RelPath::new("f").unwrap();
        // A small file (written when it finishes) and a large one (written
        // as it arrives).
        for size in [4, 1 << 20] {
            let data = vec![b's'; size];
            let other = vec![b'o'; size];
            for (there, settled) in [(&data, true), (&other, false)] {
                let root = tempfile::tempdir().unwrap();
                let service = LocalService::single(dir.clone(), root.path()).unwrap();
                let mut writer = service
                    .write(&dir, &path, &new_file(size as u64, Delta::full()))
                    .await
                    .unwrap();
                writer.write(Bytes::from(data.clone())).await.unwrap();
                // An older transfer of the same file, left running by a
                // killed run, makes it final first; or a user saves another.
                fs::write(root.path().join("f"), there).unwrap();
                let result = writer.finish(blake3::hash(&data).into()).await;
                let partial = root.path().join(".realize~part.f");
                if settled {
                    result.unwrap();
                    assert!(!partial.exists(), "no partial file left beside it");
                    let mode = fs::metadata(root.path().join("f")).unwrap().mode() & 0o777;
                    assert_eq!(mode, 0o640, "it gets the planned attributes");
                    continue;
                }
                match result {
                    Err(ServiceError::Realize(e)) => {
                        assert_eq!(e.kind, ErrorKind::DestinationChanged)
                    }
                    other => panic!("{:?}", other.map(|_| ())),
                }
                // A large file's partial file was written before the name
                // was taken, and is kept for the next run; a small file's
                // bytes, still in memory then, were written nowhere.
                assert_eq!(partial.exists(), size > 4, "size {size}");
                assert_eq!(fs::read(root.path().join("f")).unwrap(), other.as_slice());
            }
        }
    }
}
