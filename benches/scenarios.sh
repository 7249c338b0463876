#!/usr/bin/env bash
# The benchmark scenarios of docs/benchmarks.md: realize against scp and
# rsync over ssh, on the same link in the same run, printed as one table.
#
#   benches/scenarios.sh [SCENARIO...]    W1 W2 W3 W4 W5 W6 W7 L1 L2 R1 T1 WARM (default: all)
#
# Every realize run starts cold: its state folder (what it learned of the
# path to the daemon) is emptied first. WARM runs W1-warm, W3-warm, W4-warm
# and W5-warm: realize alone, twice against one daemon, the second run timed.
#
# Run as root. The W scenarios, R1 and T1 run between two network namespaces
# joined by an emulated link: tc netem when the kernel has it, else the
# userspace emulator wanemu (WANEMU=path/to/wanemu). Environment, defaults
# in brackets (docs/benchmarks.md explains each):
#   SCALE [1]                  multiplies file sizes, and file counts of trees
#   TOOLS [realize,scp,rsync]  the tools to run
#   TIMEOUT [300]              seconds each run of a tool may take
#   REALIZE_ARGS []            extra flags for realize, e.g. "--parallel 64"
#   WANEMU []                  the wanemu binary, used when netem is missing
#   EMULATOR [auto]            netem or wanemu, to choose when both are there
#   BENCH_TMP [$TMPDIR or /tmp] where the data and the logs are written
#   CSV []                     also write the results to this CSV file
#   SEED [7]                   seed of wanemu's loss generator
#   SETTLE [6]                 seconds of quiet after a sync before each timed run
#   REALIZE_PORT [39771], SSH_PORT [39722]   ports of realized and sshd
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
. benches/lib.sh

die() {
    echo "scenarios.sh: $*" >&2
    exit 1
}

scale=${SCALE:-1}
timeout_s=${TIMEOUT:-300}
IFS=, read -r -a tools <<< "${TOOLS:-realize,scp,rsync}"
read -r -a realize_args <<< "${REALIZE_ARGS:-}"
rport=${REALIZE_PORT:-39771}
sport=${SSH_PORT:-39722}
link=rzsc$$                    # link and namespace names, unique to this run

awk -v s="$scale" 'BEGIN { exit !(s + 0 > 0) }' || die "SCALE must be a positive number, not '$scale'"
[[ $timeout_s =~ ^[1-9][0-9]*$ ]] || die "TIMEOUT must be a whole number of seconds, not '$timeout_s'"
for t in "${tools[@]}"; do
    [[ $t =~ ^(realize|scp|rsync)$ ]] || die "unknown tool '$t' in TOOLS (realize, scp, rsync)"
done
[ "$(id -u)" = 0 ] || die "run as root: it creates network namespaces and starts sshd"
for c in ip tc ssh scp ssh-keygen rsync /usr/sbin/sshd /usr/bin/time timeout; do
    command -v "$c" >/dev/null || die "$c is missing (see Prerequisites in docs/benchmarks.md)"
done
if [[ " $* " == *" W7 "* ]] || (($# == 0)); then
    for c in iperf3 ping; do
        command -v "$c" >/dev/null || die "$c is missing: W7 needs it (see Prerequisites in docs/benchmarks.md)"
    done
fi
[ -d /run/sshd ] || mkdir -m 0755 /run/sshd   # sshd's privilege separation folder, made by its service
hasher=$(command -v b3sum || command -v sha256sum)

# The scenarios to run: the arguments or all, T1 split into its two links.
units=()
(($#)) || set -- W1 W2 W3 W4 W5 W6 W7 L1 L2 R1 T1 WARM
for u in "$@"; do
    case $u in
        W[1-7] | L[12] | R1 | T1-lo | T1-W1 | W[1345]-warm) units+=("$u") ;;
        T1) units+=(T1-lo T1-W1) ;;
        WARM) units+=(W1-warm W3-warm W4-warm W5-warm) ;;
        *) die "unknown scenario '$u' (W1 W2 W3 W4 W5 W6 W7 L1 L2 R1 T1 WARM)" ;;
    esac
done

# Prints BYTES times SCALE, in whole bytes.
scaled() {
    awk -v b="$1" -v s="$scale" 'BEGIN { printf "%.0f", b * s }'
}

# Sets the globals of scenario UNIT: link_spec (empty on loopback, else
# "DELAY_MS RATE_MBIT QUEUE_MS LOSS_PCT [RETURN_RATE_MBIT]", the same both
# ways but for the rate of the return path, against the data), data_spec
# ("file BYTES" or "tree DIRS FILES_PER_DIR BYTES"), direction (up: the
# command's side is the source; down: the daemon's) and throttle (a rate or empty).
spec() {
    local w1="50 100 100 1" w2="50 300 100 0"
    direction=up throttle=""
    case ${1%-warm} in
        W1) link_spec=$w1 data_spec="file $(scaled $((256 << 20)))" ;;
        W2 | R1) link_spec=$w2 data_spec="file $(scaled $((1 << 30)))" ;;
        W3) link_spec="50 100 100 0.1" data_spec="tree 50 $(tree_files 5000 50) 16384" ;;
        W4) link_spec=$w1 data_spec="file $(scaled $((256 << 20)))" direction=down ;;
        W5) link_spec="100 100 100 1" data_spec="file $(scaled $((256 << 20)))" ;;
        W6) link_spec="$w1 2" data_spec="file $(scaled $((256 << 20)))" ;;
        W7) link_spec="50 100 100 0" data_spec="file $(scaled $((256 << 20)))" ;;
        L1) link_spec="" data_spec="file $(scaled $((2 << 30)))" ;;
        L2) link_spec="" data_spec="tree 100 $(tree_files 20000 100) 4096" ;;
        T1-lo) link_spec="" data_spec="file $(scaled $((160 << 20)))" throttle=4M ;;
        T1-W1) link_spec=$w1 data_spec="file $(scaled $((160 << 20)))" throttle=4M ;;
    esac
}

