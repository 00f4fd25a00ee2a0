"""The simulator's basics cannot drift from QEMU's: the commands they share, on all three."""
import json
import os
import socket
import time

import pytest

KINDS = ["sim", "10.0", "11.1"]


def _vm(lab_vm, kind):
    return lab_vm("contract-" + kind.replace(".", ""), qemu=kind, mem_mb=64 if kind == "sim" else 256)


class Raw:
    """QMP on a bare socket, to compare the exact wire shapes."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(10)
        self.sock.connect(path)
        self.buf = b""
        self.events = []

    def read(self):
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def execute(self, command, arguments=None):
        msg = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        self.sock.sendall(json.dumps(msg).encode())
        while True:
            reply = self.read()
            if "event" in reply:
                self.events.append(reply)
            else:
                return reply


@pytest.mark.parametrize("kind", KINDS)
def test_greeting_version_status_commands_and_quit(lab_vm, kind):
    vm = _vm(lab_vm, kind)
    qmp = Raw(vm.qmp_socket)
    greeting = qmp.read()
    assert set(greeting) == {"QMP"}
    assert set(greeting["QMP"]["version"]["qemu"]) == {"major", "minor", "micro"}
    assert isinstance(greeting["QMP"]["version"]["package"], str)
    assert isinstance(greeting["QMP"]["capabilities"], list)
    before = qmp.execute("query-status")
    assert before["error"]["class"] == "CommandNotFound"  # capabilities negotiation first
    assert qmp.execute("qmp_capabilities") == {"return": {}}

    version = qmp.execute("query-version")["return"]
    assert version["qemu"] == greeting["QMP"]["version"]["qemu"]
    assert set(version) == {"qemu", "package"}

    status = qmp.execute("query-status")["return"]
    assert status["status"] == "running" and status["running"] is True
    assert qmp.execute("stop") == {"return": {}}
    assert qmp.execute("query-status")["return"]["status"] == "paused"
    assert qmp.execute("query-status")["return"]["running"] is False
    assert qmp.execute("cont") == {"return": {}}
    assert qmp.execute("query-status")["return"]["status"] == "running"
    names = [e["event"] for e in qmp.events]
    assert names == ["STOP", "RESUME"]
    for e in qmp.events:
        assert set(e["timestamp"]) == {"seconds", "microseconds"}

    commands = qmp.execute("query-commands")["return"]
    assert all(set(c) >= {"name"} for c in commands)
    assert {"query-status", "query-version", "stop", "cont", "quit", "qmp_capabilities"} <= {c["name"] for c in commands}
    assert qmp.execute("no-such-command")["error"]["class"] == "CommandNotFound"

    assert qmp.execute("quit") == {"return": {}}
    deadline = time.monotonic() + 10
    while vm.running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not vm.running()
    with pytest.raises((EOFError, OSError)):
        while True:
            qmp.read()
    assert os.path.exists(vm.serial_log)
