//! realize moves files between hosts over QUIC: copy, verify, make durable,
//! then delete the source.
//!
//! The crate is a library with two thin binaries, `realize` (the command) and
//! `realized` (the daemon). Its layers, bottom up:
//!
//! - `units`: how sizes and rates are written.
//! - [`model`]: directory ids, safe relative paths, file entries, hashes.
//! - [`protocol`]: the `realize/1` messages and their bounded codec.
//! - [`transport`]: identities, pinned mutual TLS, tuned QUIC endpoints.
//! - [`service`]: the [`service::Service`] trait and its local implementation.
//! - [`client`] / [`server`]: the same service over QUIC, both ends.
//! - `mover`: the move algorithm, written against the service trait only.
//! - `bench`: `realize bench`, generated data through the real protocol.
//! - [`cli`]: flags, output and exit codes of both binaries.

#![warn(unreachable_pub, missing_docs)]

mod bench;
pub mod cli;
pub mod client;
#[cfg(test)]
mod doc_tables;
pub mod model;
mod mover;
pub mod protocol;
pub mod server;
pub mod service;
mod telemetry;
mod throttle;
pub mod transport;
mod units;
