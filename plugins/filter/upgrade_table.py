# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
name: upgrade_table
short_description: The end-of-run summary table of a live upgrade
version_added: 0.1.0
description:
  - Formats the C(live_upgrade_results) of the P(cpr.qemu.live_upgrade#role) role, of one host or of the
    whole fleet, as the lines of a table with aligned columns (host, VM, status, QEMU versions, dialect,
    pause, reason), followed by a count per status, which also says how many VMs an earlier run had upgraded
    (C(done_before), see P(cpr.qemu.upgrade_plan#filter)).
  - When results carry a C(cpr_capable) field (true or false, as P(cpr.qemu.upgrade_plan#filter) sets it from what
    M(cpr.qemu.qemu_cpr_info) reports), a last line states the share of them that is CPR-capable. Results without the field,
    or with it null, are not counted there; without any, the line is left out.
author:
  - cpr.qemu contributors (@cpr-qemu)
options:
  _input:
    description: The results.
    type: list
    elements: dict
    required: true
"""

EXAMPLES = r"""
- name: Summary of the roll-out
  ansible.builtin.debug:
    msg: "{{ results | cpr.qemu.upgrade_table }}"

- name: Summary of a roll-out's report on the controller
  ansible.builtin.debug:
    msg: "{{ lookup('ansible.builtin.file', 'qemu-upgrade-report.json') | from_json | cpr.qemu.upgrade_table }}"
"""

RETURN = r"""
_value:
  description:
    - The table's lines, the header first, then one line per result in the input's order and last the count
      per status, then the share of CPR-capable VMs when the results say. The reason is left out for an upgraded VM.
    - The share is rounded to a whole percent, but never to 0% while one VM is CPR-capable nor to 100% while one is not.
  type: list
  elements: str
  sample:
    - "HOST  VM    STATUS    QEMU              DIALECT       PAUSE    REASON"
    - "hv1   web1  upgraded  10.0.2 -> 11.1.3  cpr-transfer  12.4 ms"
    - "hv1   db1   skipped   10.0.2            -             -        not ready: cpr-transfer: guest RAM is not shared"
    - "2 VMs: 1 skipped, 1 upgraded"
    - "CPR-capable: 1 of 2 VMs (50%)"
"""

HEADER = ("HOST", "VM", "STATUS", "QEMU", "DIALECT", "PAUSE", "REASON")


def _row(r):
    before, after = r.get("version_before"), r.get("version_after")
    # An upgrade to a replaced binary of the same version still shows the arrow.
    moved = after and (after != before or r.get("status") in ("upgraded", "planned"))
    qemu = "%s -> %s" % (before, after) if moved else str(before or "-")
    pause = "%.1f ms" % r["pause_ms"] if r.get("pause_ms") is not None else "-"
    reason = r.get("reason") if r.get("status") != "upgraded" else ""
    if r.get("action") and r.get("step"):
        # A session settled before planning: what was done, and how far the interrupted upgrade had got.
        reason = "%s (interrupted at step %s): %s" % (r["action"], r["step"], reason or "")
    return (str(r.get("host")), str(r.get("vm")), str(r.get("status")), qemu,
            str(r.get("dialect") or "-"), pause, reason or "")


def percent(part, whole):
    """part of whole in whole percent, 0 and 100 kept for none and all."""
    share = int(100.0 * part / whole + 0.5)
    return min(max(share, 1 if part else 0), 99 if part < whole else 100)


def capable_line(results):
    """'CPR-capable: N of M VMs (P%)' over the results that carry cpr_capable, or None if none does."""
    known = [r["cpr_capable"] for r in results if r.get("cpr_capable") is not None]
    if not known:
        return None
    capable = sum(1 for c in known if c)
    return "CPR-capable: %d of %d VMs (%d%%)" % (capable, len(known), percent(capable, len(known)))


def upgrade_table(results):
    rows = [HEADER] + [_row(r) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1] for row in rows]
    counts = {}
    for r in results:
        counts[r.get("status")] = counts.get(r.get("status"), 0) + 1
    done = sum(1 for r in results if r.get("done_before"))
    lines.append("%d VMs: %s%s" % (len(results), ", ".join("%d %s" % (n, s) for s, n in sorted(counts.items())),
                                   " (%d done before, by an earlier run)" % done if done else ""))
    capable = capable_line(results)
    if capable:
        lines.append(capable)
    return [line.rstrip() for line in lines]


class FilterModule(object):
    def filters(self):
        return {"upgrade_table": upgrade_table}