# Prints the files per folder of a tree of FILES files in DIRS folders, scaled (at least 1).
tree_files() {
    awk -v n="$1" -v d="$2" -v s="$scale" 'BEGIN { f = int(n * s / d + 0.5); print (f < 1 ? 1 : f) }'
}

# Prints the bytes of data that data_spec describes.
data_bytes() {
    local kind a b c
    read -r kind a b c <<< "$data_spec"
    if [ "$kind" = file ]; then echo "$a"; else echo $((a * b * c)); fi
}

# Writes the data of data_spec to $src (random, so nothing compresses) and its manifest to $work/expected.
generate() {
    local kind a b c d
    read -r kind a b c <<< "$data_spec"
    rm -rf "$src" "$dst"
    mkdir -p "$src" "$dst"
    if [ "$kind" = file ]; then
        head -c "$a" /dev/urandom > "$src/file.bin"
    else
        for ((d = 0; d < a; d++)); do
            mkdir "$src/d$d"
            head -c $((b * c)) /dev/urandom | split -b "$c" -d -a 5 - "$src/d$d/f"
        done
    fi
    manifest "$src" > "$work/expected"
}

# Prints the hash and path of every file under DIR, sorted by path.
manifest() {
    (cd "$1" && find . -type f -print0 | sort -z | xargs -0 -r "$hasher")
}

# True if the kernel has the netem qdisc: tried on the loopback device of a throwaway namespace.
have_netem() {
    local ok=0
    ip netns add "$link-p"
    tc -n "$link-p" qdisc add dev lo root netem delay 1ms 2>/dev/null || ok=1
    ip netns del "$link-p"
    return "$ok"
}

# Chooses the link emulator (netem, else $WANEMU; EMULATOR overrides) and the
# TCP congestion control of the namespaces: bbr if the kernel has it.
choose_emulator() {
    case ${EMULATOR:-auto} in
        auto)
            if have_netem; then emulator=netem
            elif [ -n "${WANEMU:-}" ]; then emulator=wanemu
            else die "no link emulator: this kernel has no netem qdisc (sch_netem) and WANEMU is not set; build wanemu and set WANEMU=/path/to/wanemu, or run only the loopback scenarios (L1 L2 T1-lo)"
            fi ;;
        netem) have_netem || die "EMULATOR=netem, but this kernel has no netem qdisc" ; emulator=netem ;;
        wanemu) emulator=wanemu ;;
        *) die "EMULATOR must be netem or wanemu, not '$EMULATOR'" ;;
    esac
    if [ "$emulator" = wanemu ]; then
        [ -x "${WANEMU:-}" ] || die "WANEMU='${WANEMU:-}' is not an executable wanemu binary"
    fi
    wan_cc=$(sysctl -n net.ipv4.tcp_congestion_control)
    if grep -qw bbr /proc/sys/net/ipv4/tcp_available_congestion_control; then wan_cc=bbr; fi
}

# Brings up the link of link_spec between namespaces $link-a (198.18.0.1) and
# $link-b (198.18.0.2), or selects loopback when link_spec is empty. Sets
# ns_a/ns_b (command prefixes entering each side), addr (the server's
# address), cc, and dev_a/dev_b/hdr, which link_counters reads.
link_up() {
    if [ -z "$link_spec" ]; then
        ns_a=() ns_b=() addr=127.0.0.1 dev_a="" cc=$(sysctl -n net.ipv4.tcp_congestion_control)
        return
    fi
    local delay rate queue loss back
    read -r delay rate queue loss back <<< "$link_spec"
    # Set first, so that link_down also removes a link that failed half-way.
    ns_a=(ip netns exec "$link-a") ns_b=(ip netns exec "$link-b") addr=198.18.0.2
    dev_a=wa$link dev_b=wb$link cc=$wan_cc
    # The return path runs against the data: B to A for uploads.
    local back_way=b2a
    [ "$direction" = up ] || back_way=a2b
    if [ "$emulator" = wanemu ]; then
        wanemu_up "$WANEMU" "$link" "$work/wanemu.log" --delay-ms "$delay" --rate-mbit "$rate" \
            --queue-ms "$queue" --loss "$loss" ${back:+"--$back_way-rate-mbit" "$back"} \
            --seed "${SEED:-7}" --tcp-cc "$wan_cc" ||
            die "$WANEMU did not bring the link up"
        hdr=0
    else
        netem_up "$delay" "$rate" "$queue" "$loss" "$back_way" "${back:-$rate}"
        hdr=14
    fi
}

