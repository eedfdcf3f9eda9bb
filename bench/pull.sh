#!/usr/bin/env bash
# Pull (issue 3) from Debian's docker-registry on 127.0.0.1 through the docker CLI, against skopeo's
# download-only copy of the same image. See bench/README.md.
#
#   bench/pull.sh --socket berth=/run/berth/berth.sock [--mb 150] [--layers 5] [--runs 5]
#
# Builds an image of --layers layers of random data (--mb MB in all, so gzip cannot shrink it),
# puts it into its own docker-registry (free port, temp storage, killed at the end) with
# `skopeo copy` (gzip-compressed layers, Docker schema 2), then per run, interleaved:
#   skopeo   skopeo copy docker://127.0.0.1:P/... dir:D   (download + digest check, no unpack)
#   LABEL    docker pull 127.0.0.1:P/... into an engine that does not have the image
#            (download + verify + decompress + unpack; `docker rmi` before each run)
# and prints medians (min–max) in ms as a markdown table, with the ratio engine/skopeo, and the
# CPU time (user + system) the engine process spent on each pull (its pid: the socket's listener).
set -euo pipefail

usage() {
    cat >&2 <<'USAGE'
usage: bench/pull.sh --socket LABEL=PATH [--socket LABEL=PATH ...] [--mb MB] [--layers N] [--runs N] [--tmp DIR]
  --socket  a local unix socket of an engine (repeatable); LABEL names its column
  --mb      total size of the image's layers in MB (default 150)
  --layers  number of layers (default 5)
  --runs    runs of each measurement (default 5)
  --tmp     scratch dir for the archive, the registry and skopeo's copies (default: mktemp -d)
USAGE
    exit 2
}

mb=150 nlayers=5 runs=5 tmp=""
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
    --mb) [ $# -ge 2 ] || usage; mb=$2; shift 2 ;;
    --layers) [ $# -ge 2 ] || usage; nlayers=$2; shift 2 ;;
    --runs) [ $# -ge 2 ] || usage; runs=$2; shift 2 ;;
    --tmp) [ $# -ge 2 ] || usage; tmp=$2; shift 2 ;;
    -h | --help) usage ;;
    *) echo "unknown argument: $1" >&2; usage ;;
    esac
