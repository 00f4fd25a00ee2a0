# -*- coding: utf-8 -*-
# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.cpr.qemu.plugins.filter.upgrade_table import percent, upgrade_table


def _result(vm, status="upgraded", **more):
    r = {"host": "hv1", "vm": vm, "status": status, "version_before": "10.0.2", "version_after": "11.1.3",
         "dialect": "cpr-transfer", "pause_ms": 12.0, "reason": ""}
    r.update(more)
    return r


def test_the_share_of_cpr_capable_vms_comes_last():
    results = [_result("web%d" % i, cpr_capable=True) for i in range(5)]
    results.append(_result("db1", status="skipped", version_after=None, dialect=None, pause_ms=None,
                           reason="not ready", cpr_capable=False))
    lines = upgrade_table(results)
    assert lines[-2] == "6 VMs: 1 skipped, 5 upgraded"
    assert lines[-1] == "CPR-capable: 5 of 6 VMs (83%)"
    # The table itself is what it is without the field.
    assert lines[:-1] == upgrade_table([dict((k, v) for k, v in r.items() if k != "cpr_capable") for r in results])


def test_results_without_the_field_are_not_counted():
    results = [_result("web1", cpr_capable=True), _result("rec1", status="recovered"),
               _result("web2", cpr_capable=None), _result("web3", cpr_capable=False)]
    assert upgrade_table(results)[-1] == "CPR-capable: 1 of 2 VMs (50%)"


def test_no_line_without_the_field():
    lines = upgrade_table([_result("web1")])
    assert lines[-1] == "1 VMs: 1 upgraded"
    assert upgrade_table([]) == ["HOST  VM  STATUS  QEMU  DIALECT  PAUSE  REASON", "0 VMs:"]


@pytest.mark.parametrize("part, whole, share", [
    (0, 5, 0), (5, 5, 100), (1, 2, 50), (1, 8, 13), (5, 6, 83), (2, 3, 67),
    (1, 1000, 1), (999, 1000, 99), (0, 1, 0),
])
def test_percent_never_rounds_to_none_or_all(part, whole, share):
    assert percent(part, whole) == share


def test_the_count_says_how_many_an_earlier_run_upgraded():
    results = [{"host": "h1", "vm": "a", "status": "already-current", "done_before": True, "pause_ms": 6.5},
               {"host": "h1", "vm": "b", "status": "already-current"}, {"host": "h1", "vm": "c", "status": "upgraded"}]
    assert upgrade_table(results)[-1] == "3 VMs: 2 already-current, 1 upgraded (1 done before, by an earlier run)"
