#!/usr/bin/env bash
# Compare container engines through the docker CLI. See bench/README.md.
#
#   bench/engine.sh --image busybox \
#       --socket berth=/run/berth/berth.sock --socket docker=/var/run/docker.sock
#
# Per engine: `run --rm IMG true` latency (median/min/max of --runs), `exec C true` into a running
# container (--exec-runs times each: through the docker CLI, through the raw API without any CLI
# (exec create + attached start until the stream ends), through berth's CLI with --berth-cli, and
# `docker version` as the CLI's own floor), --containers sequential
# `run -d IMG sleep 1000` (total time), the engine's RSS idle and with those containers running,
# the per-container monitor's RSS and PSS (the parent process of each container's init: `berth shim`,
# containerd-shim-runc-v2, ...), and the time to `rm -f` them all. Prints a markdown table.
set -euo pipefail

usage() {
    cat >&2 <<'USAGE'
usage: bench/engine.sh --image IMG --socket LABEL=PATH [--socket LABEL=PATH ...]
                       [--engine-pid LABEL=PID[,PID...]] [--runs N] [--containers N]
                       [--exec-runs N] [--berth-cli PATH]
  --socket      a local unix socket of an engine (repeatable); LABEL names its column
  --image       an image present in every engine that has `true` and `sleep` (e.g. busybox)
  --engine-pid  pid(s) of the engine for LABEL (default: the process listening on the socket;
                for docker pass dockerd's and containerd's pids to count both)
  --runs        number of `run --rm IMG true` runs (default 20)
  --containers  number of `run -d IMG sleep 1000` containers (default 50)
  --exec-runs   number of `exec C true` per client (default 50; 0 skips the exec rows)
  --berth-cli   a berth binary: also time `berth exec C true` (it speaks the same API)
USAGE
    exit 2
}

