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
target_dir=$(cargo metadata --no-deps --format-version 1 |
    sed 's/.*"target_directory":"\([^"]*\)".*/\1/')
realize="$target_dir/release/realize"
# Where Cargo.toml's assets look for them (beside the binaries' target/).
out=target/packaging
rm -rf "$out"
mkdir -p "$out/completions"
"$realize" man --out "$out/man" >/dev/null
"$realize" completions bash >"$out/completions/realize"
"$realize" completions zsh >"$out/completions/_realize"
"$realize" completions fish >"$out/completions/realize.fish"
# Prints the paths of the .deb and the .ddeb.
cargo deb --no-build --locked --dbgsym "$@"
