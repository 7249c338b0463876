# Shell functions shared by the benchmark scripts of this folder.
# Sourced, not run: `. benches/lib.sh`. Defines `bin`, the folder of the
# release binaries; the scripts build them with `cargo build --release`.
# shellcheck shell=bash

bin=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/release

# Prints RATE (512k, 4M, 1.5G: binary multiples, or plain bytes) in bytes per second.
bytes_of() {
    awk -v r="$1" 'BEGIN { m = 1; u = substr(r, length(r)); n = r
        if (u == "k" || u == "K") { m = 1024; n = substr(r, 1, length(r) - 1) }
        if (u == "M") { m = 1048576; n = substr(r, 1, length(r) - 1) }
        if (u == "G") { m = 1073741824; n = substr(r, 1, length(r) - 1) }
        printf "%.0f", n * m }'
}

# Makes throwaway keys in DIR: daemon.key/.crt for realized, client.key/.crt for realize.
make_keys() {
    "$bin/realize" keygen --name daemon --out "$1" >/dev/null
    "$bin/realize" keygen --name client --out "$1" >/dev/null
}

# Writes a daemon configuration FILE that listens on ADDR (host:port) and
# serves DIR as directory id "bench" to the client key of KEYS (made by make_keys).
write_daemon_config() {
    local file=$1 addr=$2 dir=$3 keys=$4
    cat > "$file" <<TOML
listen = "$addr"
key = "$keys/daemon.key"
cert = "$keys/daemon.crt"
[dirs]
bench = "$dir"
[peers]
client = "$keys/client.crt"
TOML
}

# Waits until FILE has a line matching the extended regex PATTERN. Fails with
# the end of FILE on stderr if process PID exits first or after 30 s.
wait_for_line() {
    local file=$1 pattern=$2 pid=$3 deadline=$((SECONDS + 30))
    until grep -Eq "$pattern" "$file" 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null || ((SECONDS > deadline)); then
            echo "no '$pattern' in $file; its end:" >&2
            tail -n 5 "$file" >&2
            return 1
        fi
        sleep 0.05
    done
}

# Starts `WANEMU up NAME OPTIONS...` in the background, writing its output to
# LOG, and returns once the link carries traffic. Sets wan_pid.
wanemu_up() {
    local wanemu=$1 name=$2 log=$3
    shift 3
    "$wanemu" up "$name" "$@" > "$log" 2>&1 &
    wan_pid=$!
    wait_for_line "$log" '^ready' "$wan_pid"
}