# Builds the link with tc: $link-a and $link-b are joined by veth pairs to a
# bridge in a third namespace, $link-m, whose two ports each delay, drop and
# rate-limit what they send on (netem, then tbf holding the queue). The
# impairments sit on a box in the middle, as wanemu does, so the hosts' own
# TCP stacks feel no local queue. gso_max_segs 1 makes the hosts send
# packets of at most one MTU, so netem drops packets, not 64 KiB bursts, and
# the device counters count every packet's headers. BACK_WAY (a2b or b2a)
# runs at BACK_RATE instead of RATE.
netem_up() {
    local delay=$1 rate=$2 queue=$3 loss=$4 back_way=$5 back_rate=$6 ns port r s loss_opt=()
    [ "$loss" = 0 ] || loss_opt=(loss "$loss%")
    for ns in a b m; do
        ip netns add "$link-$ns"
        ip netns exec "$link-$ns" sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    done
    ip -n "$link-m" link add br0 type bridge
    for ns in a b; do
        ip netns exec "$link-$ns" sysctl -q -w net.ipv4.tcp_rmem="4096 131072 67108864" \
            net.ipv4.tcp_wmem="4096 16384 67108864" net.ipv4.tcp_no_metrics_save=1 \
            net.ipv4.tcp_congestion_control="$wan_cc"
        ip -n "$link-m" link add "to-$ns" type veth peer name "w$ns$link" netns "$link-$ns"
        ip -n "$link-m" link set "to-$ns" master br0 up
        ip -n "$link-$ns" link set lo up
        ip -n "$link-$ns" link set "w$ns$link" gso_max_segs 1 up
    done
    ip -n "$link-a" addr add 198.18.0.1/24 dev "wa$link"
    ip -n "$link-b" addr add 198.18.0.2/24 dev "wb$link"
    ip -n "$link-m" link set br0 up
    for port in to-a to-b; do
        r=$rate
        [ "$port/$back_way" != to-a/b2a ] && [ "$port/$back_way" != to-b/a2b ] || r=$back_rate
        tc -n "$link-m" qdisc add dev "$port" root handle 1: netem delay "${delay}ms" "${loss_opt[@]}" limit 1000000
        tc -n "$link-m" qdisc add dev "$port" parent 1:1 handle 2: tbf rate "${r}mbit" \
            burst $((r * 125 > 3028 ? r * 125 : 3028)) limit $((queue * r * 125))
    done
    # As wanemu does: UDP socket buffers of up to 64 MiB (host-wide, never lowered).
    for s in net.core.rmem_max net.core.wmem_max; do
        (($(sysctl -n "$s") >= 67108864)) || sysctl -q -w "$s=67108864"
    done
}

# Removes the link made by link_up, if any.
link_down() {
    [ -n "${dev_a:-}" ] || return 0
    if [ "$emulator" = wanemu ]; then
        kill "$wan_pid" 2>/dev/null || true
        wait "$wan_pid" 2>/dev/null || true
        "$WANEMU" down "$link" >/dev/null 2>&1 || true
    else
        for ns in a b m; do ip netns del "$link-$ns" 2>/dev/null || true; done
    fi
    dev_a=
}

# Prints the IP bytes each side has sent into the link so far (lost and
# dropped packets included: counted by the sending device), the packets the
# devices dropped, and per way the packets sent into the link and those its
# bottleneck queue dropped, as "A2B B2A DROPS A2B_PKTS A2B_QDROPS B2A_PKTS
# B2A_QDROPS"; "- - 0 - - - -" on loopback.
link_counters() {
    if [ -z "$dev_a" ]; then echo "- - 0 - - - -"; return; fi
    local a b
    a=$(ip netns exec "$link-a" cat /sys/class/net/"$dev_a"/statistics/{tx_bytes,tx_packets,tx_dropped})
    b=$(ip netns exec "$link-b" cat /sys/class/net/"$dev_b"/statistics/{tx_bytes,tx_packets,tx_dropped})
    # shellcheck disable=SC2086 # one number per word
    set -- $a $b
    echo "$(($1 - hdr * $2)) $(($4 - hdr * $5)) $(($3 + $6)) $2 $(queue_drops a2b) $5 $(queue_drops b2a)"
}

# Prints the packets the bottleneck queue of WAY (a2b or b2a) has dropped
# so far: wanemu's queue_drops, or the drops of netem's tbf.
queue_drops() {
    if [ "$emulator" = wanemu ]; then
        "$WANEMU" stats "$link" | sed -n "s/^$1: .* queue_drops=\([0-9]*\) .*/\1/p"
    else
        local port=to-b
        [ "$1" = a2b ] || port=to-a
        tc -s -n "$link-m" qdisc show dev "$port" |
            awk '/^qdisc tbf/ { tbf = 1; next } /^qdisc/ { tbf = 0 } tbf && /dropped/ { sub(",", "", $7); print $7; exit }'
    fi
}

# Writes sshd's configuration (listening at $addr) and the client's ssh
# configuration (host alias "bench"), both in $base/ssh; no system file is read or changed.
write_ssh_configs() {
    cat > "$base/ssh/sshd_config" <<EOF
ListenAddress $addr:$sport
HostKey $base/ssh/host_key
PidFile none
AuthorizedKeysFile $base/ssh/authorized_keys
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
Subsystem sftp internal-sftp
EOF
    cat > "$base/ssh/ssh_config" <<EOF
Host bench
  HostName $addr
  Port $sport
  User $(id -un)
  IdentityFile $base/ssh/user_key
  IdentitiesOnly yes
  HostKeyAlias bench
  UserKnownHostsFile $base/ssh/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  BatchMode yes
  LogLevel ERROR
EOF
}

