# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Validation of what a live upgrade hands to the new QEMU: its argv, and (live-update) its fds and environment.

Everything here runs before the guest is paused.  A new QEMU that cannot take
the guest over either loses it (cpr-exec) or forces a rollback (cpr-transfer),
so each rule below is one of the ways that happens on real QEMU.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re
import stat

from ansible_collections.cpr.qemu.plugins.module_utils import process

# Options the modules own: they add -incoming (and -S) themselves, and a
# re-exec'd or re-spawned QEMU must not fork away from the PID we track.
OWNED_OPTIONS = {
    "incoming": "the modules add -incoming themselves",
    "S": "the modules decide whether the new QEMU starts paused",
    "daemonize": "-daemonize would fork the new QEMU away from the PID the modules track",
}


# QEMU's sizes (qemu_strtosz): a decimal number, a fraction allowed, and one suffix of B, K, M, G, T,
# P or E in either case.
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)([bBkKmMgGtTpPeE]?)$")
_UNITS = dict((u, 1 << (10 * n)) for n, u in enumerate("bkmgtpe"))
_UNITS[""] = 1


class ValidationError(Exception):
    pass


def permits(st, uid, gid, groups, want):
    """Whether uid/gid/groups may do ``want`` (rwx bits, 0o6 read and write) on a file of stat st, as the
    kernel's mode check decides: by the one class, owner, group or others, that the user falls in."""
    if uid == 0:
        return True
    mode = stat.S_IMODE(st.st_mode)
    shift = 6 if st.st_uid == uid else 3 if st.st_gid in [gid] + list(groups) else 0
    return (mode >> shift) & want == want


def kvm_problems(root, uid, gid, groups):
    """Why a QEMU started as uid/gid/groups inside root (a host path) could not open /dev/kvm there.

    A QEMU that started as root opened /dev/kvm before dropping its privileges; the QEMU that
    takes over opens it anew, as the user the VM now runs as.  (ACLs are not read: a device
    that grants access by an ACL only is refused.)
    """
    where = os.path.join(root, "dev/kvm")
    try:
        st = os.stat(where)
    except OSError as e:
        return ["/dev/kvm is not there in the new QEMU's root %s (%s): it could not start under KVM" % (root, e.strerror)]
    if not stat.S_ISCHR(st.st_mode):
        return ["/dev/kvm in the new QEMU's root %s is no character device" % root]
    if permits(st, uid, gid, groups, 0o6):
        return []
    return ["/dev/kvm in the new QEMU's root %s (mode %04o, uid %d, gid %d) cannot be opened for reading and writing "
            "by uid %d, gid %d, groups %s, as whom the new QEMU runs: it could not start under KVM"
            % (root, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, uid, gid, list(groups))]


def relative_paths(**paths):
    """The names of the given path options whose value is set but not absolute: a relative path would
    mean a place below wherever the module happens to run."""
    return sorted(name for name, path in paths.items() if path and not os.path.isabs(path))


def parse_size(text):
    """Bytes of a QEMU size (``256M``, ``1.5G``, ``268435456``), or None if unparseable."""
    m = _SIZE.match(str(text).strip())
    if not m:
        return None
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def strip_options(argv, names):
    """argv without the named options (and their values)."""
    drop = set()
    for i, name, value in process.iter_options(argv):
        if name in names:
            drop.add(i)
            if value is not None:
                drop.add(i + 1)
    return [a for i, a in enumerate(argv) if i not in drop]


def pin_machine(argv, machine_type):
    """argv with the first -machine/-M type replaced by ``machine_type`` (added if absent)."""
    out = list(argv)
    for i, name, value in process.iter_options(argv):
        if name in ("machine", "M"):
            pairs = process.split_options(value, "type")
            pairs = [(k, machine_type if k == "type" else v) for k, v in pairs]
            if "type" not in dict(pairs):
                pairs.insert(0, ("type", machine_type))
            out[i + 1] = process.join_options(pairs, "type")
            return out
    return out[:1] + ["-machine", machine_type] + out[1:]


def derive_argv(old_argv, new_binary, machine_type):
    """The new QEMU's argv by default: the VM's own, on the new binary, machine type pinned."""
    argv = strip_options(old_argv, OWNED_OPTIONS)
    argv[0] = new_binary
    return pin_machine(argv, machine_type)


