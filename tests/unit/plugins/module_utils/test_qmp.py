# -*- coding: utf-8 -*-
# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The QMP transport against a fake QMP server that, like QEMU, serves one client at a time."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import logging
import os
import socket
import threading

import pytest

from ansible_collections.cpr.qemu.plugins.module_utils import qmp
from ansible_collections.cpr.qemu.tests.unit.plugins.module_utils import qmp_server


class FakeQMP:
    """A UNIX socket server that greets and answers from a table; accepts one client only."""

    def __init__(self, path, answers=None, on_accept=None):
        self.path = path
        self.answers = answers or {}
        self.on_accept = on_accept
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(4)
        self.conn = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        self.conn = self.listener.accept()[0]
        if self.on_accept:
            self.on_accept(self.conn)
            return
        qmp_server.serve(self.conn, self._reply_to)

    def _reply_to(self, cmd):
        answer = {"return": {}} if cmd == "qmp_capabilities" else self.answers.get(cmd)
        if answer in ("hang", "close"):
            return answer
        reply = dict((k, v) for k, v in (answer or {"return": {}}).items() if k != "events")
        return (answer or {}).get("events", []) + [reply]

    def close(self):
        for s in (self.conn, self.listener):
            if s is not None:
                s.close()


@pytest.fixture
def sock_path(tmp_path):
    return str(tmp_path / "qmp.sock")


def _error(path, **kw):
    with pytest.raises(qmp.QMPError) as e:
        qmp.QMPConnection(path, **kw).connect()
    return e.value


def test_missing_socket(sock_path):
    e = _error(sock_path)
    assert e.kind == "missing"
    assert "no QMP socket at %s" % sock_path in str(e)


def test_not_a_socket(tmp_path):
    path = tmp_path / "serial.log"
    path.write_text("x")
    assert _error(str(path)).kind == "not-socket"


def test_stale_socket_is_refused(sock_path):
    s = socket.socket(socket.AF_UNIX)
    s.bind(sock_path)
    s.close()
    e = _error(sock_path)
    assert e.kind == "refused"
    assert "nothing listens there" in str(e)


def test_permission_denied(sock_path, monkeypatch):
    FakeQMP(sock_path)

    def deny(self, address):
        raise OSError(errno.EACCES, "Permission denied")
    monkeypatch.setattr(socket.socket, "connect", deny)
    e = _error(sock_path)
    assert e.kind == "permission"
    assert "become" in str(e)


@pytest.mark.parametrize("address, kind", [
    ("tcp:127.0.0.1:4444", "tcp-refused"),
    ("unix:", "bad-address"),
])
def test_bad_addresses(address, kind):
    assert _error(address).kind == kind


def test_tcp_must_be_host_and_port_when_allowed():
    assert _error("tcp:localhost", allow_tcp=True).kind == "bad-address"


def test_unix_prefix_and_options_are_accepted(sock_path):
    FakeQMP(sock_path)
    with qmp.QMPConnection("unix:%s,server=on,wait=off" % sock_path) as conn:
        assert conn.pid == os.getpid()
        assert conn.greeting["QMP"]["version"]["qemu"]["major"] == 11


def test_hmp_monitor_is_not_qmp(sock_path):
    FakeQMP(sock_path, on_accept=lambda c: c.sendall(b"QEMU 10.0.2 monitor - type 'help'\r\n(qemu) "))
    e = _error(sock_path)
    assert e.kind == "not-qmp"
    assert "HMP" in str(e)


def test_hang_up_before_greeting(sock_path):
    FakeQMP(sock_path, on_accept=lambda c: c.close())
    e = _error(sock_path)
    assert e.kind == "not-qmp"
    assert "closed the connection" in str(e)


def test_busy_monitor_is_named_busy(sock_path):
    FakeQMP(sock_path)
    first = qmp.QMPConnection(sock_path, timeout=2).connect()
    try:
        e = _error(sock_path, timeout=0.5)
        assert e.kind == "busy"
        assert "in use by another client" in str(e)
        assert "PID %d" % os.getpid() in str(e)
    finally:
        first.close()


def test_server_that_never_greets_is_not_answering(sock_path):
    # Nothing accepts our connection and no other client holds the monitor.
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(sock_path)
    listener.listen(1)
    try:
        e = _error(sock_path, timeout=0.5)
    finally:
        listener.close()
    assert e.kind == "no-greeting"
    assert "sent no greeting within 0.5s" in str(e)


