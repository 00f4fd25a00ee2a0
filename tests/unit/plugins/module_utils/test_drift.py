# -*- coding: utf-8 -*-
# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import copy
import json
import os

import pytest
import yaml

from ansible_collections.cpr.qemu.plugins.module_utils import drift, readiness

DATA = os.path.join(os.path.dirname(__file__), "data")

with open(os.path.join(DATA, "drift.yml")) as f:
    DRIFT = yaml.safe_load(f)


def _report(case):
    """The VM's report as vm_facts.inspect() builds it: facts, then readiness's verdicts."""
    if "report" in case:
        return copy.deepcopy(case["report"])
    vm = copy.deepcopy(DRIFT["base"])
    vm.update(copy.deepcopy(case.get("patch") or {}))
    vm["dialects"], vm["preferred_dialect"] = readiness.assess(vm)
    if case.get("target"):
        vm["target"] = readiness.assess_target(vm, DRIFT["target"])
    return vm


def _entry(case):
    on_disk = case.get("on_disk", True)
    return drift.vm_entry(_report(case), DRIFT["target"] if case.get("target") else None, exists=lambda vm: on_disk)


@pytest.mark.parametrize("case", DRIFT["cases"], ids=[c["id"] for c in DRIFT["cases"]])
def test_vm_entry(case):
    got = _entry(case)
    assert tuple(got) == drift.VM_KEYS
    for key, want in case["expect"].items():
        assert got[key] == want, (key, got[key])
    text = " | ".join(got["blockers"])
    for fragment in case.get("blockers", []):
        assert fragment in text, (fragment, text)
    # A CPR-capable VM has nothing in its way and nothing to change.
    assert got["cpr_capable"] == (not got["blockers"])
    if got["cpr_capable"]:
        assert got["next_restart"] == [] and got["next_restart_dialect"] is None
    assert bool(got["next_restart"]) == bool(got["next_restart_dialect"])
    # The reasons of a dialect the QEMU does not offer are left out while it offers another.
    if got["offered_dialects"]:
        assert "does not offer migration mode" not in text and "not a live-update build" not in text


@pytest.mark.parametrize("case", [c for c in DRIFT["cases"] if c["expect"].get("next_restart")],
                         ids=[c["id"] for c in DRIFT["cases"] if c["expect"].get("next_restart")])
def test_each_change_removes_a_blocker(case):
    """Every change answers a reason the dialect it is for gives, as readiness words it."""
    vm = _report(case)
    got = drift.vm_entry(vm, exists=lambda vm: True)
    fixes = drift.known_fixes(vm)
    reasons = vm["dialects"][got["next_restart_dialect"]]["reasons"]
    for change in got["next_restart"]:
        assert any(fixes.get(r) == change for r in reasons), change


def test_facts_are_small_json_and_carry_no_command_line():
    vms = [_report(c) for c in DRIFT["cases"]]
    facts = drift.facts(vms, DRIFT["target"], exists=lambda vm: True)
    assert sorted(facts) == ["cpr_qemu_summary", "cpr_qemu_vms"]
    text = json.dumps(facts, sort_keys=True)
    assert "argv" not in text and "data=" not in text and "file_id" not in text
    assert [e["qmp_socket"] for e in facts["cpr_qemu_vms"]] == [vm["qmp_socket"] for vm in vms]
    # The same reports give the same facts.
    assert json.dumps(drift.facts(copy.deepcopy(vms), DRIFT["target"], exists=lambda vm: True), sort_keys=True) == text


def test_summary_counts():
    cases = dict((c["id"], c) for c in DRIFT["cases"])
    picked = ["ready-for-cpr-exec", "multi-queue-tap-is-ready-for-cpr-transfer", "plain-ram-needs-a-shared-memfd-backend",
              "replaced-binary-is-outdated-without-a-target", "untrusted", "libvirt-runs-it", "not-inspected",
              "systemd-main-process-has-no-known-fix"]
    vms = [_report(cases[i]) for i in picked]
    summary = drift.facts(vms, exists=lambda vm: True)["cpr_qemu_summary"]
    assert summary == {
        "vms": 8, "inspected": 7, "uninspected": 1, "cpr_capable": 3, "not_cpr_capable": 5,
        "outdated": 1, "binary_replaced": 1, "binary_deleted": 0, "fixable_at_restart": 1,
        "managed_by_libvirt": 1, "untrusted": 1,
        "preferred_dialects": {"cpr-exec": 2, "live-update": 0, "cpr-transfer": 1},
        "installed_version": None, "installed_binary": None,
    }
    with_target = drift.facts([_report(cases["ready-for-cpr-exec"])], DRIFT["target"], exists=lambda vm: True)
    assert with_target["cpr_qemu_summary"]["installed_version"] == "11.1.3"
    assert with_target["cpr_qemu_summary"]["installed_binary"] == "/usr/bin/qemu-system-x86_64"
    empty = drift.facts([])["cpr_qemu_summary"]
    assert empty["vms"] == 0 and empty["cpr_capable"] == 0


@pytest.mark.parametrize("size, text", [
    (268435456, "256M"), (4294967296, "4G"), (1610612736, "1536M"), (1099511627776, "1T"), (65536, "64K"),
    (1000, "1000"), (None, "SIZE"), (0, "SIZE"),
])
def test_size_text(size, text):
    assert drift.size_text(size) == text


def test_binary_state_looks_through_the_process_root(tmp_path):
    proc = tmp_path / "proc"
    (proc / "77" / "root" / "usr" / "bin").mkdir(parents=True)
    vm = {"pid": 77, "binary": {"path": "/usr/bin/qemu-system-x86_64", "root": "/", "replaced_on_disk": True}}

    def exists(entry):
        return drift.file_at(entry, proc=str(proc))

    assert drift.binary_state(vm, exists) == "deleted"
    (proc / "77" / "root" / "usr" / "bin" / "qemu-system-x86_64").write_text(u"new")
    assert drift.binary_state(vm, exists) == "replaced"
    vm["binary"]["replaced_on_disk"] = False
    assert drift.binary_state(vm, exists) == "present"


def test_binary_state_of_a_vanished_process_is_replaced_not_an_error():
    def gone(vm):
        raise OSError("no such process")
    vm = {"pid": 77, "binary": {"path": "/usr/bin/qemu-system-x86_64", "root": "/", "replaced_on_disk": True}}
    assert drift.binary_state(vm, gone) == "replaced"
