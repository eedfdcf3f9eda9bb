#!/usr/bin/env bash
# Push (issue 3) through the docker CLI to Debian's docker-registry (or `berth registry`) on
# 127.0.0.1. See bench/README.md.
#
#   bench/push.sh --socket berth=/run/berth/berth.sock [--mb 150] [--layers 5] [--runs 5]
#
# Builds an image of --layers layers of random data (--mb MB in all, so gzip cannot shrink it),
# loads it into the engine (`docker load`: layers stored uncompressed, as Docker keeps them), and
# starts its own docker-registry (free port, temp storage, killed at the end). Per run, into a
# registry with empty storage:
#   cold     docker push right after a fresh `docker load` (gzip of every layer + upload)
#   warm     docker push of the same image again into an emptied registry (gzip already made)
#   exists   docker push again (every blob is in the registry: HEAD only)
#   mount    docker push of the image under a second repository (cross-repository mounts)
#   skopeo   skopeo copy docker-archive:X docker://... (gzip + upload, no engine): baseline of cold
#   skopeo-dir  skopeo copy dir:X docker://... of the gzip blobs berth pushed (upload only):
#            baseline of warm
# and prints medians (min–max) in ms as a markdown table.
set -euo pipefail

usage() {
    cat >&2 <<'USAGE'
usage: bench/push.sh --socket LABEL=PATH [--socket LABEL=PATH ...] [--mb MB] [--layers N] [--runs N] [--tmp DIR]
                    [--berth-registry BERTH_BINARY]
  --socket  a local unix socket of an engine (repeatable); LABEL names its column
  --mb      total size of the image's layers in MB (default 150)
  --layers  number of layers (default 5)
  --runs    runs of each measurement (default 5)
  --tmp     scratch dir for the archive and the registry (default: mktemp -d)
  --berth-registry  push to `BERTH_BINARY registry serve` instead of Debian's docker-registry
USAGE
    exit 2
}