def check_argv(argv, facts, qmp_socket, dialect="cpr-exec"):
    """Problems that would keep a QEMU started with ``argv`` from taking over this VM.

    ``facts`` are the VM's (vm_facts.gather); ``qmp_socket`` is the QMP socket
    path as the VM's QEMU was given it; ``dialect`` decides how RAM is shared
    (upstream: aux-ram-share; the live-update series: memfd-alloc).
    """
    problems = []
    if not argv or not os.path.isabs(argv[0]):
        return ["the new argv must start with the absolute path of the new QEMU binary"]
    unknown = sorted(set(process.unknown_options(argv) + process.unknown_options(facts["argv"])))
    if unknown:
        return ["neither the VM's QEMU binary nor the new one says whether %s take%s a value, so the VM's "
                "command line cannot be read for sure%s" % (", ".join("-" + n for n in unknown),
                                                            "s" if len(unknown) == 1 else "",
                                                            " (%s)" % facts["options_error"]
                                                            if facts.get("options_error") else "")]
    parsed = process.parse_argv(argv)
    for _i, name, _value in process.iter_options(argv):
        if name in OWNED_OPTIONS:
            problems.append("the new argv must not contain -%s: %s" % (name, OWNED_OPTIONS[name]))

    machine = facts["machine"]["type"]
    if parsed["machine"] != machine:
        problems.append("the new argv's machine type is %s, the VM runs %s: pass -machine %s"
                        % (parsed["machine"] or "the default", machine, machine))
    opts = parsed["machine_options"]
    old_opts = process.parse_argv(facts["argv"])["machine_options"]
    if opts.get("memory-backend") != old_opts.get("memory-backend"):
        problems.append("the new argv's -machine memory-backend=%s differs from the VM's %s"
                        % (opts.get("memory-backend"), old_opts.get("memory-backend")))
    if dialect == "live-update":
        problems += _live_update_ram(parsed, facts)
    elif opts.get("aux-ram-share") != "on":
        problems.append("the new argv lacks -machine aux-ram-share=on")
    problems += _memory_problems(parsed, process.parse_argv(facts["argv"]), facts["memory_backends"])
    if qmp_socket not in parsed["qmp_sockets"]:
        problems.append("the new argv must keep the QMP socket %s, so the VM stays reachable at the "
                        "same path" % qmp_socket)
    return problems


def _live_update_ram(parsed, facts):
    """The series finds the guest's memfds again only with the option that made them."""
    if facts["memfd_alloc"] is not None:
        if parsed["machine_options"].get("memfd-alloc") != "on":
            return ["the new argv lacks -machine memfd-alloc=on: the new QEMU would not take the guest's RAM "
                    "from its memfds"]
    elif "restart" not in parsed["cpr_enable"]:
        return ["the new argv lacks -cpr-enable restart: the new QEMU would not take the guest's RAM from its "
                "memfds"]
    return []


def ram_size(parsed):
    """Bytes of guest RAM an argv gives the VM: -m (a bare number is MiB), else the size of the
    machine's memory backend, else QEMU's default of 128 MiB."""
    text = parsed["memory"].get("size")
    if text is not None:
        return parse_size(text + "M" if text[-1:].isdigit() else text)
    backend = parsed["machine_options"].get("memory-backend")
    return parse_size(next((o.get("size", "") for o in parsed["memory_objects"]
                            if backend and o.get("id") == backend), "128M"))


def _memory_problems(parsed, old, backends):
    """The new QEMU must lay guest RAM out as the VM has it: it maps the same memory, or dies loading it."""
    problems = []
    if ram_size(parsed) != ram_size(old) or parsed["memory"].get("maxmem") != old["memory"].get("maxmem"):
        problems.append("the new argv's -m %s differs from the VM's -m %s"
                        % (",".join("%s=%s" % kv for kv in sorted(parsed["memory"].items())) or "(default)",
                           ",".join("%s=%s" % kv for kv in sorted(old["memory"].items())) or "(default)"))
    objects = dict((o.get("id"), o) for o in parsed["memory_objects"])
    given = set(o.get("id") for o in old["memory_objects"])
    for mem in backends:
        obj = objects.get(mem["id"])
        if obj is None and mem["id"] not in given:
            continue  # QEMU's implicit main RAM (pc.ram): -m above sizes it
        if obj is None:
            problems.append("the new argv has no memory backend '%s' (%s): the new QEMU could not find "
                            "the guest's RAM" % (mem["id"], mem["kind"]))
            continue
        if obj.get("qom-type") != mem["kind"]:
            problems.append("memory backend '%s' is %s in the new argv, %s in the VM"
                            % (mem["id"], obj.get("qom-type"), mem["kind"]))
        if (obj.get("share") == "on") != mem["share"]:
            problems.append("memory backend '%s' has share=%s in the new argv, share=%s in the VM"
                            % (mem["id"], obj.get("share", "off"), "on" if mem["share"] else "off"))
        if parse_size(obj.get("size", "")) != mem["size"]:
            problems.append("memory backend '%s' has size %s in the new argv, %d bytes in the VM"
                            % (mem["id"], obj.get("size"), mem["size"]))
    return problems


