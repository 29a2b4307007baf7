#!/usr/bin/env bash
# The set-up check on a truly fresh machine: a new Debian 12 root (debootstrap), a clean
# clone of this repository's HEAD, and the README's commands run inside it as root.
#
# The root starts with Debian's base system plus what a user has before the README's first
# command: `make`, `git`, and Rust from rustup.rs with the C linker rustup needs (gcc).
# rustup cannot be fetched here, so this machine's stable toolchain is bind-mounted
# read-only; everything else (system packages, crates) the project's files must install.
#
#   scripts/clean-room.sh                 # make test
#   scripts/clean-room.sh make run        # any command, run in the clone's root
#
# Needs root and debootstrap (installed if missing). The root is made anew each time at
# $CLEAN_ROOT (default /var/tmp/zerotrain-clean-room); its log ends with the command's
# exit status.
set -euo pipefail

ROOT=${CLEAN_ROOT:-/var/tmp/zerotrain-clean-room}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
TOOLCHAIN=${TOOLCHAIN:-$(rustc --print sysroot)}
CMD=${*:-make test}
repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)

[ "$(id -u)" = 0 ] || { echo "clean-room: needs root (debootstrap, chroot, mounts)" >&2; exit 1; }
command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null

mounts=()
cleanup() {
  local i
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[$i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
bind() {  # source target [ro]
  mkdir -p "$2"
  mount --rbind "$1" "$2"
  mounts+=("$2")
  if [ "${3:-}" = ro ]; then mount -o remount,bind,ro "$2"; fi
}

# A root left mounted by an interrupted run: unmount everything below it before removing
# it, and never cross into another file system (its /dev, the toolchain).
for m in $(findmnt -rn -o TARGET | grep "^$ROOT/" | sort -r || true); do umount -l "$m"; done
rm -rf --one-file-system "$ROOT"
echo "clean-room: debootstrap bookworm into $ROOT"
debootstrap --variant=minbase bookworm "$ROOT" "$MIRROR" >"$ROOT.debootstrap.log" 2>&1 ||
  { tail -20 "$ROOT.debootstrap.log" >&2; exit 1; }
# A machine knows its own name: without /etc/hosts, every lookup of the hostname (Open
# MPI makes several when a job aborts) waits for DNS, seconds each.
cp /etc/resolv.conf /etc/hosts "$ROOT/etc/"
mkdir -p "$ROOT/proc" "$ROOT/sys"
mount -t proc proc "$ROOT/proc"; mounts+=("$ROOT/proc")
mount -t sysfs sys "$ROOT/sys"; mounts+=("$ROOT/sys")
# A booted machine has its cgroup file systems mounted; slurmd will not start without them
# (and tests/slurm_job.rs would skip).
bind /sys/fs/cgroup "$ROOT/sys/fs/cgroup"
bind /dev "$ROOT/dev"
bind "$TOOLCHAIN" "$ROOT/opt/rust" ro

in_root() { chroot "$ROOT" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
  PATH=/opt/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"; }

echo "clean-room: the user's prerequisites (make, git, gcc for rustup's linker)"
in_root apt-get update -qq
in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  make git ca-certificates gcc libc6-dev >/dev/null
# This machine's own network trust (local certificate authorities its traffic to the
# package registries passes through), as any machine on this network would have it.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/"
  in_root update-ca-certificates >/dev/null
fi

git clone -q "$repo" "$ROOT/root/zerotrain"
echo "clean-room: running '$CMD' in a clean clone of $(git -C "$repo" rev-parse --short HEAD)"
set +e
in_root bash -c "cd /root/zerotrain && $CMD"
status=$?
set -e
echo "clean-room: '$CMD' exited $status"
exit $status
