# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
name: left_alone_results
short_description: The results of the VMs a live upgrade left alone
version_added: 0.1.0
description:
  - Turns entries of the plan of the P(cpr.qemu.live_upgrade#role) role (C(cpr.qemu.upgrade_plan)) that were not
    switched into results, each on the QEMU it ran before, in one step rather than one task iteration per VM.
  - A VM whose pre-checks failed is C(failed) when O(on_precheck_failure=fail), else its status is its action
    (C(skipped), C(already-current), ...).
author:
  - cpr.qemu contributors (@cpr-qemu)
options:
  _input:
    description: Plan entries (vm, qmp_socket, action, reason, precheck_failed, pid_before, version_before, ...).
    type: list
    elements: dict
    required: true
  host:
    description: The inventory host the VMs run on.
    type: str
    required: true
  on_precheck_failure:
    description: The role's C(live_upgrade_on_precheck_failure).
    type: str
    choices: [skip, fail]
    default: skip
"""

EXAMPLES = r"""
- name: Report the VMs left alone
  ansible.builtin.set_fact:
    live_upgrade_results: >-
      {{ live_upgrade_results + (plan | rejectattr('action', 'equalto', 'upgrade')
         | cpr.qemu.left_alone_results(host=inventory_hostname)) }}
"""

RETURN = r"""
_value:
  description: One result per entry, its QEMU unchanged (pid_after and version_after are those before).
  type: list
  elements: dict
  sample:
    - host: hv1
      vm: web1
      action: already-current
      status: already-current
      pid_before: 4242
      pid_after: 4242
      version_before: 11.1.3
      version_after: 11.1.3
      pause_ms: null
      paused_at: null
"""


def left_alone_results(entries, host, on_precheck_failure="skip"):
    return [dict(entry, host=host,
                 status="failed" if entry.get("precheck_failed") and on_precheck_failure == "fail"
                 else entry.get("action"),
                 pid_after=entry.get("pid_before"), version_after=entry.get("version_before"),
                 pause_ms=entry.get("pause_ms"), paused_at=entry.get("paused_at"))
            for entry in entries]


class FilterModule(object):
    def filters(self):
        return {"left_alone_results": left_alone_results}
