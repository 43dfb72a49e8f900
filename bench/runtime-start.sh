#!/usr/bin/env bash
# Container start-to-exit time: `berth-runtime run` of a busybox `true` bundle against
# `runc run` of the same bundle, in one hyperfine run (≥ 20 runs each).
# Usage: bash bench/runtime-start.sh [RUNS]   (as root; prints a markdown table)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-50}
export DEBIAN_FRONTEND=noninteractive
need="hyperfine runc busybox-static jq"
dpkg -s $need >/dev/null 2>&1 || { apt-get update -q; apt-get install -y -q $need; }
cargo build --release -q -p berth-runtime
BIN=$PWD/target/release/berth-runtime
WORK=$(mktemp -d /tmp/berth-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
B=$WORK/bundle
mkdir -p $B/rootfs/bin $B/rootfs/etc $B/rootfs/proc $B/rootfs/sys $B/rootfs/dev $B/rootfs/tmp
cp /bin/busybox $B/rootfs/bin/busybox
for a in sh true; do ln -s busybox $B/rootfs/bin/$a; done
(cd $B && runc spec && jq '.process.terminal=false | .process.args=["/bin/true"]' config.json > c.json && mv c.json config.json)
echo "runc: $(runc --version | head -1); berth-runtime: $($BIN --version | head -1); kernel $(uname -r); $(nproc) cores"
hyperfine -N -w 5 -r "$RUNS" \
  -n berth-runtime "$BIN --root $WORK/berth run -b $B bench-berth" \
  -n runc "runc --root $WORK/runc run -b $B bench-runc" \
  --export-markdown "$WORK/result.md" --export-json "$WORK/result.json"
cat "$WORK/result.md"
jq -r '.results | map({(.command): .median}) | add as $m
  | "median: berth-runtime \($m["berth-runtime"]*1000 | .*100|round/100) ms, runc \($m["runc"]*1000 | .*100|round/100) ms, ratio \($m["berth-runtime"]/$m["runc"] | .*1000|round/1000)"' "$WORK/result.json"
