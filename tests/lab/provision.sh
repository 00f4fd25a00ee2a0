#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
# Provisions the real-QEMU lab on a Debian 12 machine, as root, idempotently:
#   - QEMU 10.0.x on the host, from bookworm-backports;
#   - QEMU 11.1.x in a debootstrap'd trixie root, from trixie-backports;
#   - a second trixie root with QEMU 10.0 and QEMU 11.1 in a local repository;
#   - Debian's cloud kernel and a busybox initramfs (with the kernel's virtio
#     modules) for the test guest;
#   - qemu-img and qemu-io (qemu-utils 10.0) for the lab VMs' disk images;
#   - Debian's chromium, run headless by tests/fleet/timeline.py.
# Everything lands in $CPR_LAB_CACHE (default /var/cache/cpr-qemu-lab); a second
# run finds it there and takes seconds. Apt URIs are taken from this machine's
# own apt configuration, never written here.
set -euo pipefail

CACHE=${CPR_LAB_CACHE:-/var/cache/cpr-qemu-lab}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$CACHE/trixie
PKGHOST=$CACHE/pkghost
GUEST=$CACHE/guest
HOST_QEMU_SERIES=10.0
ROOT_QEMU_SERIES=11.1

log() { printf 'lab: %s\n' "$*" >&2; }
die() { printf 'lab: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (apt, debootstrap and chroot need it)"
mkdir -p "$CACHE"

# The first deb822 stanza of the main Debian source that carries the named
# suite, or a one-line "deb URI SUITE" entry: the machine's own mirror.
debian_uri() {
    local suite=$1 f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk -v suite="$suite" '
            BEGIN { RS=""; FS="\n" }
            {
                uris=""; ok=0
                for (i = 1; i <= NF; i++) {
                    if ($i ~ /^URIs:/) { uris=$i; sub(/^URIs:[ \t]*/, "", uris) }
                    if ($i ~ /^Suites:/) {
                        n = split($i, s, /[ \t]+/)
                        for (j = 2; j <= n; j++) if (s[j] == suite) ok=1
                    }
                }
                if (ok && uris != "") { split(uris, u, /[ \t]+/); print u[1]; exit }
            }' "$f"
    done | head -n 1 | grep . && return 0
    awk -v suite="$suite" '$1 == "deb" && $3 == suite { print $2; exit }' \
        /etc/apt/sources.list 2>/dev/null | grep . && return 0
    return 1
}

apt_updated=0
apt_update_once() {
    if [ "$apt_updated" -eq 0 ]; then
        log "apt-get update"
        apt-get update -qq
        apt_updated=1
    fi
}

host_packages() {
    local missing=() p
    for p in debootstrap cpio busybox-static util-linux; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        apt_update_once
        log "installing ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# sshd for the fleet tests' namespace hosts. Installing it must not start an
# sshd on this machine (the tests run their own, one per namespace host), so a
# policy-rc.d refuses service starts while apt runs.
fleet_packages() {
    dpkg-query -W -f='${Status}' openssh-server 2>/dev/null | grep -q 'install ok installed' && return
    apt_update_once
    local policy=/usr/sbin/policy-rc.d own=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        own=1
    fi
    log "installing openssh-server (not started)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-server >/dev/null
    [ "$own" -eq 0 ] || rm -f "$policy"
}

# Debian's chromium, which tests/fleet/timeline.py runs headless to screenshot
# and read the roll-out's HTML page. Its recommends (a sandbox helper, desktop
# services) are not needed headless; the fonts come with fontconfig.
browser_packages() {
    [ -x /usr/bin/chromium ] && return
    apt_update_once
    log "installing chromium"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
}

# qemu-system-x86 and qemu-utils (qemu-img and qemu-io, with which the lab
# makes and reads its VMs' disk images), both of one series from
# bookworm-backports.
host_qemu() {
    local p v missing=()
    for p in qemu-system-x86 qemu-utils; do
        v=$(dpkg-query -W -f='${Version}' "$p" 2>/dev/null || true)
        [[ $v == 1:$HOST_QEMU_SERIES.* ]] || missing+=("$p")
    done
    [ "${#missing[@]}" -gt 0 ] || return 0
    local uri src=/etc/apt/sources.list.d/cpr-qemu-lab-backports.sources
    uri=$(debian_uri bookworm) || die "no bookworm source found in this machine's apt configuration"
    if [ ! -f "$src" ]; then
        log "adding bookworm-backports (the machine's own bookworm mirror)"
        cat >"$src" <<EOF
Types: deb
URIs: $uri
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
        apt_updated=0
    fi
    apt_update_once
    log "installing ${missing[*]} from bookworm-backports"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -t bookworm-backports "${missing[@]}" >/dev/null
    for p in "${missing[@]}"; do
        v=$(dpkg-query -W -f='${Version}' "$p")
        [[ $v == 1:$HOST_QEMU_SERIES.* ]] || die "host $p is $v, expected $HOST_QEMU_SERIES.x"
    done
}

# Runs a command in the trixie root inside a private mount namespace, so the
# proc and /dev mounts it needs vanish with it, even if it is killed.
in_root() {
    unshare --mount --propagation private -- /bin/sh -ec '
        r=$1; shift
        mount -t proc proc "$r/proc"
        mount --rbind /dev "$r/dev"
        exec chroot "$r" "$@"' sh "$ROOT" "$@"
}

trixie_root() {
    if [ -x "$ROOT/usr/bin/qemu-system-x86_64" ] &&
        chroot "$ROOT" /usr/bin/qemu-system-x86_64 --version 2>/dev/null | grep -q "version $ROOT_QEMU_SERIES\."; then
        return
    fi
    local uri tmp=$CACHE/trixie.partial
    uri=$(debian_uri bookworm) || die "no bookworm source found in this machine's apt configuration"
    rm -rf "$tmp"
    log "debootstrap trixie (minbase) from the machine's own mirror"
    debootstrap --variant=minbase trixie "$tmp" "$uri" >"$CACHE/debootstrap.log" 2>&1 ||
        die "debootstrap failed; see $CACHE/debootstrap.log"
    cat >"$tmp/etc/apt/sources.list" <<EOF
deb $uri trixie main
deb $uri trixie-backports main
EOF
    ROOT=$tmp in_root apt-get update -qq
    log "installing qemu-system-x86 from trixie-backports in the root"
    ROOT=$tmp in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends -t trixie-backports qemu-system-x86 >/dev/null
    ROOT=$tmp in_root apt-get clean
    chroot "$tmp" /usr/bin/qemu-system-x86_64 --version | grep -q "version $ROOT_QEMU_SERIES\." ||
        die "trixie root QEMU is not $ROOT_QEMU_SERIES.x"
    rm -rf "$ROOT"
    mv "$tmp" "$ROOT"
}

# A trixie root for the fleet test's "package host": QEMU 10.0 from trixie
# installed, python3 and python3-apt for Ansible, and a local apt repository
# (/srv/cpr-lab-repo, the only source) holding the trixie-backports QEMU 11.1
# packages and trixie's python3-qemu-qmp, so the role can install them with
# apt where no mirror is reachable. Built from a copy of the trixie root.
pkghost_root() {
    local want have tmp=$CACHE/pkghost.partial
    want=$(chroot "$ROOT" dpkg-query -W -f='${Version}' qemu-system-x86)
    have=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["target"])' "$PKGHOST.json" 2>/dev/null || true)
    [ -x "$PKGHOST/usr/bin/python3" ] && [ "$want" = "$have" ] &&
        compgen -G "$PKGHOST/srv/cpr-lab-repo/python3-qemu-qmp_*.deb" >/dev/null && return
    log "building the package host's root (QEMU 10.0, a local repository with QEMU $want)"
    rm -rf "$tmp"
    cp -a "$ROOT" "$tmp"
    ROOT=$tmp in_root apt-get update -qq
    ROOT=$tmp in_root env DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq --autoremove qemu-system-x86 >/dev/null
    ROOT=$tmp in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        qemu-system-x86 python3 python3-apt apt-utils >/dev/null
    ROOT=$tmp in_root apt-get clean # the repository gets only what the upgrade downloads
    ROOT=$tmp in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        --download-only -t trixie-backports qemu-system-x86 >/dev/null
    # The modules' library as the distribution packages it, for the role's live_upgrade_install_requirements.
    ROOT=$tmp in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        --download-only python3-qemu-qmp >/dev/null
    mkdir -p "$tmp/srv/cpr-lab-repo"
    mv "$tmp"/var/cache/apt/archives/*.deb "$tmp/srv/cpr-lab-repo/"
    ROOT=$tmp in_root sh -c 'cd /srv/cpr-lab-repo && apt-ftparchive packages . >Packages'
    echo "deb [trusted=yes] file:/srv/cpr-lab-repo ./" >"$tmp/etc/apt/sources.list"
    rm -f "$tmp"/etc/apt/sources.list.d/*
    ROOT=$tmp in_root apt-get update -qq
    ROOT=$tmp in_root apt-get clean
    have=$(dpkg-deb -f "$tmp"/srv/cpr-lab-repo/qemu-system-x86_*.deb Version)
    [ "$have" = "$want" ] || die "the package host's repository has QEMU $have, not $want"
    printf '{"installed": "%s", "target": "%s"}\n' \
        "$(chroot "$tmp" dpkg-query -W -f='${Version}' qemu-system-x86)" "$have" >"$tmp.json"
    rm -rf "$PKGHOST"
    mv "$tmp" "$PKGHOST"
    mv "$tmp.json" "$PKGHOST.json"
}

# Debian's cloud kernel: its vmlinuz, and its package (kept as kernel.deb) for
# the modules the initramfs carries. Fetched once; the two always match.
guest_kernel() {
    [ -s "$GUEST/vmlinuz" ] && [ -s "$GUEST/kernel.deb" ] && return
    local tmp pkg
    apt_update_once
    pkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/ { print $2; exit }')
    [ -n "$pkg" ] || die "cannot resolve linux-image-cloud-amd64"
    tmp=$(mktemp -d)
    chmod 0755 "$tmp" # apt downloads as _apt
    log "fetching guest kernel $pkg"
    (cd "$tmp" && apt-get download -qq "$pkg" >/dev/null)
    dpkg-deb -x "$tmp"/*.deb "$tmp/x"
    mkdir -p "$GUEST"
    cp "$tmp"/x/boot/vmlinuz-* "$GUEST/vmlinuz.partial"
    cp "$tmp"/*.deb "$GUEST/kernel.deb.partial"
    mv "$GUEST/vmlinuz.partial" "$GUEST/vmlinuz"
    mv "$GUEST/kernel.deb.partial" "$GUEST/kernel.deb"
    rm -rf "$tmp"
}

# The kernel modules the guest may need (virtio disks and NIC, the
# virtio-serial port of the guest agent stand-in), built as modules (=m) in the
# cloud kernel. The initramfs carries them and their dependencies; /init loads
# what its devices need.
GUEST_MODULES=(virtio_pci virtio_blk virtio_scsi sd_mod virtio_net virtio_console)

# Writes to stdout, for the modules named in $2... and everything they depend
# on according to modules.dep ($1), one line each in load order (dependencies
# first): "PATH NAME: DEP..." with PATH relative to modules.dep's directory and
# DEP... all of NAME's dependencies, direct and indirect.
resolve_modules() {
    awk -v want="${*:2}" '
        function base(p) { sub(/.*\//, "", p); sub(/\.ko(\.[a-z]+)?$/, "", p); return p }
        {
            sub(/:$/, "", $1); m = base($1); path[m] = $1; deps[m] = ""
            for (i = 2; i <= NF; i++) deps[m] = deps[m] " " base($i)
        }
        function visit(m,    n, d, i, mine) {
            if (m in done) return done[m]
            if (!(m in path)) { print "no module " m > "/dev/stderr"; bad = 1; return "" }
            done[m] = ""
            n = split(deps[m], d, " ")
            for (i = 1; i <= n; i++) {
                if (index(" " mine " ", " " d[i] " ") == 0) mine = mine " " d[i]
                mine = mine visit(d[i])
            }
            # all dependencies, each once
            n = split(mine, d, " "); mine = ""
            for (i = 1; i <= n; i++) if (index(mine " ", " " d[i] " ") == 0) mine = mine " " d[i]
            done[m] = mine
            order[++count] = m
            return mine
        }
        END {
            n = split(want, w, " ")
            for (i = 1; i <= n; i++) visit(w[i])
            if (bad) exit 1
            for (i = 1; i <= count; i++) print path[order[i]], order[i] ":" done[order[i]]
        }' "$1"
}

# The initramfs is rebuilt whenever one of its inputs changes: /init, busybox,
# the kernel package or the list of modules.
guest_initramfs() {
    local want have tmp rel
    want=$( (sha256sum "$HERE/guest/init" /bin/busybox "$GUEST/kernel.deb" | cut -d' ' -f1
        echo "${GUEST_MODULES[*]}") | sha256sum | cut -d' ' -f1)
    have=$(cat "$GUEST/initramfs.sha256" 2>/dev/null || true)
    [ -s "$GUEST/initramfs.gz" ] && [ "$want" = "$have" ] && return
    tmp=$(mktemp -d)
    log "building guest initramfs"
    # The kernel's modules, with a modules.dep made here (the package has none).
    dpkg-deb -x "$GUEST/kernel.deb" "$tmp/k"
    rel=$(basename "$(find "$tmp/k/lib/modules" -mindepth 1 -maxdepth 1 -type d | head -n 1)")
    cmp -s "$tmp/k/boot/vmlinuz-$rel" "$GUEST/vmlinuz" || die "$GUEST/vmlinuz is not the kernel of $GUEST/kernel.deb"
    /bin/busybox depmod -b "$tmp/k" "$rel"
    mkdir -p "$tmp"/r/{bin,dev,proc,sys,mem,lib/modules}
    resolve_modules "$tmp/k/lib/modules/$rel/modules.dep" "${GUEST_MODULES[@]}" >"$tmp/modules" ||
        die "cannot resolve the guest's modules in $rel"
    local path line
    while read -r path line; do
        case $path in # /init insmods NAME.ko
        *.ko) cp "$tmp/k/lib/modules/$rel/$path" "$tmp/r/lib/modules/" ;;
        *.ko.xz) /bin/busybox unxz -c "$tmp/k/lib/modules/$rel/$path" >"$tmp/r/lib/modules/${line%%:*}.ko" ;;
        *) die "cannot unpack module $path" ;;
        esac
        echo "$line" >>"$tmp/r/lib/modules/modules.dep"
    done <"$tmp/modules"
    cp /bin/busybox "$tmp/r/bin/busybox"
    ln -s busybox "$tmp/r/bin/sh"
    install -m 0755 "$HERE/guest/init" "$tmp/r/init"
    mkdir -p "$GUEST"
    (cd "$tmp/r" && find . | cpio -o -H newc --quiet | gzip -9) >"$GUEST/initramfs.gz.partial"
    mv "$GUEST/initramfs.gz.partial" "$GUEST/initramfs.gz"
    echo "$want" >"$GUEST/initramfs.sha256"
    rm -rf "$tmp"
}

# The live-update SIMULATOR (no QEMU build with that series can be had): an
# ELF that embeds Python and runs tests/simulator/liveupdate_sim.py, one per
# version of the series (sim/vN/qemu-system-x86_64, as each real build carries
# one), rebuilt whenever either source changes.
simulator() {
    local src=$HERE/../simulator want have dir=$CACHE/sim all="5 6 8" series built=yes
    # The build embeds the script's path: a build made for another cache directory is rebuilt.
    want=$( (cat "$src/shim.c" "$src/liveupdate_sim.py"; echo "$dir $all") | sha256sum | cut -d' ' -f1)
    have=$(cat "$dir/build.sha256" 2>/dev/null || true)
    for series in $all; do
        [ -x "$dir/v$series/qemu-system-x86_64" ] || built=no
    done
    [ "$built" = yes ] && [ "$want" = "$have" ] && return
    log "building the live-update simulator"
    command -v python3.11-config >/dev/null || die "python3.11-config is needed to build the simulator"
    mkdir -p "$dir"
    rm -f "$dir/build.sha256" "$dir/qemu-system-x86_64"
    cp "$src/liveupdate_sim.py" "$dir/liveupdate_sim.py"
    for series in $all; do
        mkdir -p "$dir/v$series"
        # shellcheck disable=SC2046
        gcc -O1 -o "$dir/v$series/qemu-system-x86_64.partial" "$src/shim.c" \
            -DSIM_SCRIPT="\"$dir/liveupdate_sim.py\"" -DSIM_SERIES="\"$series\"" \
            $(python3.11-config --cflags) $(python3.11-config --embed --ldflags)
        mv "$dir/v$series/qemu-system-x86_64.partial" "$dir/v$series/qemu-system-x86_64"
    done
    echo "$want" >"$dir/build.sha256"
}

host_packages
fleet_packages
browser_packages
host_qemu
trixie_root
pkghost_root
guest_kernel
guest_initramfs
simulator
log "ready: host $(qemu-system-x86_64 --version | head -n1 | awk '{print $4}'), root $(chroot "$ROOT" /usr/bin/qemu-system-x86_64 --version | head -n1 | awk '{print $4}'), cache $CACHE"
