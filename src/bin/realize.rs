//! `realize`: move every file of a directory to another host. See `--help`.

fn main() -> std::process::ExitCode {
    realize::cli::realize_main()
}
