# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
name: upgrade_recovery
short_description: The results of settling a host's live-upgrade sessions
version_added: 0.1.0
description:
  - Turns what M(cpr.qemu.qemu_cpr_recover) registered into one result per session, in the form of the
    C(live_upgrade_results) of the P(cpr.qemu.live_upgrade#role) role, so that every settled session is reported
    with the VMs.
  - A session settled with its guest running (C(released), C(rolled-back), C(finished)) is V(recovered), one the
    module would settle in check mode (C(would-settle)) V(planned), and one left C(lost), C(stuck) or
    C(in-progress) V(failed), with the module's message. A module that failed without reporting its sessions
    gives one V(failed) result for the host.
author:
  - cpr.qemu contributors (@cpr-qemu)
options:
  _input:
    description: What M(cpr.qemu.qemu_cpr_recover) registered.
    type: dict
    required: true
  host:
    description: The inventory host, recorded in each result.
    type: str
    required: true
  check_mode:
    description: Whether the module ran in check mode (it then only said what it would do).
    type: bool
    default: false
  vms:
    description:
      - The C(vms) of M(cpr.qemu.qemu_cpr_info), to name each VM by its guest name as the other results do (a VM
        that is not there, or has no name, keeps the module's label).
    type: list
    elements: dict
    default: []
"""

EXAMPLES = r"""
- name: Report the settled sessions
  ansible.builtin.set_fact:
    results: "{{ recovery | cpr.qemu.upgrade_recovery(host=inventory_hostname, check_mode=ansible_check_mode) }}"
"""

RETURN = r"""
_value:
  description:
    - One result per session - C(host), C(vm), C(qmp_socket), C(status) (V(recovered), V(planned) or V(failed)),
      C(action) (what was done - V(released), V(rolled-back), V(finished), V(in-progress), V(lost), V(stuck),
      V(would-settle)), C(step) (how
      far the interrupted upgrade had got), C(guest), C(recovered) and C(reason), and C(version_before),
      C(version_after) and C(binary_before) where the module reports the session's C(old_version), C(new_version)
      and C(old_binary); the keys of an upgrade's result that do not apply are null.
  type: list
  elements: dict
"""

import re

RECOVERED = ("released", "rolled-back", "finished")
WHOLE = "(live-upgrade sessions of this host)"


def _result(host, vm, qmp_socket, status, reason, **more):
    record = {"host": host, "vm": vm, "qmp_socket": qmp_socket, "status": status, "reason": reason,
              "action": None, "step": None, "guest": None, "recovered": False, "dialect": None, "binary_before": None,
              "pid_before": None, "pid_after": None, "version_before": None, "version_after": None,
              "pause_ms": None, "paused_at": None}
    record.update(more)
    return record


def _guest_name(label):
    """The guest name in a module's label, "VM NAME (QMP socket)"."""
    m = re.match(r"^VM (.+) \(.*\)$", label or "")
    return m.group(1) if m and m.group(1) != "?" else None


def upgrade_recovery(recovery, host, check_mode=False, vms=None):
    recovery = recovery or {}
    names = dict((v.get("qmp_socket"), v.get("name")) for v in vms or [] if v.get("name"))
    settled = recovery.get("settled")
    if settled is None:
        if recovery.get("failed") or recovery.get("unreachable"):
            return [_result(host, WHOLE, None, "failed", "the sessions could not be settled: %s"
                            % (recovery.get("msg") or "cpr.qemu.qemu_cpr_recover failed"), guest="unknown")]
        return []
    out = []
    for s in settled:
        action = s.get("action")
        reason = s.get("msg") or ""
        if action in RECOVERED:
            status = "recovered"
        elif check_mode and action == "would-settle":
            status = "planned"
        else:
            status = "failed"
        vm = names.get(s.get("qmp_socket")) or _guest_name(s.get("vm")) or s.get("vm") or s.get("qmp_socket")
        old = s.get("old_binary") or {}
        out.append(_result(host, vm, s.get("qmp_socket"), status, reason,
                           action=action, step=s.get("step"), guest=s.get("guest"),
                           recovered=bool(s.get("recovered")) and not check_mode,
                           # Where the module says (a finished switch can then be rolled back from the report).
                           version_before=s.get("old_version"),
                           version_after=s.get("new_version") if action == "finished" else s.get("old_version"),
                           binary_before={"path": old["path"], "root": old.get("root") or "/"} if old.get("path")
                           else None))
    return out


class FilterModule(object):
    def filters(self):
        return {"upgrade_recovery": upgrade_recovery}
