#!/usr/bin/env bash
# Networks (issue 5) through the docker CLI. See bench/README.md.
#
#   bench/net.sh --image busybox --socket berth=/run/berth/berth.sock [--socket docker=...]
#
# Per engine:
#   - start latency: wall time of `docker run --rm --network bridge IMG true` against the same with
#     `--network none` (median/min/max of --runs, interleaved), and the difference of the medians;
#   - throughput with iperf3 (Debian's, run on the host binary inside the container's network
#     namespace with nsenter, so the image needs nothing): host → container through a port
#     published on 127.0.0.1, through the same port on the host's own address, and straight to
#     the container's address over the bridge and veth (the plain path, no DNAT); container →
#     container on a user-defined network. Prints a markdown table.
# Traffic stays on this host: 127.0.0.1, the host's own address, and the containers it starts.
set -euo pipefail

usage() {
    cat >&2 <<'USAGE'
usage: bench/net.sh --image IMG --socket LABEL=PATH [--socket LABEL=PATH ...]
                    [--runs N] [--seconds S] [--port P]
  --socket    a local unix socket of an engine (repeatable); LABEL names its column
  --image     an image present in every engine with sh, true, sleep (e.g. busybox)
  --runs      number of runs of each start-latency row (default 20)
  --seconds   duration of each iperf3 measurement (default 5)
  --port      host port published on 127.0.0.1 and the host address (default 25201)
USAGE
    exit 2
}

