//! `realize keygen`: a private key and self-signed certificate for a host.

use std::process::ExitCode;

use super::args::KeygenArgs;
use super::CliError;

/// Writes the key and certificate `args` name and prints their paths and
/// the certificate's fingerprint.
pub(super) fn run(args: &KeygenArgs) -> Result<ExitCode, CliError> {
    let made = crate::transport::identity::generate(&args.name, &args.out)
        .map_err(|e| CliError::Failed(e.to_string()))?;
    println!(
        "wrote {} and {}",
        made.key_path.display(),
        made.cert_path.display()
    );
    println!("fingerprint {}", made.fingerprint);
    Ok(ExitCode::SUCCESS)
}
