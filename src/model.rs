//! The vocabulary shared by every layer: directory ids, safe relative paths,
//! file entries, stamps and hashes.
//!
//! Every type that arrives from the network validates itself while it is
//! decoded, so a [`RelPath`] in hand is always safe to join to a root.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest path accepted anywhere, in bytes (Linux `PATH_MAX`).
pub const MAX_PATH_LEN: usize = 4096;
/// Longest single path component accepted, in bytes (Linux `NAME_MAX`).
pub const MAX_COMPONENT_LEN: usize = 255;
/// Longest directory id accepted, in bytes.
pub const MAX_DIRECTORY_ID_LEN: usize = 64;

/// Why a path or directory id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidName {
    /// The string is empty.
    #[error("it is empty")]
    Empty,
    /// The string is longer than allowed.
    #[error("it is longer than {0} bytes")]
    TooLong(usize),
    /// A path starts with `/`.
    #[error("it is absolute; paths must be relative to the directory root")]
    Absolute,
    /// A path has a `..` component.
    #[error("it contains '..'")]
    ParentComponent,
    /// A path has an empty or `.` component (`a//b`, `a/./b`, `a/`).
    #[error("it is not normalised (empty or '.' component)")]
    NotNormalised,
    /// The string contains a NUL byte.
    #[error("it contains a NUL byte")]
    Nul,
    /// A directory id uses characters other than letters, digits, `-`, `_`, `.`.
    #[error("directory ids use only letters, digits, '-', '_' and '.'")]
    BadDirectoryId,
}

/// The name under which a daemon serves one local root, such as `photos`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DirectoryId(String);

