#!/bin/bash
# Pull of a 5-layer image (≈ 350 MB unpacked, ≈ 55 MB gzipped, built offline) from a
# local Debian docker-registry: berthd (release build, fresh data-root each run)
# against Debian's dockerd (image removed between runs), through the same docker CLI.
#
#   cargo build --release -p berth-daemon -p berth-shim
#   cargo build --release -p berth-image --example pull_stats   (optional: breakdown)
#   bash bench/image-pull.sh [runs]          (as root)
set -euo pipefail
RUNS=${1:-5}
HERE=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BERTH_BIN:-$HERE/target/release}
W=$(mktemp -d /tmp/bp.XXXX)   # short: socket paths under it must fit in 108 bytes
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
REG=127.0.0.1:$PORT
IMAGE=$REG/bench/five-layers:latest
PIDS=()

cleanup() {
    set +e
    DOCKER_HOST=unix://$W/d.sock docker rm -f $(DOCKER_HOST=unix://$W/d.sock docker ps -aq) >/dev/null 2>&1
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    sleep 2
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
    grep " $W" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l
    rm -rf "$W"
}
trap cleanup EXIT

now() { date +%s%N; }
ms() { echo $(( ($2 - $1) / 1000000 )); }

# --- registry
mkdir -p "$W/reg"
cat > "$W/reg/config.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $W/reg/data
http:
  addr: $REG
EOF
docker-registry serve "$W/reg/config.yml" > "$W/reg/log" 2>&1 &
PIDS+=($!)

# --- Debian's dockerd: builds and pushes the image, then is the anchor
/usr/sbin/dockerd --data-root "$W/d" --exec-root "$W/dx" -p "$W/d.pid" -H "unix://$W/d.sock" \
    --bridge=none --iptables=false --ip-masq=false \
    --containerd-namespace bench-$$ --containerd-plugins-namespace bench-p-$$ > "$W/dockerd.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do DOCKER_HOST=unix://$W/d.sock docker version >/dev/null 2>&1 && break; sleep 0.2; done

# --- the image: 5 layers of 35 files, text, zeros and random bytes mixed
mkdir -p "$W/ctx"
cat > "$W/gen.py" <<'EOF'
import io, random, sys, tarfile
out, layer = sys.argv[1], int(sys.argv[2])
rnd = random.Random(layer)
words = [''.join(rnd.choice('abcdefghijklmnopqrstuvwxyz') for _ in range(rnd.randint(3, 10))) for _ in range(3000)]
with tarfile.open(out, 'w') as t:
    d = tarfile.TarInfo(f'layer{layer}'); d.type = tarfile.DIRTYPE; d.mode = 0o755; t.addfile(d)
    for f in range(35):
        text = ' '.join(rnd.choice(words) for _ in range(150000)).encode()[:500_000]
        data = text + bytes(1_400_000) + rnd.randbytes(100_000)
        ti = tarfile.TarInfo(f'layer{layer}/file{f}.dat'); ti.size = len(data); ti.mode = 0o644
        t.addfile(ti, io.BytesIO(data))
EOF
printf 'FROM scratch\n' > "$W/ctx/Dockerfile"
for i in 1 2 3 4 5; do
    python3 "$W/gen.py" "$W/ctx/l$i.tar" "$i"
    printf 'ADD l%s.tar /\n' "$i" >> "$W/ctx/Dockerfile"
done
export DOCKER_HOST=unix://$W/d.sock
DOCKER_BUILDKIT=0 docker build -q -t "$IMAGE" "$W/ctx" >/dev/null 2>&1
docker push "$IMAGE" >/dev/null
docker rmi "$IMAGE" >/dev/null
rm -rf "$W/ctx"

# --- berthd
start_berthd() {
    rm -rf "$W/b" "$W/bx"
    echo "{\"insecure-registries\":[\"$REG\"]}" > "$W/b.json"
    "$BIN/berthd" --data-root "$W/b" --exec-root "$W/bx" -p "$W/b.pid" -H "unix://$W/b.sock" \
        --config-file "$W/b.json" > "$W/berthd.log" 2>&1 &
    BERTHD=$!
    for _ in $(seq 100); do DOCKER_HOST=unix://$W/b.sock docker version >/dev/null 2>&1 && break; sleep 0.05; done
}

berth_times=(); docker_times=()
for run in $(seq "$RUNS"); do
    start_berthd
    t0=$(now); DOCKER_HOST=unix://$W/b.sock docker pull -q "$IMAGE" >/dev/null; t1=$(now)
    berth_times+=($(ms "$t0" "$t1"))
    kill -TERM "$BERTHD"; wait "$BERTHD" 2>/dev/null || true

    t0=$(now); DOCKER_HOST=unix://$W/d.sock docker pull -q "$IMAGE" >/dev/null; t1=$(now)
    docker_times+=($(ms "$t0" "$t1"))
    DOCKER_HOST=unix://$W/d.sock docker rmi "$IMAGE" >/dev/null
    echo "run $run: berthd ${berth_times[-1]} ms, dockerd ${docker_times[-1]} ms"
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mb=$(median "${berth_times[@]}"); md=$(median "${docker_times[@]}")
echo "median: berthd $mb ms, dockerd $md ms, ratio $(python3 -c "print(f'{$mb/$md:.2f}')")"

# Where berth's time goes: the same pull by the library, layer by layer.
if [ -x "$BIN/examples/pull_stats" ]; then
    "$BIN/examples/pull_stats" "$IMAGE"
fi
