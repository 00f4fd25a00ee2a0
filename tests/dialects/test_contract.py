# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
"""The simulator's basics cannot drift from QEMU's: the commands and answers they share, on all three."""
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


# QEMU's QAPI input visitor, word for word: what the simulator's cpr commands
# answer to wrong arguments (tests/dialects/test_live_update.py) rests on this.
ARGUMENT_ERRORS = [
    ("qom-get", {"path": "/machine"}, "Parameter 'property' is missing"),
    ("qom-get", {"path": "/machine", "property": "type", "bogus": 1}, "Parameter 'bogus' is unexpected"),
    ("qom-get", {"property": "type", "bogus": 1}, "Parameter 'path' is missing"),
    ("qom-get", {"path": 1, "property": "type"}, "Invalid parameter type for 'path', expected: string"),
    ("qom-get", {"path": ["/machine"], "property": "type"}, "Invalid parameter type for 'path', expected: string"),
    ("query-status", {"x": 1}, "Parameter 'x' is unexpected"),
]


@pytest.mark.parametrize("kind", KINDS)
def test_wrong_arguments_are_refused_alike(lab_vm, kind):
    vm = _vm(lab_vm, kind)
    with vmlab.qmp_session(vm.qmp_socket) as qmp:
        for command, arguments, desc in ARGUMENT_ERRORS:
            assert qmp.exchange(command, arguments) == {"error": {"class": "GenericError", "desc": desc}}
        assert qmp.exchange("query-status")["return"]["status"] == "running"


@pytest.mark.parametrize("kind", KINDS)
def test_plain_ram_and_chardevs_are_reported_alike(lab_vm, kind):
    """Plain -m RAM is QEMU's implicit memory-backend-ram 'pc.ram'; a file chardev's filename is 'file'."""
    mem_mb = 64 if kind == "sim" else 128
    vm = lab_vm("contract-plain-" + kind.replace(".", ""), qemu=kind, mem_mb=mem_mb, ram="plain")
    memdev = vm.qmp("query-memdev")
    assert [(m["id"], m["size"], m["share"]) for m in memdev] == [("pc.ram", mem_mb << 20, False)]
    objects = dict((o["name"], o["type"]) for o in vm.qmp("qom-list", {"path": "/objects"}))
    assert objects["pc.ram"] == "child<memory-backend-ram>"
    chardevs = dict((c["label"], c["filename"]) for c in vm.qmp("query-chardev"))
    assert chardevs["ser0"] == "file"
    assert chardevs["compat_monitor0"] == "unix:%s,server=on" % vm.qmp_socket