mb=150 nlayers=5 runs=5 tmp="" berth_registry=""
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
    --berth-registry) [ $# -ge 2 ] || usage; berth_registry=$2; shift 2 ;;
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
if [ -z "$tmp" ]; then tmp=$(mktemp -d /tmp/berth-push-bench.XXXXXX) own_tmp=1; fi
mkdir -p "$tmp"
results=$(mktemp)
reg_pid=""
port=""
cur_label=""
image="bench-push-src-$runid:latest"
loaded_ids=()

cleanup() {
    stop_registry
    for l in "${labels[@]}"; do
        cur_label=$l
        dk images --format '{{.Repository}}:{{.Tag}}' 2>/dev/null | grep -E "bench-push-" |
            xargs -r "$docker" -H "unix://${sock[$l]}" rmi -f >/dev/null 2>&1 || true
        for id in "${loaded_ids[@]}"; do dk rmi -f "$id" >/dev/null 2>&1 || true; done
    done
    rm -f "$results"
    if [ $own_tmp = 1 ]; then rm -rf "$tmp"; fi
}
trap cleanup EXIT INT TERM

now_us() { date +%s%6N; }
put() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$results"; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

stop_registry() {
    if [ -n "$reg_pid" ]; then
        kill "$reg_pid" 2>/dev/null || true
        wait "$reg_pid" 2>/dev/null || true
        reg_pid=""
    fi
}

# A docker-registry with empty storage on a new free port.
start_registry() {
    stop_registry
    rm -rf "$tmp/registry"
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
    if [ -n "$berth_registry" ]; then
        "$berth_registry" registry serve --addr "127.0.0.1:$port" --root "$tmp/registry/storage" \
            >"$tmp/registry/log" 2>&1 &
    else
        /usr/bin/docker-registry serve "$tmp/registry/config.yml" >"$tmp/registry/log" 2>&1 &
    fi
    reg_pid=$!
    for _ in $(seq 1 200); do
        if curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/" 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "docker-registry did not start:" >&2
    cat "$tmp/registry/log" >&2
    exit 1
}

# The image: a docker-archive with N layers of random data and a config naming their diff ids.
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

# `docker load` of the archive as $image (layers stored uncompressed, no gzip made yet).
fresh_load() {
    dk rmi -f "$image" >/dev/null 2>&1 || true
    local id
    id=$(dk load -q -i "$tmp/image.tar" | awk '/Loaded image ID:/ {print $4}')
    loaded_ids+=("$id")
    dk tag "$id" "$image"
}

# Time one docker push of SRC as REF (ms into the results under KEY).
timed_push() {
    local key=$1 src=$2 ref=$3 t0 t1
    dk tag "$src" "$ref"
    t0=$(now_us)
    dk push "$ref" >"$tmp/push.log" 2>&1 || { cat "$tmp/push.log" >&2; exit 1; }
    t1=$(now_us)
    put "$cur_label" "$key" $(((t1 - t0) / 1000))
    if [ "$key" = exists ] && ! grep -q "Layer already exists" "$tmp/push.log"; then
        echo "warning: $key push uploaded something:" >&2; cat "$tmp/push.log" >&2
    fi
    if [ "$key" = mount ] && ! grep -q "Mounted from" "$tmp/push.log"; then
        echo "warning: $key push did not mount:" >&2; cat "$tmp/push.log" >&2
    fi
}

for l in "${labels[@]}"; do
    cur_label=$l
    for i in $(seq 1 "$runs"); do
        echo "$l: run $i/$runs" >&2
        start_registry
        fresh_load
        r="127.0.0.1:$port/bench-push-$runid"
        timed_push cold "$image" "$r:cold$i"
        dk rmi "$r:cold$i" >/dev/null
        start_registry
        r="127.0.0.1:$port/bench-push-$runid"
        timed_push warm "$image" "$r:warm$i"
        timed_push exists "$image" "$r:warm$i"
        timed_push mount "$image" "127.0.0.1:$port/bench-push-other-$runid:m$i"
        dk rmi "$r:warm$i" "127.0.0.1:$port/bench-push-other-$runid:m$i" >/dev/null
    done
done

# The gzip blobs as the engine pushed them, in a skopeo dir: (for the upload-only baseline).
start_registry
cur_label=${labels[0]}
fresh_load
timed_push cold "$image" "127.0.0.1:$port/bench-push-$runid:dir" && sed -i '$d' "$results"
rm -rf "$tmp/dir"
skopeo copy --quiet --src-tls-verify=false "docker://127.0.0.1:$port/bench-push-$runid:dir" "dir:$tmp/dir" >/dev/null
dk rmi "127.0.0.1:$port/bench-push-$runid:dir" >/dev/null

for i in $(seq 1 "$runs"); do
    echo "skopeo: run $i/$runs" >&2
    start_registry
    t0=$(now_us)
    skopeo copy --quiet --dest-tls-verify=false "dir:$tmp/dir" \
        "docker://127.0.0.1:$port/bench-push-skopeo-dir:$i" >/dev/null
    t1=$(now_us)
    put skopeo skopeo-dir $(((t1 - t0) / 1000))
    start_registry
    t0=$(now_us)
    skopeo copy --quiet --dest-tls-verify=false "docker-archive:$tmp/image.tar" \
        "docker://127.0.0.1:$port/bench-push-skopeo:$i" >/dev/null
    t1=$(now_us)
    put skopeo skopeo $(((t1 - t0) / 1000))
done

python3 - "$results" "$mb" "$nlayers" "$runs" "${berth_registry:+berth registry}" "${labels[@]}" <<'PY'
import statistics, sys
path, mb, n, runs, registry, labels = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5] or "docker-registry", sys.argv[6:]
vals = {}
for line in open(path):
    l, k, v = line.rstrip("\n").split("\t")
    vals.setdefault((l, k), []).append(float(v))
def cell(l, k):
    v = vals.get((l, k))
    if not v:
        return "n/a"
    return f"{statistics.median(v):.0f} ({min(v):.0f}–{max(v):.0f})"
rows = [
    ("cold: `docker push` after `docker load` (gzip + upload)", "cold"),
    ("warm: `docker push` to an empty registry, gzip already made", "warm"),
    ("exists: `docker push` again (HEAD only)", "exists"),
    ("mount: `docker push` to a second repository", "mount"),
]
print(f"Push of a {mb} MB image in {n} layers of random data to {registry} on 127.0.0.1; "
      f"median ms (min–max), n={runs}")
print()
print("| | " + " | ".join(labels) + " |")
print("|---|" + "---|" * len(labels))
for title, key in rows:
    print(f"| {title} | " + " | ".join(cell(l, key) for l in labels) + " |")
print(f"| `skopeo copy docker-archive: docker://` (gzip + upload, baseline of cold) | {cell('skopeo', 'skopeo')} |" + " |" * (len(labels) - 1))
print(f"| `skopeo copy dir: docker://` of the same gzip blobs (upload only, baseline of warm) | {cell('skopeo', 'skopeo-dir')} |" + " |" * (len(labels) - 1))
PY
