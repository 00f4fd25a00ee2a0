# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Which CPR dialects a VM's QEMU speaks, and whether the VM is ready for each, with reasons.

Pure functions over the facts from vm_facts.gather() and, optionally, the
target binary from qemu_binary.probe().  Every reason is a sentence an
operator can act on; a dialect is ready only when it has no reasons.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.cpr.qemu.plugins.module_utils.dialects import live_update

# In the order ``dialect: auto`` prefers them: an exec keeps the PID and needs
# no second process; cpr-transfer works where exec is denied.
DIALECTS = ("cpr-exec", "live-update", "cpr-transfer")

UPGRADABLE_RUNSTATES = ("running", "paused")
_MIGRATION_IDLE = ("none", "completed", "failed", "cancelled")


def _version_tuple(text):
    return tuple(int(x) for x in text.split("."))


def speaks(facts):
    """{dialect: how this QEMU offers it, or None}."""
    modes = facts["migration_modes"]
    seed = live_update.spelling(facts["cpr_commands"])
    return {
        "cpr-exec": "migrate mode cpr-exec" if "cpr-exec" in modes and facts["cpr_exec_command"] else None,
        "cpr-transfer": "migrate mode cpr-transfer" if "cpr-transfer" in modes else None,
        "live-update": "/".join(seed) if seed else None,
    }


def common_blockers(facts):
    """Reasons that stop every dialect."""
    reasons = []
    if facts.get("session"):
        reasons.append("a live upgrade of this VM is in progress or was interrupted (session at step %s%s): "
                       "settle it with cpr.qemu.qemu_cpr_recover" % (
                           facts["session"]["step"], ", its process is gone" if facts["session"]["stuck"] else ""))
    if facts.get("managed_by") == "libvirt":
        reasons.append("libvirt runs this VM (its pidfile or monitor is libvirt's): libvirt holds its monitor and "
                       "tracks its process, and would lose track of a QEMU replaced behind its back; upgrade it "
                       "through libvirt")
    if facts.get("unknown_options"):
        reasons.append("neither the VM's QEMU binary nor the target says whether %s take a value: its command line "
                       "cannot be read for sure" % ", ".join("-" + n for n in facts["unknown_options"]))
    if facts["untrusted"]:
        reasons.append("untrusted: %s; the collection runs, probes and launches nothing for it"
                       % facts["untrusted"])
    if facts["runstate"] not in UPGRADABLE_RUNSTATES:
        reasons.append("runstate is '%s': only a running or paused VM can be live-upgraded"
                       % facts["runstate"])
    if facts["xen"]:
        reasons.append("the VM runs on Xen, which CPR does not support")
    status = facts["migration"]["status"]
    if status not in _MIGRATION_IDLE:
        reasons.append("a migration is in progress (status '%s')" % status)
    for why in facts["migration"]["blocked_reasons"]:
        reasons.append("QEMU blocks migration: %s" % why)
    return reasons


def _backend_reason(mem):
    """Why upstream CPR cannot keep this memory backend in place, or None."""
    if mem["share"]:
        return None
    if mem["kind"] == "memory-backend-ram" and mem["id"] == "pc.ram":
        return ("guest RAM 'pc.ram' is QEMU's private anonymous memory (started with -m and no memory "
                "backend): start the VM with -object memory-backend-memfd,id=ID,size=SIZE,share=on "
                "and -machine memory-backend=ID")
    return "memory backend '%s' (%s) has share=off: CPR needs share=on" % (mem["id"], mem["kind"])


def shared_ram_blockers(facts):
    """Upstream CPR keeps guest RAM in place only if QEMU can hand it over as shared memory."""
    reasons = [r for r in (_backend_reason(mem) for mem in facts["memory_backends"]) if r]
    if facts["aux_ram_share"] is not True:
        reasons.append("-machine aux-ram-share=on is not set: QEMU's auxiliary RAM (ROMs, video "
                       "memory) would not survive the restart")
    return reasons


def transfer_blockers(facts):
    """Why a new QEMU could not run as the VM's QEMU does (identity.problems, read into runs_as by vm_facts):
    a systemd service's main process, a PID namespace of its own, an LSM label, limits root cannot give..."""
    return list((facts.get("runs_as") or {}).get("transfer_refusals") or [])


def exec_blockers(facts):
    reasons = []
    if facts["exec_denied"]:
        reasons.append("QEMU runs under -sandbox on,spawn=deny, which forbids the exec this dialect needs "
                       "(cpr-transfer starts a second process instead and still works)")
    reasons += [r for r in (_net_exec_reason(net) for net in facts.get("netdevs") or []) if r]
    return reasons + _unseen_tap(facts)


def _unseen_tap(facts):
    """QEMU holds more taps than its command line shows (netdev_add): they cannot be judged."""
    shown = sum(len(str(n["fds"]).split(":")) if n.get("fds") else max(1, _queues(n)) for n in _taps(facts))
    if facts.get("tun_fds", 0) > shown:
        return ["QEMU holds %d /dev/net/tun fds but its command line shows taps for %d (some added at run time?): "
                "they cannot be judged, and a tap can lose the guest" % (facts["tun_fds"], shown)]
    return []


def _taps(facts):
    return [n for n in facts.get("netdevs") or [] if n.get("type") in ("tap", "bridge")]


def _net_name(net):
    return "'%s'" % net["id"] if net.get("id") else "(-nic %s)" % net.get("type")


def _queues(net):
    """A tap's queues= as QEMU reads numbers (any base C takes); 0 where it cannot be read."""
    try:
        return int(str(net.get("queues") or 1), 0)
    except ValueError:
        return 0


