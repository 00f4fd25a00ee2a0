# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
name: upgrade_line
short_description: One line of the live-upgrade summary for a VM's result
version_added: 0.1.0
description:
  - Formats one entry of the C(live_upgrade_results) of the P(cpr.qemu.live_upgrade#role) role as a line
    an operator reads in the play output.
author:
  - cpr.qemu contributors (@cpr-qemu)
options:
  _input:
    description: One result (host, vm, status, versions, PIDs, dialect, pause_ms, reason).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Print the summary
  ansible.builtin.debug:
    msg: "{{ live_upgrade_results | map('cpr.qemu.upgrade_line') | list }}"
"""

RETURN = r"""
_value:
  description: The line.
  type: str
  sample: "hv1 web1: upgraded 10.0.2 -> 11.1.3 by cpr-transfer, PID 4242 -> 4310, paused 12.4 ms"
"""


def upgrade_line(result):
    line = "%s %s: %s" % (result.get("host"), result.get("vm"), result.get("status"))
    before, after = result.get("version_before"), result.get("version_after")
    if result.get("status") in ("upgraded", "planned"):
        line += " %s -> %s by %s" % (before, after or result.get("version_target"), result.get("dialect"))
        if result.get("pid_after") is not None:
            line += ", PID %s -> %s" % (result.get("pid_before"), result.get("pid_after"))
        if result.get("pause_ms") is not None:
            line += ", paused %.1f ms" % result["pause_ms"]
    elif result.get("action") and result.get("step"):
        # A session settled before planning (cpr.qemu.upgrade_recovery).
        line += " (%s, interrupted at step %s)" % (result["action"], result["step"])
    else:
        line += " (QEMU %s)" % before
    if result.get("reason") and result.get("status") != "upgraded":
        line += ": %s" % result["reason"]
    return line


class FilterModule(object):
    def filters(self):
        return {"upgrade_line": upgrade_line}
