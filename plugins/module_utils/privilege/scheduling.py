# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""How the kernel schedules and limits a QEMU process, which its cpr-transfer successor must keep.

An exec keeps all of it; a new process started by the module would get the module's own instead (nice 0, every
CPU, the SSH session's OOM score adjustment and resource limits). So a VM pinned to CPUs, niced, shielded from
the OOM killer or given more open files or locked memory would silently lose that in the upgrade.

Policy, nice, CPUs and I/O priority are the main thread's: what the threads QEMU starts inherit (QEMU sets its
own timer slack, 1 ns, as it starts).
Threads placed one by one (libvirt's vcpupin, whose VMs the collection leaves alone) are not followed. The OOM
score adjustment, the limits, the core dump filter and the no-THP flag are the whole process's. identity.py's
launch stage sets them as root.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.cpr.qemu.plugins.module_utils import process
from ansible_collections.cpr.qemu.plugins.module_utils.privilege import syscalls

# The policies sched_setscheduler(2) sets (SCHED_OTHER, FIFO, RR, BATCH, IDLE); SCHED_DEADLINE needs
# sched_setattr, which Python does not offer, and SCHED_EXT a BPF scheduler.
SETTABLE_POLICIES = (0, 1, 2, 3, 5)
POLICY_NAMES = {0: "other", 1: "fifo", 2: "rr", 3: "batch", 5: "idle", 6: "deadline", 7: "ext"}
# sched_getscheduler(2)'s flag: the process's children start under SCHED_OTHER, nice 0 (systemd's
# CPUSchedulingResetOnFork=); /proc/PID/stat shows the policy without it.
RESET_ON_FORK = 0x40000000
CAP_SYS_RESOURCE = 24
# ioprio_get(2): a priority is CLASS << 13 | LEVEL. Class "none" means the one the policy and nice give (the
# kernel's task_nice_ioclass and task_nice_ioprio), and so does "best-effort" at that level.
IOPRIO_WHO_PROCESS = 1
IOPRIO_CLASS_SHIFT = 13
IOPRIO_LEVEL_MASK = 7
IO_CLASS_NONE, IO_CLASS_RT, IO_CLASS_BE, IO_CLASS_IDLE = 0, 1, 2, 3
SCHED_FIFO, SCHED_RR, SCHED_IDLE = 1, 2, 5

# /proc/PID/limits names, as the resource module's RLIMIT_<NAME> constants. "Max file locks" is left out: Linux
# has not enforced it since 2.4.25 (getrlimit(2)), and the resource module has no constant for it.
LIMIT_NAMES = {
    "Max cpu time": "CPU", "Max file size": "FSIZE", "Max data size": "DATA", "Max stack size": "STACK",
    "Max core file size": "CORE", "Max resident set": "RSS", "Max processes": "NPROC", "Max open files": "NOFILE",
    "Max locked memory": "MEMLOCK", "Max address space": "AS", "Max pending signals": "SIGPENDING",
    "Max msgqueue size": "MSGQUEUE", "Max nice priority": "NICE", "Max realtime priority": "RTPRIO",
    "Max realtime timeout": "RTTIME",
}


def _read(path):
    with open(path) as f:
        return f.read()


def _stat_fields(text):
    """/proc/PID/stat from field 3 (state) on: the command name, in parentheses, may hold spaces."""
    return text[text.rindex(")") + 2:].split()


def cpu_list(text):
    """A kernel CPU list ('0-3,8,10-11') as a sorted list of CPU numbers."""
    cpus = set()
    for part in text.strip().split(","):
        if part:
            first, _sep, last = part.partition("-")
            cpus.update(range(int(first), int(last or first) + 1))
    return sorted(cpus)


def _limit(value):
    return None if value == "unlimited" else int(value)


def limits(text):
    """/proc/PID/limits as {RESOURCE: [soft, hard]}, None for unlimited."""
    found = {}
    for line in text.splitlines()[1:]:
        # The kernel writes the name in 25 columns, then soft, hard and units.
        name = LIMIT_NAMES.get(line[:25].strip())
        if name:
            soft, hard = line[25:].split()[:2]
            found[name] = [_limit(soft), _limit(hard)]
    return found


def _reset_on_fork(pid):
    try:
        return bool(os.sched_getscheduler(pid) & RESET_ON_FORK)
    except OSError:
        return False


def _io(io_class, level):
    """[class, level]; the idle class has no levels (the kernel ignores them), so its level is 0."""
    return [io_class, 0 if io_class == IO_CLASS_IDLE else level]


def _io_class_of(policy, nice):
    """The I/O priority a process of POLICY and NICE has while its own class is "none": [class, level]."""
    io_class = {SCHED_IDLE: IO_CLASS_IDLE, SCHED_FIFO: IO_CLASS_RT, SCHED_RR: IO_CLASS_RT}.get(policy, IO_CLASS_BE)
    return _io(io_class, (nice + 20) // 5)


def _io_priority(pid, policy, nice):
    """Process PID's I/O priority as [class, level], the one its policy and nice give where it has none of its
    own; None where it cannot be asked (a machine syscalls.py does not know, a process gone)."""
    if syscalls.numbers() is None:
        return None
    try:
        value = syscalls.call("ioprio_get", IOPRIO_WHO_PROCESS, pid)
    except OSError:
        return None
    # Bits 3 to 12 are hints (Linux 6.5 on), which are not carried.
    io_class, level = value >> IOPRIO_CLASS_SHIFT, value & IOPRIO_LEVEL_MASK
    return _io_class_of(policy, nice) if io_class == IO_CLASS_NONE else _io(io_class, level)


def io_priority_to_set(sched):
    """The I/O priority a successor must be given, as ioprio_set(2) takes it: class "none" (0) where its policy
    and nice give it, so that the module's own does not pass on."""
    wanted = sched["io_priority"]
    if wanted == _io_class_of(sched["policy"], sched["nice"]):
        return IO_CLASS_NONE << IOPRIO_CLASS_SHIFT
    return wanted[0] << IOPRIO_CLASS_SHIFT | wanted[1]


def _number(path, base=10):
    """The number in a /proc file, None where it cannot be read (coredump_filter is empty for a process without
    memory, an exiting one)."""
    try:
        text = _read(path).strip()
    except OSError:
        return None
    return int(text, base) if text else None


def capture(pid, status, proc="/proc"):
    """What process PID (whose /proc/PID/status is STATUS, as process.status reads it) must give its successor:
    its policy (and whether its children are reset) and real-time priority, nice, CPUs, I/O priority, OOM score
    adjustment, resource limits, core dump filter and whether THP is off for it."""
    stat = _stat_fields(_read("%s/%d/stat" % (proc, pid)))
    allowed = status.get("Cpus_allowed_list")
    thp = status.get("THP_enabled")
    # stat(5): field 19 is nice, 40 rt_priority, 41 policy; the list above starts at field 3.
    policy, nice = int(stat[38]), int(stat[16])
    return {
        "policy": policy, "reset_on_fork": _reset_on_fork(pid), "rt_priority": int(stat[37]),
        "nice": nice, "cpus": cpu_list(allowed[0]) if allowed else None,
        "io_priority": _io_priority(pid, policy, nice),
        "oom_score_adj": int(_read("%s/%d/oom_score_adj" % (proc, pid))),
        "limits": limits(_read("%s/%d/limits" % (proc, pid))),
        "coredump_filter": _number("%s/%d/coredump_filter" % (proc, pid), 16),
        # A kernel without THP shows 0 for everyone; PR_THP_DISABLE_EXCEPT_ADVISED (6.18) shows 1 and is not carried.
        "thp_disabled": thp is not None and thp[0] == "0",
    }


def _above(value, other):
    """Whether limit VALUE is above OTHER (None: unlimited)."""
    return other is not None and (value is None or value > other)


def shown(value):
    """A limit as prlimit(1) and the messages spell it."""
    return "unlimited" if value is None else str(value)


def _tasks_of(uid, proc):
    """How many tasks (threads) run with real uid UID: what RLIMIT_NPROC counts."""
    count = 0
    for name in os.listdir(proc):
        if name.isdigit():
            try:
                fields = process.status(int(name), proc)
            except OSError:
                continue  # gone
            if int(fields["Uid"][0]) == uid:
                count += int(fields["Threads"][0])
    return count


def problems(sched, uid, pid, own_limits, own_caps, proc="/proc"):
    """Why a successor of process PID (running as UID) could not be scheduled and limited as it is, by a
    module with OWN_LIMITS and effective capabilities OWN_CAPS (an int); empty if it can."""
    found = []
    unread = [name for name in ("io_priority", "coredump_filter") if sched[name] is None]
    if unread and syscalls.numbers() is not None:
        found.append("its %s cannot be read here, so the new QEMU would not get them" % ", ".join(unread))
    if sched["policy"] not in SETTABLE_POLICIES:
        found.append("it runs under the scheduling policy SCHED_%s, which the new QEMU would not get"
                     % POLICY_NAMES.get(sched["policy"], str(sched["policy"])).upper())
    if not own_caps & (1 << CAP_SYS_RESOURCE):
        raised = ["%s %s > %s" % (name, shown(hard), shown(own_limits[name][1])) for name, (_soft, hard)
                  in sorted(sched["limits"].items()) if name in own_limits and _above(hard, own_limits[name][1])]
        if raised:
            found.append("its hard limits are above this module's (%s), which cannot raise them without "
                         "CAP_SYS_RESOURCE" % ", ".join(raised))
    nproc = sched["limits"].get("NPROC", [None])[0]
    if uid != 0 and nproc is not None:
        # Both QEMUs count against the user's limit during the switch; a thread QEMU cannot start aborts it.
        # Every task of the host (/proc/loadavg's 4th field) bounds the user's: counted only where that is over.
        threads = int(process.status(pid, proc)["Threads"][0])
        everyone = int(_read("%s/loadavg" % proc).split()[3].split("/")[1])
        tasks = _tasks_of(uid, proc) if everyone + threads > nproc else everyone
        if tasks + threads > nproc:
            found.append("its user (uid %d) runs %d tasks and may run %d (RLIMIT_NPROC): a new QEMU with the old "
                         "one's %d threads would not fit beside it" % (uid, tasks, nproc, threads))
    return found
