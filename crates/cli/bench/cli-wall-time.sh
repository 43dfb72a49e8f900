#!/usr/bin/env bash
# Wall time of berth commands against the docker CLI's, both talking to one berthd.
# Usage: bash crates/cli/bench/cli-wall-time.sh [runs]   (as root; needs hyperfine)
# The berth CLI is the release build; berthd is whatever build is at hand (the
# daemon's own time is in both columns, so the ratio is the CLIs').
set -euo pipefail
runs=${1:-30}
root=$(cd "$(dirname "$0")/../../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
cargo build -q --release -p berth-cli --manifest-path "$root/Cargo.toml"
[ -x "$target/debug/berthd" ] || cargo build -q -p berth-daemon -p berth-shim --manifest-path "$root/Cargo.toml"
berth=$target/release/berth
dir=$(mktemp -d /tmp/bbench.XXXX)
trap 'kill "$(cat "$dir/pid" 2>/dev/null)" 2>/dev/null; sleep 0.5; rm -rf "$dir"' EXIT
echo '{}' > "$dir/daemon.json"
"$target/debug/berthd" --config-file "$dir/daemon.json" --data-root "$dir/data" \
  --exec-root "$dir/exec" -p "$dir/pid" -H "unix://$dir/s.sock" --cgroup-parent "/${dir##*/}" \
  > "$dir/berthd.log" 2>&1 &
for _ in $(seq 100); do [ -S "$dir/s.sock" ] && break; sleep 0.05; done
mkdir -p "$dir/rootfs/bin" "$dir/rootfs/etc"
cp /bin/busybox "$dir/rootfs/bin/"
for a in $(busybox --list); do [ -e "$dir/rootfs/bin/$a" ] || ln -s busybox "$dir/rootfs/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$dir/rootfs/etc/passwd"
echo 'root:x:0:' > "$dir/rootfs/etc/group"
tar -C "$dir/rootfs" -cf "$dir/rootfs.tar" .
export DOCKER_HOST=unix://$dir/s.sock DOCKER_CONFIG=$dir/docker-config
"$berth" import "$dir/rootfs.tar" busybox:latest > /dev/null
for i in 1 2 3; do "$berth" create --name "c$i" busybox true > /dev/null; done
hyperfine -N -w 5 -r "$runs" --export-markdown "$dir/version.md" "$berth version" "docker version"
hyperfine -N -w 5 -r "$runs" --export-markdown "$dir/ps.md" "$berth ps -a" "docker ps -a"
hyperfine -N -w 3 -r "$runs" --export-markdown "$dir/run.md" \
  "$berth run --rm busybox true" "docker run --rm busybox true"
cat "$dir/version.md" "$dir/ps.md" "$dir/run.md"
