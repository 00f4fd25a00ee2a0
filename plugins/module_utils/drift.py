# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The drift inventory: qemu_cpr_info's reports condensed to small, stable-keyed host facts.

``facts(vms, target)`` turns the VM reports of vm_facts.inspect() (and the probed
target binary, if any) into the ``cpr_qemu_vms`` and ``cpr_qemu_summary`` facts:
per VM its running and installed QEMU build, whether its binary is still on
disk, whether it is CPR-capable now, what stands in the way and what to change
at its next restart.  Every entry has every key (null where unknown), so the
facts diff cleanly in a fact cache; no command line or other secret is copied.

What to change at a restart is derived from the very reasons readiness.py and
live_update.py give: each fix is matched to the reason it removes, by asking
those modules about one memory backend, network backend or chardev at a time.
A reason no fix is known for is left in ``blockers`` and never guessed at.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.cpr.qemu.plugins.module_utils import readiness
from ansible_collections.cpr.qemu.plugins.module_utils.dialects import live_update

BINARY_STATES = ("present", "replaced", "deleted")

# The per-VM keys, in this order; all of them are always present.
VM_KEYS = ("name", "qmp_socket", "pid", "error_kind", "runstate", "machine_type",
           "running_version", "running_package", "binary_path", "binary_root", "binary_state",
           "installed_version", "installed_package", "outdated",
           "cpr_capable", "preferred_dialect", "offered_dialects", "blockers",
           "next_restart", "next_restart_dialect", "managed_by", "untrusted")

_UNITS = (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10))


