# -*- coding: utf-8 -*-
# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.cpr.qemu.plugins.filter.upgrade_outcome import upgrade_outcome


def _entry(vm):
    return {"vm": vm, "qmp_socket": "/run/%s/qmp.sock" % vm, "pid_before": 100, "version_before": "10.0.2",
            "action": "upgrade", "reason": ""}


def _save(vm, failed=False, **session):
    if failed:
        return {"failed": True, "msg": "%s: refused" % vm, "item": _entry(vm)}
    return {"failed": False, "msg": "%s: armed" % vm, "item": _entry(vm),
            "session": dict({"vm": vm, "dialect": "cpr-transfer"}, **session)}


def _switched(vm, pause=20.0):
    return {"vm": vm, "failed": False, "changed": True, "msg": "%s switched" % vm, "new_pid": 200,
            "pause_ms": pause, "session": {"vm": vm, "stop_time": 1700000000.5}}


def _load(vm):
    return {"failed": False, "msg": "%s verified" % vm, "new_pid": 200, "new_version": "11.1.3", "pause_ms": 20.0}


BATCH = [_entry("ok"), _entry("refused"), _entry("current"), _entry("rolled-back"), _entry("unverified")]
SAVES = {"results": [_save("ok"), _save("refused", failed=True), _save("current", noop=True), _save("rolled-back"),
                     _save("unverified")]}
SWITCH = {"switches": [_switched("ok"),
                       {"vm": "rolled-back", "failed": True, "changed": False, "msg": "rolled back",
                        "guest": "old QEMU, PID 100, running", "recovered": True},
                       _switched("unverified")]}
LOADS = {"results": [_load("ok"), {"failed": True, "msg": "not verified: QEMU reports 10.0.2"}]}


@pytest.mark.parametrize("on_precheck_failure, refused_status", [("skip", "skipped"), ("fail", "failed")])
def test_each_vm_gets_its_own_outcome(on_precheck_failure, refused_status):
    out = upgrade_outcome(BATCH, SAVES, SWITCH, LOADS, "hv1", on_precheck_failure)
    got = dict((r["vm"], r) for r in out)
    assert [r["vm"] for r in out] == [e["vm"] for e in BATCH]
    assert all(r["host"] == "hv1" for r in out)
    assert got["ok"]["status"] == "upgraded" and got["ok"]["reason"] == "ok verified"
    assert (got["ok"]["pid_after"], got["ok"]["version_after"], got["ok"]["pause_ms"], got["ok"]["paused_at"]) == \
        (200, "11.1.3", 20.0, 1700000000.5)
    assert got["refused"]["status"] == refused_status and got["refused"]["guest"] == "old QEMU, not paused"
    assert got["refused"]["recovered"] is True
    assert got["current"]["status"] == "already-current" and got["current"]["version_after"] == "10.0.2"
    assert got["rolled-back"]["status"] == "failed" and got["rolled-back"]["guest"] == "old QEMU, PID 100, running"
    assert got["unverified"]["status"] == "failed" and "QEMU reports 10.0.2" in got["unverified"]["reason"]
    assert got["unverified"]["guest"] == "new QEMU, PID 200, not verified"
    assert got["unverified"]["recovered"] is False and got["rolled-back"]["recovered"] is True


def test_the_batch_time_span_marks_the_vms_that_went_to_the_switch():
    out = upgrade_outcome(BATCH, SAVES, SWITCH, LOADS, "hv1", started_at=1700000000.0, finished_at=1700000002.5)
    spans = dict((r["vm"], (r.get("started_at"), r.get("finished_at"))) for r in out)
    for vm in ("ok", "rolled-back", "unverified"):
        assert spans[vm] == (1700000000.0, 1700000002.5)
    # Refused at the checkpoint, or already current: never switched.
    assert spans["refused"] == (None, None) and spans["current"] == (None, None)


def test_check_mode_makes_a_plan():
    saves = {"results": [_save("ok", check_mode=True)]}
    switch = {"switches": [dict(_switched("ok"), new_pid=100, pause_ms=None, session={"vm": "ok"})]}
    loads = {"results": [{"failed": False, "msg": "would be verified", "new_pid": None, "new_version": "11.1.3",
                          "pause_ms": None}]}
    (rec,) = upgrade_outcome([_entry("ok")], saves, switch, loads, "hv1")
    assert (rec["status"], rec["reason"], rec["version_after"], rec["pause_ms"]) == ("planned", "ok: armed", "11.1.3", None)


def test_a_switch_task_that_failed_as_a_whole_leaves_the_guest_unknown():
    (rec,) = upgrade_outcome([_entry("ok")], {"results": [_save("ok")]},
                             {"failed": True, "msg": "MODULE FAILURE"}, {"results": []}, "hv1")
    assert rec["status"] == "failed" and rec["reason"] == "MODULE FAILURE" and rec["guest"].startswith("unknown")
    assert rec["recovered"] is False


def test_a_failure_that_says_nothing_of_the_guest_is_not_taken_for_a_safe_one():
    switch = {"switches": [{"vm": "ok", "failed": True, "changed": False, "msg": "killed"}]}
    (rec,) = upgrade_outcome([_entry("ok")], {"results": [_save("ok")]}, switch, {"results": []}, "hv1")
    assert rec["status"] == "failed" and rec["guest"].startswith("unknown") and rec["recovered"] is False
    assert "not paused" not in rec["guest"]


@pytest.mark.parametrize("save, status, recovered", [
    # Another run's lock (or an interrupted one's): the guest is untouched, but this is no pre-check of the VM.
    ({"failed": True, "msg": "VM x: another live upgrade of this VM is in progress: session abc (cpr-exec, step "
      "switching). If no run is active any more, settle it with cpr.qemu.qemu_cpr_recover"}, "failed", True),
    ({"failed": True, "msg": "MODULE FAILURE\nSee stdout/stderr for the exact error", "module_stderr": "Killed"},
     "failed", False),
    ({"failed": True, "unreachable": True, "msg": "Failed to connect to the host via ssh"}, "failed", False),
    ({"failed": True, "msg": "VM x cannot be live-upgraded: cpr-transfer: guest RAM 'pc.ram' ...",
      "exception": "Traceback (most recent call last): ... UpgradeError"}, "skipped", True),
])
def test_only_a_pre_check_refusal_is_skipped(save, status, recovered):
    (rec,) = upgrade_outcome([_entry("x")], {"results": [save]}, {"skipped": True}, {"results": []}, "hv1")
    assert (rec["status"], rec["recovered"]) == (status, recovered)
    assert rec["guest"] == ("old QEMU, not paused" if recovered else rec["guest"])
    if not recovered:
        assert rec["guest"].startswith("unknown")


def test_checkpoints_must_match_the_batch():
    with pytest.raises(AnsibleFilterError):
        upgrade_outcome([_entry("a"), _entry("b")], {"results": [_save("a")]}, {}, {}, "hv1")
