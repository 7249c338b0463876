#!/usr/bin/env bash
# Throttle accuracy: the rate achieved in each 10 s window against the limit.
#
#   benches/throttle.sh [RATE...]        default: 512k 4M 40M
#
# For each rate, a file of 50 s worth of data is moved to a daemon with
# --throttle-up RATE; the size of the destination's partial file is sampled
# every 10 s from t = 5 s, giving four windows per rate. It runs on loopback,
# and, as root with ../shared/wanemu, over an emulated 100 Mbit/s link with
# 100 ms RTT and 1% loss (WANEMU=path/to/wanemu to use a built binary).
# Prints one line per window: setting, limit, window, achieved rate, error.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
rates=("${@:-512k 4M 40M}")
read -r -a rates <<< "${rates[*]}"

cargo build --release --quiet
work=$(mktemp -d /tmp/realize-throttle.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; [ -n "${wan_pid:-}" ] && kill "$wan_pid" 2>/dev/null; rm -rf "$work"' EXIT
make_keys "$work"

run_setting() { # NAME DAEMON_PREFIX CLIENT_PREFIX ADDRESS
    local name=$1 dprefix=$2 cprefix=$3 addr=$4
    mkdir -p "$work/dst" "$work/src"
    write_daemon_config "$work/daemon.toml" "$addr" "$work/dst" "$work"
    $dprefix "$bin/realized" --config "$work/daemon.toml" 2>"$work/daemon-$name.log" &
    local daemon=$!
    wait_for_line "$work/daemon-$name.log" listening "$daemon"
    for rate in "${rates[@]}"; do
        local bps; bps=$(bytes_of "$rate")
        rm -rf "$work/src" "$work/dst"   # partial files too: a run must not resume the last one
        mkdir -p "$work/src" "$work/dst"
        head -c $((bps * 50)) /dev/zero > "$work/src/file.bin"
        $cprefix "$bin/realize" --src-path "$work/src" --dst-addr "$addr" --directory-id bench \
            --key "$work/client.key" --cert "$work/client.crt" --peers "$work/daemon.crt" \
            --throttle-up "$rate" --quiet &
        local mover=$!
        local start; start=$(date +%s.%N)
        local prev_t="" prev_s=""
        for t in 5 15 25 35 45; do
            sleep "$(awk -v s="$start" -v t="$t" -v n="$(date +%s.%N)" 'BEGIN { d = s + t - n; print (d > 0 ? d : 0) }')"
            local now size
            now=$(date +%s.%N)
            size=$(stat -c %s "$work/dst/.realize~part.file.bin" 2>/dev/null || echo 0)
            if [ -n "$prev_t" ]; then
                awk -v n="$name" -v r="$rate" -v b="$bps" -v t0="$prev_t" -v t1="$now" -v s0="$prev_s" -v s1="$size" -v w="$((t - 10))-${t}s" \
                    'BEGIN { a = (s1 - s0) / (t1 - t0); printf "%-9s %-6s %-8s %12.0f B/s %+7.2f%%\n", n, r, w, a, (a - b) * 100 / b }'
            fi
            prev_t=$now; prev_s=$size
        done
        kill -INT "$mover" 2>/dev/null || true
        wait "$mover" 2>/dev/null || true
    done
    kill "$daemon"; wait "$daemon" 2>/dev/null || true
}

echo "setting   limit  window        achieved    error"
run_setting loopback "" "" 127.0.0.1:9791

if [ "$(id -u)" = 0 ] && [ -e /dev/net/tun ]; then
    wanemu=${WANEMU:-}
    if [ -z "$wanemu" ]; then
        CARGO_TARGET_DIR=$PWD/target/wanemu cargo build --release --quiet --manifest-path ../shared/wanemu/Cargo.toml
        wanemu=$PWD/target/wanemu/release/wanemu
    fi
    wanemu_up "$wanemu" rzthr "$work/wan.log" --delay-ms 50 --rate-mbit 100 --queue-ms 100 --loss 1 --seed 7
    run_setting "wan-1%" "ip netns exec rzthr-b" "ip netns exec rzthr-a" 198.18.0.2:9791
fi