# Network backends whose far end (a vhost-user process, a vDPA device) a new QEMU would have to take over
# from the old one: nothing here has tried it, so no dialect moves them.
_UNTRIED_NETS = ("vhost-user", "vhost-vdpa")


def _untried(net):
    if net.get("type") in _UNTRIED_NETS:
        return ("network backend %s is %s, whose other end the collection has never handed to a new QEMU: it is "
                "not moved" % (_net_name(net), net["type"]))
    return None


def _net_exec_reason(net):
    """Seen on 10.0 and 11.1: QEMU opens /dev/net/tun without O_CLOEXEC, so a tap's fd outlives the exec."""
    if net.get("type") not in ("tap", "bridge"):
        return _untried(net)
    return ("network backend %s is a tap: its fd survives the exec and keeps the device busy, so the exec'd "
            "QEMU could not attach to it and the guest would be lost; use cpr-transfer with a multi-queue tap "
            "(queues=2 or more)" % _net_name(net))


def _net_transfer_reason(net):
    """A new QEMU opens the tap while the old one holds it: only a multi-queue tap takes a second user,
    and a tap handed over as an fd (libvirt's fd=) cannot be opened by name at all."""
    if net.get("type") not in ("tap", "bridge"):
        return _untried(net)
    if net.get("fd") or net.get("fds") or net.get("type") == "bridge":
        return ("network backend %s was handed to QEMU as an open fd (fd=, fds= or a bridge helper): the new "
                "QEMU would not have it" % _net_name(net))
    if _queues(net) < 2:
        return ("network backend %s is a single-queue tap: the new QEMU cannot attach while the old one holds "
                "it (EBUSY); give it queues=2 or more at the VM's next start" % _net_name(net))
    return None


def tap_transfer_blockers(facts):
    return [r for r in (_net_transfer_reason(net) for net in facts.get("netdevs") or []) if r] + _unseen_tap(facts)


def devices(facts):
    """Per device or backend the collection saw: whether each upstream dialect carries it across, and why
    not (the very reasons the dialects' verdicts hold)."""
    out = []
    for mem in facts["memory_backends"]:
        why = _backend_reason(mem)
        out.append({"id": mem["id"], "kind": mem["kind"],
                    "dialects": {"cpr-exec": why, "cpr-transfer": why}})
    for net in facts.get("netdevs") or []:
        out.append({"id": net.get("id"), "kind": "netdev %s" % net.get("type"),
                    "dialects": {"cpr-exec": _net_exec_reason(net), "cpr-transfer": _net_transfer_reason(net)}})
    blocked = ["QEMU blocks migration: %s" % why for why in facts["migration"]["blocked_reasons"]]
    for vfio in facts["vfio_devices"]:
        why = next((b for b in blocked if vfio in b or "vfio" in b.lower()), None)
        out.append({"id": vfio, "kind": "vfio", "dialects": {"cpr-exec": why, "cpr-transfer": why}})
    for dev in out:
        dev["carried"] = dict((d, why is None) for d, why in dev["dialects"].items())
        dev["reasons"] = dict((d, why) for d, why in dev.pop("dialects").items() if why)
    return out


def assess(facts):
    """{dialect: {offered, ready, reasons}} and the preferred ready dialect."""
    offered = speaks(facts)
    common = common_blockers(facts)
    version = facts["version"]
    result = {}
    for dialect in DIALECTS:
        if not offered[dialect]:
            if dialect == "live-update":
                why = "QEMU %s has no cprsave or cpr-save command (not a live-update build)" % version
            else:
                why = "QEMU %s does not offer migration mode %s (its modes: %s)" % (
                    version, dialect, ", ".join(facts["migration_modes"]) or "none")
            result[dialect] = {"offered": False, "via": None, "ready": False, "reasons": [why]}
            continue
        reasons = list(common)
        if dialect in ("cpr-exec", "cpr-transfer"):
            reasons += shared_ram_blockers(facts)
        if dialect == "cpr-transfer":
            reasons += transfer_blockers(facts) + tap_transfer_blockers(facts)
        if dialect in ("cpr-exec", "live-update"):
            reasons += exec_blockers(facts)
        if dialect == "live-update":
            reasons += live_update.blockers(facts)
        result[dialect] = {"offered": True, "via": offered[dialect], "ready": not reasons,
                           "reasons": reasons}
    preferred = next((d for d in DIALECTS if result[d]["ready"]), None)
    return result, preferred


def assess_target(facts, target):
    """How the VM relates to a target binary (from qemu_binary.probe())."""
    machine = facts["machine"]
    offers = machine["type"] in target["machine_types"]
    same_file = list(target["file_id"]) == list(facts["binary"]["file_id"])
    newer = _version_tuple(target["version"]) > _version_tuple(facts["version"])
    replaced = facts["binary"]["replaced_on_disk"]
    notes = []
    if not offers:
        notes.append("target QEMU %s does not offer the VM's machine type %s: the guest cannot move to it"
                     % (target["version"], machine["type"]))
    pin = bool(machine["alias"]) and target["machine_aliases"].get(machine["given"]) != machine["type"]
    if pin:
        notes.append(
            "the VM was started with the machine alias '%s', which is %s here but %s in the target: "
            "the new QEMU must be started with -machine %s (qemu_cprexec pins it)"
            % (machine["given"], machine["type"],
               target["machine_aliases"].get(machine["given"], "unknown"), machine["type"]))
    return {
        "path": target["path"],
        "root": target["root"],
        "version": target["version"],
        "package": target["package"],
        "offers_machine_type": offers,
        "machine_pin_required": pin,
        "on_target_binary": same_file and not replaced,
        "outdated": newer or replaced,
        "notes": notes,
    }
