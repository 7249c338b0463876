//! A file's place under a root: its open parent directory and its name.
//!
//! Every operation here is relative to the parent's descriptor (see
//! `root`), and every decision about a file is made on the inode that
//! will be used, not on a path looked up again:
//!
//! - A partial file is opened once, locked, and must be a regular file
//!   with no other hard links; before its rename, the name must still
//!   hold the inode that was written and verified.
//! - The rename into place replaces nothing but what the client listed:
//!   `RENAME_NOREPLACE` when it listed nothing there; when it listed a
//!   file, that file is swapped out with `RENAME_EXCHANGE`, checked to be
//!   the listed one, and only then removed (or swapped back).
//! - A source file is deleted by locking it, renaming it to a private name,
//!   checking that the inode renamed is the one verified, and only then
//!   unlinking it; a file that took its place meanwhile is renamed back. A
//!   file a crash left under a private name is the only one there that no
//!   one locks: it is put back under its name.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::{
    AtFlags, FileType, FlockOperation, Gid, Mode, OFlags, RenameFlags, Timespec, Timestamps, Uid,
};
use rustix::io::Errno;

use super::names;
use crate::model::{Attributes, FileStamp, Hash, RelPath};
use crate::protocol::{ErrorKind, RealizeError};

/// A name in an open directory under a root.
#[derive(Debug)]
pub struct Place {
    /// Shared with the root when the file is at its top.
    dir: Arc<File>,
    name: String,
    /// `None` when the name is too long to have a partial file: the file
    /// can still be read and deleted, not written.
    partial: Option<String>,
    display: RelPath,
}

/// Flags every file is opened with: never through a symlink, never
/// blocking on a FIFO swapped in, never becoming a controlling terminal.
const FILE_FLAGS: OFlags = OFlags::NOFOLLOW
    .union(OFlags::NONBLOCK)
    .union(OFlags::CLOEXEC)
    .union(OFlags::NOCTTY);

impl Place {
    /// The place of `display`'s last component in `dir`.
    pub(super) fn new(dir: Arc<File>, display: RelPath) -> Self {
        let name = display.file_name().to_string();
        let partial = names::partial_name(&name);
        Self {
            dir,
            name,
            partial,
            display,
        }
    }

    /// The path as the client named it, for messages.
    pub fn display(&self) -> &RelPath {
        &self.display
    }

    /// The open parent directory.
    pub fn dir(&self) -> &File {
        &self.dir
    }

    /// The partial file's name in the parent directory; an error if the
    /// file's name is too long to have one.
    pub fn partial_name(&self) -> Result<&str, RealizeError> {
        self.partial.as_deref().ok_or_else(|| {
            let message = format!(
                "{}: name too long to have a partial file (at most {} bytes)",
                self.display,
                names::LONGEST_WRITABLE_NAME
            );
            RealizeError::new(ErrorKind::InvalidPath, message)
        })
    }

    /// Opens the final file to read it; it must be a regular file.
    pub fn open_final(&self) -> Result<(File, FileStamp), RealizeError> {
        self.open_regular(&self.name, OFlags::RDONLY)
    }

    /// Opens the partial file to read it; it must be a regular file.
    pub fn open_partial(&self) -> Result<(File, FileStamp), RealizeError> {
        self.open_regular(self.partial_name()?, OFlags::RDONLY)
    }

