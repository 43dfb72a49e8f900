# Shared by the bench scripts (sourced): the busybox image they all import.

# busybox_tar DIR [EXTRA_FILE CONTENT]: a rootfs tar of Debian's static busybox and its
# applets at DIR/busybox.tar (DIR/rootfs is the tree); an extra file may be added.
busybox_tar() {
  local dir=$1 r=$1/rootfs
  mkdir -p "$r/bin" "$r/etc" "$r/tmp"
  cp /bin/busybox "$r/bin/busybox"
  for a in $(/bin/busybox --list); do [ -e "$r/bin/$a" ] || ln -s busybox "$r/bin/$a"; done
  printf 'root:x:0:0:root:/root:/bin/sh\n' > "$r/etc/passwd"
  printf 'root:x:0:\n' > "$r/etc/group"
  if [ $# -ge 3 ]; then printf '%s' "$3" > "$r/$2"; fi
  tar -C "$r" -cf "$dir/busybox.tar" .
}

# Wait (at most 2 minutes) for the 1-minute load average to fall below 1: what a
# previous bench or build left running would otherwise be in the first figures.
wait_quiet() {
  local _
  for _ in $(seq 120); do
    awk '{exit !($1 < 1.0)}' /proc/loadavg && return 0
    sleep 1
  done
}