impl DirectoryId {
    /// Validates `id`: 1 to 64 bytes of letters, digits, `-`, `_` or `.`.
    pub fn new(id: impl Into<String>) -> Result<Self, InvalidName> {
        let id = id.into();
        if id.is_empty() {
            return Err(InvalidName::Empty);
        }
        if id.len() > MAX_DIRECTORY_ID_LEN {
            return Err(InvalidName::TooLong(MAX_DIRECTORY_ID_LEN));
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if !id.chars().all(allowed) || id == "." || id == ".." {
            return Err(InvalidName::BadDirectoryId);
        }
        Ok(Self(id))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DirectoryId {
    type Error = InvalidName;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<DirectoryId> for String {
    fn from(value: DirectoryId) -> Self {
        value.0
    }
}

impl fmt::Display for DirectoryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for DirectoryId {
    type Err = InvalidName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// A normalised path relative to a directory root: `/`-separated, no empty,
/// `.` or `..` components, no NUL, not absolute, bounded in length.
///
/// Being a `RelPath` says nothing about symlinks on disk: the service that
/// resolves it against a root checks those.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RelPath(String);

impl RelPath {
    /// Validates `path` as a safe relative path.
    pub fn new(path: impl Into<String>) -> Result<Self, InvalidName> {
        let path = path.into();
        if path.is_empty() {
            return Err(InvalidName::Empty);
        }
        if path.len() > MAX_PATH_LEN {
            return Err(InvalidName::TooLong(MAX_PATH_LEN));
        }
        if path.contains('\0') {
            return Err(InvalidName::Nul);
        }
        if path.starts_with('/') {
            return Err(InvalidName::Absolute);
        }
        for component in path.split('/') {
            match component {
                ".." => return Err(InvalidName::ParentComponent),
                "" | "." => return Err(InvalidName::NotNormalised),
                c if c.len() > MAX_COMPONENT_LEN => {
                    return Err(InvalidName::TooLong(MAX_COMPONENT_LEN))
                }
                _ => {}
            }
        }
        Ok(Self(path))
    }

    /// The path as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path's components, in order.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The last component.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// The path of the parent directory, or `None` at the top level.
    pub fn parent(&self) -> Option<&str> {
        self.0.rsplit_once('/').map(|(parent, _)| parent)
    }
}

impl TryFrom<String> for RelPath {
    type Error = InvalidName;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<RelPath> for String {
    fn from(value: RelPath) -> Self {
        value.0
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Size, modification time, inode, change time and permission bits of a
/// file: if any differs between two observations, the file changed in
/// between (the change time also catches a replacement that keeps size and
/// mtime).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    /// Length in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub modified_ns: i64,
    /// Inode number.
    pub inode: u64,
    /// Status change time (ctime), nanoseconds since the Unix epoch.
    pub changed_ns: i64,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owning user and group.
    pub owner: Owner,
}

/// `n` as an `i64`, whatever integer type this platform's `stat` uses.
fn signed<T: TryInto<i64>>(n: T) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

/// A file's numeric owning user and group ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// User id (`st_uid`).
    pub uid: u32,
    /// Group id (`st_gid`).
    pub gid: u32,
}

impl FileStamp {
    /// Reads the stamp out of file metadata.
    pub fn from_metadata(metadata: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        let ns = |secs: i64, nanos: i64| secs.saturating_mul(1_000_000_000).saturating_add(nanos);
        Self {
            size: metadata.len(),
            modified_ns: ns(metadata.mtime(), metadata.mtime_nsec()),
            inode: metadata.ino(),
            changed_ns: ns(metadata.ctime(), metadata.ctime_nsec()),
            mode: metadata.mode() & 0o7777,
            owner: Owner {
                uid: metadata.uid(),
                gid: metadata.gid(),
            },
        }
    }

    /// Reads the stamp out of a `stat` taken relative to a directory (no
    /// descriptor of the file needed).
    pub fn from_stat(stat: &rustix::fs::Stat) -> Self {
        let ns = |secs: i64, nanos: i64| secs.saturating_mul(1_000_000_000).saturating_add(nanos);
        Self {
            size: u64::try_from(stat.st_size).unwrap_or(0),
            modified_ns: ns(signed(stat.st_mtime), signed(stat.st_mtime_nsec)),
            inode: stat.st_ino,
            changed_ns: ns(signed(stat.st_ctime), signed(stat.st_ctime_nsec)),
            mode: stat.st_mode & 0o7777,
            owner: Owner {
                uid: stat.st_uid,
                gid: stat.st_gid,
            },
        }
    }

    /// The metadata a move keeps of this file.
    pub fn attributes(&self) -> Attributes {
        Attributes {
            modified_ns: self.modified_ns,
            mode: self.mode,
            owner: Some(self.owner),
        }
    }
}

/// The metadata a move gives the destination file: its modification time
/// and permission bits, as `rsync -a` and `rclone move` keep them, and its
/// owner where the destination is set to keep owners.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attributes {
    /// Modification time, nanoseconds since the Unix epoch.
    pub modified_ns: i64,
    /// Permission bits; the destination keeps only `0o777` of them.
    pub mode: u32,
    /// The source file's owner. A destination keeps it only when it runs
    /// as root and is set to (`keep_owner`); otherwise files belong to the
    /// user it runs as.
    pub owner: Option<Owner>,
}

impl Attributes {
    /// The permission bits a destination gives a file: read, write and
    /// execute, never set-user-id, set-group-id or sticky, so a file a peer
    /// sends never runs with the receiver's rights.
    pub const KEPT_MODE: u32 = 0o777;

    /// These attributes as the destination keeps them.
    pub fn as_kept(self) -> Self {
        Self {
            mode: self.mode & Self::KEPT_MODE,
            ..self
        }
    }

    /// Whether `other` has the same modification time and permission bits.
    /// Owners are left out: whether a destination keeps them is its own
    /// setting, which the command does not know.
    pub fn same_time_and_mode(&self, other: &Attributes) -> bool {
        (self.modified_ns, self.mode) == (other.modified_ns, other.mode)
    }
}

/// What a write brings to the destination, and what it may replace there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WritePlan {
    /// The complete file's size.
    pub size: u64,
    /// Which bytes arrive: patches of the kept partial file, then
    /// everything from the offset.
    pub delta: Delta,
    /// What the command listed at the final name: `None` for nothing, or
    /// the stamp of the file it means to replace. The file becomes final
    /// only if the name still holds exactly that.
    pub replaces: Option<FileStamp>,
    /// The metadata the final file gets before it is made durable.
    pub attributes: Attributes,
}

/// Whether a listed file is complete or still being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileState {
    /// The file is at its final name.
    Final,
    /// Only the partial file exists: an interrupted or ongoing transfer.
    Partial,
}

/// One regular file found under a directory root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// The final path, also for a partial file.
    pub path: RelPath,
    /// Final or partial.
    pub state: FileState,
    /// Size and modification time when listed.
    pub stamp: FileStamp,
}

/// Why a listing passed over something under the root. Its serde name
/// (`symlink`, `empty_directory`, …) is the `kind` the `--json` report gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// A symbolic link: never followed, never moved.
    Symlink,
    /// A socket, FIFO or device.
    Special,
    /// A directory with nothing in it.
    EmptyDirectory,
    /// A name that is not valid UTF-8 or not a valid relative path.
    UnsupportedName,
    /// A name realize reserves for its own files (see `docs/internals.md`).
    ReservedName,
    /// A partial file of an interrupted transfer into this directory.
    PartialFile,
    /// The entry vanished while the directory was listed.
    Vanished,
    /// The entry could not be read (permission denied, I/O error): what is
    /// under it stays behind.
    Unreadable,
    /// A directory deeper than the listing descends (`listing_depth`): what
    /// is under it stays behind.
    TooDeep,
}

impl SkipReason {
    /// Whether the entry holds data the move leaves behind against the
    /// user's wish: an unreadable or too deep directory may hold files to
    /// move.
    pub fn leaves_data_behind(self) -> bool {
        matches!(self, SkipReason::Unreadable | SkipReason::TooDeep)
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SkipReason::Symlink => "symbolic link",
            SkipReason::Special => "special file",
            SkipReason::EmptyDirectory => "empty directory",
            SkipReason::UnsupportedName => "unsupported file name",
            SkipReason::ReservedName => "name reserved for realize's own files",
            SkipReason::PartialFile => "partial file of an interrupted transfer",
            SkipReason::Vanished => "vanished while listed",
            SkipReason::Unreadable => "unreadable",
            SkipReason::TooDeep => "too deep (more directory levels than listing_depth allows)",
        })
    }
}