    /// The final file's stamp, or `None` if nothing is there; an error if
    /// something other than a regular file is.
    pub fn final_stamp(&self) -> Result<Option<FileStamp>, RealizeError> {
        match self.stamp_of(&self.name) {
            Ok(stamp) => Ok(Some(stamp)),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) if e.kind == ErrorKind::NotAFile => {
                Err(self
                    .not_a_file("something other than a regular file stands at the destination"))
            }
            Err(e) => Err(e),
        }
    }

    /// Opens (creating, private to this user) the partial file to write
    /// it, and locks it against writers in other processes for as long as
    /// it stays open. Refuses anything but a regular file with one link: a
    /// hard link planted at the partial name must not be written through.
    pub fn open_partial_for_write(&self) -> Result<Partial, RealizeError> {
        let partial = self.partial_name()?;
        loop {
            let flags = OFlags::RDWR | OFlags::CREATE | FILE_FLAGS;
            let fd = rustix::fs::openat(&self.dir, partial, flags, Mode::RUSR | Mode::WUSR)
                .map_err(|e| self.open_error(e))?;
            let file = File::from(fd);
            self.lock(&file)?;
            // After the lock: the length a writer before us left is final.
            let opened = Partial::of(file).map_err(|e| RealizeError::io(&self.display, &e))?;
            if !opened.is_file {
                return Err(self.not_a_file("its partial file is not a regular file"));
            }
            if opened.links > 1 {
                let message = format!(
                    "{}: the partial file has other hard links; refusing to write through it",
                    self.display
                );
                return Err(RealizeError::new(ErrorKind::InvalidPath, message));
            }
            // The other writer may have finished and renamed the file away
            // between our open and our lock: then start over on a new file.
            if self.partial_is(&opened, partial)? {
                return Ok(opened);
            }
        }
    }

    /// Locks `file` against writers in other processes; a `Superseded`
    /// error if one holds it.
    fn lock(&self, file: &File) -> Result<(), RealizeError> {
        match rustix::fs::flock(file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(()),
            Err(Errno::WOULDBLOCK) => {
                let message = format!(
                    "{}: another process is writing this file; run again later",
                    self.display
                );
                Err(RealizeError::new(ErrorKind::Superseded, message))
            }
            Err(e) => Err(RealizeError::io(&self.display, &e.into())),
        }
    }

    /// Removes the partial file `written`, which this writer opened, if its
    /// name still holds it.
    pub fn remove_partial(&self, written: &Partial) -> Result<(), RealizeError> {
        let partial = self.partial_name()?;
        if self.partial_is(written, partial)? {
            rustix::fs::unlinkat(&self.dir, partial, AtFlags::empty())
                .map_err(|e| RealizeError::io(&self.display, &e.into()))?;
        }
        Ok(())
    }

    /// Removes the partial file if it is abandoned: a regular file that no
    /// writer holds (its lock is free) and that has not changed since
    /// `changed_before`. Returns the bytes removed, or `None` when there is
    /// nothing to remove.
    ///
    /// Every check is made on the inode opened and locked, and the name is
    /// removed only once it is known to hold that inode: it is first
    /// renamed to a private name, as [`Place::delete`] does, so a file
    /// that takes the name meanwhile is never the one removed.
    pub fn collect_abandoned(
        &self,
        changed_before: SystemTime,
    ) -> Result<Option<u64>, RealizeError> {
        let partial = self.partial_name()?;
        let Some(file) = self.lock_regular(partial)? else {
            return Ok(None);
        };
        let io = |e: Errno| RealizeError::io(&self.display, &e.into());
        let locked = rustix::fs::fstat(&file).map_err(io)?;
        if changed_at(&locked) >= changed_before {
            return Ok(None);
        }
        between_check_and_use();
        let private = match self.rename_to_private_name(partial) {
            Ok(private) => private,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        let moved = rustix::fs::statat(&self.dir, private.as_str(), AtFlags::SYMLINK_NOFOLLOW);
        if moved.is_ok_and(|s| (s.st_dev, s.st_ino) == (locked.st_dev, locked.st_ino)) {
            rustix::fs::unlinkat(&self.dir, private.as_str(), AtFlags::empty()).map_err(io)?;
            return Ok(Some(locked.st_size as u64));
        }
        // Another file took the name after the checks: it goes back,
        // untouched.
        self.rename(&private, partial, RenameFlags::NOREPLACE)
            .map_err(|e| {
                let message = format!(
                    "{}: its partial file changed while it was collected; the version found \
                     is kept as '{private}' in the same directory ({e})",
                    self.display
                );
                RealizeError::new(ErrorKind::Io, message)
            })?;
        Ok(None)
    }

    /// Opens `name` and takes its lock without waiting, if it is a regular
    /// file that no one holds; `None` otherwise. Only what a `stat` shows
    /// to be a regular file is opened at all: opening a device may act on
    /// it.
    fn lock_regular(&self, name: &str) -> Result<Option<File>, RealizeError> {
        let io = |e: Errno| RealizeError::io(&self.display, &e.into());
        let named = match rustix::fs::statat(&self.dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        if FileType::from_raw_mode(named.st_mode) != FileType::RegularFile {
            return Ok(None);
        }
        let flags = OFlags::RDONLY | FILE_FLAGS;
        let file = match rustix::fs::openat(&self.dir, name, flags, Mode::empty()) {
            Ok(fd) => File::from(fd),
            // Gone, or swapped for a symlink, since the stat.
            Err(Errno::NOENT | Errno::LOOP) => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        let opened = rustix::fs::fstat(&file).map_err(io)?;
        if (opened.st_dev, opened.st_ino) != (named.st_dev, named.st_ino) {
            return Ok(None);
        }
        match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(file)),
            Err(Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(io(e)),
        }
    }

    /// Called when [`Place::commit`] found the name taken: if the file there
    /// holds exactly the verified content `expected`, the move is done (see
    /// [`Place::adopt_identical`]) and the partial file `written` goes.
    /// Returns whether it was so.
    pub fn settle_identical(
        &self,
        written: &Partial,
        expected: &Hash,
        attributes: &Attributes,
    ) -> Result<bool, RealizeError> {
        if !self.adopt_identical(expected, attributes)? {
            return Ok(false);
        }
        self.remove_partial(written)?;
        Ok(true)
    }

    /// If the file at the final name holds exactly the content `expected`
    /// (an older transfer of the same source finished first, as after a
    /// killed run), gives it `attributes` and makes it durable, with its
    /// name: the transfer that renamed it there may have been cut off
    /// before it synced the directory. Returns whether it was so.
    pub fn adopt_identical(
        &self,
        expected: &Hash,
        attributes: &Attributes,
    ) -> Result<bool, RealizeError> {
        let io = |e: std::io::Error| RealizeError::io(&self.display, &e);
        let Ok((mut file, _)) = self.open_regular(&self.name, OFlags::RDONLY) else {
            return Ok(false);
        };
        let mut hasher = blake3::Hasher::new();
        hasher.update_reader(&mut file).map_err(io)?;
        if Hash::from(hasher.finalize()) != *expected {
            return Ok(false);
        }
        apply_attributes(&file, attributes).map_err(io)?;
        file.sync_all().map_err(io)?;
        self.dir.sync_all().map_err(io)?;
        Ok(true)
    }

    /// Renames the written, verified and durable partial file `partial`
    /// into place, replacing nothing but what the client listed there:
    /// nothing (`replaces` is `None`), or the file of that stamp.
    pub fn commit(
        &self,
        written: &Partial,
        replaces: Option<&FileStamp>,
    ) -> Result<(), RealizeError> {
        let partial = self.partial_name()?;
        if !self.partial_is(written, partial)? {
            let message = format!(
                "{}: the partial file was replaced while it was written; nothing was renamed",
                self.display
            );
            return Err(RealizeError::new(ErrorKind::Io, message));
        }
        let current = self.final_stamp()?;
        between_check_and_use();
        match (replaces, current) {
            (_, None) => self.rename_into_free_name(partial),
            (Some(listed), Some(current)) if *listed == current => self.swap_in(partial, listed),
            (None, Some(_)) => Err(self.destination_changed("a file appeared there")),
            (Some(_), Some(_)) => Err(self.destination_changed("the file there changed")),
        }
    }

    /// Deletes the final file if it is still the one `expected` describes.
    pub fn delete(&self, expected: &FileStamp) -> Result<(), RealizeError> {
        let held = self.hold_for_delete(expected)?;
        between_check_and_use();
        let private = self
            .rename_to_private_name(&self.name)
            .map_err(|e| RealizeError::io(&self.display, &e.into()))?;
        let taken = self.stamp_of(&private);
        if taken.is_ok_and(|t| t.inode == expected.inode && t.size == expected.size) {
            let unlinked = rustix::fs::unlinkat(&self.dir, private.as_str(), AtFlags::empty());
            drop(held);
            return unlinked.map_err(|e| RealizeError::io(&self.display, &e.into()));
        }
        // Another file took the name between the check and the rename (an
        // editor's atomic save): it goes back where it was, untouched.
        self.put_back(&private)?;
        Err(self.source_changed())
    }

    /// Opens the file about to be deleted and locks it for the delete: a
    /// file under a deleting name that no one locks is one a crash left
    /// there, which [`Place::put_back_interrupted_delete`] puts back. Fails
    /// if it is not the `expected` file, or if another process holds a
    /// lock on it (it is in use: it is kept).
    fn hold_for_delete(&self, expected: &FileStamp) -> Result<File, RealizeError> {
        let (file, stamp) = self.open_regular(&self.name, OFlags::RDONLY)?;
        if stamp != *expected {
            return Err(self.source_changed());
        }
        match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(file),
            Err(Errno::WOULDBLOCK) => {
                let message = format!(
                    "{}: another process holds a lock on it, so it may still be in use; \
                     it is kept (run again once it is released)",
                    self.display
                );
                Err(RealizeError::new(ErrorKind::SourceChanged, message))
            }
            // No locks on this file system (NFS without its lock daemon):
            // the delete goes on. A put-back that races it finds the file
            // unlocked and renames it back; the delete then fails with the
            // file kept.
            Err(Errno::NOLCK | Errno::OPNOTSUPP | Errno::INVAL) => Ok(file),
            Err(e) => Err(RealizeError::io(&self.display, &e.into())),
        }
    }

    /// Puts the file left under the deleting name `private` (in this
    /// place's directory) back under the name it was made for, this
    /// place's final or partial name, if no delete holds it (the process
    /// deleting it died between its rename and its unlink) and the name is
    /// free. Returns whether it was put back; a file whose name is taken
    /// stays where it is, with a warning.
    pub fn put_back_interrupted_delete(&self, private: &str) -> Result<bool, RealizeError> {
        let deleted = names::deleted_name(private);
        let Some(name) = [Some(self.name.as_str()), self.partial.as_deref()]
            .into_iter()
            .flatten()
            .find(|name| Some(*name) == deleted)
        else {
            return Ok(false);
        };
        let Some(_held) = self.lock_regular(private)? else {
            return Ok(false);
        };
        match self.rename(private, name, RenameFlags::NOREPLACE) {
            Ok(()) => Ok(true),
            Err(Errno::EXIST) => {
                tracing::warn!(
                    path = %self.display,
                    "a delete interrupted by a crash left a file as {private}, and its name \
                     is taken again: both are kept"
                );
                Ok(false)
            }
            Err(e) => Err(RealizeError::io(&self.display, &e.into())),
        }
    }

    /// Gives the final file `attributes` if it is still the one `expected`
    /// describes, and makes them durable.
    pub fn set_attributes(
        &self,
        expected: &FileStamp,
        attributes: &Attributes,
    ) -> Result<(), RealizeError> {
        let (file, stamp) = self.open_regular(&self.name, OFlags::RDONLY)?;
        if stamp != *expected {
            return Err(self.destination_changed("the file there changed"));
        }
        apply_attributes(&file, attributes).map_err(|e| RealizeError::io(&self.display, &e))?;
        file.sync_all()
            .map_err(|e| RealizeError::io(&self.display, &e))
    }

    fn rename_into_free_name(&self, partial: &str) -> Result<(), RealizeError> {
        let result = self.rename(partial, &self.name, RenameFlags::NOREPLACE);
        match result {
            Err(Errno::EXIST) => Err(self.destination_changed("a file appeared there")),
            Err(Errno::INVAL) => self.link_into_free_name(partial),
            other => other.map_err(|e| RealizeError::io(&self.display, &e.into())),
        }
    }

    /// For file systems without `RENAME_NOREPLACE` (NFS): a hard link
    /// fails just as atomically when the name is taken.
    fn link_into_free_name(&self, partial: &str) -> Result<(), RealizeError> {
        let io = |e: Errno| RealizeError::io(&self.display, &e.into());
        match rustix::fs::linkat(
            &self.dir,
            partial,
            &self.dir,
            self.name.as_str(),
            AtFlags::empty(),
        ) {
            Ok(()) => rustix::fs::unlinkat(&self.dir, partial, AtFlags::empty()).map_err(io),
            Err(Errno::EXIST) => Err(self.destination_changed("a file appeared there")),
            Err(e) => {
                let message = format!(
                    "{}: this file system can neither rename without replacing nor link ({e}); \
                     refusing to risk overwriting a file",
                    self.display
                );
                Err(RealizeError::new(ErrorKind::Io, message))
            }
        }
    }

    /// Swaps the partial file with the final file `listed`, then removes
    /// the file swapped out if it is the one listed, or swaps back.
    fn swap_in(&self, partial: &str, listed: &FileStamp) -> Result<(), RealizeError> {
        let io = |e: Errno| RealizeError::io(&self.display, &e.into());
        match self.rename(partial, &self.name, RenameFlags::EXCHANGE) {
            Ok(()) => {}
            // No exchange on this file system (NFS, FAT): the stamp was
            // checked just above, which is the best it allows.
            Err(Errno::INVAL) => {
                return self
                    .rename(partial, &self.name, RenameFlags::empty())
                    .map_err(io)
            }
            Err(e) => return Err(io(e)),
        }
        let swapped_out = self.stamp_of(partial);
        let is_listed = swapped_out.is_ok_and(|s| {
            (s.inode, s.size, s.modified_ns) == (listed.inode, listed.size, listed.modified_ns)
        });
        if is_listed {
            return rustix::fs::unlinkat(&self.dir, partial, AtFlags::empty()).map_err(io);
        }
        self.rename(partial, &self.name, RenameFlags::EXCHANGE)
            .map_err(io)?;
        Err(self.destination_changed("the file there changed"))
    }

    /// Renames `from` to a fresh private name, which it returns. The
    /// caller holds the lock of `from`'s file while it is under that name.
    fn rename_to_private_name(&self, from: &str) -> Result<String, Errno> {
        static SALT: AtomicU64 = AtomicU64::new(0);
        loop {
            let private = names::deleting_name(SALT.fetch_add(1, Ordering::Relaxed), from);
            match self.rename(from, &private, RenameFlags::NOREPLACE) {
                Ok(()) => return Ok(private),
                Err(Errno::EXIST) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Renames `private` back to the final name; if that is taken again,
    /// leaves it where it is and says so.
    fn put_back(&self, private: &str) -> Result<(), RealizeError> {
        match self.rename(private, &self.name, RenameFlags::NOREPLACE) {
            Ok(()) => Ok(()),
            Err(e) => {
                let message = format!(
                    "{}: changed while it was deleted; the version found is kept as '{private}' \
                     in the same directory ({e})",
                    self.display
                );
                Err(RealizeError::new(ErrorKind::SourceChanged, message))
            }
        }
    }

    fn rename(&self, from: &str, to: &str, flags: RenameFlags) -> Result<(), Errno> {
        rustix::fs::renameat_with(&self.dir, from, &self.dir, to, flags)
    }

    /// Whether the partial name holds `written`'s inode.
    fn partial_is(&self, written: &Partial, partial: &str) -> Result<bool, RealizeError> {
        let named = rustix::fs::statat(&self.dir, partial, AtFlags::SYMLINK_NOFOLLOW);
        Ok(named.is_ok_and(|s| (s.st_dev, s.st_ino) == (written.device, written.inode)))
    }

    /// The stamp of `name`, which must be a regular file. One `stat` of
    /// the name in the open parent, never following a symlink: the same
    /// lookup an open would make, without a descriptor to open and close.
    fn stamp_of(&self, name: &str) -> Result<FileStamp, RealizeError> {
        let stat = rustix::fs::statat(&self.dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| self.open_error(e))?;
        self.check_regular(FileType::from_raw_mode(stat.st_mode))?;
        Ok(FileStamp::from_stat(&stat))
    }

    /// Opens `name` with `flags` (never following a symlink) and checks
    /// that it is a regular file.
    fn open_regular(&self, name: &str, flags: OFlags) -> Result<(File, FileStamp), RealizeError> {
        let fd: OwnedFd = rustix::fs::openat(&self.dir, name, flags | FILE_FLAGS, Mode::empty())
            .map_err(|e| self.open_error(e))?;
        let file = File::from(fd);
        let metadata = file
            .metadata()
            .map_err(|e| RealizeError::io(&self.display, &e))?;
        self.check_regular(FileType::from_raw_mode(metadata.mode()))?;
        Ok((file, FileStamp::from_metadata(&metadata)))
    }

    /// Refuses a symlink, and anything else that is not a regular file.
    fn check_regular(&self, file_type: FileType) -> Result<(), RealizeError> {
        match file_type {
            FileType::RegularFile => Ok(()),
            FileType::Symlink => Err(self.symlink()),
            _ => Err(self.not_a_file("not a regular file")),
        }
    }

    fn open_error(&self, e: Errno) -> RealizeError {
        match e {
            Errno::LOOP => self.symlink(),
            e => RealizeError::io(&self.display, &e.into()),
        }
    }

    fn symlink(&self) -> RealizeError {
        let message = format!(
            "{}: is a symbolic link, which is never followed",
            self.display
        );
        RealizeError::new(ErrorKind::InvalidPath, message)
    }

    fn not_a_file(&self, what: &str) -> RealizeError {
        let message = format!("{}: {what}", self.display);
        RealizeError::new(ErrorKind::NotAFile, message)
    }

    fn source_changed(&self) -> RealizeError {
        let message = format!(
            "{}: changed since it was read; kept for the next run",
            self.display
        );
        RealizeError::new(ErrorKind::SourceChanged, message)
    }

    /// The error of a write whose final name changed after the listing:
    /// `what` happened there.
    pub fn destination_changed(&self, what: &str) -> RealizeError {
        let message = format!(
            "{}: {what} after the destination was listed; it is kept, and so is the source \
             (run again to compare them anew)",
            self.display
        );
        RealizeError::new(ErrorKind::DestinationChanged, message)
    }
}

/// An open partial file and what its one `fstat` said when it was opened
/// (and locked). The device and inode are the file's for as long as it
/// stays open: held open, the inode cannot be freed and its number given
/// to another file, so they tell whether a name still holds this file
/// without another `fstat` each time.
#[derive(Debug)]
pub struct Partial {
    file: File,
    device: u64,
    inode: u64,
    is_file: bool,
    links: u64,
    opened_len: u64,
}

impl Partial {
    /// Wraps `file`, taking its `fstat`.
    pub fn of(file: File) -> std::io::Result<Self> {
        let metadata = file.metadata()?;
        Ok(Self {
            device: metadata.dev(),
            inode: metadata.ino(),
            is_file: metadata.is_file(),
            links: metadata.nlink(),
            opened_len: metadata.len(),
            file,
        })
    }

    /// The device holding the file.
    pub fn device(&self) -> u64 {
        self.device
    }

    /// The file's length when it was opened.
    pub fn opened_len(&self) -> u64 {
        self.opened_len
    }
}

impl std::ops::Deref for Partial {
    type Target = File;

    fn deref(&self) -> &File {
        &self.file
    }
}

#[cfg(test)]
thread_local! {
    /// What a test runs between a check and the operation it guards, to
    /// make the race happen there.
    static RACE: std::cell::RefCell<Option<Box<dyn FnMut()>>> = std::cell::RefCell::new(None);
}

/// Where another process may act between a check and its use; tests
/// act there.
fn between_check_and_use() {
    #[cfg(test)]
    RACE.with(|race| {
        if let Some(act) = race.borrow_mut().as_mut() {
            act();
        }
    });
}

/// When the inode of `stat` last changed: its data, its attributes or its
/// names. Unlike the modification time, which a verified partial file takes
/// from its source, no call can set it.
fn changed_at(stat: &rustix::fs::Stat) -> SystemTime {
    let since_epoch = Duration::new(stat.st_ctime.max(0) as u64, stat.st_ctime_nsec as u32);
    UNIX_EPOCH + since_epoch
}

/// Gives `file` the permission bits and modification time of `attributes`,
/// as [`Attributes::as_kept`] says.
pub(super) fn apply_attributes(file: &File, attributes: &Attributes) -> std::io::Result<()> {
    let fd = file.as_fd();
    let kept = attributes.as_kept();
    if let Some(owner) = kept.owner {
        // Before the mode: changing the owner may clear mode bits.
        let (uid, gid) = (Uid::from_raw(owner.uid), Gid::from_raw(owner.gid));
        rustix::fs::fchown(fd, Some(uid), Some(gid))?;
    }
    rustix::fs::fchmod(fd, Mode::from_raw_mode(kept.mode))?;
    let modified = Timespec {
        tv_sec: kept.modified_ns.div_euclid(1_000_000_000),
        tv_nsec: kept.modified_ns.rem_euclid(1_000_000_000) as _,
    };
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        last_modification: modified,
    };
    rustix::fs::futimens(fd, &times)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::path::Path;

    use super::*;
    use crate::service::local::root::Root;

    /// A root with `f` resolved in it.
    fn place(dir: &Path) -> Place {
        Root::open(dir)
            .unwrap()
            .resolve(&RelPath::new("f").unwrap())
            .unwrap()
    }

    /// Writes `data` into the partial file of `place`, as a writer would.
    fn partial(place: &Place, data: &[u8]) -> Partial {
        let file = place.open_partial_for_write().unwrap();
        (&*file).write_all(data).unwrap();
        file
    }

    /// Runs `act` at the next race point of this thread.
    fn race(act: impl FnMut() + 'static) {
        RACE.with(|race| *race.borrow_mut() = Some(Box::new(act)));
    }

    /// Replaces `dir/f` with a new file holding `data`, as an editor's
    /// atomic save does.
    fn atomic_save(dir: &Path, data: &'static [u8]) -> impl FnMut() + 'static {
        let dir = dir.to_path_buf();
        move || {
            std::fs::write(dir.join("saved.tmp"), data).unwrap();
            std::fs::rename(dir.join("saved.tmp"), dir.join("f")).unwrap();
        }
    }

    fn read(dir: &Path, name: &str) -> Vec<u8> {
        std::fs::read(dir.join(name)).unwrap()
    }

    fn stamp(dir: &Path) -> FileStamp {
        FileStamp::from_metadata(&std::fs::symlink_metadata(dir.join("f")).unwrap())
    }

    #[test]
    fn a_file_appearing_at_the_final_name_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let place = place(dir.path());
        let file = partial(&place, b"moved");
        race(atomic_save(dir.path(), b"the user's file"));
        let err = place.commit(&file, None).unwrap_err();
        assert_eq!(err.kind, ErrorKind::DestinationChanged, "{err}");
        assert_eq!(read(dir.path(), "f"), b"the user's file");
        assert_eq!(read(dir.path(), ".realize~part.f"), b"moved", "kept");
    }

    #[test]
    fn a_listed_file_replaced_before_the_swap_is_swapped_back() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"listed").unwrap();
        let listed = stamp(dir.path());
        let place = place(dir.path());
        let file = partial(&place, b"moved");
        race(atomic_save(dir.path(), b"saved after the listing"));
        let err = place.commit(&file, Some(&listed)).unwrap_err();
        assert_eq!(err.kind, ErrorKind::DestinationChanged, "{err}");
        assert_eq!(read(dir.path(), "f"), b"saved after the listing");
        assert_eq!(read(dir.path(), ".realize~part.f"), b"moved");
    }

    #[test]
    fn a_listed_file_is_replaced_and_nothing_else_stays() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"listed").unwrap();
        let listed = stamp(dir.path());
        let place = place(dir.path());
        let file = partial(&place, b"moved");
        place.commit(&file, Some(&listed)).unwrap();
        assert_eq!(read(dir.path(), "f"), b"moved");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_file_changed_since_the_listing_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"listed").unwrap();
        let listed = stamp(dir.path());
        std::fs::write(dir.path().join("f"), b"edited in place").unwrap();
        let place = place(dir.path());
        let file = partial(&place, b"moved");
        let err = place.commit(&file, Some(&listed)).unwrap_err();
        assert_eq!(err.kind, ErrorKind::DestinationChanged, "{err}");
        assert_eq!(read(dir.path(), "f"), b"edited in place");
    }

    #[test]
    fn deleting_keeps_a_file_saved_over_the_source_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"verified").unwrap();
        let verified = stamp(dir.path());
        race(atomic_save(dir.path(), b"saved after the verify"));
        let err = place(dir.path()).delete(&verified).unwrap_err();
        assert_eq!(err.kind, ErrorKind::SourceChanged, "{err}");
        assert_eq!(read(dir.path(), "f"), b"saved after the verify");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["f"], "no private name left behind");
    }

    #[test]
    fn deleting_removes_exactly_the_verified_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"verified").unwrap();
        let verified = stamp(dir.path());
        place(dir.path()).delete(&verified).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_source_someone_holds_a_lock_on_is_not_deleted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"in use").unwrap();
        let verified = stamp(dir.path());
        let user = File::open(dir.path().join("f")).unwrap();
        rustix::fs::flock(&user, FlockOperation::LockShared).unwrap();
        let err = place(dir.path()).delete(&verified).unwrap_err();
        assert_eq!(err.kind, ErrorKind::SourceChanged, "{err}");
        assert!(err.message.contains("holds a lock"), "{err}");
        assert_eq!(read(dir.path(), "f"), b"in use");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    /// Leaves `f` under a deleting name, as a delete killed between its
    /// rename and its unlink does; returns that name.
    fn interrupted_delete(dir: &Path, data: &[u8]) -> String {
        let private = names::deleting_name(0, "f");
        std::fs::write(dir.join(&private), data).unwrap();
        private
    }

    #[test]
    fn a_delete_interrupted_by_a_crash_is_put_back_under_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let private = interrupted_delete(dir.path(), b"verified");
        assert!(place(dir.path())
            .put_back_interrupted_delete(&private)
            .unwrap());
        assert_eq!(read(dir.path(), "f"), b"verified");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_delete_in_progress_is_left_to_finish() {
        let dir = tempfile::tempdir().unwrap();
        let private = interrupted_delete(dir.path(), b"being deleted");
        let deleting = File::open(dir.path().join(&private)).unwrap();
        rustix::fs::flock(&deleting, FlockOperation::LockExclusive).unwrap();
        assert!(!place(dir.path())
            .put_back_interrupted_delete(&private)
            .unwrap());
        assert_eq!(read(dir.path(), &private), b"being deleted");
        assert!(!dir.path().join("f").exists());
    }

    #[test]
    fn an_interrupted_delete_whose_name_is_taken_again_keeps_both() {
        let dir = tempfile::tempdir().unwrap();
        let private = interrupted_delete(dir.path(), b"verified");
        std::fs::write(dir.path().join("f"), b"a new file").unwrap();
        assert!(!place(dir.path())
            .put_back_interrupted_delete(&private)
            .unwrap());
        assert_eq!(read(dir.path(), "f"), b"a new file");
        assert_eq!(read(dir.path(), &private), b"verified");
    }

    #[test]
    fn a_symlink_or_a_directory_has_no_stamp() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("f")).unwrap();
        let err = place(dir.path()).final_stamp().unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidPath, "{err}");
        assert!(err.message.contains("symbolic link"), "{err}");
        std::fs::remove_file(dir.path().join("f")).unwrap();
        std::fs::create_dir(dir.path().join("f")).unwrap();
        let err = place(dir.path()).final_stamp().unwrap_err();
        assert_eq!(err.kind, ErrorKind::NotAFile, "{err}");
        assert!(place(dir.path()).delete(&stamp(dir.path())).is_err());
        assert!(dir.path().join("f").is_dir());
    }

    #[test]
    fn attributes_are_kept_without_privilege_bits() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("f")).unwrap();
        let attributes = Attributes {
            modified_ns: -1_500_000_001,
            mode: 0o4751,
            owner: None,
        };
        apply_attributes(&file, &attributes).unwrap();
        let kept = stamp(dir.path());
        assert_eq!((kept.modified_ns, kept.mode), (-1_500_000_001, 0o751));
    }

    /// Runs a collection of `f`'s partial file with everything changed
    /// before now counted as abandoned.
    fn collect(dir: &Path) -> Option<u64> {
        let now = std::time::SystemTime::now() + std::time::Duration::from_secs(1);
        place(dir).collect_abandoned(now).unwrap()
    }

    #[test]
    fn an_abandoned_partial_file_is_collected_a_recent_or_held_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let written = partial(&place(dir.path()), b"arrived");
        // Held by its writer (this open file keeps its lock).
        assert_eq!(collect(dir.path()), None);
        drop(written);
        // Changed after the limit.
        let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        assert_eq!(
            place(dir.path()).collect_abandoned(an_hour_ago).unwrap(),
            None
        );
        assert_eq!(read(dir.path(), ".realize~part.f"), b"arrived");
        assert_eq!(collect(dir.path()), Some(7));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert_eq!(collect(dir.path()), None, "nothing left");
    }

    #[test]
    fn only_a_regular_file_is_collected_never_what_a_symlink_points_to() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let partial = dir.path().join(".realize~part.f");
        std::fs::write(outside.path().join("t"), b"outside").unwrap();
        std::os::unix::fs::symlink(outside.path().join("t"), &partial).unwrap();
        assert_eq!(collect(dir.path()), None);
        assert!(partial.symlink_metadata().is_ok());
        std::fs::remove_file(&partial).unwrap();
        std::fs::create_dir(&partial).unwrap();
        assert_eq!(collect(dir.path()), None);
        assert!(partial.is_dir());
        std::fs::remove_dir(&partial).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &partial,
            FileType::Fifo,
            Mode::RUSR | Mode::WUSR,
            0,
        )
        .unwrap();
        assert_eq!(collect(dir.path()), None);
        assert!(partial.symlink_metadata().is_ok());
        assert_eq!(read(outside.path(), "t"), b"outside");
    }

    #[test]
    fn a_partial_file_replaced_after_its_checks_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        drop(partial(&place(dir.path()), b"abandoned"));
        // A writer makes a new partial file at the name between the checks
        // of the old one and its removal.
        let path = dir.path().to_path_buf();
        race(move || {
            std::fs::write(path.join("new.tmp"), b"being written").unwrap();
            std::fs::rename(path.join("new.tmp"), path.join(".realize~part.f")).unwrap();
        });
        assert_eq!(collect(dir.path()), None);
        assert_eq!(read(dir.path(), ".realize~part.f"), b"being written");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_name_too_long_for_a_partial_file_is_read_and_deleted_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let name = "n".repeat(250);
        std::fs::write(dir.path().join(&name), b"long").unwrap();
        let place = Root::open(dir.path())
            .unwrap()
            .resolve(&RelPath::new(name.clone()).unwrap())
            .unwrap();
        let (_, stamp) = place.open_final().unwrap();
        let err = place.open_partial_for_write().unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidPath);
        assert!(err.message.contains("name too long"), "{err}");
        place.delete(&stamp).unwrap();
        assert!(!dir.path().join(&name).exists());
    }
}
