#!/usr/bin/env bash
# Builds the Debian package target/debian/realize_VERSION-1_ARCH.deb: the
# release binaries, then the manual pages and shell completions they
# generate (into target/packaging/), then `cargo deb` with what Cargo.toml's
# [package.metadata.deb] lists. The binaries' debug information (line
# tables, for backtraces) goes into realize-dbgsym_VERSION-1_ARCH.ddeb
# beside it. Arguments are passed on to cargo deb (e.g. --maintainer).
# Needs cargo-deb: cargo install cargo-deb --locked
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo-deb >/dev/null 2>&1 || {
    echo "build-deb.sh: cargo-deb is missing; install it with: cargo install cargo-deb --locked" >&2
    exit 2
}

cargo build --release --locked
out=target/packaging
rm -rf "$out"
mkdir -p "$out/completions"
target/release/realize man --out "$out/man" >/dev/null
target/release/realize completions bash >"$out/completions/realize"
target/release/realize completions zsh >"$out/completions/_realize"
target/release/realize completions fish >"$out/completions/realize.fish"
cargo deb --no-build --locked --dbgsym "$@"
