# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
name: rollback_targets
short_description: Per host, the binary each VM ran before a live upgrade, from its report
version_added: 0.1.0
description:
  - Reads the JSON report of an earlier roll-out (the C(live_upgrade_results) of every host, as
    the playbook C(cpr.qemu.upgrade_qemu) writes them) and returns, per host, the
    O(cpr.qemu.upgrade_plan#filter:targets) that move each upgraded VM back to the binary, root and QEMU version
    it ran before. The playbook C(cpr.qemu.rollback_qemu) uses it to make the role's C(live_upgrade_targets).
  - Only VMs the report says were V(upgraded) are moved back, and those whose interrupted upgrade the next run
    finished (V(recovered) with action V(finished)) where the report has the binary they ran before.
author:
  - cpr.qemu contributors (@cpr-qemu)
options:
  _input:
    description: The report, a list of results.
    type: list
    elements: dict
    required: true
  vms:
    description: Only these VMs (guest names or QMP sockets); empty for every upgraded VM.
    type: list
    elements: str
    default: []
  launchers:
    description:
      - A launcher (cpr-transfer command prefix) per root directory, for a VM that goes back to a QEMU in another
        root than it runs in now. A root without one is entered with C(chroot).
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: What to roll back, per host
  ansible.builtin.set_fact:
    targets: "{{ lookup('ansible.builtin.file', 'qemu-upgrade-report.json') | from_json | cpr.qemu.rollback_targets }}"

# /usr/local/sbin/in-root stands for a launcher of one's own that enters the root and execs QEMU.
- name: Only web1 and web2; the QEMU in /srv/qemu-10.0 is started by a launcher
  ansible.builtin.set_fact:
    targets: >-
      {{ lookup('ansible.builtin.file', 'qemu-upgrade-report.json') | from_json
         | cpr.qemu.rollback_targets(vms=['web1', 'web2'],
                                     launchers={'/srv/qemu-10.0': ['/usr/local/sbin/in-root', '/srv/qemu-10.0', '--']}) }}
"""

RETURN = r"""
_value:
  description:
    - Per inventory host, a list of C({vm, binary, root, version, launcher}) - the VM, the binary and root it ran
      before (C(root) V(/) when the report has none), that binary's QEMU version, and the launcher given for that
      root in O(launchers) (null when none is).
    - Hosts with no VM to move back are not in it.
  type: dict
  sample:
    hv1:
      - vm: web1
        binary: /usr/bin/qemu-system-x86_64
        root: /
        version: 10.0.2
        launcher: null
"""

from ansible.errors import AnsibleFilterError


def rollback_targets(report, vms=None, launchers=None):
    if not isinstance(report, list):
        raise AnsibleFilterError("rollback_targets expects the report of a roll-out: a list of results")
    if not isinstance(vms or [], list):
        raise AnsibleFilterError("rollback_targets: vms must be a list (cpr.qemu.as_list makes survey text one)")
    vms, launchers = set(vms or []), launchers or {}
    out = {}
    for r in report:
        # An upgrade, or an interrupted one that the next run's recovery finished.
        finished = r.get("status") == "recovered" and r.get("action") == "finished" and r.get("binary_before")
        if not isinstance(r, dict) or not (r.get("status") == "upgraded" or finished):
            continue
        if vms and r.get("vm") not in vms and r.get("qmp_socket") not in vms:
            continue
        before = r.get("binary_before") or {}
        if not before.get("path") or not r.get("version_before"):
            raise AnsibleFilterError(
                "the report has no binary_before (path, root) and version_before for %s on %s: it was written by an "
                "older cpr.qemu; name the targets instead" % (r.get("vm"), r.get("host")))
        root = before.get("root") or "/"
        out.setdefault(r.get("host"), []).append({
            "vm": r.get("vm"), "binary": before["path"], "root": root, "version": r["version_before"],
            "launcher": launchers.get(root)})
    return out


class FilterModule(object):
    def filters(self):
        return {"rollback_targets": rollback_targets}
