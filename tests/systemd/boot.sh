#!/bin/sh
# Boots systemd as PID 1 of a throwaway machine whose root is ROOTFS (a copy of the cached
# Debian rootfs). machine.py runs it as
#
#   unshare --cgroup --pid --fork --kill-child=SIGKILL --mount --propagation private -- \
#     /bin/sh boot.sh ROOTFS
#
# with WALBUST_MACHINE_TOKEN (a random string also written to ROOTFS/walbust-machine) and
# WALBUST_HOST_PIDNS / WALBUST_HOST_MNTNS (the launcher's `readlink /proc/self/ns/*`).
#
# Guards. A systemd started on the host's root by mistake would run its boot-time
# tmpfiles, mounts and generators against the host (it empties /tmp, among other things),
# so this script refuses to exec systemd (exit 97; guards 1 and 2 fire before it mounts
# anything, and what it mounted before guard 3 lives in its private mount namespace) unless:
#   1. it is PID 1 of a pid namespace other than the launcher's;
#   2. it runs in a mount namespace other than the launcher's;
#   3. after pivot_root, / holds the marker file with this boot's token: the rootfs copy,
#      not the host's root, is the root systemd will see.
# The old root is detached before exec, so nothing of the host's file systems stays
# reachable from inside except the device nodes bound below.
set -eu

die() {
  echo "boot.sh: refusing to boot systemd: $*" >&2
  exit 97
}

[ $# -eq 1 ] || die "usage: boot.sh ROOTFS"
root="$1"
token="${WALBUST_MACHINE_TOKEN:-}"
[ -n "$token" ] || die "WALBUST_MACHINE_TOKEN is not set"
[ -n "${WALBUST_HOST_PIDNS:-}" ] && [ -n "${WALBUST_HOST_MNTNS:-}" ] ||
  die "WALBUST_HOST_PIDNS and WALBUST_HOST_MNTNS must name the launcher's namespaces"

# Guard 1. /proc is still the launcher's here, so /proc/self/ns/pid names this process's
# own pid namespace as the host sees it.
[ "$$" = 1 ] || die "not PID 1 (pid $$): run through unshare --pid --fork"
pidns="$(readlink /proc/self/ns/pid)"
[ "$pidns" != "$WALBUST_HOST_PIDNS" ] || die "still in the launcher's pid namespace ($pidns)"
# Guard 2.
mntns="$(readlink /proc/self/ns/mnt)"
[ "$mntns" != "$WALBUST_HOST_MNTNS" ] || die "still in the launcher's mount namespace ($mntns)"

case "$root" in
/*) ;;
*) die "ROOTFS must be an absolute path: $root" ;;
esac
[ "$(cd "$root" && pwd -P)" != / ] || die "ROOTFS is the host's root"
[ "$(cat "$root/walbust-machine" 2>/dev/null)" = "$token" ] || die "$root/walbust-machine does not hold this boot's token"
[ -x "$root/lib/systemd/systemd" ] || die "$root has no /lib/systemd/systemd"

# No mount made from here on propagates back to the host.
mount --make-rprivate /
# pivot_root needs the new root to be a mount point: a bind mount of itself.
mount --bind "$root" "$root"

# A private /dev: systemd then leaves it alone (it mounts devtmpfs only on an empty /dev),
# and the console is /dev/null, so no getty or status output reaches the host's console.
mount -t tmpfs -o mode=0755,nosuid,size=4m tmpfs "$root/dev"
for node in null zero full random urandom tty; do
  : >"$root/dev/$node"
  mount --bind "/dev/$node" "$root/dev/$node"
done
: >"$root/dev/console"
mount --bind /dev/null "$root/dev/console"
mkdir -p "$root/dev/pts" "$root/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$root/dev/pts"
ln -s pts/ptmx "$root/dev/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/dev/shm"

# This pid namespace's /proc (umount below needs one; systemd keeps it).
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"

cd "$root"
mkdir -p .host-root
pivot_root . .host-root
cd /
# Guard 3, before anything else runs on the new root.
[ "$(cat /walbust-machine 2>/dev/null)" = "$token" ] || die "pivot_root did not make $root the root"
umount -l /.host-root
rmdir /.host-root
# systemd hands mounts from a service's helper namespace back to its own (credentials are
# set up that way), which needs shared propagation. These peer groups are new and local to
# this namespace: everything was made private above, so nothing reaches the host.
mount --make-rshared /

unset WALBUST_MACHINE_TOKEN WALBUST_HOST_PIDNS WALBUST_HOST_MNTNS
export container=walbust-test
# In a container systemd reads its kernel command line options from its own arguments.
# The unified hierarchy keeps it inside the cgroup namespace machine.py made for it; in
# hybrid mode it would take over the root of the host's name=systemd hierarchy.
# Its own messages go to the journal (the tests read them there); before journald runs they
# fall back to the console, since this /dev has no kmsg.
exec /lib/systemd/systemd --unit=multi-user.target --log-target=journal-or-kmsg --show-status=false \
  systemd.unified_cgroup_hierarchy=1
