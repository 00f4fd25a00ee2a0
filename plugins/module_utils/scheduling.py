# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""How the kernel schedules and limits a QEMU process, which its cpr-transfer successor must keep.

An exec keeps all of it; a new process started by the module would get the module's own instead (nice 0, every
CPU, the SSH session's OOM score adjustment and resource limits). So a VM pinned to CPUs, niced, shielded from
the OOM killer or given more open files or locked memory would silently lose that in the upgrade.

Read from /proc (the thread group leader's: what QEMU's threads inherit when it starts them), applied by
identity.py's launch stage as root, before the identity is dropped.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

# The policies sched_setscheduler(2) sets (SCHED_OTHER, FIFO, RR, BATCH, IDLE); SCHED_DEADLINE (6) needs
# sched_setattr, which Python does not offer.
SETTABLE_POLICIES = (0, 1, 2, 3, 5)
POLICY_NAMES = {0: "other", 1: "fifo", 2: "rr", 3: "batch", 5: "idle", 6: "deadline"}

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


def capture(pid, proc="/proc"):
    """What process PID's successor must be given: its policy and real-time priority, nice, CPUs, OOM score
    adjustment and resource limits."""
    stat = _stat_fields(_read("%s/%d/stat" % (proc, pid)))
    allowed = [line.split(":", 1)[1] for line in _read("%s/%d/status" % (proc, pid)).splitlines()
               if line.startswith("Cpus_allowed_list:")]
    # stat(5): field 19 is nice, 40 rt_priority, 41 policy; the list above starts at field 3.
    return {
        "policy": int(stat[38]), "rt_priority": int(stat[37]), "nice": int(stat[16]),
        "cpus": cpu_list(allowed[0]) if allowed else None,
        "oom_score_adj": int(_read("%s/%d/oom_score_adj" % (proc, pid))),
        "limits": limits(_read("%s/%d/limits" % (proc, pid))),
    }


def problems(sched):
    """Why a successor could not be scheduled as this process is; empty if it can."""
    if sched["policy"] not in SETTABLE_POLICIES:
        return ["it runs under the scheduling policy SCHED_%s, which the new QEMU would not get"
                % POLICY_NAMES.get(sched["policy"], str(sched["policy"])).upper()]
    return []