image="" runs=20 count=50 exec_runs=50 berth_cli=""
labels=()
declare -A sock=() epids=()
while [ $# -gt 0 ]; do
    case $1 in
    --socket)
        [ $# -ge 2 ] || usage
        if [[ $2 == *=* ]]; then l=${2%%=*} p=${2#*=}; else p=$2 l=$(basename "$2" .sock); fi
        p=${p#unix://}
        labels+=("$l") sock[$l]=$p
        shift 2
        ;;
    --engine-pid) [ $# -ge 2 ] || usage; epids[${2%%=*}]=${2#*=}; shift 2 ;;
    --image) [ $# -ge 2 ] || usage; image=$2; shift 2 ;;
    --runs) [ $# -ge 2 ] || usage; runs=$2; shift 2 ;;
    --containers) [ $# -ge 2 ] || usage; count=$2; shift 2 ;;
    --exec-runs) [ $# -ge 2 ] || usage; exec_runs=$2; shift 2 ;;
    --berth-cli) [ $# -ge 2 ] || usage; berth_cli=$2; shift 2 ;;
    -h | --help) usage ;;
    *) echo "unknown argument: $1" >&2; usage ;;
    esac
done
[ -n "$image" ] && [ ${#labels[@]} -gt 0 ] || usage
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
check_sockets
setup_docker_client
results=$(mktemp)
cur_label=""

cleanup() {
    if [ -n "$cur_label" ]; then
        local ids
        ids=$(dk ps -aq --filter "label=berth.bench=$runid" 2>/dev/null || true)
        [ -z "$ids" ] || dk rm -f $ids >/dev/null 2>&1 || true
    fi
}
trap 'cleanup; rm -f "$results"' EXIT

# Milliseconds between two ${EPOCHREALTIME} values with the dot removed (microseconds).
elapsed_ms() { local d=$(($2 - $1)); printf '%d.%03d' $((d / 1000)) $((d % 1000)); }
put() { printf '%s\t%s\t%s\n' "$cur_label" "$1" "$2" >>"$results"; }

# The engine's pid(s): --engine-pid, else the listener of the socket (ss), else fuser.
engine_pids() {
    local l=$1 p
    if [ -n "${epids[$l]:-}" ]; then echo "${epids[$l]//,/ }"; return; fi
    p=$(ss -xlpn 2>/dev/null | awk -v s="${sock[$l]}" '$5 == s' | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
    if [ -z "$p" ] && command -v fuser >/dev/null; then
        p=$(fuser "${sock[$l]}" 2>/dev/null | awk '{print $1}')
    fi
    # A socket-activated docker.sock is held by systemd (pid 1): measure dockerd instead.
    if [ "$p" = 1 ]; then p=$(pgrep -x dockerd | head -1); fi
    echo "$p"
}

# Sum of a field (kB) of /proc/PID/status (VmRSS) or smaps_rollup (Pss) over pids, in kB.
sum_kb() {
    local file=$1 field=$2 total=0 v
    shift 2
    for p in "$@"; do
        v=$(awk -v f="$field:" '$1 == f { print $2 }' "/proc/$p/$file" 2>/dev/null || true)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

# `exec C true` latencies into one running container: docker CLI, raw API (python3 over the
# socket: POST /containers/C/exec, then POST /exec/ID/start attached, until the stream ends),
# berth's CLI (--berth-cli), and `docker version` (the CLI's start plus one round trip).
bench_exec() {
    local c i t0 t1
    [ "$exec_runs" -gt 0 ] || return 0
    c=$(dk run -d --label "berth.bench=$runid" "$image" sleep 1000)
    dk exec "$c" true # warm-up
    for ((i = 0; i < exec_runs; i++)); do
        t0=${EPOCHREALTIME/[.,]/}
        dk exec "$c" true
        t1=${EPOCHREALTIME/[.,]/}
        put exec_cli "$(elapsed_ms "$t0" "$t1")"
        t0=${EPOCHREALTIME/[.,]/}
        dk version >/dev/null
        t1=${EPOCHREALTIME/[.,]/}
        put cli_floor "$(elapsed_ms "$t0" "$t1")"
        if [ -n "$berth_cli" ]; then
            t0=${EPOCHREALTIME/[.,]/}
            BERTH_HOST="unix://${sock[$cur_label]}" "$berth_cli" exec "$c" true
            t1=${EPOCHREALTIME/[.,]/}
            put exec_berth "$(elapsed_ms "$t0" "$t1")"
        fi
    done
    python3 - "${sock[$cur_label]}" "$c" "$exec_runs" <<'PY' | while read -r ms; do put exec_api "$ms"; done
import json, socket, sys, time
path, ctr, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
def call(method, target, body):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    b = json.dumps(body).encode()
    s.sendall(f"{method} {target} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n"
              f"Content-Length: {len(b)}\r\nConnection: close\r\n\r\n".encode() + b)
    out = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        out += d
    s.close()
    return out
for i in range(n + 1):
    t = time.perf_counter()
    r = call("POST", f"/containers/{ctr}/exec",
             {"Cmd": ["true"], "AttachStdout": True, "AttachStderr": True})
    body = r.split(b"\r\n\r\n", 1)[1]
    if b"transfer-encoding: chunked" in r.split(b"\r\n\r\n", 1)[0].lower():
        body = body.split(b"\r\n", 1)[1]
    eid = json.loads(body.split(b"\r\n")[0])["Id"]
    call("POST", f"/exec/{eid}/start", {"Detach": False, "Tty": False})
    if i:  # the first is a warm-up
        print(f"{(time.perf_counter() - t) * 1000:.3f}")
PY
    dk rm -f "$c" >/dev/null
}

bench_one() {
    local l=$1 pids t0 t1 i ids=() monitors=() p
    cur_label=$l
    if ! dk image inspect "$image" >/dev/null 2>&1; then
        echo "$l: image $image not found (tests/fixtures/busybox-rootfs.sh builds one to import)" >&2
        exit 1
    fi
    pids=$(engine_pids "$l")
    echo "== $l (${sock[$l]}, engine pid(s): ${pids:-unknown})" >&2
    dk run --rm "$image" true >/dev/null # warm-up

    for ((i = 0; i < runs; i++)); do
        t0=${EPOCHREALTIME/[.,]/}
        dk run --rm "$image" true >/dev/null
        t1=${EPOCHREALTIME/[.,]/}
        put run_rm "$(elapsed_ms "$t0" "$t1")"
    done
    bench_exec
    # shellcheck disable=SC2086
    [ -z "$pids" ] || put rss_idle "$(sum_kb status VmRSS $pids)"

    local ta tb
    t0=${EPOCHREALTIME/[.,]/}
    for ((i = 0; i < count; i++)); do
        ta=${EPOCHREALTIME/[.,]/}
        ids+=("$(dk run -d --label "berth.bench=$runid" "$image" sleep 1000)")
        tb=${EPOCHREALTIME/[.,]/}
        put run_d "$(elapsed_ms "$ta" "$tb")"
    done
    t1=${EPOCHREALTIME/[.,]/}
    put run_d_total "$(elapsed_ms "$t0" "$t1")"

    # The monitor of a container is the parent of its init process.
    for id in "${ids[@]}"; do
        p=$(dk inspect -f '{{.State.Pid}}' "$id")
        if [ -n "$p" ] && [ "$p" != 0 ] && [ -r "/proc/$p/status" ]; then
            monitors+=("$(awk '$1 == "PPid:" { print $2 }' "/proc/$p/status")")
        fi
    done
    if [ ${#monitors[@]} -gt 0 ]; then
        mapfile -t monitors < <(printf '%s\n' "${monitors[@]}" | sort -un)
        put monitors "${#monitors[@]}"
        put monitor_rss "$(sum_kb status VmRSS "${monitors[@]}")"
        put monitor_pss "$(sum_kb smaps_rollup Pss "${monitors[@]}")"
        put monitor_names "$(for m in "${monitors[@]}"; do cat "/proc/$m/comm" 2>/dev/null; done | sort -u | paste -sd, -)"
    fi
    # shellcheck disable=SC2086
    [ -z "$pids" ] || put rss_loaded "$(sum_kb status VmRSS $pids)"

    t0=${EPOCHREALTIME/[.,]/}
    dk rm -f "${ids[@]}" >/dev/null
    t1=${EPOCHREALTIME/[.,]/}
    put rm_total "$(elapsed_ms "$t0" "$t1")"
    cur_label=""
}

for l in "${labels[@]}"; do bench_one "$l"; done

python3 - "$results" "$runs" "$count" "$exec_runs" "${labels[@]}" <<'PY'
import statistics, sys
path, runs, count, exec_runs, labels = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5:]
data = {}
for line in open(path):
    label, key, value = line.rstrip("\n").split("\t")
    data.setdefault(label, {}).setdefault(key, []).append(value)

def num(label, key):
    v = data.get(label, {}).get(key)
    return [float(x) for x in v] if v else None

def cell(label, key):
    d, v = data.get(label, {}), num(label, key) if key != "monitor_names" else None
    if key in ("run_rm", "run_d", "exec_cli", "exec_api", "exec_berth", "cli_floor") and v:
        return f"{statistics.median(v):.1f} ({min(v):.1f}–{max(v):.1f})"
    if key in ("run_d_total", "rm_total") and v:
        return f"{v[0] / 1000:.2f} s ({v[0] / count:.1f} ms each)"
    if key in ("rss_idle", "rss_loaded") and v:
        return f"{v[0] / 1024:.1f}"
    if key in ("monitor_rss", "monitor_pss") and v:
        n = num(label, "monitors")[0]
        return f"{v[0] / n / 1024:.2f}"
    if key == "monitor_names" and d.get(key):
        return f"{d['monitors'][0]} × {d[key][0]}"
    return "n/a"

rows = [
    (f"`run --rm IMG true`, median ms (min–max), n={runs}", "run_rm"),
    (f"`exec C true` (docker CLI), median ms (min–max), n={exec_runs}", "exec_cli"),
    (f"`exec C true` (raw API: create + attached start), median ms (min–max), n={exec_runs}", "exec_api"),
    (f"`berth exec C true` (berth's CLI), median ms (min–max), n={exec_runs}", "exec_berth"),
    (f"`docker version` (the CLI's floor), median ms (min–max), n={exec_runs}", "cli_floor"),
    (f"`run -d IMG sleep 1000`, median ms (min–max), n={count}", "run_d"),
    (f"{count} × `run -d IMG sleep 1000`, total", "run_d_total"),
    ("engine RSS idle, MiB", "rss_idle"),
    (f"engine RSS with {count} containers, MiB", "rss_loaded"),
    ("monitors", "monitor_names"),
    ("monitor RSS per container, MiB", "monitor_rss"),
    ("monitor PSS per container, MiB", "monitor_pss"),
    (f"`rm -f` of {count} containers, total", "rm_total"),
]
print("| | " + " | ".join(labels) + " |")
print("|---|" + "---|" * len(labels))
for title, key in rows:
    print(f"| {title} | " + " | ".join(cell(l, key) for l in labels) + " |")
PY
