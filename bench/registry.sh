#!/usr/bin/env bash
# `berth registry serve` against Debian's docker-registry (issue 3), both on 127.0.0.1, with
# skopeo as the client of both. See docs/PERFORMANCE.md ("Registry server").
#
#   bench/registry.sh [--berth PATH] [--mb 150] [--layers 5] [--runs 5] [--tmp DIR]
#
# Builds an OCI layout of --layers gzip layers of random data (--mb MB in all), then per run,
# alternating the two registries so that load from other work on the machine hits both alike:
#   pull   skopeo copy docker://127.0.0.1:PORT/img dir:X   (download only, every blob, verified)
#   push   skopeo copy oci:LAYOUT docker://127.0.0.1:PORT/img into an empty registry
# and for berth's pull-through cache in front of docker-registry:
#   proxy cold   pull through an empty cache (fetched upstream, streamed, stored)
#   proxy warm   the same pull again (served from the cache; tags still asked upstream)
# Prints medians (min–max) in ms as a markdown table. Everything it starts is killed and its
# temp dirs are removed at the end.
set -euo pipefail

usage() {
    cat >&2 <<'USAGE'
usage: bench/registry.sh [--berth PATH] [--mb MB] [--layers N] [--runs N] [--tmp DIR]
  --berth   the berth binary (default: target/release/berth, else target/debug/berth)
  --mb      total size of the image's layers in MB (default 150)
  --layers  number of layers (default 5)
  --runs    runs of each measurement (default 5)
  --tmp     scratch dir (default: mktemp -d)
USAGE
    exit 2
}

here=$(cd "$(dirname "$0")" && pwd)
berth=""
mb=150 nlayers=5 runs=5 tmp=""
while [ $# -gt 0 ]; do
    case $1 in
    --berth) [ $# -ge 2 ] || usage; berth=$2; shift 2 ;;
    --mb) [ $# -ge 2 ] || usage; mb=$2; shift 2 ;;
    --layers) [ $# -ge 2 ] || usage; nlayers=$2; shift 2 ;;
    --runs) [ $# -ge 2 ] || usage; runs=$2; shift 2 ;;
    --tmp) [ $# -ge 2 ] || usage; tmp=$2; shift 2 ;;
    -h | --help) usage ;;
    *) echo "unknown argument: $1" >&2; usage ;;
    esac
done
if [ -z "$berth" ]; then
    berth=$here/../target/release/berth
    [ -x "$berth" ] || berth=$here/../target/debug/berth
fi
[ -x "$berth" ] || { echo "no berth binary at $berth" >&2; exit 2; }
command -v skopeo >/dev/null || { echo "skopeo is needed" >&2; exit 2; }
[ -x /usr/bin/docker-registry ] || { echo "/usr/bin/docker-registry is needed" >&2; exit 2; }

own_tmp=0
if [ -z "$tmp" ]; then tmp=$(mktemp -d /tmp/berth-registry-bench.XXXXXX) own_tmp=1; fi
mkdir -p "$tmp"
results=$(mktemp)
declare -A pid=() port=()

stop() {
    local k=$1
    if [ -n "${pid[$k]:-}" ]; then
        kill "${pid[$k]}" 2>/dev/null || true
        wait "${pid[$k]}" 2>/dev/null || true
        pid[$k]=""
    fi
}

cleanup() {
    for k in "${!pid[@]}"; do stop "$k"; done
    rm -f "$results"
    if [ $own_tmp = 1 ]; then rm -rf "$tmp"; fi
}
trap cleanup EXIT INT TERM

now_us() { date +%s%6N; }
put() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$results"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_up() {
    local k=$1
    for _ in $(seq 1 400); do
        if curl -fsS -o /dev/null "http://127.0.0.1:${port[$k]}/v2/" 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "$k did not start:" >&2
    cat "$tmp/$k.log" >&2
    exit 1
}

# start KEY: a registry with empty storage on a new free port. KEY is docker, berth or proxy
# (berth as a pull-through cache of the running docker registry).
start() {
    local k=$1
    stop "$k"
    rm -rf "${tmp:?}/$k"
    mkdir -p "$tmp/$k"
    port[$k]=$(free_port)
    case $k in
    docker)
        cat >"$tmp/docker/config.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $tmp/docker/storage
http:
  addr: 127.0.0.1:${port[$k]}
EOF
        /usr/bin/docker-registry serve "$tmp/docker/config.yml" >"$tmp/$k.log" 2>&1 &
        ;;
    berth)
        "$berth" registry serve --addr "127.0.0.1:${port[$k]}" --root "$tmp/berth" \
            --log-level warn >"$tmp/$k.log" 2>&1 &
        ;;
    proxy)
        "$berth" registry serve --addr "127.0.0.1:${port[$k]}" --root "$tmp/proxy" \
            --proxy-remote "http://127.0.0.1:${port[docker]}" --log-level warn >"$tmp/$k.log" 2>&1 &
        ;;
    esac
    pid[$k]=$!
    wait_up "$k"
}

