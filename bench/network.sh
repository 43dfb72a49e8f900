#!/usr/bin/env bash
# Traffic through a published port, berth against Debian's dockerd in one run: wrk from
# the host's loopback to busybox httpd in a container, `-p 127.0.0.1:PORT:80` on each.
# berth forwards with an nftables DNAT in the kernel; dockerd with iptables DNAT plus
# docker-proxy (its default userland proxy, which is what serves 127.0.0.1).
# Also: the time to connect() (TCP handshake through the forwarding), by a loop of
# 2000 connects.
# Usage: bash bench/network.sh [SECONDS]   (as root; prints markdown)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
SECS=${1:-10}
export DEBIAN_FRONTEND=noninteractive
need="wrk docker.io busybox-static nftables iptables python3"
dpkg -s $need >/dev/null 2>&1 || { apt-get update -q; apt-get install -y -q $need; }
bash scripts/release
BIN=$PWD/target/release
WORK=$(mktemp -d /tmp/berth-netbench.XXXXXX)
B="docker -H unix://$WORK/berth.sock"
D="docker -H unix://$WORK/docker.sock"
DBR=btbenchd0
cleanup() {
  set +e
  $B rm -f $($B ps -aq) >/dev/null 2>&1
  $D rm -f $($D ps -aq) >/dev/null 2>&1
  [ -f $WORK/berthd.pid ] && kill "$(cat $WORK/berthd.pid)"
  [ -f $WORK/dockerd.pid ] && kill "$(cat $WORK/dockerd.pid)"
  sleep 2
  grep -o " $WORK[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null
  [ -f $WORK/berth-data/network/table ] && nft delete table inet "$(cat $WORK/berth-data/network/table)"
  ip link del berthbench0 2>/dev/null; ip link del $DBR 2>/dev/null
  # dockerd's leftover rules for its bench bridge.
  for t in nat filter; do
    nft -a list table ip $t 2>/dev/null | awk -v br="\"$DBR\"" '/^\tchain /{c=$2} index($0, br) && /# handle/{print c, $NF}' |
      while read -r chain h; do nft delete rule ip $t "$chain" handle "$h"; done
  done
  rmdir /sys/fs/cgroup/*/berth-netbench 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

echo '{"bridge": "berthbench0", "bip": "10.197.0.1/24"}' > $WORK/berthd.json
setsid $BIN/berthd --config-file $WORK/berthd.json --data-root $WORK/berth-data --exec-root $WORK/berth-exec \
  -p $WORK/berthd.pid -H unix://$WORK/berth.sock --cgroup-parent /berth-netbench > $WORK/berthd.log 2>&1 < /dev/null &
ip link add $DBR type bridge; ip addr add 10.198.0.1/24 dev $DBR; ip link set $DBR up
setsid dockerd --data-root $WORK/docker-data --exec-root $WORK/docker-exec -p $WORK/dockerd.pid \
  -H unix://$WORK/docker.sock --bridge $DBR --containerd-namespace berth-netbench \
  --containerd-plugins-namespace berth-netbench-plugins > $WORK/dockerd.log 2>&1 < /dev/null &
for _ in $(seq 300); do $B version >/dev/null 2>&1 && $D version >/dev/null 2>&1 && break; sleep 0.1; done

busybox_tar $WORK etc/page "$(head -c 1024 /dev/zero | tr '\0' 'x')"
$B import $WORK/busybox.tar busybox:latest >/dev/null
$D import $WORK/busybox.tar busybox:latest >/dev/null

free() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PB=$(free); PD=$(free)
$B run -d --name web -p 127.0.0.1:$PB:80 busybox httpd -f -p 80 -h /etc >/dev/null
$D run -d --name web -p 127.0.0.1:$PD:80 busybox httpd -f -p 80 -h /etc >/dev/null
for p in $PB $PD; do
  for _ in $(seq 50); do curl -fsS -o /dev/null http://127.0.0.1:$p/page && break; sleep 0.1; done
done

# One client at a time, 2000 requests: the time connect() takes (the handshake through
# the forwarding), to the answer's first byte (what a client waits for), and the whole
# request (connect, GET, the answer to its end).
connect_us() {
  python3 - "$1" <<'PY'
import socket, sys, time
port = int(sys.argv[1]); n = 2000; c = []; f = []; r = []
for _ in range(n):
    s = socket.socket(); a = time.perf_counter(); s.connect(("127.0.0.1", port)); b = time.perf_counter()
    s.sendall(b"GET /page HTTP/1.0\r\n\r\n")
    first = s.recv(65536); fb = time.perf_counter()
    while first and s.recv(65536):
        pass
    e = time.perf_counter(); s.close(); c.append(b - a); f.append(fb - a); r.append(e - a)
c.sort(); f.sort(); r.sort()
q = lambda v, x: f"{v[int(n*x)]*1e6:.0f}"
print(q(c, .5), q(c, .99), q(f, .5), q(f, .99), q(r, .5), q(r, .99))
PY
}
wrk_line() { wrk -t2 -c16 -d${SECS}s --latency "http://127.0.0.1:$1/page" 2>&1; }
summ() { awk '/Requests\/sec/{r=$2} /^ +50%/{p50=$2} /^ +99%/{p99=$2} END{print r, p50, p99}'; }

echo "## Networking (issue 6) — \`bash bench/network.sh $SECS\`, $(date -u +%F)"
echo
echo "dockerd $($D version --format '{{.Server.Version}}') (iptables DNAT + docker-proxy, its defaults), berthd $($B version --format '{{.Server.Version}}') (release, nftables DNAT); busybox httpd (a process per connection) behind \`-p 127.0.0.1:PORT:80\`; wrk -t2 -c16 -d${SECS}s from the host, twice each, alternating; kernel $(uname -r), $(nproc) cores"
echo
echo "| Engine | run | wrk requests/s | wrk latency p50 | wrk latency p99 | one client: connect() p50 / p99 (µs) | first byte p50 / p99 (µs) | whole request p50 / p99 (µs) |"
echo "|---|---|---|---|---|---|---|---|"
for round in 1 2; do
  for e in berth docker; do
    p=$PB; [ $e = docker ] && p=$PD
    read -r rps p50 p99 < <(wrk_line $p | summ)
    read -r c50 c99 f50 f99 r50 r99 < <(connect_us $p)
    echo "| $e | $round | $rps | $p50 | $p99 | $c50 / $c99 | $f50 / $f99 | $r50 / $r99 |"
  done
done
