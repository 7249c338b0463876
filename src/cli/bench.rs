//! `realize bench`: connect to a daemon, measure the path with generated
//! data, print the report.

use std::io::IsTerminal;
use std::process::ExitCode;

use super::args::BenchArgs;
use super::endpoints::{self, Trust};
use super::peers;
use super::CliError;
use crate::bench::{self, BenchOptions};
use crate::throttle::Throttle;

/// Runs the bench the flags ask for and prints its report on stdout.
pub(super) async fn run(args: &BenchArgs) -> Result<ExitCode, CliError> {
    let trust = Trust::load(&args.trust)?;
    let side = args.daemon.side(args.address.clone());
    let daemon = peers::bind(&[side], trust.shared.as_ref())?.remove(0);
    let client = trust.client(&args.transport.tuning())?;
    let remote = endpoints::connect(&client, &args.address, &daemon).await?;
    let addr = remote.remote_address();
    let options = BenchOptions {
        streams: args.streams,
        limit: args.limit(),
        directions: args.directions(),
        up: Throttle::new(args.limits.up()),
        down: args.limits.down(),
    };
    if std::io::stderr().is_terminal() {
        eprintln!("realize: measuring the path to {addr}…");
    }
    let measured = bench::run(&remote, &options).await;
    let closing = remote.close(false);
    client.shutdown(vec![closing], true).await;
    let report = measured.map_err(|e| CliError::Failed(format!("bench failed: {e}")))?;
    match args.output.json {
        true => println!("{}", report.to_json()),
        false => print!("{report}"),
    }
    Ok(ExitCode::SUCCESS)
}
