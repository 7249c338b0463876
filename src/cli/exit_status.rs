//! The exit statuses of `realize`, each with its code and what it means: the
//! one list that the code exits with, `--help` prints and
//! `docs/operations.md` documents (a test checks the last against it).

use std::process::ExitCode;

/// How a run of `realize` ended, as its exit code tells a script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Every file moved.
    Moved,
    /// The move could not run, or gave up retrying before a file moved.
    Failed,
    /// Bad flags, configuration or keys; nothing was touched.
    Usage,
    /// Stopped by `--max-duration` with work left.
    TimeLimit,
    /// Everything moved, but the final metrics push failed.
    MetricsPushFailed,
    /// Stopped by Ctrl-C or SIGTERM with work left.
    Interrupted,
    /// Some files failed and the others moved (rsync's "partial transfer").
    Partial,
}

impl ExitStatus {
    /// Every status, in the order of their codes.
    pub const ALL: [ExitStatus; 7] = [
        ExitStatus::Moved,
        ExitStatus::Failed,
        ExitStatus::Usage,
        ExitStatus::TimeLimit,
        ExitStatus::MetricsPushFailed,
        ExitStatus::Interrupted,
        ExitStatus::Partial,
    ];

    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Moved => 0,
            ExitStatus::Failed => 1,
            ExitStatus::Usage => 2,
            ExitStatus::TimeLimit => 11,
            ExitStatus::MetricsPushFailed => 12,
            ExitStatus::Interrupted => 20,
            ExitStatus::Partial => 23,
        }
    }

    /// What the code tells the user, as `--help` prints it; the
    /// documentation's table starts each meaning with these words.
    pub fn meaning(self) -> &'static str {
        match self {
            ExitStatus::Moved => "every file moved",
            ExitStatus::Failed => {
                "the move could not run: no daemon reached (after --retries), a side that \
                 cannot be listed, a refused certificate, a protocol error"
            }
            ExitStatus::Usage => {
                "bad usage: flags, client configuration, keys, an address that does not \
                 resolve, same or nested source and destination"
            }
            ExitStatus::TimeLimit => {
                "stopped by --max-duration with work left: partial files are kept; run the \
                 same command again to continue"
            }
            ExitStatus::MetricsPushFailed => {
                "everything moved but the final push to --metrics-pushgateway failed"
            }
            ExitStatus::Interrupted => {
                "interrupted by Ctrl-C or SIGTERM with work left, in the same state as 11"
            }
            ExitStatus::Partial => "some files failed (their sources are kept), the others moved",
        }
    }
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> Self {
        ExitCode::from(status.code())
    }
}

/// The exit codes as `realize --help` lists them, each meaning wrapped to
/// fit 80 columns.
pub fn help() -> String {
    const WIDTH: usize = 80;
    const INDENT: &str = "      ";
    let mut text = String::from("Exit codes:");
    for status in ExitStatus::ALL {
        let mut line = format!("  {:<4}", status.code());
        for word in status.meaning().split(' ') {
            if line.len() + 1 + word.len() > WIDTH && line.trim_end().len() > INDENT.len() {
                text.push('\n');
                text.push_str(line.trim_end());
                line = INDENT.to_string();
            } else if !line.ends_with(' ') {
                line.push(' ');
            }
            line.push_str(word);
        }
        text.push('\n');
        text.push_str(&line);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc_tables;

    #[test]
    fn help_lists_every_code_within_80_columns() {
        let help = help();
        for status in ExitStatus::ALL {
            let line = format!("\n  {:<4}", status.code());
            assert!(help.contains(&line), "{status:?} missing from\n{help}");
        }
        for line in help.lines() {
            assert!(line.len() <= 80, "too wide: {line:?}");
        }
    }

    /// `docs/operations.md` lists the codes of [`ExitStatus`], each meaning
    /// starting with the words `--help` prints.
    #[test]
    fn operations_md_documents_the_exit_codes() {
        let table = doc_tables::table("docs/operations.md", &["exit code"]);
        let documented: Vec<(String, String)> = table
            .iter()
            .map(|row| (row[0].clone(), doc_tables::plain(&row[1])))
            .collect();
        let codes: Vec<String> = ExitStatus::ALL.map(|s| s.code().to_string()).into();
        let documented_codes: Vec<&String> = documented.iter().map(|(code, _)| code).collect();
        assert_eq!(documented_codes, codes.iter().collect::<Vec<_>>());
        for (status, (_, meaning)) in ExitStatus::ALL.iter().zip(&documented) {
            assert!(
                meaning.starts_with(status.meaning()),
                "docs/operations.md: exit code {} should start with {:?}, says {meaning:?}",
                status.code(),
                status.meaning()
            );
        }
    }
}
