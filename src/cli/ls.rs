//! `realize ls`: what a daemon serves, or the files under one of its
//! directories, with their sizes.

use std::process::ExitCode;

use serde_json::json;

use super::args::LsArgs;
use super::endpoints::{self, Trust};
use super::location::RemoteLocation;
use super::peers::{self, RemoteSide};
use super::settings::ClientSettings;
use super::CliError;
use crate::client::RemoteService;
use crate::model::{DirectoryId, FileState, RelPath};
use crate::mover::existing_under;
use crate::service::{Listing, Service};
use crate::transport::endpoint::Tuning;

/// Connects to the daemon `args` names and prints what it serves.
pub(super) async fn run(args: &LsArgs) -> Result<ExitCode, CliError> {
    let target = RemoteLocation::parse(&args.target)?;
    let settings = ClientSettings::load(args.trust.config.as_deref())?;
    let side = match settings.hosts.get(&target.host) {
        Some(host) => RemoteSide {
            addr: host.addr.clone(),
            flag: format!("the client config's [hosts.{}] cert", target.host),
            file: args.daemon.peer.clone().or(Some(host.cert.clone())),
        },
        None => args.daemon.side(target.host.clone()),
    };
    let trust = Trust::load(&args.trust)?;
    let daemon = peers::bind(std::slice::from_ref(&side), trust.shared.as_ref())?.remove(0);
    let client = trust.client(&Tuning::default())?;
    let remote = endpoints::connect(&client, &side.addr, &daemon).await?;
    let printed = match &target.dir {
        None => print_dirs(&remote, args.output.json).await,
        Some(dir) => print_files(&remote, dir, target.under.as_ref(), args.output.json).await,
    };
    let closing = remote.close(false);
    client.shutdown(vec![closing], false).await;
    printed.map(|()| ExitCode::SUCCESS)
}

async fn print_dirs(remote: &RemoteService, json: bool) -> Result<(), CliError> {
    let dirs = remote.list_dirs().await.map_err(CliError::from)?;
    match json {
        true => println!("{}", json!({ "dirs": dirs })),
        false => dirs.iter().for_each(|dir| println!("{dir}")),
    }
    Ok(())
}

async fn print_files(
    remote: &RemoteService,
    dir: &DirectoryId,
    under: Option<&RelPath>,
    json: bool,
) -> Result<(), CliError> {
    let listing = remote.list(dir).await.map_err(CliError::from)?;
    let mut listing: Listing = match under {
        Some(under) => {
            existing_under(listing, under).map_err(|e| CliError::Failed(e.to_string()))?
        }
        None => listing,
    };
    listing.sort();
    let partial = |state: FileState| state == FileState::Partial;
    if json {
        let files: Vec<_> = listing
            .files
            .iter()
            .map(|file| {
                json!({
                    "path": file.path,
                    "size": file.stamp.size,
                    "partial": partial(file.state),
                })
            })
            .collect();
        println!("{}", json!({ "dir": dir, "files": files }));
        return Ok(());
    }
    for file in &listing.files {
        let mark = match partial(file.state) {
            true => "  (partial)",
            false => "",
        };
        println!("{:>14}  {}{mark}", file.stamp.size, file.path);
    }
    Ok(())
}
