//! Integration tests: the real `realize` and `realized` binaries on
//! 127.0.0.1, with keys made by `realize keygen` at test time.

mod addressing;
mod bench;
mod control_work;
mod crash;
mod daemon_config;
mod harness;
mod hostile;
mod install;
mod interrupt;
mod isolation;
mod keys;
mod known_paths;
mod listings;
mod lossy;
mod memory;
mod moves;
mod observability;
mod partials;
mod preview;
mod relay;
mod reload;
mod resume;
mod retry;
mod safety;
mod scripted;
mod selection;
mod systemd;
mod terminal;
mod throttle;
mod trust;
mod usage;
mod versions;
mod wan;
