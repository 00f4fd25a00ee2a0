# -*- coding: utf-8 -*-
# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import shutil
import signal
import threading

import pytest

from ansible_collections.cpr.qemu.plugins.module_utils import upgrade
from ansible_collections.cpr.qemu.plugins.module_utils.recovery import session as sessions, state


def test_switch_at_once_runs_the_switches_together_and_keeps_each_outcome(monkeypatch):
    # Each fake switch waits for the other two: this passes only if all three run at the same time.
    together = threading.Barrier(3, timeout=5)

    def fake_switch(given, argv, timeout, switch_timeout, turn):
        together.wait()
        with turn.pause():
            pass
        if given["vm"] == "b":
            raise upgrade.UpgradeError("b: cpr-transfer rolled back", guest="old QEMU, PID 2, running",
                                       recovered=True)
        if given["vm"] == "c":
            raise KeyError("pid")
        return True, dict(given, new_pid=10, pause_ms=12.5), "a switched"

    monkeypatch.setattr(upgrade, "_switch", fake_switch)
    out = upgrade.switch_at_once([{"vm": "a"}, {"vm": "b"}, {"vm": "c"}])
    assert [o["vm"] for o in out] == ["a", "b", "c"]
    assert out[0] == {"vm": "a", "changed": True, "failed": False, "msg": "a switched",
                      "session": {"vm": "a", "new_pid": 10, "pause_ms": 12.5}, "pause_ms": 12.5, "new_pid": 10}
    assert out[1]["failed"] and out[1]["recovered"] and out[1]["guest"] == "old QEMU, PID 2, running"
    assert out[2]["failed"] and "unexpectedly" in out[2]["msg"] and "qemu_cpr_recover" in out[2]["msg"]
    assert out[2]["recovered"] is False and out[2]["guest"] == "unknown"


def test_no_step_works_on_a_session_another_process_holds():
    """A recovery settling a session (or another module on it) holds it: the switch and the verification
    refuse before they read it, and leave it as it is. (An flock conflicts between open files, so this
    process's own hold stands for another's.)"""
    given = {"vm": "vm1", "key": "cpr-qemu-unit-test-%016x" % os.getpid(), "token": "t1", "step": "switched"}
    lock_dir = state.lock_dir(given["key"], create=True)
    try:
        sessions.acquire(lock_dir, given)
        held = sessions.hold(lock_dir)
        try:
            with pytest.raises(upgrade.UpgradeError, match="another process is working") as e:
                upgrade._switch(given, None, 0.2, 1.0, None)
            # A roll-out reads a switch's refusal as a guest left as it was, not as one lost.
            assert e.value.details == {"error_kind": "held", "guest": "as it was: this switch did not start",
                                       "recovered": True}
            with pytest.raises(upgrade.UpgradeError, match="another process is working") as e:
                upgrade.verify(given, 0.2)
            assert e.value.details == {"error_kind": "held"}
        finally:
            os.close(held)
        assert sessions.read(lock_dir) == given
    finally:
        shutil.rmtree(lock_dir)


def test_a_session_that_needs_no_switch_starts_no_child(monkeypatch):
    def never(*args):
        raise AssertionError("switched")

    monkeypatch.setattr(upgrade, "_switch", never)
    out = upgrade.switch_at_once([{"vm": "a", "noop": True}, {"vm": "b", "check_mode": True, "new_binary": "q",
                                                              "dialect": "cpr-exec"}])
    assert [o["changed"] for o in out] == [False, True]
    assert upgrade.switch({"vm": "c", "new_binary": "q", "dialect": "cpr-exec"}, check_mode=True)[0] is True


def test_the_switch_runs_detached_and_ignores_the_signals_of_a_dying_session(monkeypatch):
    """SIGINT (Ctrl-C), SIGHUP (SSH gone) and SIGTERM do not stop the switch; it runs in a session of its own."""
    def fake_switch(given, argv, timeout, switch_timeout, turn):
        for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
            os.kill(os.getpid(), sig)
        return True, dict(given, pid=os.getpid(), sid=os.getsid(0)), "switched"

    monkeypatch.setattr(upgrade, "_switch", fake_switch)
    changed, s, _msg = upgrade.switch({"vm": "a"})
    assert changed and s["pid"] != os.getpid() and s["sid"] == s["pid"]


def test_a_switch_killed_on_the_way_is_reported_as_not_known(monkeypatch):
    def fake_switch(given, argv, timeout, switch_timeout, turn):
        os.kill(os.getpid(), signal.SIGKILL)

    monkeypatch.setattr(upgrade, "_switch", fake_switch)
    with pytest.raises(upgrade.UpgradeError) as e:
        upgrade.switch({"vm": "a"})
    assert "ended without a result (killed by signal 9)" in e.value.message
    assert e.value.details == {"guest": "unknown", "recovered": False}