echo "building a $mb MB image in $nlayers gzip layers..." >&2
python3 - "$tmp/layout" "$mb" "$nlayers" <<'PY'
import gzip, hashlib, io, json, os, sys, tarfile
out, mb, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(out + "/blobs/sha256", exist_ok=True)
def put(b):
    h = hashlib.sha256(b).hexdigest()
    with open(f"{out}/blobs/sha256/{h}", "wb") as f:
        f.write(b)
    return "sha256:" + h
per = mb * 1000 * 1000 // n
layers, diff_ids = [], []
for i in range(n):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        data = os.urandom(per)
        info = tarfile.TarInfo(f"layer{i}/data.bin")
        info.size, info.mode, info.mtime = len(data), 0o644, 1700000000
        t.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
    gz = gzip.compress(raw, compresslevel=1, mtime=0)
    layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                   "digest": put(gz), "size": len(gz)})
config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
                     "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": put(config), "size": len(config)},
                "layers": layers}).encode()
md = put(m)
with open(out + "/index.json", "w") as f:
    json.dump({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": len(m),
        "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}, f)
with open(out + "/oci-layout", "w") as f:
    f.write('{"imageLayoutVersion":"1.0.0"}')
PY

# CPU time (user + system, ms) a process has used so far.
cpu_ms() {
    local f
    read -ra f <"/proc/$1/stat"
    # fields 14 and 15 (utime, stime) in clock ticks; the comm field has no spaces here
    echo $(((f[13] + f[14]) * 1000 / $(getconf CLK_TCK)))
}

# Time a skopeo copy (ms into the results under LABEL KEY) and the CPU the server process
# SERVER (a key of pid) spent on it (under LABEL KEY-cpu).
timed_copy() {
    local label=$1 key=$2 src=$3 dst=$4 server=$5 t0 t1 c0 c1
    c0=$(cpu_ms "${pid[$server]}")
    t0=$(now_us)
    skopeo copy --quiet --src-tls-verify=false --dest-tls-verify=false "$src" "$dst" >/dev/null
    t1=$(now_us)
    c1=$(cpu_ms "${pid[$server]}")
    put "$label" "$key" $(((t1 - t0) / 1000))
    put "$label" "$key-cpu" $((c1 - c0))
}

for i in $(seq 1 "$runs"); do
    echo "run $i/$runs" >&2
    for k in berth docker; do
        start "$k"
        timed_copy "$k" push "oci:$tmp/layout:latest" "docker://127.0.0.1:${port[$k]}/bench/img:latest" "$k"
        rm -rf "$tmp/out"
        timed_copy "$k" pull "docker://127.0.0.1:${port[$k]}/bench/img:latest" "dir:$tmp/out" "$k"
        rm -rf "$tmp/out"
    done
    # The docker registry still holds the image: berth as a cache in front of it.
    start proxy
    timed_copy berth proxy-cold "docker://127.0.0.1:${port[proxy]}/bench/img:latest" "dir:$tmp/out" proxy
    rm -rf "$tmp/out"
    timed_copy berth proxy-warm "docker://127.0.0.1:${port[proxy]}/bench/img:latest" "dir:$tmp/out" proxy
    rm -rf "$tmp/out"
    stop proxy
done

python3 - "$results" "$mb" "$nlayers" "$runs" <<'PY'
import statistics, sys
path, mb, n, runs = sys.argv[1:5]
vals = {}
for line in open(path):
    l, k, v = line.rstrip("\n").split("\t")
    vals.setdefault((l, k), []).append(float(v))
def cell(l, k):
    v = vals.get((l, k))
    if not v:
        return "n/a"
    return f"{statistics.median(v):.0f} ({min(v):.0f}–{max(v):.0f})"
print(f"skopeo copy of a {mb} MB image in {n} gzip layers, registries on 127.0.0.1; "
      f"median ms (min–max), n={runs}")
print()
print("| | berth registry | docker-registry 2.8 |")
print("|---|---|---|")
print(f"| pull: `skopeo copy docker:// dir:` | {cell('berth', 'pull')} | {cell('docker', 'pull')} |")
print(f"| push: `skopeo copy oci: docker://` (empty registry) | {cell('berth', 'push')} | {cell('docker', 'push')} |")
print(f"| server CPU (user+sys) during the pull | {cell('berth', 'pull-cpu')} | {cell('docker', 'pull-cpu')} |")
print(f"| server CPU (user+sys) during the push | {cell('berth', 'push-cpu')} | {cell('docker', 'push-cpu')} |")
print(f"| pull through berth's cache of docker-registry, cold | {cell('berth', 'proxy-cold')} | |")
print(f"| cache CPU (user+sys) during the cold pull | {cell('berth', 'proxy-cold-cpu')} | |")
print(f"| the same pull again, warm | {cell('berth', 'proxy-warm')} | |")
PY
