# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import threading

from ansible_collections.cpr.qemu.plugins.module_utils import upgrade


def test_switch_at_once_runs_the_switches_together_and_keeps_each_outcome(monkeypatch):
    # Each fake switch waits for the other two: this passes only if all three run at the same time.
    together = threading.Barrier(3, timeout=5)

    def fake_switch(given, **kwargs):
        together.wait()
        if given["vm"] == "b":
            raise upgrade.UpgradeError("b: cpr-transfer rolled back", guest="old QEMU, PID 2, running",
                                       recovered=True)
        if given["vm"] == "c":
            raise KeyError("pid")
        return True, dict(given, new_pid=10, pause_ms=12.5), "a switched"

    monkeypatch.setattr(upgrade, "switch", fake_switch)
    out = upgrade.switch_at_once([{"vm": "a"}, {"vm": "b"}, {"vm": "c"}])
    assert [o["vm"] for o in out] == ["a", "b", "c"]
    assert out[0] == {"vm": "a", "changed": True, "failed": False, "msg": "a switched",
                      "session": {"vm": "a", "new_pid": 10, "pause_ms": 12.5}, "pause_ms": 12.5, "new_pid": 10}
    assert out[1]["failed"] and out[1]["recovered"] and out[1]["guest"] == "old QEMU, PID 2, running"
    assert out[2]["failed"] and "unexpectedly" in out[2]["msg"] and "qemu_cpr_info" in out[2]["msg"]


def test_switch_at_once_with_one_session_stays_in_this_thread(monkeypatch):
    threads = []

    def fake_switch(given, **kwargs):
        threads.append(threading.current_thread())
        return False, given, "already runs it"

    monkeypatch.setattr(upgrade, "switch", fake_switch)
    out = upgrade.switch_at_once([{"vm": "a", "noop": True}])
    assert threads == [threading.main_thread()] and out[0]["changed"] is False
