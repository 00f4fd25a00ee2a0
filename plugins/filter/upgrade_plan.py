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
    version_added: 0.2.0
"""

EXAMPLES = r"""
- name: Plan the upgrade of every outdated VM on 10.0
  ansible.builtin.set_fact:
    plan: "{{ info.vms | cpr.qemu.upgrade_plan(query=\"[?starts_with(version, '10.0')]\") }}"
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
"""

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


def _entry(vm, action, reason="", precheck_failed=False):
    target = vm.get("target") or {}
    return {"vm": _name(vm), "qmp_socket": vm.get("qmp_socket"), "action": action, "reason": reason,
            "precheck_failed": precheck_failed, "dialect": vm.get("preferred_dialect"),
            "version_before": vm.get("version"), "version_target": target.get("version"), "pid_before": vm.get("pid")}


def upstream_version(package_version):
    """The QEMU version in a Debian package version: 1:11.1.3+ds-1~bpo13+1 -> 11.1.3."""
    return re.split(r"[-+~]", package_version.split(":", 1)[-1], maxsplit=1)[0]


def _older(version, than):
    def key(v):
        return [int(p) if p.isdigit() else 0 for p in v.split(".")]
    return key(version) < key(than)


def _pending_target(vm, pending_version):
    version = upstream_version(pending_version)
    return {"version": version, "on_target_binary": False, "outdated": _older(vm["version"], version),
            "offers_machine_type": True, "notes": []}


def upgrade_plan(vms, names=None, query="", pending_version=""):
    if not isinstance(vms, list):
        raise AnsibleFilterError("upgrade_plan expects the vms list of cpr.qemu.qemu_cpr_info")
    chosen = None
    if query:
        if not HAS_JMESPATH:
            raise AnsibleFilterError("upgrade_plan needs the jmespath Python library for query")
        try:
            picked = jmespath.search(query, vms) or []
        except jmespath.exceptions.JMESPathError as e:
            raise AnsibleFilterError("upgrade_plan: bad JMESPath query %r: %s" % (query, to_native(e)))
        chosen = set(v.get("qmp_socket") for v in picked if isinstance(v, dict))
    named = set(names or [])
    plan = []
    for vm in vms:
        if "error" in vm:
            plan.append(_entry(vm, "skipped", "not inspected: %s" % vm["error"]))
            continue
        if pending_version:
            vm = dict(vm, target=_pending_target(vm, pending_version))
        if "target" not in vm:
            raise AnsibleFilterError("upgrade_plan needs qemu_cpr_info run with target_binary")
        target = vm["target"]
        if named and _name(vm) not in named and vm.get("qmp_socket") not in named:
            plan.append(_entry(vm, "skipped", "not in the list of VMs to upgrade"))
        elif chosen is not None and vm.get("qmp_socket") not in chosen:
            plan.append(_entry(vm, "skipped", "not selected by the query"))
        elif target["on_target_binary"]:
            plan.append(_entry(vm, "already-current", "runs the target binary"))
        elif not named and not target["outdated"]:
            plan.append(_entry(vm, "already-current", "QEMU %s is not older than the target %s"
                               % (vm["version"], target["version"])))
        elif not target["offers_machine_type"]:
            plan.append(_entry(vm, "skipped", "; ".join(target["notes"]), precheck_failed=True))
        elif not vm.get("preferred_dialect"):
            reasons = ["%s: %s" % (d, "; ".join(v["reasons"])) for d, v in sorted(vm["dialects"].items())
                       if v.get("offered")] or ["QEMU %s speaks no CPR dialect" % vm["version"]]
            plan.append(_entry(vm, "skipped", "not ready: " + " | ".join(reasons), precheck_failed=True))
        else:
            plan.append(_entry(vm, "upgrade"))
    return plan


class FilterModule(object):
    def filters(self):
        return {"upgrade_plan": upgrade_plan}
