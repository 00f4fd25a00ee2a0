# -*- coding: utf-8 -*-
# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.cpr.qemu.plugins.filter.left_alone_results import left_alone_results

CURRENT = {"vm": "web1", "action": "already-current", "precheck_failed": False, "pid_before": 4242,
           "version_before": "11.1.3"}
REFUSED = {"vm": "db1", "action": "skipped", "reason": "VFIO devices (hostdev0)", "precheck_failed": True,
           "pid_before": 4343, "version_before": "10.0.2"}
STOPPED = {"vm": "web2", "action": "skipped", "reason": "stopped: pause over budget", "pid_before": 4444,
           "version_before": "10.0.2", "pause_ms": 812.5, "paused_at": 1795951289.2}


@pytest.mark.parametrize("entry, on_precheck_failure, status", [
    (CURRENT, "fail", "already-current"),
    (REFUSED, "fail", "failed"),
    (REFUSED, "skip", "skipped"),
    (STOPPED, "fail", "skipped"),
])
def test_each_vm_left_alone_stays_on_its_qemu(entry, on_precheck_failure, status):
    result, = left_alone_results([entry], "hv1", on_precheck_failure)
    assert result == dict(entry, host="hv1", status=status, pid_after=entry["pid_before"],
                          version_after=entry["version_before"], pause_ms=entry.get("pause_ms"),
                          paused_at=entry.get("paused_at"))


def test_the_entries_are_not_changed():
    entries = [dict(REFUSED)]
    assert left_alone_results(entries, "hv1")[0]["status"] == "skipped"  # the role's default: skip
    assert entries == [REFUSED]
