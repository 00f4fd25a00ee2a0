# -*- coding: utf-8 -*-
# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import copy
import os

import pytest
import yaml

from ansible_collections.cpr.qemu.plugins.module_utils import diff, options, upgrade

DATA = os.path.join(os.path.dirname(__file__), "data")

with open(os.path.join(DATA, "diff.yml")) as f:
    DIFF = yaml.safe_load(f)


def _patched(base, patch):
    out = copy.deepcopy(base)
    out.update(copy.deepcopy(patch or {}))
    return out


def _session(case):
    return _patched(DIFF["base"], case.get("patch"))


@pytest.mark.parametrize("case", DIFF["cases"], ids=[c["id"] for c in DIFF["cases"]])
def test_of_session(case):
    before = _patched(DIFF["before"], case.get("before"))
    after = _patched(before, case["after"])
    name = DIFF["base"]["vm"]
    assert diff.of_session(_session(case)) == {"before": before, "after": after,
                                               "before_header": name, "after_header": name}


# The sessions qemu_cprload does not verify on QEMU: made in check mode, or of a VM already on the target.
UNVERIFIED = [c for c in DIFF["cases"] if _session(c).get("noop") or _session(c).get("check_mode")]


@pytest.mark.parametrize("case", UNVERIFIED, ids=[c["id"] for c in UNVERIFIED])
def test_qemu_cprload_in_check_mode_or_on_a_current_vm_shows_what_qemu_cprsave_showed(case):
    s = _session(case)
    _changed, result, _msg = upgrade.verify(s)
    assert diff.of_verified(result) == diff.of_session(s)


def test_of_verified_shows_the_vm_as_verified():
    result = {"vm": "VM db1 (/run/vm/db1/qmp.sock)", "dialect": "cpr-transfer", "machine_type": "pc-q35-10.0",
              "old_binary": "/usr/bin/qemu-system-x86_64", "old_version": "10.0.2", "old_pid": 10,
              "new_binary": "/usr/bin/qemu-system-x86_64", "new_version": "11.1.3", "new_pid": 20,
              "pause_ms": 12.5, "runstate": "running"}
    d = diff.of_verified(result)
    assert d["before_header"] == d["after_header"] == "VM db1 (/run/vm/db1/qmp.sock)"
    assert d["before"] == {"binary": "/usr/bin/qemu-system-x86_64", "version": "10.0.2", "pid": 10,
                           "dialect": "cpr-transfer", "machine_type": "pc-q35-10.0"}
    assert d["after"] == dict(d["before"], version="11.1.3", pid=20)


def test_of_switches_has_one_diff_per_vm_with_a_session_in_order():
    a, c = _patched(DIFF["base"], {"vm": "a", "new_pid": 1}), _patched(DIFF["base"], {"vm": "c", "noop": True})
    switches = [{"vm": "a", "failed": False, "session": a},
                {"vm": "b", "failed": True, "guest": "old QEMU, PID 2, running", "recovered": True},
                {"vm": "c", "failed": False, "session": c}]
    out = diff.of_switches(switches)
    assert [d["before_header"] for d in out] == ["a", "c"]
    assert out[0]["after"]["pid"] == 1
    assert out[1]["after"] == out[1]["before"]
    assert diff.of_switches([]) == []


def test_the_diff_is_returned_in_diff_mode_only():
    d = diff.of_session(DIFF["base"])
    assert diff.result(True, d) == {"diff": d}
    assert diff.result(False, d) == {}


@pytest.mark.parametrize("timeout", [0, 0.0, -1.0, float("nan"), float("inf"), None])
def test_a_timeout_that_cannot_work_is_refused(timeout):
    problem = options.timeout_problem(timeout)
    assert "timeout must be a number of seconds more than 0 (it is %s" % timeout in problem
    assert "nothing was checked or changed" in problem


@pytest.mark.parametrize("timeout", [0.001, 2, 5.0, 3600.0])
def test_a_positive_timeout_is_taken(timeout):
    assert options.timeout_problem(timeout) is None
