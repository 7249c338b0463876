//! `realize bench`: connect to a daemon, measure the path with generated
//! data, print the report.

use std::io::IsTerminal;
use std::process::ExitCode;

use super::args::BenchArgs;
use super::{endpoints, CliError};
use crate::bench::{self, BenchOptions};
use crate::throttle::Throttle;

/// Runs the bench the flags ask for and prints its report on stdout.
pub async fn run(args: &BenchArgs) -> Result<ExitCode, CliError> {
    let client = endpoints::client(&args.trust, &args.transport.tuning())?;
    let addr = endpoints::resolve(&args.address).await?;
    let remote = client
        .connect(addr)
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?;
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
    remote.close(false);
    client.shutdown(true).await;
    let report = measured.map_err(|e| CliError::Failed(format!("bench failed: {e}")))?;
    match args.json {
        true => println!("{}", report.to_json()),
        false => print!("{report}"),
    }
    Ok(ExitCode::SUCCESS)
}
