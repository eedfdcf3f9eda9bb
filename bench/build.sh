#!/usr/bin/env bash
# Builds (issue 4) through `berth build` and `DOCKER_BUILDKIT=0 docker build`. See bench/README.md.
#
#   bench/build.sh --image busybox --socket berth=/run/berth/berth.sock [--berth target/release/berth]
#
# The Dockerfile: FROM IMG; two RUN steps writing files; COPY of a --mb MB context in --files
# files; a RUN over the copy; COPY of one small late file; CMD. Per client (berth, docker):
# first build (--no-cache), no-change rebuild, rebuild after changing the late-copied file;
# median/min/max of --runs. Prints a markdown table.
set -euo pipefail

usage() {
    cat >&2 <<'USAGE'
usage: bench/build.sh --image IMG --socket LABEL=PATH [--socket LABEL=PATH ...]
                      [--berth PATH] [--runs N] [--mb MB] [--files N] [--tmp DIR]
  --socket  a local unix socket of an engine (repeatable); LABEL names its rows
  --image   an image present in every engine with sh, echo, ls, wc, cat (e.g. busybox)
  --berth   the berth binary used as the `berth build` client (default: berth in PATH, else
            target/release/berth, else target/debug/berth); rows for it only for berth engines
  --runs    runs of each measurement (default 5)
  --mb      size of the copied context in MB (default 50)
  --files   number of files it is made of (default 2000)
  --tmp     scratch dir for the context (default: mktemp -d)
USAGE
    exit 2
}

image="" runs=5 mb=50 nfiles=2000 tmp="" berth_bin=""
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
    --berth) [ $# -ge 2 ] || usage; berth_bin=$2; shift 2 ;;
    --runs) [ $# -ge 2 ] || usage; runs=$2; shift 2 ;;
    --mb) [ $# -ge 2 ] || usage; mb=$2; shift 2 ;;
    --files) [ $# -ge 2 ] || usage; nfiles=$2; shift 2 ;;
    --tmp) [ $# -ge 2 ] || usage; tmp=$2; shift 2 ;;
    -h | --help) usage ;;
    *) echo "unknown argument: $1" >&2; usage ;;
    esac
done
[ -n "$image" ] && [ ${#labels[@]} -gt 0 ] || usage
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
check_sockets
setup_docker_client
if [ -z "$berth_bin" ]; then
    berth_bin=$(command -v berth || true)
    for c in target/release/berth target/debug/berth; do
        [ -n "$berth_bin" ] || { [ -x "$c" ] && berth_bin=$c; } || true
    done
fi
own_tmp=0
if [ -z "$tmp" ]; then tmp=$(mktemp -d /tmp/berth-build-bench.XXXXXX) own_tmp=1; fi
ctx=$tmp/ctx
results=$(mktemp)
cur_label=""
tag=berth-bench-build:$runid

cleanup() {
    if [ -n "$cur_label" ]; then dk rmi -f "$tag" >/dev/null 2>&1 || true; fi
    rm -f "$results"
    if [ "$own_tmp" = 1 ]; then rm -rf "$tmp"; else rm -rf "$ctx"; fi
}
trap cleanup EXIT

now() { echo "${EPOCHREALTIME/[.,]/}"; }
put() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$results"; }

# The context: --files files of random data, --mb MB in all, in 20 directories.
mkdir -p "$ctx/data"
per=$((mb * 1024 * 1024 / nfiles))
for d in $(seq 1 20); do mkdir -p "$ctx/data/d$d"; done
head -c $((mb * 1024 * 1024 + 1024 * 1024)) /dev/urandom >"$tmp/blob"
python3 - "$ctx/data" "$nfiles" "$per" "$tmp/blob" <<'PY'
import sys
root, n, per, blob = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
with open(blob, 'rb') as b:
    data = b.read()
for i in range(n):
    with open(f"{root}/d{i % 20 + 1}/f{i}", 'wb') as f:
        f.write(data[i * per:(i + 1) * per])
PY
rm -f "$tmp/blob"
echo "late 0" >"$ctx/late.txt"
cat >"$ctx/Dockerfile" <<DF
FROM $image
RUN echo one > /one
RUN echo two > /two && mkdir -p /app
COPY data/ /data/
RUN ls -R /data | wc -l > /count
COPY late.txt /app/late.txt
CMD ["cat", "/app/late.txt"]
DF

# One build through client $1 (berth|docker) with extra args; prints its wall time in ms.
build_ms() {
    local client=$1 t0 t1
    shift
    t0=$(now)
    if [ "$client" = berth ]; then
        BERTH_HOST="unix://${sock[$cur_label]}" "$berth_bin" build -q -t "$tag" "$@" "$ctx" >/dev/null
    else
        DOCKER_BUILDKIT=0 dk build -q -t "$tag" "$@" "$ctx" >/dev/null 2>&1
    fi
    t1=$(now)
    echo $(((t1 - t0) / 1000))
}

stats() { sort -n | awk '{a[NR]=$1} END {printf "%d ms (min %d, max %d)", a[int((NR+1)/2)], a[1], a[NR]}'; }

late=0
for cur_label in "${labels[@]}"; do
    clients=(docker)
    if [ -n "$berth_bin" ] && BERTH_HOST="unix://${sock[$cur_label]}" "$berth_bin" version >/dev/null 2>&1; then
        clients=(berth docker)
    fi
    for client in "${clients[@]}"; do
        build_ms "$client" >/dev/null # warm-up (page cache, base image)
        first=() nochange=() latech=()
        for _ in $(seq 1 "$runs"); do first+=("$(build_ms "$client" --no-cache)"); done
        for _ in $(seq 1 "$runs"); do nochange+=("$(build_ms "$client")"); done
        for _ in $(seq 1 "$runs"); do
            late=$((late + 1))
            echo "late $late" >"$ctx/late.txt"
            latech+=("$(build_ms "$client")")
        done
        put "$cur_label / $client build" "first build (--no-cache)" "$(printf '%s\n' "${first[@]}" | stats)"
        put "$cur_label / $client build" "no-change rebuild" "$(printf '%s\n' "${nochange[@]}" | stats)"
        put "$cur_label / $client build" "late-change rebuild" "$(printf '%s\n' "${latech[@]}" | stats)"
    done
done

echo
echo "context: $mb MB in $nfiles files; runs: $runs (median, min, max)"
echo
echo "| engine / client | measurement | wall time |"
echo "|---|---|---|"
while IFS=$'\t' read -r a b c; do echo "| $a | $b | $c |"; done <"$results"
