# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
name: upgrade_plan
short_description: Decide, per VM, whether a live upgrade runs and why not
version_added: 0.1.0
description:
  - Takes the RV(cpr.qemu.qemu_cpr_info#module:vms) that M(cpr.qemu.qemu_cpr_info) reported with a target
    binary and returns one entry per VM with its C(action) (V(upgrade), V(skipped) or V(already-current)) and
    the C(reason).
  - By default every VM whose QEMU is older than the target, or whose binary was replaced on disk, is
    selected. O(query) narrows that with a JMESPath expression over the VMs; O(names) names VMs explicitly
    (by guest name or QMP socket).
  - A selected VM that no dialect is ready for, or whose machine type the target lacks, is skipped with
    the reasons from M(cpr.qemu.qemu_cpr_info).
author:
  - cpr.qemu contributors (@cpr-qemu)
requirements:
  - jmespath (on the controller, for O(query))
options:
  _input:
    description: The C(vms) list of M(cpr.qemu.qemu_cpr_info), run with C(target_binary).
    type: list
    elements: dict
    required: true
  names:
    description: Guest names or QMP sockets to upgrade; empty means every outdated VM.
    type: list
    elements: str
    default: []
  query:
    description: A JMESPath expression that selects VMs from the input list, for example C([?version=='10.0.2']).
    type: str
    default: ""
  pending_version:
    description:
      - A Debian package version of QEMU (for example V(1:11.1.3+ds-1~bpo13+1)) that is to replace the target
        binary but is not installed yet (check mode). The plan then compares each VM with that version's
        upstream part; the target binary's machine types are not known, so they are not checked.
    type: str
    default: ""
    version_added: 0.1.0
  targets:
    description:
      - Per-VM targets, as for a rollback to the binary each VM ran before. Each names a VM (C(vm), a guest name
        or QMP socket) and its target C(binary) in C(root) (default V(/)), with the QEMU C(version) expected there
        and optionally the C(launcher) that starts it (cpr-transfer).
      - When given, the input holds one entry per VM and target (M(cpr.qemu.qemu_cpr_info) run once per distinct
        C(binary) and C(root)); each named VM is planned against its own target and every other VM is skipped.
        A named VM is moved even when its target is not newer; one whose target binary now reports another
        version than C(version) is skipped with the reason.
    type: list
    elements: dict
    default: []
    version_added: 0.1.0
  dialect:
    description:
      - The dialect the upgrade is asked for (V(auto) or one dialect), to refuse here a VM that only another
        dialect could move (a target in another root than the VM's needs V(cpr-transfer)).
    type: str
    default: auto
    version_added: 0.1.0
  policy:
    description:
      - What is known of QEMU version pairs, source to target - the P(cpr.qemu.live_upgrade#role) role passes the
        collection's data file C(roles/live_upgrade/vars/qemu_version_pairs.yml). Each is a dict with C(from) and
        C(to) (a release series such as V(11.1), or an exact version such as V(11.1.3); an exact one wins), and
        C(status) V(tested) (with the C(proof)) or V(bad) (with the C(reason)).
      - A VM whose pair is V(bad) is skipped, before any pause, with the reason. Each entry records its pair.
    type: list
    elements: dict
    default: []
    version_added: 0.1.0
  unknown_pairs:
    description:
      - What a VM whose version pair O(policy) does not list may do. V(allow) - it is upgraded; V(canary) - only
        when O(canary) is true; V(refuse) - it is skipped with the reason.
    type: str
    choices: [allow, canary, refuse]
    default: allow
    version_added: 0.1.0
  canary:
    description: Whether this host belongs to the roll-out's canary batch, for O(unknown_pairs=canary).
    type: bool
    default: false
    version_added: 0.1.0
"""

EXAMPLES = r"""
- name: Plan the upgrade of every outdated VM on 10.0
  ansible.builtin.set_fact:
    plan: "{{ info.vms | cpr.qemu.upgrade_plan(query=\"[?starts_with(version, '10.0')]\") }}"

- name: Plan the upgrade of two named VMs only
  ansible.builtin.set_fact:
    plan: "{{ info.vms | cpr.qemu.upgrade_plan(names=['web1', '/run/vm/db1/qmp.sock']) }}"

- name: Plan against a package version that check mode did not install
  ansible.builtin.set_fact:
    plan: "{{ info.vms | cpr.qemu.upgrade_plan(pending_version='1:11.1.3+ds-1~bpo13+1') }}"
"""

RETURN = r"""
_value:
  description: One entry per VM of the input.
  type: list
  elements: dict
  contains:
    vm:
      description: The guest name, or the QMP socket if it has none.
      type: str
    qmp_socket:
      description: The VM's QMP socket.
      type: str
    action:
      description: V(upgrade), V(skipped) or V(already-current).
      type: str
    reason:
      description: Why the VM is skipped or left alone; empty for V(upgrade).
      type: str
    precheck_failed:
      description: Whether the VM was selected but is skipped because it failed a pre-check (not ready for any
        dialect, or a machine type the target lacks).
      type: bool
    dialect:
      description: The dialect the VM is ready for, if any.
      type: str
    version_before:
      description: The VM's QEMU version now.
      type: str
    version_target:
      description: The target's QEMU version.
      type: str
    pid_before:
      description: The VM's QEMU PID now.
      type: int
    binary_before:
      description: The binary the VM's QEMU runs now, C(path) inside C(root), what a rollback moves it back to.
      type: dict
      version_added: 0.1.0
    target_binary:
      description: The binary the VM would move to.
      type: str
      version_added: 0.1.0
    target_root:
      description: The root directory of RV(_value[].target_binary).
      type: str
      version_added: 0.1.0
    switch_dialect:
      description:
        - The dialect the switch must use, or null for the one asked for. V(cpr-transfer) when the target lies in
          another root than the VM's QEMU (the exec dialects run the new binary inside QEMU's own root).
      type: str
      version_added: 0.1.0
    launcher:
      description: The target's launcher (O(targets) only), or null.
      type: list
      version_added: 0.1.0
    session:
      description: The VM's live-upgrade session as M(cpr.qemu.qemu_cpr_info) reports it, or null.
      type: dict
      version_added: 0.1.0
    cpr_capable:
      description: Whether some CPR dialect is ready for the VM now (null for a VM that was not inspected).
      type: bool
      version_added: 0.1.0
    done_before:
      description:
        - Present and true for a V(already-current) VM that an earlier run upgraded to the target (the
          C(last_upgrade) that M(cpr.qemu.qemu_cpr_info) reports); the entry then carries that run's C(pause_ms)
          and C(paused_at).
      type: bool
      version_added: 0.1.0
    version_pair:
      description:
        - The VM's QEMU version and the target's (C(from), C(to)), and what O(policy) knows of the pair
          (C(status) V(tested), V(bad) or V(unknown), and its C(proof) or C(reason)); null when either version is
          not known.
      type: dict
      version_added: 0.1.0
"""

import functools
import os
import re

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_native

try:
    import jmespath
    HAS_JMESPATH = True
except ImportError:
    HAS_JMESPATH = False


def _name(vm):
    return vm.get("name") or vm.get("qmp_socket")


def _root(path):
    return os.path.normpath(path or "/")


def _entry(vm, action, reason="", precheck_failed=False, target_spec=None, switch_dialect=None, pair=None):
    target = vm.get("target") or {}
    binary = vm.get("binary") or {}
    dialects = vm.get("dialects")
    return {"version_pair": pair,
            "cpr_capable": any(d.get("ready") for d in dialects.values()) if isinstance(dialects, dict) else None,
            "vm": _name(vm), "qmp_socket": vm.get("qmp_socket"), "action": action, "reason": reason,
            "precheck_failed": precheck_failed, "dialect": switch_dialect or vm.get("preferred_dialect"),
            "version_before": vm.get("version"), "version_target": target.get("version"), "pid_before": vm.get("pid"),
            "binary_before": {"path": binary.get("path"), "root": binary.get("root")} if binary else None,
            "target_binary": target.get("path"), "target_root": target.get("root"),
            "switch_dialect": switch_dialect, "launcher": (target_spec or {}).get("launcher"),
            "session": vm.get("session")}


def upstream_version(package_version):
    """The QEMU version in a Debian package version: 1:11.1.3+ds-1~bpo13+1 -> 11.1.3."""
    return re.split(r"[-+~]", package_version.split(":", 1)[-1], maxsplit=1)[0]


def _key(version):
    return [int(p) if p.isdigit() else 0 for p in (version or "").split(".")]


def _older(version, than):
    return _key(version) < _key(than)


def _older_release(version, than):
    """Whether QEMU ``version`` is of an older release (major.minor) than ``than``."""
    return _key(version)[:2] < _key(than)[:2]


def _pending_target(vm, pending_version):
    version = upstream_version(pending_version)
    return dict(vm.get("target") or {}, version=version, on_target_binary=False,
                outdated=_older(vm["version"], version), offers_machine_type=True, notes=[])


def _session_reason(session):
    return ("a live upgrade of this VM is in progress or was left half-way (session %s, %s, step %s, %s s old, "
            "its process %s): settle it with cpr.qemu.qemu_cpr_recover"
            % (session.get("token"), session.get("dialect"), session.get("step"),
               int(session.get("age_s") or 0), "alive" if session.get("owner_alive") else "gone"))


def _by_target(vms, targets):
    """One entry per VM: for a VM named in targets, the one inspected against its own target."""
    named = {}
    for t in targets:
        if not isinstance(t, dict) or not t.get("vm") or not t.get("binary"):
            raise AnsibleFilterError("upgrade_plan: each target needs vm and binary: %r" % (t,))
        named[t["vm"]] = dict(t, root=t.get("root") or "/")
    order, picked = [], {}
    for vm in vms:
        sock = vm.get("qmp_socket")
        if sock not in picked:
            order.append(sock)
            picked[sock] = None
        spec = named.get(_name(vm)) or named.get(sock)
        target = vm.get("target") or {}
        if spec is None or "error" in vm:
            picked[sock] = picked[sock] or (vm, None)
        elif target.get("path") == spec["binary"] and _root(target.get("root")) == _root(spec["root"]):
            picked[sock] = (vm, spec)
    out = []
    for sock in order:
        if picked[sock] is None:
            raise AnsibleFilterError("upgrade_plan: no qemu_cpr_info entry of %s against its target: run it once per "
                                     "distinct binary and root of the targets" % sock)
        out.append(picked[sock])
    return out, set(named)


def _done_before(entry, last):
    """A current VM that an earlier run upgraded (the record qemu_cpr_info reports as ``last_upgrade``) keeps
    that run's pause: a re-run reports it, and does not pause it again."""
    if not last:
        return entry
    entry.update(done_before=True, pause_ms=last.get("pause_ms"), paused_at=last.get("paused_at"),
                 reason="%s; upgraded by an earlier run from QEMU %s (paused %s ms)" % (
                     entry["reason"], last.get("old_version"), last.get("pause_ms")))
    return entry


class Policy(object):
    """What the version-pair data says, and what an unknown pair may do on this host."""

    def __init__(self, rules, unknown="allow", canary=False):
        for rule in rules:
            if not isinstance(rule, dict) or not rule.get("from") or not rule.get("to") \
                    or rule.get("status") not in ("tested", "bad"):
                raise AnsibleFilterError("upgrade_plan: each policy entry needs from, to and status tested or bad: %r"
                                         % (rule,))
        if unknown not in ("allow", "canary", "refuse"):
            raise AnsibleFilterError("upgrade_plan: unknown_pairs must be allow, canary or refuse, not %r" % (unknown,))
        self.rules, self.unknown, self.canary = rules, unknown, canary

    @staticmethod
    def _fit(pattern, version):
        """How well a rule's version matches: 2 exact, 1 its release series, 0 not at all."""
        pattern = str(pattern)
        if pattern == version:
            return 2
        return 1 if _key(pattern) == _key(version)[:2] and len(pattern.split(".")) == 2 else 0

    def pair(self, source, target):
        """{from, to, status, proof or reason} of a move from QEMU SOURCE to TARGET, or None."""
        if not source or not target:
            return None
        best, fit = None, 0
        for rule in self.rules:
            f = (self._fit(rule["from"], source), self._fit(rule["to"], target))
            if all(f) and sum(f) > fit:
                best, fit = rule, sum(f)
        pair = {"from": source, "to": target, "status": best["status"] if best else "unknown"}
        if best:
            pair.update((k, best[k].strip()) for k in ("proof", "reason") if best.get(k))
        return pair

    def refusal(self, pair):
        """Why a VM with this pair must not move, or ''."""
        if pair is None:
            return ""
        if pair["status"] == "bad":
            return "QEMU %s -> %s is known bad: %s" % (pair["from"], pair["to"], pair.get("reason") or "no reason given")
        if pair["status"] == "unknown" and (self.unknown == "refuse" or self.unknown == "canary" and not self.canary):
            return ("QEMU %s -> %s is an unknown pair (not in the collection's version-pair data): it moves %s; "
                    "allow it with live_upgrade_unknown_pairs=allow once it is proven"
                    % (pair["from"], pair["to"], "on the canary batch only" if self.unknown == "canary" else "nowhere"))
        return ""


def _decide(vm, named, chosen, spec, dialect, policy):
    """The plan entry of one inspected VM."""
    target = vm["target"]
    pair = policy.pair(vm.get("version"), target.get("version"))
    entry = functools.partial(_entry, vm, target_spec=spec, pair=pair)
    if named and _name(vm) not in named and vm.get("qmp_socket") not in named:
        return entry("skipped", "not in the list of VMs to upgrade")
    if chosen is not None and vm.get("qmp_socket") not in chosen:
        return entry("skipped", "not selected by the query")
    # A session means the VM may be half-way (paused, or on two QEMUs): it is neither current nor to be touched.
    if vm.get("session"):
        return entry("skipped", _session_reason(vm["session"]))
    if spec and spec.get("version") and target.get("version") != spec["version"]:
        return entry("skipped", "%s in %s is now QEMU %s, not %s as recorded: put that version back first"
                     % (spec["binary"], spec["root"], target.get("version"), spec["version"]), True)
    if target["on_target_binary"]:
        return _done_before(entry("already-current", "runs the target binary"), vm.get("last_upgrade"))
    if not named and not target["outdated"]:
        return entry("already-current", "QEMU %s is not older than the target %s"
                     % (vm["version"], target["version"]))
    refused = policy.refusal(pair)
    if refused:
        return entry("skipped", refused, True)
    if target.get("version") and _older_release(target["version"], vm["version"]):
        return entry("skipped", "QEMU %s cannot take the guest over from the newer QEMU %s: QEMU loads the CPR state "
                     "of its own release series or an older one only (10.0 fails on 11.1's); a live move back "
                     "works within a release series" % (target["version"], vm["version"]), True)
    if not target["offers_machine_type"]:
        return entry("skipped", "; ".join(target["notes"]), True)
    vm_root = (vm.get("binary") or {}).get("root")
    if target.get("root") and vm_root and _root(target["root"]) != _root(vm_root):
        # cpr-exec and live-update exec the new binary inside QEMU's own root.
        transfer = vm["dialects"].get("cpr-transfer") or {}
        if dialect not in ("auto", "cpr-transfer"):
            return entry("skipped", "the target is in %s and the VM's QEMU in %s: only cpr-transfer moves a guest "
                         "to another root, not %s" % (target["root"], vm_root, dialect), True)
        if not transfer.get("ready"):
            why = "; ".join(transfer.get("reasons") or ["not offered"])
            return entry("skipped", "not ready: the target is in %s and the VM's QEMU in %s, which only cpr-transfer "
                         "bridges: %s" % (target["root"], vm_root, why), True)
        return entry("upgrade", switch_dialect="cpr-transfer")
    if not vm.get("preferred_dialect"):
        reasons = ["%s: %s" % (d, "; ".join(v["reasons"])) for d, v in sorted(vm["dialects"].items())
                   if v.get("offered")] or ["QEMU %s speaks no CPR dialect" % vm["version"]]
        return entry("skipped", "not ready: " + " | ".join(reasons), True)
    return entry("upgrade")


def upgrade_plan(vms, names=None, query="", pending_version="", targets=None, dialect="auto", policy=None,
                 unknown_pairs="allow", canary=False):
    if not isinstance(vms, list):
        raise AnsibleFilterError("upgrade_plan expects the vms list of cpr.qemu.qemu_cpr_info")
    if not isinstance(names or [], list):
        raise AnsibleFilterError("upgrade_plan: names must be a list (cpr.qemu.as_list makes survey text one)")
    rules = Policy(policy or [], unknown_pairs, canary)
    chosen = None
    if query:
        if not HAS_JMESPATH:
            raise AnsibleFilterError("upgrade_plan needs the jmespath Python library for query")
        try:
            picked = jmespath.search(query, vms) or []
        except jmespath.exceptions.JMESPathError as e:
            raise AnsibleFilterError("upgrade_plan: bad JMESPath query %r: %s" % (query, to_native(e)))
        chosen = set(v.get("qmp_socket") for v in picked if isinstance(v, dict))
    if targets:
        pairs, named = _by_target(vms, targets)
    else:
        pairs, named = [(vm, None) for vm in vms], set(names or [])
    plan = []
    for vm, spec in pairs:
        if "error" in vm:
            plan.append(_entry(vm, "skipped", "not inspected: %s" % vm["error"]))
            continue
        if pending_version:
            vm = dict(vm, target=_pending_target(vm, pending_version))
        if "target" not in vm:
            raise AnsibleFilterError("upgrade_plan needs qemu_cpr_info run with target_binary")
        plan.append(_decide(vm, named, chosen, spec, dialect, rules))
    return plan


class FilterModule(object):
    def filters(self):
        return {"upgrade_plan": upgrade_plan}