/// Something under the root that is not moved, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// The path, lossily converted to UTF-8 for display.
    pub path: String,
    /// Why it is skipped.
    pub reason: SkipReason,
}

/// Where a served directory lives: the machine, its canonical path and its
/// device and inode. The command compares the two endpoints' identities and
/// refuses to move a directory into itself, however it is reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootIdentity {
    /// The machine id (`/etc/machine-id`), or the host name without one.
    pub machine: String,
    /// The root's canonical absolute path.
    pub path: String,
    /// The root directory's device number.
    pub device: u64,
    /// The root directory's inode number.
    pub inode: u64,
}

impl RootIdentity {
    /// Whether the two roots are on one machine and are the same directory,
    /// or one contains the other.
    pub fn overlaps(&self, other: &RootIdentity) -> bool {
        self.contains(other) || other.contains(self)
    }

    /// Whether `other` is on the same machine and is this directory or lies
    /// inside it.
    pub fn contains(&self, other: &RootIdentity) -> bool {
        self.machine == other.machine
            && ((self.device, self.inode) == (other.device, other.inode)
                || std::path::Path::new(&other.path).starts_with(&self.path))
    }
}

/// Most blocks a file is split into for resuming; bounds the block-hash
/// list a peer must hold and send.
pub const MAX_BLOCKS: u64 = 16_384;
/// Smallest block used to compare a partial file with its source.
pub const MIN_BLOCK_SIZE: u64 = 1 << 20;