# The live-update series (seed dialect) hands RAM to the new binary as memfds
# recorded in the environment.  These checks run before cprsave: after it, a
# failed exec loses the guest.
FD_PREFIX = "QEMU_FD_"
# From V6 the series hands every fd over in one memfd of this name, named by
# the environment variable of the same name (V6 13/27 "cpr: preserve extra state").
STATE_MEMFD = "QEMU_CPR_STATE"
MAX_ARG_STRLEN = 32 * 4096  # include/uapi/linux/binfmts.h: 32 pages


def read_environ(pid, proc="/proc"):
    with open("%s/%d/environ" % (proc, pid), "rb") as f:
        return [e for e in f.read().split(b"\0") if e]


def memfds(pid, proc="/proc"):
    """{fd: memfd name} of a process (links read ``/memfd:NAME (deleted)``)."""
    out = {}
    base = "%s/%d/fd" % (proc, pid)
    for name in os.listdir(base):
        try:
            target = os.readlink(os.path.join(base, name))
        except OSError:
            continue
        if target.startswith("/memfd:"):
            out[int(name)] = target[len("/memfd:"):].replace(" (deleted)", "")
    return out


def _fd_flags(pid, fd, proc="/proc"):
    with open("%s/%d/fdinfo/%d" % (proc, pid, fd)) as f:
        for line in f:
            if line.startswith("flags:"):
                return int(line.split()[1], 8)
    return 0


def _recorded_name_problem(name, fd, fds, chardevs):
    """Why an environment entry QEMU_FD_<name>=<fd> is not what the new QEMU will take it for, or None.

    The series records RAM blocks and memory-backend-memfd objects (a memfd of
    that name), and also chardevs, their logs and VFIO descriptors (V5 16/25,
    20/25 and the pty and socket patches).
    """
    if fd in fds:
        return None if fds[fd] == name else "memfd %s" % fds[fd]
    if name in chardevs or name.endswith("_log") and name[:-4] in chardevs or name.startswith(("vfio", "/dev/vfio/")):
        return None
    return "neither a memfd of that name nor a chardev or VFIO descriptor"


def check_live_update_fds(pid, new_argv, chardevs=(), early=True, proc="/proc"):
    """Problems with the guest-RAM memfds and the environment that cprexec would hand over.

    /proc/PID/environ shows the environment the process was exec'd with; the
    series' setenv_fd() records later.  So recorded entries are checked where
    they show (after an earlier cprexec), and the size the environment will
    have at exec is estimated from the memfds it will record (V5: one
    variable each; V6+: one QEMU_CPR_STATE variable for them all).
    """
    problems = []
    fds = memfds(pid, proc)
    ram = dict((fd, name) for fd, name in fds.items() if name != STATE_MEMFD)
    if not ram:
        problems.append("QEMU (PID %d) holds no memfd for guest RAM: its RAM would not survive the exec" % pid)
    for fd, name in sorted(ram.items()):
        if _fd_flags(pid, fd, proc) & os.O_ACCMODE != os.O_RDWR:
            problems.append("the memfd of RAM block %s (fd %d) is not open read-write" % (name, fd))
    open_fds = set(int(n) for n in os.listdir("%s/%d/fd" % (proc, pid)))
    environ = read_environ(pid, proc)
    for entry in environ:
        key, _sep, value = entry.decode("utf-8", "replace").partition("=")
        if not key.startswith(FD_PREFIX):
            continue
        name = key[len(FD_PREFIX):]
        if not value.isdigit() or int(value) not in open_fds:
            problems.append("the environment records %s as fd %s, which is not open" % (name, value))
            continue
        why = _recorded_name_problem(name, int(value), fds, set(chardevs))
        if why:
            problems.append("the environment records %s as fd %s, but that fd is %s" % (name, value, why))
    if early:
        recorded = ["%s%s=%d" % (FD_PREFIX, name, fd) for fd, name in ram.items()]
        recorded += ["%s%s=%d" % (FD_PREFIX, name, 1000) for name in chardevs]
    else:
        recorded = ["%s=%d" % (STATE_MEMFD, 1000)]
    strings = [e.decode("utf-8", "replace") for e in environ] + recorded + list(new_argv) + ["-S"]
    size = sum(len(s.encode()) + 1 + 8 for s in strings)
    limit = os.sysconf("SC_ARG_MAX")
    if size > limit:
        problems.append("the new argv and QEMU's environment take %d bytes, over the kernel's exec limit of %d"
                        % (size, limit))
    for s in strings:
        if len(s.encode()) + 1 > MAX_ARG_STRLEN:
            problems.append("an argv or environment string of %d bytes exceeds the kernel's per-string exec "
                            "limit of %d" % (len(s.encode()), MAX_ARG_STRLEN))
    return problems