def test_command_error_keeps_class_and_description(sock_path):
    FakeQMP(sock_path, answers={"cont": {"error": {"class": "GenericError", "desc": "migration is not done"}}})
    with qmp.QMPConnection(sock_path) as conn:
        with pytest.raises(qmp.QMPCommandError) as e:
            conn.execute("cont")
    assert e.value.kind == "command"
    assert e.value.error_class == "GenericError"
    assert e.value.desc == "migration is not done"
    assert str(e.value) == "QEMU refused cont: migration is not done (GenericError)"


def test_command_timeout(sock_path):
    FakeQMP(sock_path, answers={"query-status": "hang"})
    with qmp.QMPConnection(sock_path) as conn:
        with pytest.raises(qmp.QMPError) as e:
            conn.execute("query-status", timeout=0.3)
    assert e.value.kind == "timeout"
    assert "did not answer query-status within 0.3s" in str(e.value)


def test_disconnect_during_command(sock_path):
    FakeQMP(sock_path, answers={"quit": "close"})
    with qmp.QMPConnection(sock_path) as conn:
        with pytest.raises(qmp.QMPError) as e:
            conn.execute("quit")
    assert e.value.kind == "disconnected"


def _event(name, seconds, micro):
    return {"event": name, "data": {}, "timestamp": {"seconds": seconds, "microseconds": micro}}


def test_events_keep_qemu_timestamps_and_order(sock_path):
    FakeQMP(sock_path, answers={"stop": {"return": {}, "events": [_event("STOP", 100, 250000)]},
                                "cont": {"return": {}, "events": [_event("RESUME", 100, 262500)]}})
    with qmp.QMPConnection(sock_path) as conn:
        conn.execute("stop")
        conn.execute("cont")
        events = conn.events()
        assert [e["event"] for e in events] == ["STOP", "RESUME"]
        assert qmp.event_time(events[1]) - qmp.event_time(events[0]) == pytest.approx(0.0125)
        assert conn.events() == []


def test_wait_event_keeps_other_events(sock_path):
    FakeQMP(sock_path, answers={"stop": {"return": {}, "events": [_event("STOP", 1, 0), _event("MIGRATION", 2, 0)]}})
    with qmp.QMPConnection(sock_path) as conn:
        conn.execute("stop")
        assert conn.wait_event("MIGRATION", 2)["event"] == "MIGRATION"
        assert [e["event"] for e in conn.events()] == ["STOP"]
        assert conn.wait_event("RESUME", 0.2) is None


def test_monitor_has_client_reads_proc_net_unix(tmp_path):
    # No row of this process's sockets carries the name: no client.
    table = tmp_path / "unix"
    table.write_text("Num RefCount Protocol Flags Type St Inode Path\n"
                     "0: 00000002 00000000 00010000 0001 01 1 /nowhere\n")
    assert qmp.monitor_has_client(os.getpid(), str(tmp_path / "x.sock"), str(table)) is False


class _Unprintable(object):
    def __str__(self):
        raise AssertionError("formatted for a log that is off")


def test_messages_are_formatted_for_qemu_qmps_log_only_when_it_logs_at_debug_level(caplog):
    client = qmp._Client("vm")
    msg = _Unprintable()
    caplog.set_level(logging.INFO, logger=client.logger.name)
    assert client._cb_inbound(msg) is msg and client._cb_outbound(msg) is msg
    caplog.set_level(logging.DEBUG, logger=client.logger.name)
    assert client._cb_inbound({"return": {}}) == {"return": {}}
    assert "<-- {'return': {}}" in caplog.text


def test_a_process_listens_on_a_socket_once_it_listens_and_only_on_its_own(tmp_path):
    """cpr-transfer waits for the new QEMU itself to listen: a bound socket is refused connections until then,
    and another process (the old QEMU, its user) may hold a socket of that name."""
    path = str(tmp_path / "cpr.sock")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(path)
        assert not qmp.listens_on(os.getpid(), path)
        sock.listen(1)
        assert qmp.listens_on(os.getpid(), path)
        assert not qmp.listens_on(os.getppid(), path)
    finally:
        sock.close()
    assert not qmp.listens_on(os.getpid(), path)
