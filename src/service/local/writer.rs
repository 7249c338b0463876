//! Writing a file into its partial file on a blocking thread, hashing what is
//! written, then making it durable and final.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::durability::DirSyncer;
use super::root::FilePaths;
use crate::model::{Hash, RelPath};
use crate::protocol::{ErrorKind, RealizeError};
use crate::service::{FileWriter, ServiceError};

/// Chunks queued for the writing thread.
const WRITE_BEHIND: usize = 4;

enum Command {
    Data(Bytes),
    Finish(Hash, oneshot::Sender<Result<Hash, RealizeError>>),
}

/// What a [`LocalWriter`] writes and how it completes.
pub struct WriteTarget {
    /// The file's paths on disk.
    pub paths: FilePaths,
    /// The path as the client named it, for messages.
    pub display: RelPath,
    /// Where the new bytes start.
    pub offset: u64,
    /// The complete file's size.
    pub size: u64,
}

/// A partial file being written by a blocking thread.
pub struct LocalWriter {
    commands: mpsc::Sender<Command>,
    display: RelPath,
}

impl LocalWriter {
    /// Opens the partial file (creating it, keeping bytes before `offset`,
    /// dropping any after) and starts the writing thread.
    pub async fn open(target: WriteTarget, syncer: Arc<DirSyncer>) -> Result<Self, RealizeError> {
        let display = target.display.clone();
        let (file, hasher) = tokio::task::spawn_blocking({
            let paths = target.paths.clone();
            let display = display.clone();
            move || prepare(&paths, &display, target.offset)
        })
        .await
        .map_err(|e| RealizeError::new(ErrorKind::Io, e.to_string()))??;
        let (commands, rx) = mpsc::channel(WRITE_BEHIND);
        tokio::task::spawn_blocking(move || write_loop(file, hasher, target, rx, &syncer));
        Ok(Self { commands, display })
    }
}

fn prepare(
    paths: &FilePaths,
    display: &RelPath,
    offset: u64,
) -> Result<(File, blake3::Hasher), RealizeError> {
    if let Ok(m) = fs::symlink_metadata(&paths.final_path) {
        if !m.is_file() {
            return Err(RealizeError::new(
                ErrorKind::NotAFile,
                format!("{display}: something other than a regular file stands at the destination"),
            ));
        }
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&paths.partial_path)
        .map_err(|e| RealizeError::io(display, &e))?;
    let mut hasher = blake3::Hasher::new();
    let mut prefix = (&mut file).take(offset);
    let kept =
        std::io::copy(&mut prefix, &mut hasher).map_err(|e| RealizeError::io(display, &e))?;
    if kept != offset {
        return Err(RealizeError::new(
            ErrorKind::Protocol,
            format!("{display}: cannot resume at {offset}, the partial file has {kept} bytes"),
        ));
    }
    let io = |e| RealizeError::io(display, &e);
    file.set_len(offset).map_err(io)?;
    file.seek(SeekFrom::Start(offset)).map_err(io)?;
    Ok((file, hasher))
}

fn write_loop(
    mut file: File,
    mut hasher: blake3::Hasher,
    target: WriteTarget,
    mut rx: mpsc::Receiver<Command>,
    syncer: &DirSyncer,
) {
    let display = &target.display;
    let expected_len = target.size.saturating_sub(target.offset);
    let mut written = 0u64;
    // After the first failure, data is drained unwritten and the failure is
    // the answer to `Finish`. The partial file keeps what was written.
    let mut failure: Option<RealizeError> = None;
    while let Some(command) = rx.blocking_recv() {
        match command {
            Command::Data(_) if failure.is_some() => {}
            Command::Data(chunk) => {
                written += chunk.len() as u64;
                if written > expected_len {
                    failure = Some(RealizeError::new(
                        ErrorKind::Protocol,
                        format!("{display}: received more than the announced {expected_len} bytes"),
                    ));
                    continue;
                }
                hasher.update(&chunk);
                if let Err(e) = file.write_all(&chunk) {
                    failure = Some(RealizeError::io(display, &e));
                }
            }
            Command::Finish(expected, reply) => {
                let result = match failure {
                    Some(failure) => Err(failure),
                    None if written != expected_len => Err(RealizeError::new(
                        ErrorKind::Protocol,
                        format!("{display}: expected {expected_len} bytes, received {written}"),
                    )),
                    None => complete(&file, &target, expected, hasher.finalize().into(), syncer),
                };
                let _ = reply.send(result);
                return;
            }
        }
    }
    // The sender went away without finishing: the partial file stays for a
    // later resume.
}

/// Verifies, fsyncs, renames into place and makes the rename durable.
fn complete(
    file: &File,
    target: &WriteTarget,
    expected: Hash,
    actual: Hash,
    syncer: &DirSyncer,
) -> Result<Hash, RealizeError> {
    let display = &target.display;
    if actual != expected {
        return Err(RealizeError::new(
            ErrorKind::HashMismatch,
            format!("{display}: received data hashes to {actual}, the source to {expected}"),
        ));
    }
    let io = |e| RealizeError::io(display, &e);
    file.sync_data().map_err(io)?;
    fs::rename(&target.paths.partial_path, &target.paths.final_path).map_err(io)?;
    syncer.rename_done(&target.paths.parent).map_err(io)?;
    Ok(actual)
}

#[async_trait]
impl FileWriter for LocalWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<(), ServiceError> {
        self.commands
            .send(Command::Data(chunk))
            .await
            .map_err(|_| self.stopped())
    }

    async fn finish(self: Box<Self>, expected: Hash) -> Result<Hash, ServiceError> {
        let (reply, result) = oneshot::channel();
        self.commands
            .send(Command::Finish(expected, reply))
            .await
            .map_err(|_| self.stopped())?;
        Ok(result.await.map_err(|_| self.stopped())??)
    }
}

impl LocalWriter {
    fn stopped(&self) -> ServiceError {
        RealizeError::new(
            ErrorKind::Io,
            format!("{}: the writing thread stopped", self.display),
        )
        .into()
    }
}
