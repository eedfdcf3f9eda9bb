#!/usr/bin/env bash
# Files, exec and volumes (issue 6) through the docker CLI. See bench/README.md.
#
#   bench/files.sh --image busybox --socket berth=/run/berth/berth.sock [--socket docker=...]
#
# Per engine: `docker exec C true` latency into a running container (median/min/max of --runs),
# `docker cp` of a directory (--cp-mb MB in ~1000 files of random data) into and out of a
# container (median of --cp-runs; with --berth CLI also `CLI cp` both ways) next to
# `tar -C src -cf - . | tar -C dst -xf -` between two host dirs, and write throughput (dd conv=fsync, --write-mb MB) to a named volume, a bind mount
# and the container's own layer. Prints a markdown table.
set -euo pipefail

usage() {
    cat >&2 <<'USAGE'
usage: bench/files.sh --image IMG --socket LABEL=PATH [--socket LABEL=PATH ...]
                      [--runs N] [--cp-runs N] [--cp-mb MB] [--write-mb MB] [--tmp DIR]
                      [--berth CLI]
  --socket    a local unix socket of an engine (repeatable); LABEL names its column
  --image     an image present in every engine with sh, true, sleep, dd, rm (e.g. busybox)
  --runs      number of `exec C true` runs (default 20)
  --cp-runs   number of `docker cp` runs each way, and of host tar pipes (default 5)
  --cp-mb     size of the copied directory in MB, in ~1000 files (default 100)
  --write-mb  size written by dd with conv=fsync, in MB (default 256)
  --tmp       host scratch dir for the tree, copies and the bind mount (default: mktemp -d)
  --berth     a berth binary: also time its own `cp` both ways (rows `berth cp ...`)
Every copy goes to a fresh name and the copies are deleted only at the end of an engine's
section: on ext4 without a journal, creating files right after deleting as many is much slower
(the inode allocator skips recently freed inodes), which made runs after an `rm -rf` unequal.
USAGE
    exit 2
}

image="" runs=20 cp_runs=5 cp_mb=100 write_mb=256 tmp="" berth_cli=""
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
    --cp-runs) [ $# -ge 2 ] || usage; cp_runs=$2; shift 2 ;;
    --cp-mb) [ $# -ge 2 ] || usage; cp_mb=$2; shift 2 ;;
    --write-mb) [ $# -ge 2 ] || usage; write_mb=$2; shift 2 ;;
    --tmp) [ $# -ge 2 ] || usage; tmp=$2; shift 2 ;;
    --berth) [ $# -ge 2 ] || usage; berth_cli=$2; shift 2 ;;
    -h | --help) usage ;;
    *) echo "unknown argument: $1" >&2; usage ;;
    esac