image="" runs=20 seconds=5 port=25201
labels=()
declare -A sock=()
while [ $# -gt 0 ]; do
    case $1 in
    --socket)
        [ $# -ge 2 ] || usage
        if [[ $2 == *=* ]]; then l=${2%%=*} p=${2#*=}; else p=$2 l=$(basename "$2" .sock); fi
        p=${p#unix://}
        labels+=("$l") sock[$l]=$p
        shift 2
        ;;
    --image) [ $# -ge 2 ] || usage; image=$2; shift 2 ;;
    --runs) [ $# -ge 2 ] || usage; runs=$2; shift 2 ;;
    --seconds) [ $# -ge 2 ] || usage; seconds=$2; shift 2 ;;
    --port) [ $# -ge 2 ] || usage; port=$2; shift 2 ;;
    -h | --help) usage ;;
    *) echo "unknown argument: $1" >&2; usage ;;
    esac
done
[ -n "$image" ] && [ ${#labels[@]} -gt 0 ] || usage
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
check_sockets
setup_docker_client
have_iperf=1
command -v iperf3 >/dev/null && command -v nsenter >/dev/null || have_iperf=0
[ "$have_iperf" = 1 ] || echo "iperf3 or nsenter missing (apt-get install iperf3): throughput rows skipped" >&2
results=$(mktemp)
cur_label=""
net=""
servers=()

cleanup() {
    local p
    for p in "${servers[@]}"; do kill "$p" 2>/dev/null || true; done
    if [ -n "$cur_label" ]; then
        local ids
        ids=$(dk ps -aq --filter "label=berth.bench=$runid" 2>/dev/null || true)
        [ -z "$ids" ] || dk rm -f $ids >/dev/null 2>&1 || true
        [ -z "$net" ] || dk network rm "$net" >/dev/null 2>&1 || true
    fi
    rm -f "$results"
}
trap cleanup EXIT

now() { echo "${EPOCHREALTIME/[.,]/}"; }
elapsed_ms() { local d=$(($2 - $1)); printf '%d.%03d' $((d / 1000)) $((d % 1000)); }
put() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$results"; }
# median min max of the numbers on stdin
stats() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.1f %.1f %.1f\n", m, a[1], a[NR]}'; }

# The host's first global IPv4 address (the published port is reached through it too).
host_ip=$(ip -o -4 addr show scope global | awk '{split($4,a,"/"); print a[1]; exit}')

pid_of() { dk inspect -f '{{.State.Pid}}' "$1"; }
ip_of() { dk inspect -f "{{(index .NetworkSettings.Networks \"$2\").IPAddress}}" "$1"; }

# iperf3 server in the netns of container $1 on port 5201 (one client, then it exits).
serve() {
    # The previous one-shot server must be gone, or its socket is mistaken for the new one's
    # (killed: after a failed client it would wait for one forever).
    if [ ${#servers[@]} -gt 0 ]; then
        kill "${servers[-1]}" 2>/dev/null || true
        wait "${servers[-1]}" 2>/dev/null || true
    fi
    nsenter -t "$(pid_of "$1")" -n iperf3 -s -1 -p 5201 >/dev/null 2>&1 &
    servers+=($!)
    local i
    for i in $(seq 50); do
        nsenter -t "$(pid_of "$1")" -n sh -c 'grep -q ":1451 " /proc/net/tcp /proc/net/tcp6' && return 0
        sleep 0.1
    done
    echo "iperf3 server did not start" >&2
    return 1
}

# Gbit/s received by the server, from iperf3 -J of a client run with "$@" as prefix (nsenter).
gbits() {
    local out
    out=$("$@" timeout $((seconds + 15)) iperf3 -J --connect-timeout 3000 -t "$seconds" -c "$target" -p "$tport") || { echo "n/a"; return; }
    echo "$out" | awk -F: '/"sum_received"/ {f=1} f && /"bits_per_second"/ {gsub(/[ ,]/,"",$2); printf "%.2f", $2/1e9; exit}'
}

for cur_label in "${labels[@]}"; do
    echo "== $cur_label" >&2
    lbl=(--label "berth.bench=$runid")
    # Start latency, bridge vs none, interleaved so that load drifts hit both alike.
    dk run --rm "${lbl[@]}" "$image" true >/dev/null
    dk run --rm "${lbl[@]}" --network none "$image" true >/dev/null
    : >/tmp/net-bench-bridge.$$
    : >/tmp/net-bench-none.$$
    for _ in $(seq "$runs"); do
        for mode in bridge none; do
            t0=$(now)
            dk run --rm "${lbl[@]}" --network "$mode" "$image" true >/dev/null
            t1=$(now)
            echo "$(elapsed_ms "$t0" "$t1")" >>"/tmp/net-bench-$mode.$$"
        done
    done
    read -r bm bmin bmax < <(stats </tmp/net-bench-bridge.$$)
    read -r nm nmin nmax < <(stats </tmp/net-bench-none.$$)
    rm -f /tmp/net-bench-bridge.$$ /tmp/net-bench-none.$$
    put "$cur_label" "run --rm --network bridge (ms, median/min/max)" "$bm / $bmin / $bmax"
    put "$cur_label" "run --rm --network none (ms, median/min/max)" "$nm / $nmin / $nmax"
    put "$cur_label" "bridge adds to start (ms, difference of medians)" "$(awk "BEGIN{printf \"%.1f\", $bm-$nm}")"

    if [ "$have_iperf" = 1 ]; then
        srv=$(dk run -d "${lbl[@]}" -p "$port:5201" "$image" sleep 3600)
        cip=$(ip_of "$srv" bridge)
        serve "$srv"; target=127.0.0.1 tport=$port
        put "$cur_label" "host → container, published port on 127.0.0.1 (Gbit/s)" "$(gbits env)"
        serve "$srv"; target=$host_ip tport=$port
        put "$cur_label" "host → container, published port on $host_ip (Gbit/s)" "$(gbits env)"
        serve "$srv"; target=$cip tport=5201
        put "$cur_label" "host → container address over the bridge, no DNAT (Gbit/s)" "$(gbits env)"
        net=bench-net-$$
        dk network create "$net" >/dev/null
        a=$(dk run -d "${lbl[@]}" --network "$net" "$image" sleep 3600)
        b=$(dk run -d "${lbl[@]}" --network "$net" "$image" sleep 3600)
        serve "$a"; target=$(ip_of "$a" "$net") tport=5201
        put "$cur_label" "container → container, user network (Gbit/s)" "$(gbits nsenter -t "$(pid_of "$b")" -n)"
        dk rm -f "$srv" "$a" "$b" >/dev/null
        dk network rm "$net" >/dev/null
        net=""
    fi
done

echo
printf '| measurement |'
for l in "${labels[@]}"; do printf ' %s |' "$l"; done
echo
printf '|---|'
for _ in "${labels[@]}"; do printf -- '---|'; done
echo
cut -f2 "$results" | awk '!seen[$0]++' | while IFS= read -r row; do
    printf '| %s |' "$row"
    for l in "${labels[@]}"; do
        v=$(awk -F'\t' -v l="$l" -v r="$row" '$1==l && $2==r {print $3}' "$results")
        printf ' %s |' "${v:-}"
    done
    echo
done
