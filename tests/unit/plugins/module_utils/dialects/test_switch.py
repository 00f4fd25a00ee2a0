# -*- coding: utf-8 -*-
# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import socket
import threading
import time

from ansible_collections.cpr.qemu.plugins.module_utils.dialects import switch


def test_socket_identity_tells_a_rebound_socket_apart(tmp_path):
    path = str(tmp_path / "qmp.sock")
    first = socket.socket(socket.AF_UNIX)
    first.bind(path)
    before = switch.socket_identity(path)
    first.close()
    (tmp_path / "qmp.sock").unlink()
    second = socket.socket(socket.AF_UNIX)
    second.bind(path)
    try:
        assert switch.socket_identity(path) != before
    finally:
        second.close()
    assert switch.socket_identity(str(tmp_path / "absent")) is None


def test_pause_is_measured_between_qemu_timestamps():
    stop = {"timestamp": {"seconds": 100, "microseconds": 990000}}
    resume = {"timestamp": {"seconds": 101, "microseconds": 2500}}
    assert switch.pause_ms(stop, resume) == 12.5
    assert switch.pause_ms(stop, None) is None


def _run_switches(turns, plans):
    """Each plan: ('pause', seconds to get ready) or ('leave', seconds): one thread per switch. Returns the log of
    (event, switch) in order, and when each switch paused."""
    log, lock, paused_at = [], threading.Lock(), {}

    def one(i, plan):
        turn = turns.member()
        kind, ready_after = plan
        time.sleep(ready_after)
        try:
            if kind == "pause":
                with turn.pause():
                    with lock:
                        log.append(("paused", i))
                        paused_at.setdefault(i, time.monotonic())
                    time.sleep(0.02)
                    with lock:
                        log.append(("resumed", i))
        finally:
            turn.leave()
            with lock:
                log.append(("ended", i))
    threads = [threading.Thread(target=one, args=(i, p)) for i, p in enumerate(plans)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return log, paused_at


def test_pauses_come_one_at_a_time_once_every_switch_is_ready():
    log, _paused_at = _run_switches(switch.Turns(4), [("pause", 0.0), ("pause", 0.05), ("leave", 0.1), ("pause", 0.15)])
    pauses = [e for e in log if e[0] in ("paused", "resumed")]
    # Never two guests paused at once: each pause ends before the next begins.
    assert [e[0] for e in pauses] == ["paused", "resumed"] * 3
    # No pause before the last switch was ready (the one that left, at 0.1 s, counts as ready).
    assert log.index(("ended", 2)) < log.index(pauses[0])


def test_a_switch_that_never_gets_ready_holds_the_others_for_ready_wait_only(monkeypatch):
    monkeypatch.setattr(switch.Turns, "READY_WAIT", 0.2)
    turns = switch.Turns(3)
    t0 = time.monotonic()
    _log, paused_at = _run_switches(turns, [("pause", 0.0), ("pause", 0.0), ("pause", 1.0)])
    # The first two paused after READY_WAIT, before the third was ready; the third paused too.
    assert 0.2 <= paused_at[0] - t0 < 0.9 and 0.2 <= paused_at[1] - t0 < 0.9
    assert paused_at[2] - t0 >= 1.0


def test_a_switch_alone_pauses_at_once():
    turn = switch.alone()
    t0 = time.monotonic()
    with turn.pause():
        pass
    assert time.monotonic() - t0 < 0.1
