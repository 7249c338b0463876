//! `realized`: serve directories to pinned peers over QUIC. See `--help`.

fn main() -> std::process::ExitCode {
    realize::cli::realized_main()
}
