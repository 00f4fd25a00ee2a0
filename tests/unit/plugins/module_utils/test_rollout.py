# -*- coding: utf-8 -*-
# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
"""A host's roll-out (rollout.py) over stand-ins for the three steps of upgrade.py: what each VM's result says
for each way a step can end, and when batches stop starting."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.cpr.qemu.plugins.module_utils import rollout, upgrade

T0 = 1700000000.0


def _entry(vm):
    return {"vm": vm, "qmp_socket": "/run/%s/qmp.sock" % vm, "pid_before": 100, "version_before": "10.0.2",
            "action": "upgrade", "reason": ""}


class Steps(object):
    """upgrade.prepare, switch_at_once and verify as each VM's name says they end:
    refused, held, current, broken (prepare raises something unexpected), rolled-back, lost, unverified,
    slow (a pause of 1500 ms), or anything else: upgraded with a pause of 20 ms."""

    def __init__(self, monkeypatch, check_mode=False):
        self.batches = []
        monkeypatch.setattr(upgrade, "prepare", self.prepare)
        monkeypatch.setattr(upgrade, "switch_at_once", self.switch_at_once)
        monkeypatch.setattr(upgrade, "verify", self.verify)

    @staticmethod
    def _vm(qmp_socket):
        return qmp_socket.split("/")[2]

    def prepare(self, qmp_socket, new_binary, dialect="auto", new_root=None, launcher=None, timeout=5.0,
                check_mode=False):
        vm = self._vm(qmp_socket)
        if vm == "refused":
            raise upgrade.UpgradeError("refused: guest RAM is private")
        if vm == "held":
            raise upgrade.UpgradeError("another live upgrade of this VM is in progress", error_kind="held")
        if vm == "broken":
            raise KeyError("pid")
        s = {"vm": vm, "qmp_socket_host": qmp_socket, "runstate_before": "running", "dialect": "cpr-transfer",
             "pid": 100, "old_version": "10.0.2", "new_version": "11.1.3",
             "old_binary": {"path": "/usr/bin/qemu"}, "new_binary": new_binary, "machine_type": "pc-q35-10.0",
             "check_mode": check_mode, "launcher": launcher, "new_root": new_root}
        if vm == "current":
            s["noop"] = True
            return False, s, "%s already runs %s" % (vm, new_binary)
        return True, s, "%s armed" % vm

    def switch_at_once(self, sessions, timeout=5.0, switch_timeout=60.0, check_mode=False):
        self.batches.append([s["vm"] for s in sessions])
        out = []
        for s in sessions:
            if s["vm"] == "rolled-back":
                out.append({"vm": s["vm"], "failed": True, "changed": False, "msg": "rolled back",
                            "guest": "old QEMU, PID 100, running", "recovered": True})
            elif s["vm"] == "lost":
                out.append({"vm": s["vm"], "failed": True, "changed": False, "msg": "the child died",
                            "guest": "unknown", "recovered": False})
            else:
                pause = None if check_mode else 1500.0 if s["vm"] == "slow" else 20.0
                out.append({"vm": s["vm"], "failed": False, "changed": True, "msg": "switched", "new_pid": 200,
                            "pause_ms": pause, "session": dict(s, stop_time=None if check_mode else T0 + 0.5,
                                                               pause_ms=pause)})
        return out

    def verify(self, s, timeout=5.0, check_mode=False):
        if s["vm"] == "unverified":
            raise upgrade.UpgradeError("not verified: QEMU reports 10.0.2")
        return True, {"vm": s["vm"], "dialect": s["dialect"], "machine_type": s["machine_type"],
                      "old_binary": "/usr/bin/qemu", "old_version": "10.0.2", "old_pid": 100,
                      "new_binary": s["new_binary"], "new_version": "11.1.3",
                      "new_pid": None if s.get("check_mode") else 200, "pause_ms": s.get("pause_ms")}, "verified"


class Clock(object):
    def __init__(self, start=T0, step=1.0):
        self.now, self.step = start, step

    def __call__(self):
        self.now += self.step
        return self.now


def _host(check_mode=False, on_precheck_failure="skip"):
    return rollout.Host({"new_binary": "/usr/bin/qemu-new", "new_root": "/", "launcher": [], "dialect": "auto"},
                        on_precheck_failure=on_precheck_failure, check_mode=check_mode)


@pytest.mark.parametrize("on_precheck_failure, refused_status", [("skip", "skipped"), ("fail", "failed")])
def test_each_vm_gets_its_own_result(monkeypatch, on_precheck_failure, refused_status):
    Steps(monkeypatch)
    names = ["ok", "refused", "held", "broken", "current", "rolled-back", "unverified"]
    host = _host(on_precheck_failure=on_precheck_failure)
    results = host.batch([_entry(n) for n in names], Clock())
    got = dict((r["vm"], r) for r in results)
    assert [r["vm"] for r in results] == names
    ok = got["ok"]
    assert (ok["status"], ok["pid_after"], ok["version_after"], ok["pause_ms"], ok["paused_at"]) == \
        ("upgraded", 200, "11.1.3", 20.0, T0 + 0.5)
    assert (ok["started_at"], ok["finished_at"]) == (T0 + 1, T0 + 2)
    assert got["refused"]["status"] == refused_status and got["refused"]["guest"] == rollout.UNPAUSED
    # Another run's lock is no pre-check of the VM's: it fails, whatever on_precheck_failure says.
    assert got["held"]["status"] == "failed" and got["held"]["recovered"] is True
    assert got["broken"]["status"] == "failed" and got["broken"]["guest"] == rollout.UNPAUSED
    assert got["current"]["status"] == "already-current" and got["current"]["version_after"] == "10.0.2"
    assert "started_at" not in got["current"] and "started_at" not in got["refused"]
    assert got["rolled-back"]["status"] == "failed" and got["rolled-back"]["recovered"] is True
    assert got["rolled-back"]["guest"] == "old QEMU, PID 100, running"
    assert got["unverified"]["status"] == "failed" and got["unverified"]["recovered"] is False
    assert got["unverified"]["guest"] == "new QEMU, PID 200, not verified"
    # A diff for each VM upgraded or already current.
    assert sorted(d["before_header"] for d in host.diffs) == ["current", "ok"]


def test_check_mode_makes_a_plan(monkeypatch):
    Steps(monkeypatch)
    (result,) = _host(check_mode=True).batch([_entry("ok")], Clock())
    assert (result["status"], result["pause_ms"], result["paused_at"], result["version_after"]) == \
        ("planned", None, None, "11.1.3")


def test_batches_of_parallel_vms(monkeypatch):
    steps = Steps(monkeypatch)
    results, halted = _host().run([_entry("vm%d" % i) for i in range(5)], 2, rollout.Limits(clock=Clock()))
    assert steps.batches == [["vm0", "vm1"], ["vm2", "vm3"], ["vm4"]]
    assert [r["status"] for r in results] == ["upgraded"] * 5 and halted == ""


def test_check_mode_checks_vms_as_many_at_once_as_discovery(monkeypatch):
    steps = Steps(monkeypatch)
    results, halted = _host(check_mode=True).run([_entry("vm%d" % i) for i in range(10)], 1,
                                                 rollout.Limits(clock=Clock()))
    assert [len(b) for b in steps.batches] == [8, 2]
    assert [r["status"] for r in results] == ["planned"] * 10 and halted == ""


@pytest.mark.parametrize("first, limits, halted", [
    # The window closes after the first batch (the clock moves 1 s per reading).
    ("ok", dict(deadline=T0 + 2.5), "maintenance window closed at 2023-11-14T22:13:22Z"),
    ("slow", dict(pause_budget_ms=1000.0), "pause budget exceeded: slow paused 1500.0 ms (budget 1000.0 ms)"),
    ("lost", dict(pause_budget_ms=1000.0), "stopped after a failure that was not recovered: lost (guest: unknown)"),
])
def test_no_batch_starts_after_a_stop(monkeypatch, first, limits, halted):
    steps = Steps(monkeypatch)
    results, why = _host().run([_entry(first), _entry("next")], 1, rollout.Limits(clock=Clock(), **limits))
    assert steps.batches == [[first]]
    assert why == halted
    assert (results[1]["status"], results[1]["reason"], results[1]["pid_after"]) == ("skipped", halted, 100)


def test_a_recovered_failure_does_not_stop_the_host(monkeypatch):
    steps = Steps(monkeypatch)
    results, halted = _host().run([_entry("rolled-back"), _entry("next")], 1, rollout.Limits(clock=Clock()))
    assert steps.batches == [["rolled-back"], ["next"]] and halted == ""
    assert [r["status"] for r in results] == ["failed", "upgraded"]


def test_own_targets_win(monkeypatch):
    seen = []
    Steps(monkeypatch)
    real = upgrade.prepare

    def prepare(qmp_socket, new_binary, **kw):
        seen.append((new_binary, kw["new_root"], kw["launcher"], kw["dialect"]))
        return real(qmp_socket, new_binary, **kw)
    monkeypatch.setattr(upgrade, "prepare", prepare)
    own = dict(_entry("own"), target_binary="/old/qemu", target_root="/old", launcher=[], switch_dialect="cpr-transfer")
    _host().batch([own, _entry("default")], Clock())
    # The two checks run side by side, in either order.
    assert sorted(seen) == [("/old/qemu", "/old", None, "cpr-transfer"), ("/usr/bin/qemu-new", "/", [], "auto")]


def test_a_guest_that_fails_its_health_gate_stops_the_host(monkeypatch):
    steps = Steps(monkeypatch)
    asked = []

    def check(qmp_socket, pid, expected_runstate="running", probe=None, timeout=10.0):
        asked.append((qmp_socket, pid, probe))
        well = "sick" not in qmp_socket
        return {"healthy": well, "how": "guest-agent", "detail": "guest-ping answered" if well else "no answer in 3 s",
                "kind": None if well else "timeout", "checks": ["runstate", "guest-agent"]}
    monkeypatch.setattr(rollout.health, "check", check)
    host = rollout.Host({"new_binary": "/usr/bin/qemu-new"}, gate=rollout.Gate({"sick": "tcp:10.0.0.9:22"}))
    results, halted = host.run([_entry(vm) for vm in ("ok", "sick", "next")], 1, rollout.Limits(clock=Clock()))
    assert steps.batches == [["ok"], ["sick"]]
    assert results[0]["status"] == "upgraded" and results[0]["health"]["healthy"]
    sick = results[1]
    assert sick["status"] == "failed" and sick["recovered"] is False and sick["pause_ms"] == 20.0
    assert "failed its health gate (guest-agent): no answer in 3 s" in sick["reason"]
    assert halted.startswith("stopped after a failure that was not recovered: sick")
    assert results[2]["status"] == "skipped"
    # The operator's probe goes with its VM.
    assert [a[2] for a in asked] == [None, "tcp:10.0.0.9:22"]


def test_no_gate_in_check_mode(monkeypatch):
    Steps(monkeypatch)
    monkeypatch.setattr(rollout.health, "check", lambda *a, **k: pytest.fail("the gate ran in check mode"))
    (result,) = rollout.Host({"new_binary": "/usr/bin/qemu-new"}, check_mode=True, gate=rollout.Gate()).batch(
        [_entry("ok")], Clock())
    assert result["status"] == "planned" and "health" not in result
