//! Which source files a move takes: `--include`/`--exclude` patterns (first
//! match wins) and `--min-age`, applied to the source listing before
//! anything is decided. Files left out are neither moved nor deleted, and
//! are not errors.
//!
//! A pattern is a glob matched against a path relative to the directory
//! root: `*` and `?` do not cross `/`, `**` does, `[abc]` and `{a,b}` work as
//! in a shell. A pattern without `/` matches a name at any depth; one with
//! `/` matches from the root (a leading `/` is allowed and changes nothing).
//! A pattern that ends in `/` matches directories only. A pattern that
//! matches a directory matches everything under it. The first rule that
//! matches a file (or a directory above it) decides; a file no rule
//! matches is moved.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use crate::model::{FileEntry, FileState, SkipReason, Skipped};
use crate::service::Listing;

/// Whether a rule takes the files it matches or leaves them out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `--include`: the files it matches are moved.
    Include,
    /// `--exclude`: the files it matches stay at the source.
    Exclude,
}

/// One `--include` or `--exclude` pattern, checked.
#[derive(Debug, Clone)]
pub struct Pattern {
    glob: Glob,
    directories_only: bool,
}

impl Pattern {
    /// Compiles `pattern` (see the module documentation for its rules).
    pub fn new(pattern: &str) -> Result<Self, String> {
        let directories_only = pattern.ends_with('/');
        let trimmed = pattern.trim_end_matches('/');
        let anchored = trimmed.contains('/');
        let trimmed = trimmed.trim_start_matches('/');
        if trimmed.is_empty() {
            return Err(format!(
                "{pattern:?} matches nothing: give a name or a path"
            ));
        }
        let full = match anchored {
            true => trimmed.to_string(),
            false => format!("**/{trimmed}"),
        };
        let glob = GlobBuilder::new(&full)
            .literal_separator(true)
            .build()
            .map_err(|e| format!("{pattern:?} is not a valid pattern: {}", e.kind()))?;
        Ok(Self {
            glob,
            directories_only,
        })
    }
}

/// Reads the patterns of an `--exclude-from` file: one a line; empty lines
/// and lines starting with `#` are ignored. A bad pattern is an error naming
/// its line.
pub(crate) fn patterns_in(text: &str) -> Result<Vec<Pattern>, String> {
    text.lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line.trim_end_matches('\r')))
        .filter(|(_, line)| !line.trim().is_empty() && !line.starts_with('#'))
        .map(|(number, line)| Pattern::new(line).map_err(|e| format!("line {number}: {e}")))
        .collect()
}

/// Why a source file is not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeftOut {
    /// An `--exclude` rule matched it first.
    Excluded,
    /// It was modified less than `--min-age` ago.
    TooRecent,
}

/// Which source files a move takes.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Every rule's glob, in command-line order.
    globs: GlobSet,
    /// Each rule's action and whether it matches directories only.
    rules: Vec<(Action, bool)>,
    /// Files modified more recently than this are left out.
    min_age: Option<Duration>,
}

impl Selection {
    /// A selection of the files that `rules` (first match wins) take and
    /// that are at least `min_age` old.
    pub fn new(rules: Vec<(Action, Pattern)>, min_age: Option<Duration>) -> Result<Self, String> {
        let mut globs = GlobSetBuilder::new();
        for (_, pattern) in &rules {
            globs.add(pattern.glob.clone());
        }
        let globs = globs
            .build()
            .map_err(|e| format!("cannot compile the patterns: {e}"))?;
        let rules = rules
            .into_iter()
            .map(|(action, pattern)| (action, pattern.directories_only))
            .collect();
        Ok(Self {
            globs,
            rules,
            min_age,
        })
    }

    /// Splits the source `listing` into what the move takes and what it
    /// leaves out, judging ages against `now`. Skipped entries (symlinks,
    /// unreadable directories, ...) under an excluded path are dropped too.
    pub fn apply(&self, listing: Listing, now: SystemTime) -> (Listing, Vec<(String, LeftOut)>) {
        let mut left_out = Vec::new();
        let mut taken = Listing::default();
        for file in listing.files {
            match self.leaves_out(&file, now) {
                Some(why) => left_out.push((file.path.to_string(), why)),
                None => taken.files.push(file),
            }
        }
        for skipped in listing.skipped {
            match self.excludes(&skipped.path, is_directory(&skipped)) {
                true => left_out.push((skipped.path, LeftOut::Excluded)),
                false => taken.skipped.push(skipped),
            }
        }
        (taken, left_out)
    }

    fn leaves_out(&self, file: &FileEntry, now: SystemTime) -> Option<LeftOut> {
        if self.excludes(file.path.as_str(), false) {
            return Some(LeftOut::Excluded);
        }
        let min_age = self.min_age?;
        let recent = now.checked_sub(min_age).unwrap_or(UNIX_EPOCH);
        let recent_ns = recent
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        (file.state == FileState::Final && file.stamp.modified_ns > recent_ns)
            .then_some(LeftOut::TooRecent)
    }

    /// Whether the first rule matching `path` (a directory if `is_dir`) or a
    /// directory above it excludes it.
    fn excludes(&self, path: &str, is_dir: bool) -> bool {
        if self.rules.is_empty() {
            return false;
        }
        let directories = path
            .match_indices('/')
            .map(|(end, _)| &path[..end])
            .chain(is_dir.then_some(path));
        let mut first = directories
            .flat_map(|dir| self.globs.matches(dir))
            .min()
            .unwrap_or(usize::MAX);
        if !is_dir {
            let as_file = self.globs.matches(path).into_iter();
            let as_file = as_file.filter(|&rule| !self.rules[rule].1).min();
            first = first.min(as_file.unwrap_or(usize::MAX));
        }
        self.rules
            .get(first)
            .is_some_and(|(action, _)| *action == Action::Exclude)
    }
}

