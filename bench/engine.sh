#!/usr/bin/env bash
# The engine against Debian's dockerd, through the same `docker` CLI, in one run:
#   1. `docker run --rm busybox true` (hyperfine)
#   2. idle RSS: berthd against dockerd + containerd
#   3. private memory per running container: berth-shim against containerd-shim-runc-v2
#   4. 100 `docker run -d` at 10 in parallel, wall time
#   5. `docker ps -a` with 1000 containers
# Usage: bash bench/engine.sh [RUNS]   (as root; prints markdown)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
RUNS=${1:-30}
export DEBIAN_FRONTEND=noninteractive
need="hyperfine docker.io podman runc busybox-static jq bc curl python3"
dpkg -s $need >/dev/null 2>&1 || { apt-get update -q; apt-get install -y -q $need; }
bash scripts/release
BIN=$PWD/target/release
WORK=$(mktemp -d /tmp/berth-bench.XXXXXX)
BSOCK=$WORK/berth.sock
DSOCK=$WORK/docker.sock
B="docker -H unix://$BSOCK"
D="docker -H unix://$DSOCK"
cleanup() {
  set +e
  $B rm -f $($B ps -aq) >/dev/null 2>&1
  $D rm -f $($D ps -aq) >/dev/null 2>&1
  podman --root $WORK/podman-root --runroot $WORK/podman-run rm -f -a >/dev/null 2>&1
  podman --root $WORK/podman-root --runroot $WORK/podman-run system reset -f >/dev/null 2>&1
  [ -f $WORK/berthd.pid ] && kill "$(cat $WORK/berthd.pid)"
  [ -f $WORK/dockerd.pid ] && kill "$(cat $WORK/dockerd.pid)"
  sleep 2
  grep -o " $WORK[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null
  rmdir /sys/fs/cgroup/*/berth-bench 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

echo '{}' > $WORK/daemon.json
# Both engines without a bridge network here (bench/network.sh measures networking).
echo '{"bridge": "none"}' > $WORK/berthd.json
setsid $BIN/berthd --config-file $WORK/berthd.json --data-root $WORK/berth-data --exec-root $WORK/berth-exec \
  -p $WORK/berthd.pid -H unix://$BSOCK --cgroup-parent /berth-bench > $WORK/berthd.log 2>&1 < /dev/null &
setsid dockerd --data-root $WORK/docker-data --exec-root $WORK/docker-exec -p $WORK/dockerd.pid \
  -H unix://$DSOCK --bridge none --iptables=false --config-file $WORK/daemon.json \
  > $WORK/dockerd.log 2>&1 < /dev/null &
for _ in $(seq 200); do $B version >/dev/null 2>&1 && $D version >/dev/null 2>&1 && break; sleep 0.1; done

busybox_tar $WORK
$B import $WORK/busybox.tar busybox:latest >/dev/null
$D import $WORK/busybox.tar busybox:latest >/dev/null
wait_quiet

echo "## Engine (issue 4) — \`bash bench/engine.sh $RUNS\`, $(date -u +%F)"
echo
echo "docker CLI $(docker version --format '{{.Client.Version}}' 2>/dev/null), dockerd $($D version --format '{{.Server.Version}}'), berthd $($B version --format '{{.Server.Version}}') (release build); kernel $(uname -r), $(nproc) cores"
echo

# 1. run --rm true
hyperfine -N -w 3 -r "$RUNS" \
  -n berthd "$B run --rm busybox true" \
  -n "dockerd" "$D run --rm busybox true" \
  -n "dockerd --network none" "$D run --rm --network none busybox true" \
  --export-json $WORK/run.json > /dev/null
jq -r '.results | map({(.command): .median}) | add as $m
  | "### `docker run --rm busybox true`, median of \('"$RUNS"') runs\n\n| berthd | dockerd | dockerd --network none | ratio (berthd/dockerd) | ratio (vs --network none) |\n|---:|---:|---:|---:|---:|\n| \($m["berthd"]*1000|round) ms | \($m["dockerd"]*1000|round) ms | \($m["dockerd --network none"]*1000|round) ms | **\($m["berthd"]/$m["dockerd"]*100|round/100)×** | \($m["berthd"]/$m["dockerd --network none"]*100|round/100)× |\n"' $WORK/run.json

rss_kb() { awk '/^VmRSS:/ {print $2}' /proc/$1/status; }
private_kb() { awk '/^Private_(Clean|Dirty):/ {s+=$2} END {print s}' /proc/$1/smaps_rollup; }

# 2. idle RSS
sleep 2
berthd_rss=$(rss_kb "$(cat $WORK/berthd.pid)")
dockerd_rss=$(rss_kb "$(cat $WORK/dockerd.pid)")
containerd_pid=$(pgrep -f "containerd --config $WORK/docker-exec" | head -1 || true)
[ -z "$containerd_pid" ] && containerd_pid=$(pgrep -P "$(cat $WORK/dockerd.pid)" containerd | head -1 || true)
containerd_rss=$( [ -n "$containerd_pid" ] && rss_kb $containerd_pid || echo 0)
echo "### Idle daemon RSS"
echo
echo "| berthd | dockerd | containerd | ratio berthd / (dockerd + containerd) |"
echo "|---:|---:|---:|---:|"
echo "| $((berthd_rss/1024)) MB ($berthd_rss kB) | $((dockerd_rss/1024)) MB | $((containerd_rss/1024)) MB | **$(echo "scale=3; $berthd_rss/($dockerd_rss+$containerd_rss)" | bc)×** |"
echo

# 3. per-container monitor memory (three containers each; the median one)
for i in 1 2 3; do $B run -d --name idle$i busybox sleep 10000 >/dev/null; $D run -d --network none --name idle$i busybox sleep 10000 >/dev/null; done
sleep 1
shim_priv=(); cshim_priv=(); cshim_rss=()
for i in 1 2 3; do
  id=$($B inspect --format '{{.Id}}' idle$i)
  p=$(cat $WORK/berth-exec/containers/$id/shim.pid)
  shim_priv+=($(private_kb $p))
  cpid=$($D inspect --format '{{.State.Pid}}' idle$i)
  sp=$(ps -o ppid= -p $cpid | tr -d ' ')
  cshim_priv+=($(private_kb $sp)); cshim_rss+=($(rss_kb $sp))
done
# podman's conmon, the other anchor
P="podman --root $WORK/podman-root --runroot $WORK/podman-run --cgroup-manager=cgroupfs --events-backend=file"
$P import $WORK/busybox.tar busybox:latest >/dev/null 2>&1
conmon_priv=()
for i in 1 2 3; do
  $P run -d --name idle$i --network none --runtime runc --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 busybox sleep 10000 >/dev/null 2>&1
  cp=$($P inspect --format '{{.State.ConmonPid}}' idle$i 2>/dev/null || echo 0)
  [ "$cp" -gt 0 ] 2>/dev/null && conmon_priv+=($(private_kb $cp))
done
med() { printf '%s\n' "$@" | sort -n | sed -n 2p; }
echo "### Private memory per running container (Private_Clean + Private_Dirty, median of 3)"
echo
conmon_med=$(med "${conmon_priv[@]:-0}")
echo "| berth-shim | containerd-shim-runc-v2 | ratio | podman's conmon | ratio | containerd-shim RSS |"
echo "|---:|---:|---:|---:|---:|---:|"
echo "| $(med "${shim_priv[@]}") kB | $(med "${cshim_priv[@]}") kB | **$(echo "scale=3; $(med "${shim_priv[@]}")/$(med "${cshim_priv[@]}")" | bc)×** | ${conmon_med:-?} kB | **$( [ "${conmon_med:-0}" -gt 0 ] && echo "scale=3; $(med "${shim_priv[@]}")/$conmon_med" | bc)×** | $(med "${cshim_rss[@]}") kB |"
echo
$B rm -f idle1 idle2 idle3 >/dev/null; $D rm -f idle1 idle2 idle3 >/dev/null
$P rm -f -t 0 idle1 idle2 idle3 >/dev/null 2>&1 || true

# 4. 100 run -d at 10 in parallel
par() { local cli=$1; shift; seq 100 | xargs -P 10 -I{} sh -c "$cli run -d $* busybox sleep 1000 >/dev/null"; }
t0=$(date +%s.%N); par "$B"; t1=$(date +%s.%N)
par "$D" --network none; t2=$(date +%s.%N)
bt=$(echo "$t1 - $t0" | bc); dt=$(echo "$t2 - $t1" | bc)
echo "### 100 \`docker run -d\` at 10 in parallel, wall time"
echo
echo "| berthd | dockerd (--network none) | ratio |"
echo "|---:|---:|---:|"
echo "| $(printf %.2f $bt) s | $(printf %.2f $dt) s | **$(echo "scale=3; $bt/$dt" | bc)×** |"
echo
$B rm -f $($B ps -aq) >/dev/null; $D rm -f $($D ps -aq) >/dev/null

# 5. ps -a with 1000 containers
seq 1000 | xargs -P 10 -I{} $B create busybox true >/dev/null
seq 1000 | xargs -P 10 -I{} $D create --network none busybox true >/dev/null
# The docker CLI's own floor: the same lists served from memory by bench/canned.py.
curl -sf --unix-socket $BSOCK "http://x/v1.50/containers/json?all=1" > $WORK/ps-berthd.json
curl -sf --unix-socket $DSOCK "http://x/v1.41/containers/json?all=1" > $WORK/ps-dockerd.json
python3 bench/canned.py $WORK/canned-b.sock $WORK/ps-berthd.json & CANNED_B=$!
python3 bench/canned.py $WORK/canned-d.sock $WORK/ps-dockerd.json & CANNED_D=$!
for _ in $(seq 50); do [ -S $WORK/canned-b.sock ] && [ -S $WORK/canned-d.sock ] && break; sleep 0.1; done
hyperfine -N -w 2 -r 10 -n berthd "$B ps -a" -n dockerd "$D ps -a" \
  -n "berthd's list, canned" "docker -H unix://$WORK/canned-b.sock ps -a" \
  -n "dockerd's list, canned" "docker -H unix://$WORK/canned-d.sock ps -a" \
  --export-json $WORK/ps.json >/dev/null
kill $CANNED_B $CANNED_D
jq -r '.results | map({(.command): .median}) | add as $m
  | ($m["berthd"] - $m["berthd'"'"'s list, canned"]) as $bs
  | ($m["dockerd"] - $m["dockerd'"'"'s list, canned"]) as $ds
  | "### `docker ps -a` with 1000 containers, median of 10\n\nThe canned columns are the same CLI against bench/canned.py serving the list each daemon gave, from memory: the CLI'"'"'s own time. The daemon'"'"'s share is the rest.\n\n| berthd | dockerd | ratio | CLI alone, berthd'"'"'s list | CLI alone, dockerd'"'"'s list | berthd'"'"'s share | dockerd'"'"'s share | ratio of shares |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n| \($m["berthd"]*1000|round) ms | \($m["dockerd"]*1000|round) ms | **\($m["berthd"]/$m["dockerd"]*100|round/100)×** | \($m["berthd'"'"'s list, canned"]*1000|round) ms | \($m["dockerd'"'"'s list, canned"]*1000|round) ms | \($bs*1000*10|round/10) ms | \($ds*1000*10|round/10) ms | **\($bs/$ds*1000|round/1000)×** |\n"' $WORK/ps.json
