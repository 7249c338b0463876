//! Completing a written partial file: verifying it, making it durable and
//! renaming it into place; or, for a transfer whose bytes went nowhere,
//! settling on the file another transfer put there (in [`verify`]).
//!
//! A large file's thread completes its file alone ([`make_final`]); the
//! finisher completes small files in batches, with [`verify`] and
//! [`commit`] per file and syncs shared by the batch.

use std::io::{Read, Seek, SeekFrom};

use super::durability::DirSyncer;
use super::partial::{WriteTarget, Written, WrittenPartial};
use super::place::{apply_attributes, Partial};
use crate::model::{Hash, RelPath};
use crate::protocol::{ErrorKind, RealizeError};

/// Checks that the whole written file hashes to `expected` and gives it
/// its final metadata; returns it, verified but not yet durable. A
/// transfer whose bytes went nowhere is settled instead (see [`settle`]):
/// nothing is left to do then, and `None` says so.
pub(super) fn verify(
    written: Written,
    target: &WriteTarget,
    expected: Hash,
) -> Result<Option<Partial>, RealizeError> {
    let display = target.display();
    let WrittenPartial { file, hasher } = match written {
        Written::Partial(written) => *written,
        Written::Nowhere => return settle(target, &expected).map(|()| None),
    };
    let actual = whole_hash(&file, hasher, target.size(), display)?;
    if actual != expected {
        return Err(RealizeError::new(
            ErrorKind::HashMismatch,
            format!("{display}: received data hashes to {actual}, the source to {expected}"),
        ));
    }
    apply_attributes(&file, &target.plan.attributes).map_err(|e| RealizeError::io(display, &e))?;
    Ok(Some(file))
}

/// Verifies the file (see [`verify`]), makes its data and metadata durable,
/// renames it into place (see [`commit`]) and makes the rename durable.
pub(super) fn make_final(
    written: Written,
    target: &WriteTarget,
    expected: Hash,
    syncer: &DirSyncer,
) -> Result<Hash, RealizeError> {
    let io = |e| RealizeError::io(target.display(), &e);
    let Some(file) = verify(written, target, expected)? else {
        return Ok(expected);
    };
    file.sync_all().map_err(io)?;
    commit(&file, target, &expected)?;
    syncer.rename_done(target.place.dir()).map_err(io)?;
    Ok(expected)
}

/// Renames the partial file into place (see `Place::commit`). A name
/// taken meanwhile by the very content verified (an older transfer of the
/// same file, left running by a killed command, finished first) is success
/// too: see `Place::settle_identical`.
pub(super) fn commit(
    file: &Partial,
    target: &WriteTarget,
    expected: &Hash,
) -> Result<(), RealizeError> {
    let place = &target.place;
    match place.commit(file, target.plan.replaces.as_ref()) {
        Err(e)
            if e.kind == ErrorKind::DestinationChanged
                && place.settle_identical(file, expected, &target.plan.attributes)? =>
        {
            Ok(())
        }
        other => other,
    }
}

/// Completes a transfer whose bytes went nowhere because another transfer
/// put a file at its name meanwhile: done if that file holds exactly
/// `expected` (see `Place::adopt_identical`), else `DestinationChanged`.
/// The bytes received are not needed: the file there is what is checked.
fn settle(target: &WriteTarget, expected: &Hash) -> Result<(), RealizeError> {
    let place = &target.place;
    if place.adopt_identical(expected, &target.plan.attributes)? {
        return Ok(());
    }
    Err(place.destination_changed("a file appeared there"))
}

/// The hash of the whole written file: the running hash, or a read-back
/// when blocks inside the file were patched.
fn whole_hash(
    file: &Partial,
    hasher: Option<blake3::Hasher>,
    size: u64,
    display: &RelPath,
) -> Result<Hash, RealizeError> {
    if let Some(hasher) = hasher {
        return Ok(hasher.finalize().into());
    }
    let io = |e| RealizeError::io(display, &e);
    let mut file: &std::fs::File = file;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut hasher = blake3::Hasher::new();
    let mut reader =
        std::io::BufReader::with_capacity(crate::protocol::CHUNK_SIZE, file).take(size);
    std::io::copy(&mut reader, &mut hasher).map_err(io)?;
    Ok(hasher.finalize().into())
}