done
[ -n "$image" ] && [ ${#labels[@]} -gt 0 ] || usage
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
check_sockets
setup_docker_client
own_tmp=0
if [ -z "$tmp" ]; then tmp=$(mktemp -d /tmp/berth-files-bench.XXXXXX) own_tmp=1; fi
mkdir -p "$tmp"
results=$(mktemp)
cur_label=""
vol=""

cleanup() {
    if [ -n "$cur_label" ]; then
        local ids
        ids=$(dk ps -aq --filter "label=berth.bench=$runid" 2>/dev/null || true)
        [ -z "$ids" ] || dk rm -f $ids >/dev/null 2>&1 || true
        [ -z "$vol" ] || dk volume rm -f "$vol" >/dev/null 2>&1 || true
    fi
    rm -f "$results"
    if [ "$own_tmp" = 1 ]; then rm -rf "$tmp"; else rm -rf "$tmp/src" "$tmp"/dst* "$tmp"/out* "$tmp"/bout* "$tmp/bind"; fi
}
trap cleanup EXIT

now() { echo "${EPOCHREALTIME/[.,]/}"; }
# berth's own CLI against the engine being measured.
bk() { DOCKER_HOST="unix://${sock[$cur_label]}" "$berth_cli" "$@"; }
# Milliseconds between two now() values (microseconds).
elapsed_ms() { local d=$(($2 - $1)); printf '%d.%03d' $((d / 1000)) $((d % 1000)); }
put() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$results"; }

# The source tree: ~1000 files of random data, --cp-mb MB in all, in 10 directories.
src=$tmp/src
echo "building $src: $cp_mb MB in 1000 files" >&2
rm -rf "$src" && mkdir -p "$src"
per_file_kb=$((cp_mb * 1024 / 1000))
for d in $(seq 0 9); do
    mkdir -p "$src/d$d"
    for f in $(seq 0 99); do
        head -c "${per_file_kb}K" /dev/urandom >"$src/d$d/f$f"
    done
done
sync

# The host baseline: the same tree piped through tar between two host dirs (fresh dirs).
for ((i = 0; i < cp_runs; i++)); do
    mkdir -p "$tmp/dst$i"
    sync
    t0=$(now)
    tar -C "$src" -cf - . | tar -C "$tmp/dst$i" -xf -
    t1=$(now)
    put host tar "$(elapsed_ms "$t0" "$t1")"
done
rm -rf "$tmp"/dst*

# dd inside container C to PATH: MB/s from dd's own summary (busybox and GNU print "... B/s" or
# the bytes and seconds); the wall time of the whole `docker exec` is the fallback.
write_one() {
    local c=$1 path=$2 key=$3 t0 t1 out
    t0=$(now)
    out=$(dk exec "$c" dd if=/dev/zero of="$path" bs=1M count="$write_mb" conv=fsync 2>&1)
    t1=$(now)
    dk exec "$c" rm -f "$path"
    put "$cur_label" "$key" "$(awk -v mb="$write_mb" -v us=$((t1 - t0)) 'BEGIN { printf "%.1f", mb / (us / 1e6) }')"
    echo "  $key: $out" | tr '\n' ' ' >&2
    echo >&2
}

bench_one() {
    local l=$1 c t0 t1 i
    cur_label=$l
    if ! dk image inspect "$image" >/dev/null 2>&1; then
        echo "$l: image $image not found (tests/fixtures/busybox-rootfs.sh builds one to import)" >&2
        exit 1
    fi
    echo "== $l (${sock[$l]})" >&2
    vol=berth-bench-$runid
    dk volume create --label "berth.bench=$runid" "$vol" >/dev/null
    rm -rf "$tmp/bind" && mkdir -p "$tmp/bind"
    c=$(dk run -d --label "berth.bench=$runid" -v "$vol:/vol" -v "$tmp/bind:/bind" "$image" sleep 100000)
    dk exec "$c" true # warm-up

    for ((i = 0; i < runs; i++)); do
        t0=$(now)
        dk exec "$c" true
        t1=$(now)
        put "$l" exec "$(elapsed_ms "$t0" "$t1")"
    done

    # Each run copies in, then out, to fresh names (docker cp, then berth cp if asked).
    for ((i = 0; i < cp_runs; i++)); do
        sync
        t0=$(now)
        dk cp "$src" "$c:/in$i"
        t1=$(now)
        put "$l" cp_in "$(elapsed_ms "$t0" "$t1")"
        if [ -n "$berth_cli" ]; then
            sync
            t0=$(now)
            bk cp "$src" "$c:/bcp$i"
            t1=$(now)
            put "$l" bcp_in "$(elapsed_ms "$t0" "$t1")"
        fi
        sync
        t0=$(now)
        dk cp "$c:/in$i" "$tmp/out$i"
        t1=$(now)
        put "$l" cp_out "$(elapsed_ms "$t0" "$t1")"
        if [ -n "$berth_cli" ]; then
            sync
            t0=$(now)
            bk cp "$c:/bcp$i" "$tmp/bout$i"
            t1=$(now)
            put "$l" bcp_out "$(elapsed_ms "$t0" "$t1")"
        fi
    done
    # The copies out must be the tree that went in.
    for d in "$tmp"/out* "$tmp"/bout*; do
        if ! diff -r "$src" "$d" >/dev/null; then
            echo "$l: the tree copied in and out ($d) differs from the source" >&2
            exit 1
        fi
    done
    rm -rf "$tmp"/out* "$tmp"/bout*
    dk exec "$c" sh -c 'rm -rf /in[0-9]* /bcp[0-9]*'

    write_one "$c" /vol/dd.out write_volume
    write_one "$c" /bind/dd.out write_bind
    write_one "$c" /dd.out write_layer

    dk rm -f "$c" >/dev/null
    dk volume rm "$vol" >/dev/null
    vol=""
    rm -rf "$tmp/bind"
    cur_label=""
}

for l in "${labels[@]}"; do bench_one "$l"; done

python3 - "$results" "$runs" "$cp_runs" "$cp_mb" "$write_mb" "${labels[@]}" <<'PY'
import statistics, sys
path, runs, cp_runs, cp_mb, write_mb, labels = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6:]
data = {}
for line in open(path):
    label, key, value = line.rstrip("\n").split("\t")
    data.setdefault(label, {}).setdefault(key, []).append(float(value))

def cell(label, key):
    v = data.get(label, {}).get(key)
    if not v:
        return "n/a"
    if key.startswith("write_"):
        return f"{statistics.median(v):.0f}"
    return f"{statistics.median(v):.1f} ({min(v):.1f}–{max(v):.1f})"

tar = data.get("host", {}).get("tar")
tar_cell = f"{statistics.median(tar):.1f} ({min(tar):.1f}–{max(tar):.1f})" if tar else "n/a"
rows = [
    (f"`exec C true`, median ms (min–max), n={runs}", "exec"),
    (f"`cp DIR C:/in` ({cp_mb} MB, 1000 files), median ms (min–max), n={cp_runs}", "cp_in"),
    (f"`cp C:/in DIR`, median ms (min–max), n={cp_runs}", "cp_out"),
    (f"`berth cp DIR C:/in`, median ms (min–max), n={cp_runs}", "bcp_in"),
    (f"`berth cp C:/in DIR`, median ms (min–max), n={cp_runs}", "bcp_out"),
    (f"dd {write_mb} MB conv=fsync to a named volume, MB/s", "write_volume"),
    (f"dd {write_mb} MB conv=fsync to a bind mount, MB/s", "write_bind"),
    (f"dd {write_mb} MB conv=fsync to the container's layer, MB/s", "write_layer"),
]
print("| | " + " | ".join(labels) + " |")
print("|---|" + "---|" * len(labels))
for title, key in rows:
    if key.startswith("bcp_") and not any(data.get(l, {}).get(key) for l in labels):
        continue
    print(f"| {title} | " + " | ".join(cell(l, key) for l in labels) + " |")
print(f"| host `tar -C src -cf - . \\| tar -C dst -xf -`, same tree, median ms (min–max), n={cp_runs} | " + " | ".join(tar_cell for _ in labels) + " |")
PY
