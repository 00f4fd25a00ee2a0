"""The simulator's basics cannot drift from QEMU's: the commands they share, on all three."""
import os
import time

import pytest

import vmlab

KINDS = ["sim", "10.0", "11.1"]


def _vm(lab_vm, kind):
    return lab_vm("contract-" + kind.replace(".", ""), qemu=kind, mem_mb=64 if kind == "sim" else 256)


@pytest.mark.parametrize("kind", KINDS)
def test_greeting_version_status_commands_and_quit(lab_vm, kind):
    vm = _vm(lab_vm, kind)
    # The wire as it is: greeting, raw replies and events.
    qmp = vmlab.qmp_session(vm.qmp_socket, negotiate=False)
    greeting = qmp.read()
    assert set(greeting) == {"QMP"}
    assert set(greeting["QMP"]["version"]["qemu"]) == {"major", "minor", "micro"}
    assert isinstance(greeting["QMP"]["version"]["package"], str)
    assert isinstance(greeting["QMP"]["capabilities"], list)
    before = qmp.exchange("query-status")
    assert before["error"]["class"] == "CommandNotFound"  # capabilities negotiation first
    assert qmp.exchange("qmp_capabilities") == {"return": {}}

    version = qmp.exchange("query-version")["return"]
    assert version["qemu"] == greeting["QMP"]["version"]["qemu"]
    assert set(version) == {"qemu", "package"}

    status = qmp.exchange("query-status")["return"]
    assert status["status"] == "running" and status["running"] is True
    assert qmp.exchange("stop") == {"return": {}}
    assert qmp.exchange("query-status")["return"]["status"] == "paused"
    assert qmp.exchange("query-status")["return"]["running"] is False
    assert qmp.exchange("cont") == {"return": {}}
    assert qmp.exchange("query-status")["return"]["status"] == "running"
    names = [e["event"] for e in qmp.events]
    assert names == ["STOP", "RESUME"]
    for e in qmp.events:
        assert set(e["timestamp"]) == {"seconds", "microseconds"}

    commands = qmp.exchange("query-commands")["return"]
    assert all(set(c) >= {"name"} for c in commands)
    assert {"query-status", "query-version", "stop", "cont", "quit", "qmp_capabilities"} <= {c["name"] for c in commands}
    assert qmp.exchange("no-such-command")["error"]["class"] == "CommandNotFound"

    assert qmp.exchange("quit") == {"return": {}}
    deadline = time.monotonic() + 10
    while vm.running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not vm.running()
    with pytest.raises((EOFError, OSError)):
        while True:
            qmp.read()
    assert os.path.exists(vm.serial_log)
