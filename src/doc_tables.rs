//! The tables of the documentation, read by the tests that check them
//! against the code: a constant lives in the code, and the docs that state
//! it fail a test when they drift from it.

use std::path::Path;

/// The body rows of every table in `doc` (a path from the crate's root)
/// whose header's first cell is `first_header`, one `Vec` of trimmed cells
/// per row.
pub fn tables(doc: &str, first_header: &str) -> Vec<Vec<Vec<String>>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(doc);
    let text = std::fs::read_to_string(&path).expect("the documentation is readable");
    let mut tables = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let is_header = line.starts_with('|')
            && cells(line).first().map(String::as_str) == Some(first_header)
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

/// The body rows of the one table in `doc` whose header starts with
/// `first_header`.
pub fn table(doc: &str, first_header: &str) -> Vec<Vec<String>> {
    let mut found = tables(doc, first_header);
    assert_eq!(found.len(), 1, "{doc}: tables headed {first_header:?}");
    found.remove(0)
}

/// The row of `table` whose first cell is `key`.
pub fn row<'a>(table: &'a [Vec<String>], key: &str) -> &'a [String] {
    table
        .iter()
        .find(|row| row[0] == key)
        .unwrap_or_else(|| panic!("no row {key:?}"))
}

/// A cell's text without code and emphasis marks.
pub fn plain(cell: &str) -> String {
    cell.replace("**", "").replace('`', "")
}

/// The first code span of a cell (the text between its first two
/// backticks).
pub fn first_code(cell: &str) -> Option<&str> {
    let mut spans = cell.split('`');
    spans.next()?;
    spans.next()
}

/// Fails unless `documented` and `in_code` hold the same items, naming
/// those only one of them holds.
pub fn assert_same<T: Ord + std::fmt::Debug>(what: &str, documented: Vec<T>, in_code: Vec<T>) {
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
pub fn grouped(n: u64) -> String {
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