/// The block size used to compare a partial file of a `size`-byte file:
/// 1 MiB, or larger so that no file has more than [`MAX_BLOCKS`] blocks.
pub fn block_size_for(size: u64) -> u64 {
    let needed = size.div_ceil(MAX_BLOCKS).max(MIN_BLOCK_SIZE);
    needed.next_power_of_two()
}

/// A run of bytes in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// Number of bytes.
    pub len: u64,
}

impl ByteRange {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.len)
    }
}

/// Which bytes of a file a transfer carries: first the `patches` (ranges
/// before `offset` whose content differs at the destination), then every byte
/// from `offset` to the end. A fresh copy is `offset` 0 with no patches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    /// Ranges to rewrite below `offset`, sorted, not overlapping.
    pub patches: Vec<ByteRange>,
    /// Where the tail starts; bytes before it are kept at the destination.
    pub offset: u64,
}

impl Delta {
    /// The whole file, from byte 0.
    pub fn full() -> Self {
        Self::default()
    }

    /// Bytes this transfer carries for a file of `size` bytes.
    pub fn payload_len(&self, size: u64) -> u64 {
        let patched: u64 = self.patches.iter().map(|p| p.len).sum();
        patched + size.saturating_sub(self.offset)
    }

    /// Checks the delta against a file of `size` bytes: offset within the
    /// file, patches sorted, disjoint, non-empty, below `offset`, and at most
    /// [`MAX_BLOCKS`] of them.
    pub fn validate(&self, size: u64) -> Result<(), String> {
        if self.offset > size {
            return Err(format!("offset {} is past the size {size}", self.offset));
        }
        if self.patches.len() as u64 > MAX_BLOCKS {
            return Err(format!("more than {MAX_BLOCKS} patches"));
        }
        let mut previous_end = 0;
        for patch in &self.patches {
            if patch.len == 0 || patch.start < previous_end || patch.end() > self.offset {
                return Err(format!(
                    "patch {patch:?} is empty, unsorted or past the offset"
                ));
            }
            previous_end = patch.end();
        }
        Ok(())
    }

    /// The parts of `[start, start + len)` this transfer carries, in order.
    pub fn carried(&self, start: u64, len: u64) -> impl Iterator<Item = ByteRange> + '_ {
        let end = start + len;
        let tail = ByteRange {
            start: self.offset,
            len: u64::MAX - self.offset,
        };
        self.patches
            .iter()
            .copied()
            .chain(std::iter::once(tail))
            .filter_map(move |r| {
                let (s, e) = (r.start.max(start), r.end().min(end));
                (s < e).then(|| ByteRange {
                    start: s,
                    len: e - s,
                })
            })
    }
}

/// A BLAKE3 hash of file content.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// Hashes `data` in one call.
    pub fn of(data: &[u8]) -> Self {
        Self(*blake3::hash(data).as_bytes())
    }
}