done
[ ${#labels[@]} -gt 0 ] || usage
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
check_sockets
setup_docker_client
own_tmp=0
if [ -z "$tmp" ]; then tmp=$(mktemp -d /tmp/berth-pull-bench.XXXXXX) own_tmp=1; fi
mkdir -p "$tmp"
results=$(mktemp)
reg_pid=""
port=""
cur_label=""
ref=""

cleanup() {
    for l in "${labels[@]}"; do
        cur_label=$l
        if [ -n "$ref" ]; then
            id=$(dk image inspect -f '{{.Id}}' "$ref" 2>/dev/null || true)
            if [ -n "$id" ]; then dk rmi -f "$id" >/dev/null 2>&1 || true; fi
        fi
    done
    if [ -n "$reg_pid" ]; then
        kill "$reg_pid" 2>/dev/null || true
        wait "$reg_pid" 2>/dev/null || true
    fi
    rm -f "$results"
    if [ $own_tmp = 1 ]; then rm -rf "$tmp"; else rm -rf "$tmp/registry" "$tmp/dir" "$tmp/image.tar"; fi
}
trap cleanup EXIT INT TERM

now_us() { date +%s%6N; }
put() { printf '%s\t%s\n' "$1" "$2" >>"$results"; }

# CPU time (user + system, ms) a process has used so far.
cpu_ms() {
    local f
    read -ra f <"/proc/$1/stat"
    echo $(((f[13] + f[14]) * 1000 / $(getconf CLK_TCK)))
}

# The pid listening on an engine's socket (empty if unknown).
engine_pid() {
    ss -xlpn 2>/dev/null | awk -v s="$1" '$5 == s' | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The image: a docker-archive with N layers of random data.
echo "building a $mb MB image in $nlayers layers..." >&2
python3 - "$tmp/image.tar" "$mb" "$nlayers" <<'PY'
import hashlib, io, json, os, sys, tarfile
out, mb, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
per = mb * 1000 * 1000 // n
layers, diff_ids = [], []
for i in range(n):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        data = os.urandom(per)
        info = tarfile.TarInfo(f"layer{i}/data.bin")
        info.size, info.mode, info.mtime = len(data), 0o644, 1700000000
        t.addfile(info, io.BytesIO(data))
    b = buf.getvalue()
    layers.append(b)
    diff_ids.append("sha256:" + hashlib.sha256(b).hexdigest())
config = json.dumps({
    "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
    "config": {"Cmd": ["/bin/sh"]},
    "rootfs": {"type": "layers", "diff_ids": diff_ids},
    "history": [{"created": "2024-01-01T00:00:00Z", "created_by": f"layer {i}"} for i in range(n)],
}).encode()
cfg_name = hashlib.sha256(config).hexdigest() + ".json"
with tarfile.open(out, mode="w") as t:
    def add(name, data):
        info = tarfile.TarInfo(name)
        info.size, info.mtime = len(data), 1700000000
        t.addfile(info, io.BytesIO(data))
    add(cfg_name, config)
    names = []
    for i, b in enumerate(layers):
        name = diff_ids[i][7:] + "/layer.tar"
        add(name, b)
        names.append(name)
    add("manifest.json", json.dumps([{"Config": cfg_name, "RepoTags": [], "Layers": names}]).encode())
PY

mkdir -p "$tmp/registry/storage"
port=$(free_port)
cat >"$tmp/registry/config.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $tmp/registry/storage
http:
  addr: 127.0.0.1:$port
EOF
/usr/bin/docker-registry serve "$tmp/registry/config.yml" >"$tmp/registry/log" 2>&1 &
reg_pid=$!
for _ in $(seq 1 200); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/" 2>/dev/null; then break; fi
    sleep 0.05
done
ref="127.0.0.1:$port/bench/pull:1"
echo "pushing it to $ref..." >&2
skopeo copy --quiet --dest-tls-verify=false "docker-archive:$tmp/image.tar" "docker://$ref" >/dev/null
rm -f "$tmp/image.tar"

for i in $(seq 1 "$runs"); do
    echo "run $i/$runs" >&2
    rm -rf "$tmp/dir"
    sync
    t0=$(now_us)
    /usr/bin/time -f '%U %S' -o "$tmp/skopeo.time" \
        skopeo copy --quiet --src-tls-verify=false "docker://$ref" "dir:$tmp/dir" >/dev/null
    t1=$(now_us)
    put skopeo $(((t1 - t0) / 1000))
    put skopeo-cpu "$(awk '{printf "%d", ($1 + $2) * 1000}' "$tmp/skopeo.time")"
    for l in "${labels[@]}"; do
        cur_label=$l
        # By id: removes the tag, the repo digest and every layer.
        id=$(dk image inspect -f '{{.Id}}' "$ref" 2>/dev/null || true)
        if [ -n "$id" ]; then dk rmi -f "$id" >/dev/null; fi
        sync
        epid=$(engine_pid "${sock[$l]}")
        c0=0
        if [ -n "$epid" ]; then c0=$(cpu_ms "$epid"); fi
        t0=$(now_us)
        dk pull -q "$ref" >/dev/null
        t1=$(now_us)
        put "$l" $(((t1 - t0) / 1000))
        if [ -n "$epid" ]; then put "$l-cpu" $(($(cpu_ms "$epid") - c0)); fi
    done
done

python3 - "$results" "$mb" "$nlayers" "$runs" "${labels[@]}" <<'PY'
import statistics, sys
path, mb, n, runs, labels = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
vals = {}
for line in open(path):
    l, v = line.rstrip("\n").split("\t")
    vals.setdefault(l, []).append(float(v))
def cell(l):
    v = vals.get(l)
    return f"{statistics.median(v):.0f} ({min(v):.0f}–{max(v):.0f})" if v else "n/a"
base = statistics.median(vals["skopeo"])
print(f"Pull of a {mb} MB image in {n} gzip layers of random data from docker-registry on 127.0.0.1; "
      f"median ms (min–max), n={runs}")
print()
print("| | median ms (min–max) | ratio to skopeo |")
print("|---|---|---|")
print(f"| `skopeo copy docker:// dir:` (download only) | {cell('skopeo')} | 1.00 |")
for l in labels:
    r = statistics.median(vals[l]) / base
    print(f"| {l}: `docker pull` (download + unpack) | {cell(l)} | {r:.2f} |")
print(f"| skopeo: CPU (user+sys) per copy | {cell('skopeo-cpu')} | |")
for l in labels:
    if l + "-cpu" in vals:
        print(f"| {l}: engine CPU (user+sys) per pull | {cell(l + '-cpu')} | |")
PY
