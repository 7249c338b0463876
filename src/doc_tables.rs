//! The tables of the documentation, read by the tests that check them
//! against the code: a constant lives in the code, and the docs that state
//! it fail a test when they drift from it.

use std::path::Path;

/// The body rows of every table in `doc` (a path from the crate's root)
/// whose header starts with the cells `header`, one `Vec` of trimmed cells
/// per row.
pub(crate) fn tables(doc: &str, header: &[&str]) -> Vec<Vec<Vec<String>>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(doc);
    let text = std::fs::read_to_string(&path).expect("the documentation is readable");
    let mut tables = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let is_header = line.starts_with('|')
            && cells(line).iter().take(header.len()).eq(header.iter())
            && lines.peek().is_some_and(|next| next.starts_with("|---"));
        if !is_header {
            continue;
        }
        lines.next();
        let mut rows = Vec::new();
        while let Some(row) = lines.next_if(|row| row.starts_with('|')) {
            rows.push(cells(row));
        }
        tables.push(rows);
    }
    tables
}

/// The body rows of the one table in `doc` whose header starts with the
/// cells `header`.
pub(crate) fn table(doc: &str, header: &[&str]) -> Vec<Vec<String>> {
    let mut found = tables(doc, header);
    assert_eq!(found.len(), 1, "{doc}: tables headed {header:?}");
    found.remove(0)
}

/// The row of `table` whose first cell is `key`.
pub(crate) fn row<'a>(table: &'a [Vec<String>], key: &str) -> &'a [String] {
    table
        .iter()
        .find(|row| row[0] == key)
        .unwrap_or_else(|| panic!("no row {key:?}"))
}

/// A cell's text without code and emphasis marks.
pub(crate) fn plain(cell: &str) -> String {
    cell.replace("**", "").replace('`', "")
}

/// The first code span of a cell (the text between its first two
/// backticks).
pub(crate) fn first_code(cell: &str) -> Option<&str> {
    let mut spans = cell.split('`');
    spans.next()?;
    spans.next()
}

/// Fails unless `documented` and `in_code` hold the same items, naming
/// those only one of them holds.
pub(crate) fn assert_same<T: Ord + std::fmt::Debug>(
    what: &str,
    documented: Vec<T>,
    in_code: Vec<T>,
) {
    let documented: std::collections::BTreeSet<T> = documented.into_iter().collect();
    let in_code: std::collections::BTreeSet<T> = in_code.into_iter().collect();
    let only_documented: Vec<&T> = documented.difference(&in_code).collect();
    let only_in_code: Vec<&T> = in_code.difference(&documented).collect();
    assert!(
        only_documented.is_empty() && only_in_code.is_empty(),
        "{what}\n  documented, not in the code: {only_documented:#?}\n  in the code, not documented: {only_in_code:#?}"
    );
}

