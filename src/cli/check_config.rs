//! `realized --check-config`: load and check the daemon's configuration and
//! everything it names without binding, and print what the daemon would run
//! with, as TOML it could read back.

use std::fmt::{Display, Write};
use std::process::ExitCode;

use super::args::RealizedArgs;
use super::daemon::{load_daemon_config, start_error};
use super::exit_status::ExitStatus;
use super::CliError;
use crate::server::{self, CheckedConfig, DaemonConfig};

/// Checks the configuration `args` name; prints it and exits 0, or prints
/// the error with `fatal` and exits 2.
pub(super) fn run(args: &RealizedArgs, fatal: impl FnOnce(CliError)) -> ExitCode {
    let checked = load_daemon_config(args).and_then(|config| {
        let checked = server::check(&config).map_err(|e| start_error(args, e))?;
        Ok((config, checked))
    });
    match checked {
        Ok((config, checked)) => {
            println!("# {}: the daemon would start with:", args.config.display());
            print!("{}", report(&config, &checked));
            ExitCode::SUCCESS
        }
        Err(err) => {
            fatal(err);
            ExitStatus::Usage.into()
        }
    }
}

/// The effective configuration as TOML, paths resolved, every `[limits]`
/// key with its value, and each key's fingerprint in a comment.
fn report(config: &DaemonConfig, checked: &CheckedConfig) -> String {
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line(format!("listen = {}", quoted(config.listen)));
    line(format!("key = {}", quoted(config.key.display())));
    line(format!(
        "cert = {}  # {}",
        quoted(config.cert.display()),
        checked.fingerprint
    ));
    match config.metrics {
        Some(addr) => line(format!("metrics = {}", quoted(addr))),
        None => line("# metrics: not served".into()),
    }
    line(format!("keep_owner = {}", config.keep_owner));
    line("\n[dirs]".into());
    for (id, path) in &config.dirs {
        line(format!("{} = {}", key(id.as_str()), quoted(path.display())));
    }
    line("\n[peers]".into());
    for (peer, path) in &config.peers {
        let keys = checked.peers.get(peer).into_iter().flatten();
        let keys: Vec<String> = keys.map(ToString::to_string).collect();
        line(format!(
            "{} = {}  # {}",
            key(peer),
            quoted(path.display()),
            keys.join(", ")
        ));
    }
    line("\n[send_limits]".into());
    for (peer, rate) in &config.send_limits {
        let bytes = rate.bytes_per_second();
        line(format!("{} = {}  # {rate}", key(peer), quoted(bytes)));
    }
    let limits = toml::to_string(&config.limits).expect("limits are plain TOML values");
    let _ = write!(out, "\n[limits]\n{limits}");
    out
}

/// `value` as a TOML string.
fn quoted(value: impl Display) -> String {
    toml::Value::String(value.to_string()).to_string()
}

/// `name` as a TOML key: bare when it can be.
fn key(name: &str) -> String {
    let bare = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    match !name.is_empty() && name.chars().all(bare) {
        true => name.to_string(),
        false => quoted(name),
    }
}