def size_text(size):
    """A size in bytes as QEMU's size= takes it, in the largest unit that divides it."""
    if not isinstance(size, int) or size <= 0:
        return "SIZE"
    for suffix, unit in _UNITS:
        if size % unit == 0:
            return "%d%s" % (size // unit, suffix)
    return str(size)


def file_at(vm, proc="/proc"):
    """Whether a file (or a symlink) is at the VM's binary path now, as the VM's QEMU sees its root."""
    return os.path.lexists("%s/%d/root%s" % (proc, vm["pid"], vm["binary"]["path"]))


def binary_state(vm, exists=file_at):
    """present (QEMU runs the file at its path), replaced (another file is there now, as after a package
    upgrade) or deleted (nothing is there)."""
    if not vm["binary"]["replaced_on_disk"]:
        return "present"
    try:
        return "replaced" if exists(vm) else "deleted"
    except (OSError, TypeError, ValueError):
        return "replaced"


def _unique(items):
    out = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


def _free_id(vm, stem="ram"):
    taken = set(m["id"] for m in vm["memory_backends"])
    return next("%s%d" % (stem, n) for n in range(len(taken) + 1) if "%s%d" % (stem, n) not in taken)


def _memfd_instead_of_plain_ram(vm, mem):
    ram_id = _free_id(vm)
    return ("-object memory-backend-memfd,id=%s,size=%s,share=on and -machine memory-backend=%s "
            "(instead of QEMU's private anonymous '%s')" % (ram_id, size_text(mem.get("size")), ram_id, mem["id"]))


def _plain_ram(mem):
    return mem["kind"] == "memory-backend-ram" and mem["id"] == "pc.ram"


def _net_name(net):
    return "'%s'" % net["id"] if net.get("id") else "(-nic %s)" % net.get("type")


def known_fixes(vm):
    """{reason as readiness/live_update word it: what to change at the VM's next restart to remove it}."""
    fixes = {}

    def learn(reasons, fix):
        for reason in reasons:
            fixes.setdefault(reason, fix)

    # Upstream cpr-exec and cpr-transfer: shared guest RAM and aux-ram-share=on.
    for mem in vm["memory_backends"]:
        why = readiness.shared_ram_blockers(dict(vm, memory_backends=[mem], aux_ram_share=True))
        learn(why, _memfd_instead_of_plain_ram(vm, mem) if _plain_ram(mem)
              else "share=on on memory backend '%s' (%s)" % (mem["id"], mem["kind"]))
    if vm["aux_ram_share"] is False:
        learn(readiness.shared_ram_blockers(dict(vm, memory_backends=[])), "-machine aux-ram-share=on")
    # cpr-transfer: a single-queue tap opened by name takes a second user only as a multi-queue tap.
    for net in vm.get("netdevs") or []:
        if net.get("type") == "tap" and not net.get("fd") and not net.get("fds"):
            learn(readiness.tap_transfer_blockers(dict(vm, netdevs=[net], tun_fds=0)),
                  "queues=2 (or more) on tap network backend %s" % _net_name(net))
    # The live-update series: RAM that survives the exec, chardevs it may reopen.
    proto, _problems = live_update.protocol(vm)
    if proto is not None:
        if vm["memfd_alloc"] is False:
            learn(live_update.ram_blockers(dict(vm, memory_backends=[])), "-machine memfd-alloc=on")
        if vm["memfd_alloc"] is None:
            learn(live_update.ram_blockers(dict(vm, memory_backends=[])), "-cpr-enable restart")
            for mem in vm["memory_backends"]:
                why = live_update.ram_blockers(dict(vm, memory_backends=[mem], cpr_enable=["restart"]))
                if _plain_ram(mem):
                    fix = _memfd_instead_of_plain_ram(vm, mem)
                elif mem["kind"] in ("memory-backend-memfd", "memory-backend-file"):
                    fix = "share=on on memory backend '%s' (%s)" % (mem["id"], mem["kind"])
                else:
                    fix = "memory backend '%s' as a memory-backend-memfd (or -file) with share=on" % mem["id"]
                learn(why, fix)
        option = "close-on-cpr" if proto["early"] else "reopen-on-cpr"
        for chardev in vm["chardevs"]:
            learn(live_update.chardev_blockers(dict(vm, chardevs=[chardev]), proto),
                  "%s=on on chardev '%s'" % (option, chardev["label"]))
    return fixes


def next_restart(vm):
    """(changes, dialect): what to change at the VM's next restart so that ``dialect`` becomes ready.

    Among the offered dialects that are not ready and have a reason a change removes, the one left with
    the fewest other reasons, then needing the fewest changes, then the first in readiness.DIALECTS.
    ([], None) when the VM is ready now or no change the collection knows would help."""
    if vm.get("preferred_dialect"):
        return [], None
    fixes = known_fixes(vm)
    best = None
    for rank, dialect in enumerate(readiness.DIALECTS):
        verdict = vm["dialects"].get(dialect) or {}
        if not verdict.get("offered") or verdict.get("ready"):
            continue
        reasons = verdict.get("reasons") or []
        changes = _unique(fixes[r] for r in reasons if r in fixes)
        if not changes:
            continue
        key = (len([r for r in reasons if r not in fixes]), len(changes), rank)
        if best is None or key < best[0]:
            best = (key, changes, dialect)
    return (best[1], best[2]) if best else ([], None)


def blockers(vm):
    """What keeps the VM from every dialect now: [] when one is ready; else the reasons of every dialect its
    QEMU offers (of all three when it offers none), each once, in readiness.DIALECTS order."""
    if vm.get("preferred_dialect"):
        return []
    verdicts = [vm["dialects"][d] for d in readiness.DIALECTS if d in vm["dialects"]]
    offered = [v for v in verdicts if v.get("offered")] or verdicts
    return _unique(r for v in offered for r in v.get("reasons") or [])


def vm_entry(vm, target=None, exists=file_at):
    """The cpr_qemu_vms entry of one VM report (vm_facts.inspect())."""
    entry = dict((k, None) for k in VM_KEYS)
    entry.update(name=vm.get("name"), qmp_socket=vm["qmp_socket"], pid=vm.get("pid"),
                 managed_by=vm.get("managed_by"), cpr_capable=False, offered_dialects=[], blockers=[],
                 next_restart=[], untrusted=bool(vm.get("untrusted")))
    if target is not None:
        entry.update(installed_version=target["version"], installed_package=target.get("package"))
    if "error" in vm:
        entry.update(error_kind=vm.get("error_kind") or "unknown", blockers=[vm["error"]])
        return entry
    state = binary_state(vm, exists)
    changes, dialect = next_restart(vm)
    entry.update(
        runstate=vm["runstate"],
        machine_type=vm["machine"]["type"],
        running_version=vm["version"],
        running_package=vm.get("package"),
        binary_path=vm["binary"]["path"],
        binary_root=vm["binary"]["root"],
        binary_state=state,
        outdated=vm["target"]["outdated"] if vm.get("target") else (True if state != "present" else None),
        cpr_capable=bool(vm.get("preferred_dialect")),
        preferred_dialect=vm.get("preferred_dialect"),
        offered_dialects=[d for d in readiness.DIALECTS if (vm["dialects"].get(d) or {}).get("offered")],
        blockers=blockers(vm),
        next_restart=changes,
        next_restart_dialect=dialect,
    )
    return entry


def summary(entries, target=None):
    """cpr_qemu_summary: counts over the host's cpr_qemu_vms (every key always present)."""
    inspected = [e for e in entries if e["error_kind"] is None]
    return {
        "vms": len(entries),
        "inspected": len(inspected),
        "uninspected": len(entries) - len(inspected),
        "cpr_capable": sum(1 for e in entries if e["cpr_capable"]),
        "not_cpr_capable": sum(1 for e in entries if not e["cpr_capable"]),
        "outdated": sum(1 for e in entries if e["outdated"]),
        "binary_replaced": sum(1 for e in entries if e["binary_state"] == "replaced"),
        "binary_deleted": sum(1 for e in entries if e["binary_state"] == "deleted"),
        "fixable_at_restart": sum(1 for e in entries if e["next_restart"]),
        "managed_by_libvirt": sum(1 for e in entries if e["managed_by"] == "libvirt"),
        "untrusted": sum(1 for e in entries if e["untrusted"]),
        "preferred_dialects": dict((d, sum(1 for e in entries if e["preferred_dialect"] == d))
                                   for d in readiness.DIALECTS),
        "installed_version": target["version"] if target else None,
        "installed_binary": target["path"] if target else None,
    }


def facts(vms, target=None, exists=file_at):
    """{cpr_qemu_vms, cpr_qemu_summary} for qemu_cpr_info's ansible_facts, the VMs in the order given."""
    entries = [vm_entry(vm, target, exists) for vm in vms]
    return {"cpr_qemu_vms": entries, "cpr_qemu_summary": summary(entries, target)}