/// `n` with its thousands separated by commas, as the docs write numbers.
pub(crate) fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// The cells of one table row; `\|` is a pipe inside a cell.
fn cells(line: &str) -> Vec<String> {
    let line = line.trim().trim_start_matches('|');
    let line = line.strip_suffix('|').unwrap_or(line);
    line.replace("\\|", "\u{0}")
        .split('|')
        .map(|cell| cell.replace('\u{0}', "|").trim().to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/logging.md` §5 lists every event the code logs, with its level
    /// (`trace` aside), and no other.
    #[test]
    fn logging_md_lists_every_event() {
        let documented: Vec<(String, String)> = tables("docs/logging.md", &["Level", "Message"])
            .into_iter()
            .flatten()
            .map(|row| {
                let message = first_code(&row[1]).unwrap_or_else(|| panic!("{row:?}"));
                (row[0].clone(), shape(&placeholders_marked(message)))
            })
            .collect();
        let logged: Vec<(String, String)> = logged_events()
            .into_iter()
            .filter(|(level, _)| level != "trace")
            .map(|(level, message)| (level, shape(&message)))
            .collect();
        assert_same(
            "docs/logging.md §5 (`*` stands for a value)",
            documented,
            logged,
        );
    }

    /// The words `docs/logging.md` writes for a value in a message.
    const PLACEHOLDERS: &[&str] = &[
        "ERROR",
        "REASON",
        "N",
        "ID",
        "DURATION",
        "WHAT",
        "MESSAGE",
        "FINGERPRINT",
        "NAME",
    ];

    /// A documented message with its placeholder words written `{}`, as in
    /// the code.
    fn placeholders_marked(message: &str) -> String {
        message
            .split(' ')
            .map(|word| {
                let bare = word.trim_end_matches([':', ';', ',']);
                match PLACEHOLDERS.contains(&bare) {
                    true => word.replacen(bare, "{}", 1),
                    false => word.to_string(),
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// A message's fixed text: each `{…}` becomes one `*`, and what ends
    /// in values is cut before them.
    fn shape(message: &str) -> String {
        let mut shaped = String::new();
        let mut in_value = false;
        for c in message.chars() {
            match (c, in_value) {
                ('{', _) => in_value = true,
                ('}', true) => {
                    in_value = false;
                    if !shaped.ends_with('*') {
                        shaped.push('*');
                    }
                }
                (_, true) => {}
                (c, false) => shaped.push(c),
            }
        }
        shaped.trim_end_matches(['*', ' ']).to_string()
    }

    /// The level and message of every `tracing::LEVEL!` call under `src/`
    /// (this file's examples aside), the message being the call's last
    /// string literal.
    fn logged_events() -> Vec<(String, String)> {
        let mut events = Vec::new();
        let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs")
                    && !path.ends_with("src/doc_tables.rs")
                {
                    events.extend(events_in(&std::fs::read_to_string(&path).unwrap()));
                }
            }
        }
        events
    }

    /// The events logged in one source file.
    fn events_in(source: &str) -> Vec<(String, String)> {
        let mut events = Vec::new();
        for (at, _) in source.match_indices("tracing::") {
            let rest = &source[at + "tracing::".len()..];
            let Some((level, args)) = rest.split_once("!(") else {
                continue;
            };
            if ["trace", "debug", "info", "warn", "error"].contains(&level) {
                let message = last_literal(args).expect("an event has a message");
                events.push((level.to_string(), message));
            }
        }
        events
    }

    /// The last string literal among a macro call's arguments, `args`
    /// starting after its opening parenthesis.
    fn last_literal(args: &str) -> Option<String> {
        let mut chars = args.chars();
        let (mut depth, mut last) = (1, None);
        while let Some(c) = chars.next() {
            match c {
                '(' => depth += 1,
                ')' if depth == 1 => return last,
                ')' => depth -= 1,
                '"' => last = Some(literal(&mut chars)),
                _ => {}
            }
        }
        None
    }

    /// The text of a string literal whose opening quote was just read.
    fn literal(chars: &mut std::str::Chars) -> String {
        let mut text = String::new();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => match chars.next() {
                    Some('\n') => {
                        let rest = chars.as_str().trim_start();
                        *chars = rest.chars();
                    }
                    Some('n') => text.push('\n'),
                    Some(escaped) => text.push(escaped),
                    None => break,
                },
                c => text.push(c),
            }
        }
        text
    }

    #[test]
    fn events_are_read_from_the_source() {
        let source = r#"tracing::warn!(a = %f(x), "cannot {what}: {e}"); tracing::info!(
            "long \
             line"
        );"#;
        assert_eq!(
            events_in(source),
            [
                ("warn".to_string(), "cannot {what}: {e}".to_string()),
                ("info".to_string(), "long line".to_string())
            ]
        );
        assert_eq!(shape("cannot {what}: {e}{also}"), "cannot *:");
        assert_eq!(
            shape(&placeholders_marked("ended N bytes early")),
            "ended * bytes early"
        );
    }

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(6500), "6,500");
        assert_eq!(grouped(1_048_576), "1,048,576");
        assert_eq!(grouped(64), "64");
    }

    #[test]
    fn cells_split_on_unescaped_pipes() {
        assert_eq!(cells("| a | `x \\| y` |b|"), ["a", "`x | y`", "b"]);
    }
}