# Starts the server side for TOOL in $link-b (or on loopback) under GNU time:
# realized serving the daemon's side of the data as "bench", or sshd. Sets
# server_pid (the server) and server_time_pid (GNU time, its parent).
start_server() {
    local cmd ready
    if [ "$1" = realize ]; then
        local served=$dst
        [ "$direction" = up ] || served=$src
        write_daemon_config "$work/realized.toml" "$addr:$rport" "$served" "$base/keys"
        cmd=("$bin/realized" --config "$work/realized.toml") ready=listening
    else
        cmd=(/usr/sbin/sshd -D -e -f "$base/ssh/sshd_config") ready='Server listening'
    fi
    rm -f "$work/server.rss"
    "${ns_b[@]}" /usr/bin/time -f %M -o "$work/server.rss" "${cmd[@]}" 2> "$work/server.log" &
    server_time_pid=$!
    wait_for_line "$work/server.log" "$ready" "$server_time_pid" || die "the server did not start: ${cmd[*]}"
    server_pid=$(ps -o pid= --ppid "$server_time_pid" | tr -d ' ')
}

# Stops the server with SIGTERM and sets rss_server to its peak RSS in KiB
# (for sshd: the largest of its processes, connections included).
stop_server() {
    kill -TERM "$server_pid"
    wait "$server_time_pid" || true
    rss_server=$(tail -n 1 "$work/server.rss" 2>/dev/null || echo -)
    server_pid=
}

