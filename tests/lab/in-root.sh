#!/bin/sh
# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
# Usage: in-root.sh ROOT DIR... -- COMMAND [ARG...]
# Runs COMMAND under chroot ROOT, in a private mount namespace holding proc,
# /dev, a private /dev/shm and each DIR bind-mounted at the same path inside
# the root, so paths mean the same inside and out. The mounts die with the
# process. Every step execs: the PID that runs COMMAND is this script's.
set -e
if [ "$1" != "--in-namespace" ]; then
    exec unshare --mount --propagation private -- /bin/sh "$0" --in-namespace "$@"
fi
shift
root=$1
shift
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount -t tmpfs -o mode=1777 tmpfs "$root/dev/shm"
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do
    mkdir -p "$root$1"
    mount --bind "$1" "$root$1"
    shift
done
[ "$1" = "--" ] || { echo "in-root.sh: missing -- before the command" >&2; exit 2; }
shift
exec chroot "$root" "$@"
