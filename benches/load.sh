#!/usr/bin/env bash
# Load: many commands moving small trees through one daemon at once.
#
#   benches/load.sh [CLIENTS]        default: 50
#
# Every client is its own peer (its own key) with its own served directory;
# odd clients upload a tree to the daemon, even ones download one from it.
# A tree is FILES files of 1-64 KiB in 10 folders (FILES=100 by default,
# about 3.2 MiB). First every client moves its tree alone, one after
# another: the baseline of the same run, since the machine is shared and
# noisy. Then all of them move their trees again, at once.
#
# Prints, for the baseline and the load: per-move wall time (p50, p99 and the
# slowest), p50 against the baseline's p50, goodput (all file bytes over the time
# from the first start to the last end), and the daemon's peak resident
# memory, threads and descriptors (sampled every 100 ms).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
clients=${1:-50}
files=${FILES:-100}

cargo build --release --quiet
work=$(mktemp -d /tmp/realize-load.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
port=9793

# Writes a tree of $files files into DIR, sizes from the seed SEED.
make_tree() {
    local dir=$1 seed=$2 i
    RANDOM=$seed
    for ((i = 0; i < files; i++)); do
        mkdir -p "$dir/f$((i % 10))"
        head -c $(((RANDOM % 64 + 1) * 1024)) /dev/urandom > "$dir/f$((i % 10))/file$i"
    done
}

# Writes the daemon's configuration for clients 1..N.
write_config() {
    local n=$1 i
    {
        echo "listen = \"127.0.0.1:$port\""
        echo "key = \"$work/keys/daemon.key\""
        echo "cert = \"$work/keys/daemon.crt\""
        echo "[dirs]"
        for ((i = 1; i <= n; i++)); do echo "c$i = \"$work/served/c$i\""; done
        echo "[peers]"
        for ((i = 1; i <= n; i++)); do echo "c$i = \"$work/keys/c$i.crt\""; done
    } > "$work/daemon.toml"
}

# Moves client I's tree (upload if I is odd, download if even) and appends
# its wall time in seconds to FILE.
move() {
    local i=$1 out=$2 start end
    local side=(--src-path "$work/local/c$i" --dst-addr "127.0.0.1:$port")
    ((i % 2 == 0)) && side=(--src-addr "127.0.0.1:$port" --dst-path "$work/local/c$i")
    start=$(date +%s.%N)
    "$bin/realize" "${side[@]}" --directory-id "c$i" --quiet \
        --key "$work/keys/c$i.key" --cert "$work/keys/c$i.crt" --peers "$work/keys/daemon.crt" \
        2> "$work/c$i.err" || { echo "client $i failed:" >&2; cat "$work/c$i.err" >&2; exit 1; }
    end=$(date +%s.%N)
    echo "$start $end" >> "$out"
}

# Prepares client I's tree on the side it moves from.
prepare() {
    local i=$1
    rm -rf "$work/local/c$i" "$work/served/c$i"
    mkdir -p "$work/local/c$i" "$work/served/c$i"
    if ((i % 2 == 0)); then make_tree "$work/served/c$i" "$i"; else make_tree "$work/local/c$i" "$i"; fi
}

# Samples the daemon PID's threads and descriptors into FILE until it ends.
sample() {
    local pid=$1 out=$2
    while kill -0 "$pid" 2>/dev/null; do
        echo "$(ls /proc/"$pid"/task 2>/dev/null | wc -l) $(ls /proc/"$pid"/fd 2>/dev/null | wc -l)" >> "$out"
        sleep 0.1
    done
}

# Runs clients FIRST..LAST against a fresh daemon, all at once or, with
# MODE "serial", one after another; prints one line.
run() {
    local name=$1 first=$2 last=$3 mode=${4:-} i
    local times="$work/$name.times" samples="$work/$name.samples"
    : > "$times"
    for ((i = first; i <= last; i++)); do prepare "$i"; done
    local bytes; bytes=$(for ((i = first; i <= last; i++)); do
        du -sb --apparent-size "$work/local/c$i" "$work/served/c$i"; done | awk '{ s += $1 } END { print s }')
    "$bin/realized" --config "$work/daemon.toml" 2> "$work/daemon-$name.log" &
    local daemon=$!
    wait_for_line "$work/daemon-$name.log" listening "$daemon"
    sample "$daemon" "$samples" &

    local -a movers
    for ((i = first; i <= last; i++)); do
        if [ "$mode" = serial ]; then move "$i" "$times"; else move "$i" "$times" & movers+=($!); fi
    done
    for m in "${movers[@]}"; do wait "$m"; done
    local hwm; hwm=$(awk '/VmHWM/ { print $2 }' /proc/"$daemon"/status)
    kill "$daemon"; wait "$daemon" 2>/dev/null || true
    sort -n -k1,1 "$samples" | tail -1 > "$work/$name.threads"
    sort -n -k2,2 "$samples" | tail -1 > "$work/$name.fds"
    awk '{ print $2 - $1, $1, $2 }' "$times" | sort -n | awk -v name="$name" -v n=$((last - first + 1)) \
        -v bytes="$bytes" -v hwm="$hwm" -v alone="${alone_p50:-0}" \
        -v threads="$(cut -d' ' -f1 "$work/$name.threads")" -v fds="$(cut -d' ' -f2 "$work/$name.fds")" '
        { t[NR] = $1; if (NR == 1 || $2 < s) s = $2; if ($3 > e) e = $3 }
        END {
            p50 = t[int((NR + 1) / 2)]; p99 = t[int(NR * 0.99 + 0.999)]
            printf "%-6s %7d %7.2f %7.2f %7.2f %9s %13.1f %15.0f %13d %9d\n", name, n, p50, p99, t[NR],
                (alone > 0 ? sprintf("%.2f", p50 / alone) : "1.00"), bytes / (e - s) / 1048576, hwm / 1024, threads, fds
        }'
    [ "$name" = alone ] && alone_p50=$(awk '{ print $2 - $1 }' "$times" | sort -n | awk '{ t[NR] = $1 } END { print t[int((NR + 1) / 2)] }')
    return 0
}

mkdir -p "$work/keys" "$work/local"
for ((i = 1; i <= clients; i++)); do mkdir -p "$work/served/c$i"; done
"$bin/realize" keygen --name daemon --out "$work/keys" > /dev/null
for ((i = 1; i <= clients; i++)); do "$bin/realize" keygen --name "c$i" --out "$work/keys" > /dev/null; done
write_config "$clients"

echo "run    clients  p50 s   p99 s   max s  p50/alone  goodput MiB/s  daemon RSS MiB  peak threads  peak fds"
alone_p50=0
run alone 1 "$clients" serial
run load 1 "$clients"