# Sets cmd to the command line of TOOL moving (scp: copying) the data from
# $src to $dst, in the direction of the scenario.
client_cmd() {
    local ssh=(-F "$base/ssh/ssh_config") bps
    [ -z "$throttle" ] || bps=$(bytes_of "$throttle")
    case $1/$direction in
        realize/*)
            rm -rf "$work/state"
            cmd=(env "XDG_STATE_HOME=$work/state" "$bin/realize" --directory-id bench --key "$base/keys/client.key"
                --cert "$base/keys/client.crt" --peers "$base/keys/daemon.crt" --quiet)
            if [ "$direction" = up ]; then
                cmd+=(--src-path "$src" --dst-addr "$addr:$rport")
            else
                cmd+=(--src-addr "$addr:$rport" --dst-path "$dst")
            fi
            [ -z "$throttle" ] || cmd+=(--throttle "$throttle")
            cmd+=("${realize_args[@]}") ;;
        scp/*)
            cmd=(scp "${ssh[@]}" -r -q)
            [ -z "$throttle" ] || cmd+=(-l $((bps * 8 / 1024)))     # Kbit/s of 1024 bits
            if [ "$direction" = up ]; then cmd+=("$src"/* "bench:$dst/"); else cmd+=("bench:$src/*" "$dst/"); fi ;;
        rsync/*)
            cmd=(rsync -a --remove-source-files -e "ssh ${ssh[*]}")
            [ -z "$throttle" ] || cmd+=(--bwlimit=$((bps / 1024)))  # KiB/s
            if [ "$direction" = up ]; then cmd+=("$src/" "bench:$dst/"); else cmd+=("bench:$src/" "$dst/"); fi ;;
    esac
}

# Runs cmd in $link-a (or on loopback) under GNU time and timeout (inside
# time, so that a run stopped by the timeout still has its peak RSS; in the
# foreground, so that a Ctrl-C reaches the command), output to FILE.
# Sets rc (124 or 137: timed out), secs (wall time) and rss_cmd (KiB).
run_client() {
    local out=$1 t0
    rm -f "$work/client.rss"
    t0=$EPOCHREALTIME
    "${ns_a[@]}" /usr/bin/time -f %M -o "$work/client.rss" timeout --foreground -k 10 "$timeout_s" "${cmd[@]}" > "$out" 2>&1 &
    client_pid=$!
    rc=0
    wait "$client_pid" || rc=$?
    client_pid=
    secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
    rss_cmd=$(tail -n 1 "$work/client.rss" 2>/dev/null || echo -)
}

# Checks a finished run of TOOL: the destination holds exactly the generated
# files, and (but for scp, which copies) the source holds none. Prints what is wrong.
verify() {
    manifest "$dst" > "$work/got"
    if ! cmp -s "$work/expected" "$work/got"; then
        echo "destination differs: $(comm -23 <(sort "$work/expected") <(sort "$work/got") | wc -l) files missing or different, $(comm -13 <(sort "$work/expected") <(sort "$work/got") | wc -l) unexpected"
        return 1
    fi
    if [ "$1" != scp ] && [ -n "$(find "$src" -type f -print -quit)" ]; then
        echo "$(find "$src" -type f | wc -l) files left at the source"
        return 1
    fi
}

# Puts the data back at the source for the next run: moved back from the
# destination after a verified run, else generated anew. STATUS TOOL.
restore() {
    if [ "$1" != ok ]; then generate; return; fi
    if [ "$2" = scp ]; then rm -rf "$dst"; else rm -rf "$src"; mv "$dst" "$src"; fi
    mkdir "$dst"
}

# Classifies the run that run_client made: sets status (ok, timeout or FAIL)
# and note (why it failed). TOOL.
judge() {
    local why
    status=ok note=""
    if ((rc == 124 || rc == 137)); then
        status=timeout
    elif ((rc != 0)); then
        why=$(grep -E 'error|ERROR|realize:' "$work/client.out" | tail -n 1) || why=$(tail -n 1 "$work/client.out")
        status=FAIL note="exit $rc: $why"
    elif ! note=$(verify "$1"); then
        status=FAIL
    fi
    if [ "$status" = FAIL ]; then
        echo "FAIL: $unit $1: $note; command: ${cmd[*]}" >&2
        tail -n 5 "$work/client.out" "$work/server.log" >&2
    fi
}

# Appends one result row: TOOL STATUS SECONDS FILE_BYTES WIRE_BEFORE WIRE_AFTER NOTE.
# Uses rss_cmd and rss_server, and the scenario's direction: the packets
# sent and dropped at the queue are those of the way the data goes.
record() {
    local tool=$1 st=$2 s=$3 bytes=$4 w0=$5 w1=$6 note=$7 a2b=- b2a=- pkts=- qdrops=- tcp=$cc
    local a0 b0 d0 ap0 aq0 bp0 bq0 a1 b1 d1 ap1 aq1 bp1 bq1
    [ "$tool" != realize ] || tcp=-
    [ "$tool" != dd ] || tcp=-
    read -r a0 b0 d0 ap0 aq0 bp0 bq0 <<< "$w0"
    read -r a1 b1 d1 ap1 aq1 bp1 bq1 <<< "$w1"
    if [ "$a0" != - ]; then
        a2b=$((a1 - a0)) b2a=$((b1 - b0))
        if [ "$direction" = up ]; then pkts=$((ap1 - ap0)) qdrops=$((aq1 - aq0))
        else pkts=$((bp1 - bp0)) qdrops=$((bq1 - bq0)); fi
        if ((d1 > d0)); then note="${note:+$note; }the link's devices dropped $((d1 - d0)) packets"; fi
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$unit" "$tool" "$st" "$s" "$bytes" \
        "$a2b" "$b2a" "$rss_cmd" "$rss_server" "$tcp" "$note" "$pkts" "$qdrops" >> "$base/results.tsv"
    printf '%-8s %-7s %-7s %8s s  %s\n' "$unit" "$tool" "$st" "$s" "$note" >&2
}

# Lets the disk settle before a timed run, so that no tool pays for the
# one before it: the generated data and the last run's writes are written
# back, and the files the last run deleted stop counting as recently
# deleted (an ext4 without a journal skips such inodes one by one when it
# allocates new ones: for 5 s once written back, for 300 s while dirty).
settle() {
    sync
    sleep "${SETTLE:-6}"
}

# One timed run of TOOL on the current scenario, checked and recorded.
run_tool() {
    local tool=$1 w0 w1
    settle
    client_cmd "$tool"
    start_server "$tool"
    w0=$(link_counters)
    run_client "$work/client.out"
    w1=$(link_counters)
    stop_server
    judge "$tool"
    if [ -n "$throttle" ] && [ "$status" = ok ]; then
        note=$(awk -v b="$(data_bytes)" -v s="$secs" -v l="$(bytes_of "$throttle")" -v t="$throttle" \
            'BEGIN { a = b / s; printf "%.2f MiB/s for a limit of %s (%+.1f%%)", a / 1048576, t, (a - l) * 100 / l }')
    fi
    record "$tool" "$status" "$secs" "$(data_bytes)" "$w0" "$w1" "$note"
    restore "$status" "$tool"
}

# W1-warm, W3-warm, W4-warm, W5-warm: realize twice against one daemon,
# the first run untimed, the second timed and recorded: each side starts
# from the rate its last connection measured (docs/benchmarks.md). The data
# goes back by its files, not its folder: the daemon serves the folder.
run_warm() {
    local w0 w1
    settle
    client_cmd realize
    start_server realize
    run_client "$work/first.out"
    judge realize
    if [ "$status" = ok ]; then
        find "$dst" -mindepth 1 -maxdepth 1 -exec mv -t "$src" {} +
        settle
        w0=$(link_counters)
        run_client "$work/client.out"
        w1=$(link_counters)
        judge realize
    else
        w0=$(link_counters) w1=$w0 note="first run: $note"
    fi
    stop_server
    record realize "$status" "$secs" "$(data_bytes)" "$w0" "$w1" "$note"
    restore "$status" realize
}

# R1: realize is killed (SIGKILL) once half of the file is at the
# destination, then run again; the second run is timed and recorded, its
# bytes against the part still missing at its start.
run_resume() {
    local size part=$dst/.realize~part.file.bin have=0 w0 w1 sent deadline=$((SECONDS + timeout_s))
    size=$(data_bytes)
    settle
    client_cmd realize
    start_server realize
    "${ns_a[@]}" "${cmd[@]}" > "$work/first.out" 2>&1 &
    first_pid=$!
    while kill -0 "$first_pid" 2>/dev/null && ((have < size / 2 && SECONDS < deadline)); do
        sleep 0.05
        have=$(stat -c %s "$part" 2>/dev/null || echo 0)
    done
    kill -KILL "$first_pid" 2>/dev/null || true
    wait "$first_pid" 2>/dev/null || true   # no "Killed" notice
    first_pid=
    sleep 1    # the daemon writes what was already in flight
    have=$(stat -c %s "$part" 2>/dev/null || echo 0)
    if ((have == 0)); then
        stop_server
        rss_cmd=- note="no partial file to resume: the first run ended before half of the file was sent"
        record realize FAIL - "$size" "- - 0 - - - -" "- - 0 - - - -" "$note"
        generate
        return
    fi
    cmd+=(--log-file "$work/second.log")
    w0=$(link_counters)
    run_client "$work/client.out"
    w1=$(link_counters)
    stop_server
    judge realize
    if [ "$status" = ok ]; then
        sent=$(grep -o 'bytes_sent=[0-9]*' "$work/second.log" | awk -F= '{ s += $2 } END { print s + 0 }')
        note=$(awk -v h="$have" -v n="$size" -v s="$sent" 'BEGIN { m = n - h
            printf "killed at %.0f%%; the second run sent %.1f MiB for %.1f MiB missing (%+.2f%%)", h * 100 / n, s / 1048576, m / 1048576, (s - m) * 100 / m }')
    fi
    record realize "$status" "$secs" "$((size - have))" "$w0" "$w1" "$note"
    restore "$status" realize
}

# L1's baseline: dd copies the file into the destination's file system in
# 1 MiB blocks with one fsync at the end, the rate the disk allows.
run_dd() {
    settle
    cmd=(dd if="$src/file.bin" of="$dst/file.bin" bs=1M conv=fsync status=none)
    rss_server=-
    run_client "$work/client.out"
    status=ok note=""
    ((rc == 0)) || status=FAIL note="exit $rc: $(tail -n 1 "$work/client.out")"
    record dd "$status" "$secs" "$(data_bytes)" "- - 0 - - - -" "- - 0 - - - -" "$note"
    rm -f "$dst/file.bin"
}

# W7: realize alone while ping measures the queue it builds, then beside a
# TCP flow (iperf3 with BBR, then Cubic) that runs from 10 s before the move
# to its end. The TCP flow is recorded as tool iperf3, at its rate over the
# move (iperf3's one-second reports), so its ratio column compares the two.
run_competing() {
    local unit_of_link=$unit tcp
    unit=$unit_of_link-alone
    run_with_ping
    unit=$unit_of_link-two
    run_two_moves
    for tcp in bbr cubic; do
        unit=$unit_of_link-$tcp
        if grep -qw "$tcp" /proc/sys/net/ipv4/tcp_available_congestion_control; then
            run_beside_tcp "$tcp"
        else
            record iperf3 FAIL - 0 "- - 0 - - - -" "- - 0 - - - -" "the kernel has no $tcp"
        fi
    done
    unit=$unit_of_link
}

# Two realize moves on the link, the second starting 8 s after the first
# into the same daemon; records the first's share of what both moved while
# both ran, from the sizes of their partial files, sampled every 0.2 s.
run_two_moves() {
    local other=$work/src2 first_pid t0 w0 w1 rc2=0
    settle
    rm -rf "$other" && mkdir -p "$other"
    cp "$src/file.bin" "$other/file2.bin"
    start_server realize
    sample_partials "$dst/.realize~part.file.bin" "$dst/.realize~part.file2.bin" > "$work/sizes" &
    sampler=$!
    w0=$(link_counters)
    t0=$EPOCHREALTIME
    client_cmd realize
    "${ns_a[@]}" timeout --foreground -k 10 "$timeout_s" "${cmd[@]}" > "$work/first.out" 2>&1 &
    first_pid=$!
    sleep 8
    cmd=("${cmd[@]/#$src/$other}")
    "${ns_a[@]}" timeout --foreground -k 10 "$timeout_s" "${cmd[@]}" > "$work/client.out" 2>&1 || rc2=$?
    rc=0
    wait "$first_pid" || rc=$?
    ((rc != 0)) || rc=$rc2
    secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
    w1=$(link_counters)
    kill "$sampler"
    wait "$sampler" 2>/dev/null || true
    sampler=
    stop_server
    rss_cmd=-
    status=ok note=""
    if ((rc == 124 || rc == 137)); then
        status=timeout
    elif ((rc != 0)); then
        status=FAIL note="exit $rc: $(tail -n 1 "$work/client.out" "$work/first.out" | tr '\n' ' ')"
    elif [ -n "$(find "$src" "$other" -type f -print -quit)" ] || ! cmp -s "$dst/file.bin" "$dst/file2.bin"; then
        status=FAIL note="the destination does not hold both files, or a source is not empty"
    else
        note=$(overlap_shares < "$work/sizes")
    fi
    record realize "$status" "$secs" $(($(data_bytes) * 2)) "$w0" "$w1" "$note"
    rm -rf "$other"
    if [ "$status" = ok ]; then
        rm "$dst/file2.bin" && rm -rf "$src" && mv "$dst" "$src" && mkdir "$dst"
    else
        generate
    fi
}

# Prints, every 0.2 s, the time and the sizes of the files FIRST and
# SECOND (- while one does not exist).
sample_partials() {
    while true; do
        printf '%s %s %s\n' "$EPOCHREALTIME" "$(stat -c %s "$1" 2>/dev/null || echo -)" \
            "$(stat -c %s "$2" 2>/dev/null || echo -)"
        sleep 0.2
    done
}

# Reads sample_partials' lines; prints each move's rate over the time both
# partial files grew (from 3 s after the second appeared to the last sample
# before either was renamed), and the first's share.
overlap_shares() {
    awk '
        $2 != "-" && $3 != "-" { if (!n++) start = $1; if ($1 >= start + 3) { if (!t0) { t0 = $1; a0 = $2; b0 = $3 } t1 = $1; a1 = $2; b1 = $3 } }
        END {
            if (!t0 || t1 <= t0) { print "the two moves did not overlap long enough"; exit }
            ra = (a1 - a0) * 8 / (t1 - t0) / 1e6; rb = (b1 - b0) * 8 / (t1 - t0) / 1e6
            printf "over the %.0f s both ran: first %.1f Mbit/s, second %.1f Mbit/s (first'"'"'s share %.0f%%)",
                t1 - t0, ra, rb, 100 * ra / (ra + rb)
        }'
}

# Runs realize with ping sending 5 echo requests a second along the data's
# way; notes the round trips during the move over the lowest before it.
run_with_ping() {
    local before w0 w1
    settle
    client_cmd realize
    start_server realize
    "${ns_a[@]}" ping -n -i 0.2 "$addr" > "$work/ping.out" 2>&1 &
    ping_pid=$!
    sleep 3
    before=$(grep -c 'time=' "$work/ping.out" || true)
    w0=$(link_counters)
    run_client "$work/client.out"
    w1=$(link_counters)
    kill "$ping_pid"
    wait "$ping_pid" 2>/dev/null || true
    ping_pid=
    stop_server
    judge realize
    [ "$status" != ok ] || note=$(queueing_note "$before" < "$work/ping.out")
    record realize "$status" "$secs" "$(data_bytes)" "$w0" "$w1" "$note"
    restore "$status" realize
}

# Reads ping's output; prints the median and 90th percentile of the round
# trips after the first SKIP replies, over the lowest of those SKIP.
queueing_note() {
    local times idle
    times=$(sed -n 's/.*time=\([0-9.]*\) ms/\1/p')
    idle=$(head -n "$1" <<< "$times" | sort -n | head -n 1)
    tail -n +"$(($1 + 1))" <<< "$times" | sort -n | awk -v idle="$idle" '
        { rtt[++n] = $1 }
        END {
            if (n == 0 || idle == "") { print "no ping replies during the move"; exit }
            p90 = int(n * 0.9 + 0.5); if (p90 < 1) p90 = 1
            printf "queueing (ping): +%.1f ms median, +%.1f ms p90 over the idle %.1f ms",
                rtt[int((n + 1) / 2)] - idle, rtt[p90] - idle, idle
        }'
}

# Runs realize while a TCP flow with congestion control CC sends the same
# way; records both.
run_beside_tcp() {
    local tcp=$1 t0 t1 w0 w1 mbit
    settle
    client_cmd realize
    start_server realize
    "${ns_b[@]}" iperf3 -s -1 --forceflush -p "$((rport + 1))" > "$work/iperf-server.out" 2>&1 &
    iperf_server=$!
    wait_for_line "$work/iperf-server.out" 'Server listening' "$iperf_server" || die "iperf3 -s did not start"
    "${ns_a[@]}" iperf3 -c "$addr" -p "$((rport + 1))" -C "$tcp" -t 3600 -i 1 --forceflush \
        --timestamps='%s ' > "$work/iperf.out" 2>&1 &
    iperf_client=$!
    sleep 10
    t0=$EPOCHREALTIME
    w0=$(link_counters)
    run_client "$work/client.out"
    w1=$(link_counters)
    t1=$EPOCHREALTIME
    kill -INT "$iperf_client"
    wait "$iperf_client" 2>/dev/null || true
    wait "$iperf_server" 2>/dev/null || true
    iperf_client= iperf_server=
    stop_server
    judge realize
    record realize "$status" "$secs" "$(data_bytes)" "$w0" "$w1" "$note"
    restore "$status" realize
    mbit=$(tcp_rate "$t0" "$t1" < "$work/iperf.out")
    rss_cmd=- rss_server=- cc=$tcp
    if [ -n "$mbit" ]; then
        record iperf3 ok "$secs" "$(awk -v m="$mbit" -v s="$secs" 'BEGIN { printf "%.0f", m * 1e6 / 8 * s }')" \
            "- - 0 - - - -" "- - 0 - - - -" "its rate over the move: $mbit Mbit/s"
    else
        record iperf3 FAIL - 0 "- - 0 - - - -" "- - 0 - - - -" "no iperf3 report during the move"
    fi
    cc=$wan_cc
}

# Reads iperf3's timestamped one-second reports; prints the mean rate, in
# Mbit/s, of those that ended between FROM and TO (epoch seconds).
tcp_rate() {
    awk -v from="$1" -v to="$2" '
        $1 > from + 1 && $1 <= to && / sec / {
            for (i = 2; i <= NF; i++) if ($i ~ /bits\/sec$/) {
                r = $(i - 1); u = substr($i, 1, 1)
                sum += (u == "K" ? r / 1000 : u == "G" ? r * 1000 : u == "M" ? r : r / 1e6); n++
            }
        }
        END { if (n) printf "%.1f", sum / n }'
}

# Runs every selected tool on scenario UNIT.
run_unit() {
    unit=$1
    spec "$unit"
    local need avail
    need=$(($(data_bytes) * 2 + (64 << 20)))
    avail=$(df -B1 --output=avail "$base" | tail -n 1)
    ((avail > need)) || die "$unit needs $((need >> 20)) MiB free in $base, which has $((avail >> 20)) MiB; set BENCH_TMP or SCALE"
    work=$base/$unit src=$base/$unit/src dst=$base/$unit/dst
    mkdir -p "$work"
    echo "== $unit: generating $(($(data_bytes) >> 20)) MiB" >&2
    generate
    link_up
    write_ssh_configs
    [ "$unit" != L1 ] || run_dd
    for tool in "${tools[@]}"; do
        case $unit/$tool in
            R1/realize) run_resume ;;
            W7/realize) run_competing ;;
            *-warm/realize) run_warm ;;
            R1/* | W7/* | *-warm/*) ;;
            *) run_tool "$tool" ;;
        esac
    done
    link_down
    rm -rf "$work"
}

# Prints the results as a Markdown table (and writes $CSV if set): goodput
# in Mbit/s, realize's goodput over the best peer's, wire bytes per file
# byte each way, peak RSS in MiB.
report() {
    awk -F'\t' -v to="$timeout_s" -v csv="${CSV:-}" '
        function mbit(b, s) { return b * 8 / s / 1e6 }
        # The baseline of a scenario: dd on L1, the TCP flow on W7, else scp and rsync.
        function peer(u, t) { return u == "L1" ? t == "dd" : u ~ /^W7-/ ? t == "iperf3" : t == "scp" || t == "rsync" }
        NR == FNR {                     # first pass: best and bound of the peers per scenario
            if (peer($1, $2) && $3 == "ok" && mbit($5, $4) > best[$1]) best[$1] = mbit($5, $4)
            if (peer($1, $2) && $3 == "timeout" && mbit($5, to) > bound[$1]) bound[$1] = mbit($5, to)
            next
        }
        {
            g = "FAIL"; r = "-"; rv = ""; s = $4; a = "-"; b = "-"; gv = ""
            if ($3 == "ok") { gv = mbit($5, $4); g = sprintf("%.1f", gv) }
            if ($3 == "timeout") { s = ">" to; g = sprintf("<%.1f", mbit($5, to)) }
            if ($2 == "realize" && $1 !~ /^(R1|T1)/) {
                if ($3 == "ok" && best[$1] > 0) { rv = gv / best[$1]; r = sprintf("%.2f", rv) }
                else if ($3 == "ok" && bound[$1] > 0) r = sprintf(">%.2f", gv / bound[$1])
                else if ($3 == "timeout" && best[$1] > 0) r = sprintf("<%.2f", mbit($5, to) / best[$1])
            }
            if ($3 == "ok" && $6 != "-") { a = sprintf("%.3f", $6 / $5); b = sprintf("%.3f", $7 / $5) }
            rc = ($8 == "-" ? "-" : sprintf("%.0f", $8 / 1024)); rd = ($9 == "-" ? "-" : sprintf("%.0f", $9 / 1024))
            qd = ($12 == "-" || $12 == "" || $12 == 0 ? "-" : sprintf("%.2f", $13 * 100 / $12))
            row[++n] = $2 "\t" $1 "\t" s "\t" g "\t" r "\t" a "\t" b "\t" ($12 == "" ? "-" : $12) "\t" qd "\t" rc "\t" rd "\t" $10 "\t" $11
            if (csv != "") printf "%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,\"%s\"\n", $1, $2, $3, ($3 == "timeout" ? to : $4), $5, gv, rv,
                (a == "-" ? "" : a), (b == "-" ? "" : b), ($12 == "-" ? "" : $12), (qd == "-" ? "" : qd),
                (rc == "-" ? "" : rc), (rd == "-" ? "" : rd), $10, $11 >> csv
        }
        END {
            row[0] = "tool\tscenario\tseconds\tgoodput Mbit/s\tratio to best peer\twire a2b/byte\twire b2a/byte\tpackets sent\tqueue drops %\tRSS cmd MiB\tRSS daemon MiB\ttcp cc\tnote"
            for (i = 0; i <= n; i++) { k = split(row[i], c, "\t"); for (j = 1; j <= k; j++) if (length(c[j]) > w[j]) w[j] = length(c[j]) }
            for (i = 0; i <= n; i++) {
                k = split(row[i], c, "\t"); line = "|"
                for (j = 1; j <= k; j++) line = line sprintf(" %-" w[j] "s |", c[j])
                print line
                if (i == 0) { line = "|"; for (j = 1; j <= k; j++) { d = ""; for (x = 0; x < w[j] + 2; x++) d = d "-"; line = line d "|" }; print line }
            }
        }' "$base/results.tsv" "$base/results.tsv"
}

# Stops what is still running and removes the link and the data.
cleanup() {
    if [ -n "${first_pid:-}" ]; then kill -KILL "$first_pid" 2>/dev/null || true; fi
    for pid in ${ping_pid:-} ${sampler:-} ${iperf_client:-} ${iperf_server:-}; do kill "$pid" 2>/dev/null || true; done
    if [ -n "${client_pid:-}" ]; then    # GNU time; its child, timeout, passes SIGTERM on to the command
        kill -TERM "$(ps -o pid= --ppid "$client_pid" | tr -d ' ')" 2>/dev/null || true
        wait "$client_pid" 2>/dev/null || true
    fi
    if [ -n "${server_pid:-}" ]; then kill -TERM "$server_pid" 2>/dev/null || true; wait "$server_time_pid" 2>/dev/null || true; fi
    link_down
    rm -rf "${base:?}"
}

wan=0
for u in "${units[@]}"; do spec "$u"; [ -z "$link_spec" ] || wan=1; done
emulator=loopback
if ((wan)); then choose_emulator; fi

cargo build --release --quiet
base=$(mktemp -d "${BENCH_TMP:-${TMPDIR:-/tmp}}/realize-scenarios.XXXXXX")
trap cleanup EXIT
trap 'exit 130' INT TERM
: > "$base/results.tsv"
mkdir "$base/keys" "$base/ssh"
make_keys "$base/keys"
ssh-keygen -q -t ed25519 -N '' -C bench-host -f "$base/ssh/host_key"
ssh-keygen -q -t ed25519 -N '' -C bench-user -f "$base/ssh/user_key"
cp "$base/ssh/user_key.pub" "$base/ssh/authorized_keys"
echo "bench $(cut -d' ' -f1,2 "$base/ssh/host_key.pub")" > "$base/ssh/known_hosts"
if [ -n "${CSV:-}" ]; then
    echo "scenario,tool,status,seconds,file_bytes,goodput_mbit,ratio_to_best_peer,wire_a2b_per_byte,wire_b2a_per_byte,packets_sent,queue_drops_percent,rss_cmd_mib,rss_daemon_mib,tcp_cc,note" > "$CSV"
fi

for u in "${units[@]}"; do run_unit "$u"; done

echo
echo "$("$bin/realize" --version) ($(git describe --always --dirty 2>/dev/null || echo unknown)); REALIZE_ARGS: ${REALIZE_ARGS:-none}; SCALE $scale; timeout ${timeout_s} s; link emulator: $emulator; $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores"
echo
report
