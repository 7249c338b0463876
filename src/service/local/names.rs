//! The names realize gives its own files, which no user file can take.
//!
//! Every name that begins with [`RESERVED_PREFIX`] belongs to realize: the
//! partial file of `DIR/NAME` is `DIR/.realize~part.NAME`, and a file
//! being deleted is briefly `DIR/.realize~del.<random>.NAME`, so that one a
//! crash left there can be put back under its name. A listing
//! reports a user's file with such a name as skipped, and no request may
//! name one, so a partial file is never confused with a user's file, and
//! a peer cannot make one transfer write into another's partial file.
//!
//! Partial files of versions before protocol 2 were named `.NAME.part`.
//! Such a name cannot be told from a user's file of the same name, so it
//! is now an ordinary file: moved like any other, never truncated or
//! renamed away.

use crate::model::MAX_COMPONENT_LEN;

/// The prefix of every name realize reserves for its own files.
pub(super) const RESERVED_PREFIX: &str = ".realize~";

/// The prefix of partial files: `.realize~part.NAME` stands for `NAME`.
const PARTIAL_PREFIX: &str = ".realize~part.";

/// The longest name that can have a partial file, in bytes.
pub(super) const LONGEST_WRITABLE_NAME: usize = MAX_COMPONENT_LEN - PARTIAL_PREFIX.len();

/// The prefix of source files being deleted.
const DELETING_PREFIX: &str = ".realize~del.";

/// What a directory entry's name says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NameKind<'a> {
    /// A user's file or directory.
    User,
    /// The partial file of the final name it holds.
    Partial(&'a str),
    /// Another name realize reserves (a delete interrupted by a crash, or a
    /// user's file that took a reserved name).
    Reserved,
}

/// Tells what `name` (one path component) is.
pub(super) fn kind_of(name: &str) -> NameKind<'_> {
    if !name.starts_with(RESERVED_PREFIX) {
        return NameKind::User;
    }
    match name.strip_prefix(PARTIAL_PREFIX) {
        Some(final_name) if is_user_name(final_name) => NameKind::Partial(final_name),
        _ => NameKind::Reserved,
    }
}

/// Whether `name` may be a user's file: not empty, not reserved.
pub(super) fn is_user_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with(RESERVED_PREFIX)
}

/// The partial file name of `name`, or `None` if it would exceed the
/// longest name a file system takes.
pub(super) fn partial_name(name: &str) -> Option<String> {
    let partial = format!("{PARTIAL_PREFIX}{name}");
    (partial.len() <= MAX_COMPONENT_LEN).then_some(partial)
}

/// Hex digits of the random part of a deleting name.
const DELETING_RANDOM_LEN: usize = 24;

/// A fresh private name for the file `name` about to be deleted; `salt`
/// makes it unique among the names this process hands out. It ends with
/// `name` when that fits the longest name a file system takes, so
/// [`deleted_name`] can tell where to put back a file whose delete a crash
/// interrupted.
pub(super) fn deleting_name(salt: u64, name: &str) -> String {
    let random = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let private = format!(
        "{DELETING_PREFIX}{:016x}{:08x}",
        random ^ salt.rotate_left(32),
        std::process::id()
    );
    let named = format!("{private}.{name}");
    match named.len() <= MAX_COMPONENT_LEN {
        true => named,
        false => private,
    }
}

/// The name a deleting name was made for (see [`deleting_name`]): a user's
/// file or a partial file. `None` for any other name.
pub(super) fn deleted_name(private: &str) -> Option<&str> {
    let rest = private.strip_prefix(DELETING_PREFIX)?;
    let (random, name) = rest.split_at_checked(DELETING_RANDOM_LEN)?;
    let name = name.strip_prefix('.')?;
    let hex = random.bytes().all(|b| b.is_ascii_hexdigit());
    let restorable = !matches!(kind_of(name), NameKind::Reserved) && !name.is_empty();
    (hex && restorable).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_user_partial_or_reserved() {
        assert_eq!(kind_of("a.txt"), NameKind::User);
        assert_eq!(kind_of(".a.txt.part"), NameKind::User, "the old form");
        assert_eq!(kind_of(".realize~part.a.txt"), NameKind::Partial("a.txt"));
        assert_eq!(kind_of(".realize~part."), NameKind::Reserved);
        assert_eq!(
            kind_of(".realize~part..realize~part.x"),
            NameKind::Reserved,
            "a partial of a reserved name"
        );
        assert_eq!(kind_of(".realize~del.0011"), NameKind::Reserved);
        assert_eq!(kind_of(".realize~"), NameKind::Reserved);
    }

    #[test]
    fn partial_names_round_trip_and_respect_the_length_limit() {
        let partial = partial_name("photo.jpg").unwrap();
        assert_eq!(kind_of(&partial), NameKind::Partial("photo.jpg"));
        let longest = "x".repeat(LONGEST_WRITABLE_NAME);
        assert!(partial_name(&longest).is_some());
        assert!(partial_name(&format!("{longest}x")).is_none());
    }

    #[test]
    fn deleting_names_are_reserved_and_differ() {
        let (a, b) = (deleting_name(1, "a.txt"), deleting_name(2, "a.txt"));
        assert_ne!(a, b);
        assert_eq!(kind_of(&a), NameKind::Reserved);
    }

    #[test]
    fn deleting_names_tell_the_name_they_were_made_for() {
        for name in ["a.txt", ".realize~part.a.txt", "x.y.z"] {
            assert_eq!(deleted_name(&deleting_name(7, name)), Some(name), "{name}");
        }
        let longest = "x".repeat(MAX_COMPONENT_LEN);
        let unnamed = deleting_name(7, &longest);
        assert!(unnamed.len() <= MAX_COMPONENT_LEN);
        assert_eq!(deleted_name(&unnamed), None, "too long to carry the name");
        for other in [
            ".realize~del.0011",
            ".realize~del.0123456789abcdef01234567.",
            ".realize~del.0123456789abcdef0123456z.a",
            ".realize~del.0123456789abcdef01234567..realize~del.x",
            "a.txt",
        ] {
            assert_eq!(deleted_name(other), None, "{other}");
        }
    }
}
