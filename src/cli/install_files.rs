//! What installs realize into a system beside its binaries: shell completion
//! scripts and manual pages, generated from the flags themselves so that
//! they always match `--help`.

use std::path::Path;

use clap::CommandFactory;

use super::args::{RealizeArgs, RealizedArgs};
use super::CliError;

/// Prints the completion script of `realize` for `shell` to stdout.
pub(super) fn print_completions(shell: clap_complete::Shell) {
    let mut command = RealizeArgs::command();
    clap_complete::generate(shell, &mut command, "realize", &mut std::io::stdout());
}

/// Writes the manual pages of `realize`, of each of its subcommands
/// (`realize-keygen.1`, …) and of `realized` into `dir`, creating it if
/// missing, and prints their names.
pub(super) fn write_man_pages(dir: &Path) -> Result<(), CliError> {
    let failed = |e: std::io::Error| CliError::Failed(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(failed)?;
    let mut pages = Vec::new();
    for command in [RealizeArgs::command(), RealizedArgs::command()] {
        let name = command.get_name().to_string();
        pages.push(format!("{name}.1"));
        pages.extend(
            command
                .get_subcommands()
                .map(|sub| format!("{name}-{}.1", sub.get_name())),
        );
        clap_mangen::generate_to(command, dir).map_err(failed)?;
    }
    println!("wrote {} into {}", pages.join(" "), dir.display());
    Ok(())
}