impl From<blake3::Hash> for Hash {
    fn from(value: blake3::Hash) -> Self {
        Self(*value.as_bytes())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_is_the_same_from_a_stat_and_from_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"stamped").unwrap();
        let stat = rustix::fs::stat(&path).unwrap();
        let metadata = std::fs::metadata(&path).unwrap();
        assert_eq!(
            FileStamp::from_stat(&stat),
            FileStamp::from_metadata(&metadata)
        );
    }

    #[test]
    fn relpath_accepts_normal_paths() {
        for ok in [
            "a",
            "a/b",
            "dir with space/é.txt",
            ".hidden",
            "a/..b",
            "a/b..",
        ] {
            assert!(RelPath::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn relpath_refuses_hostile_paths() {
        let cases = [
            ("", InvalidName::Empty),
            ("/etc/passwd", InvalidName::Absolute),
            ("..", InvalidName::ParentComponent),
            ("a/../../b", InvalidName::ParentComponent),
            ("a//b", InvalidName::NotNormalised),
            ("./a", InvalidName::NotNormalised),
            ("a/", InvalidName::NotNormalised),
            ("a\0b", InvalidName::Nul),
        ];
        for (path, expected) in cases {
            assert_eq!(RelPath::new(path), Err(expected), "{path:?}");
        }
        assert!(matches!(
            RelPath::new("x".repeat(MAX_PATH_LEN + 1)),
            Err(InvalidName::TooLong(_))
        ));
        assert!(matches!(
            RelPath::new("x".repeat(256)),
            Err(InvalidName::TooLong(255))
        ));
    }

    #[test]
    fn relpath_parts() {
        let p = RelPath::new("a/b/c.txt").unwrap();
        assert_eq!(p.file_name(), "c.txt");
        assert_eq!(p.parent(), Some("a/b"));
        assert_eq!(RelPath::new("c").unwrap().parent(), None);
    }

    #[test]
    fn roots_overlap_when_equal_or_nested_on_one_machine() {
        let root = |machine: &str, path: &str, inode| RootIdentity {
            machine: machine.into(),
            path: path.into(),
            device: 1,
            inode,
        };
        assert!(root("m", "/data", 1).overlaps(&root("m", "/data", 1)));
        assert!(root("m", "/data", 1).overlaps(&root("m", "/data/photos", 2)));
        assert!(root("m", "/data/photos", 2).overlaps(&root("m", "/data", 1)));
        assert!(
            root("m", "/mnt/bind", 7).overlaps(&root("m", "/data", 7)),
            "same inode"
        );
        assert!(!root("m", "/data", 1).overlaps(&root("m", "/database", 3)));
        assert!(!root("m", "/data", 1).overlaps(&root("other", "/data", 1)));
    }

    #[test]
    fn block_size_bounds_the_block_count() {
        assert_eq!(block_size_for(0), MIN_BLOCK_SIZE);
        assert_eq!(block_size_for(200 << 20), MIN_BLOCK_SIZE);
        let huge = 1u64 << 40;
        assert!(huge.div_ceil(block_size_for(huge)) <= MAX_BLOCKS);
    }

    #[test]
    fn delta_carries_patches_then_tail() {
        let delta = Delta {
            patches: vec![
                ByteRange { start: 10, len: 5 },
                ByteRange { start: 30, len: 10 },
            ],
            offset: 50,
        };
        assert!(delta.validate(100).is_ok());
        assert_eq!(delta.payload_len(100), 65);
        let carried: Vec<_> = delta.carried(0, 100).map(|r| (r.start, r.len)).collect();
        assert_eq!(carried, [(10, 5), (30, 10), (50, 50)]);
        let carried: Vec<_> = delta.carried(12, 25).map(|r| (r.start, r.len)).collect();
        assert_eq!(carried, [(12, 3), (30, 7)]);
        assert!(Delta::full().carried(0, 0).next().is_none());
    }

    #[test]
    fn delta_validation() {
        let patch = |start, len| ByteRange { start, len };
        let bad = [
            Delta {
                patches: vec![],
                offset: 11,
            },
            Delta {
                patches: vec![patch(5, 0)],
                offset: 10,
            },
            Delta {
                patches: vec![patch(5, 3), patch(6, 1)],
                offset: 10,
            },
            Delta {
                patches: vec![patch(8, 5)],
                offset: 10,
            },
        ];
        for delta in bad {
            assert!(delta.validate(10).is_err(), "{delta:?}");
        }
    }

    #[test]
    fn directory_id_validation() {
        assert!(DirectoryId::new("photos-2024_v1.0").is_ok());
        for bad in ["", "a/b", "..", "a b", "é"] {
            assert!(DirectoryId::new(bad).is_err(), "{bad:?}");
        }
    }
}