/// Whether a skipped entry is a directory.
fn is_directory(skipped: &Skipped) -> bool {
    matches!(
        skipped.reason,
        SkipReason::EmptyDirectory | SkipReason::Unreadable | SkipReason::TooDeep
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FileStamp, Owner, RelPath};

    /// A final file at `path` modified at `modified_ns`.
    fn entry(path: &str, modified_ns: i64) -> FileEntry {
        FileEntry {
            path: RelPath::new(path).unwrap(),
            state: FileState::Final,
            stamp: FileStamp {
                size: 1,
                modified_ns,
                inode: 1,
                changed_ns: modified_ns,
                mode: 0o644,
                owner: Owner { uid: 0, gid: 0 },
            },
        }
    }

    fn selection(rules: &[(Action, &str)]) -> Selection {
        let rules = rules
            .iter()
            .map(|(action, p)| (*action, Pattern::new(p).unwrap()))
            .collect();
        Selection::new(rules, None).unwrap()
    }

    fn taken(selection: &Selection, paths: &[&str]) -> Vec<String> {
        let files = paths.iter().map(|p| entry(p, 0)).collect();
        let listing = Listing {
            files,
            skipped: Vec::new(),
        };
        let (taken, _) = selection.apply(listing, SystemTime::now());
        taken.files.iter().map(|f| f.path.to_string()).collect()
    }

    const TREE: &[&str] = &[
        "a.jpg",
        "notes.txt",
        "photos/b.jpg",
        "photos/raw/c.cr2",
        "photos/raw/d.jpg",
        "cache/e.jpg",
        "x/cache/f.txt",
        "x/cache.txt",
    ];

    #[test]
    fn a_name_matches_at_any_depth_and_a_star_stays_in_its_component() {
        use Action::*;
        let jpg = selection(&[(Exclude, "*.jpg")]);
        assert_eq!(
            taken(&jpg, TREE),
            [
                "notes.txt",
                "photos/raw/c.cr2",
                "x/cache/f.txt",
                "x/cache.txt"
            ]
        );
        let top = selection(&[(Exclude, "/*.jpg")]);
        assert_eq!(taken(&top, TREE).len(), TREE.len() - 1, "only the root's");
        assert!(taken(&top, TREE).contains(&"photos/b.jpg".into()));
        let in_photos = selection(&[(Exclude, "photos/*.jpg")]);
        assert!(!taken(&in_photos, TREE).contains(&"photos/b.jpg".into()));
        assert!(taken(&in_photos, TREE).contains(&"photos/raw/d.jpg".into()));
        let deep = selection(&[(Exclude, "photos/**/*.jpg")]);
        assert!(!taken(&deep, TREE).contains(&"photos/raw/d.jpg".into()));
    }

    #[test]
    fn a_directory_takes_everything_under_it_and_a_trailing_slash_only_directories() {
        use Action::*;
        let cache = selection(&[(Exclude, "cache")]);
        assert_eq!(taken(&cache, TREE).len(), TREE.len() - 2);
        let dirs = selection(&[(Exclude, "cache*/")]);
        let kept = taken(&dirs, TREE);
        assert!(kept.contains(&"x/cache.txt".into()), "{kept:?}");
        assert!(!kept.contains(&"x/cache/f.txt".into()), "{kept:?}");
    }

    #[test]
    fn the_first_matching_rule_wins() {
        use Action::*;
        let only_jpg = selection(&[(Include, "*.jpg"), (Exclude, "*")]);
        assert_eq!(
            taken(&only_jpg, TREE),
            ["a.jpg", "photos/b.jpg", "photos/raw/d.jpg", "cache/e.jpg"]
        );
        let reversed = selection(&[(Exclude, "*"), (Include, "*.jpg")]);
        assert!(taken(&reversed, TREE).is_empty());
        let but_raw = selection(&[(Include, "photos/raw/d.jpg"), (Exclude, "raw/")]);
        let kept = taken(&but_raw, TREE);
        assert!(kept.contains(&"photos/raw/d.jpg".into()));
        assert!(!kept.contains(&"photos/raw/c.cr2".into()));
    }

    #[test]
    fn bad_patterns_and_pattern_files() {
        for bad in ["", "/", "a[", "{a,b"] {
            assert!(Pattern::new(bad).is_err(), "{bad:?}");
        }
        let patterns = patterns_in("# comment\n\n*.tmp\r\ncache/\n").unwrap();
        assert_eq!(patterns.len(), 2);
        let err = patterns_in("ok\n\n[x\n").unwrap_err();
        assert!(err.starts_with("line 3:"), "{err}");
    }

    #[test]
    fn files_younger_than_min_age_are_left_out() {
        let selection = Selection::new(Vec::new(), Some(Duration::from_secs(600))).unwrap();
        let now = SystemTime::now();
        let at = |age: u64| {
            let modified = (now - Duration::from_secs(age)).duration_since(UNIX_EPOCH);
            entry("f", modified.unwrap().as_nanos() as i64)
        };
        assert_eq!(selection.leaves_out(&at(60), now), Some(LeftOut::TooRecent));
        assert_eq!(selection.leaves_out(&at(3600), now), None);
    }
}
