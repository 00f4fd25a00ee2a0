# -*- coding: utf-8 -*-
# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import threading
import time

import pytest

from ansible_collections.cpr.qemu.plugins.module_utils import parallel, process, vm_facts

SCHEMA = [{"name": "query-version", "meta-type": "command", "arg-type": "0", "ret-type": "1"},
          {"name": "cprsave", "meta-type": "command", "arg-type": "2", "ret-type": "0"},
          {"name": "0", "meta-type": "object", "members": []},
          {"name": "CprMode", "meta-type": "enum", "values": ["reboot", "restart"]}]


class FakeQMP(object):
    """Answers QMP commands from a dict and records each one asked (a round trip)."""

    timeout = 5.0

    def __init__(self, answers):
        self.answers, self.asked = answers, []

    def execute(self, command, arguments=None):
        self.asked.append(command)
        answer = self.answers[command]
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_the_schema_names_the_commands():
    assert vm_facts.schema_commands(SCHEMA) == ["query-version", "cprsave"]


@pytest.mark.parametrize("commands, answers, accel, asked", [
    (["query-accelerators"], {"query-accelerators": {"enabled": "kvm"}}, "kvm", ["query-accelerators"]),
    (["query-kvm"], {"query-kvm": {"enabled": False}}, "tcg", ["query-kvm"]),
    (None, {"query-accelerators": vm_facts.QMPCommandError("query-accelerators", "CommandNotFound", "no"),
            "query-kvm": {"enabled": True}}, "kvm", ["query-accelerators", "query-kvm"]),
], ids=["10.2+", "older-qemu-not-asked", "without-schema"])
def test_query_accelerators_is_asked_only_of_a_qemu_that_has_it(commands, answers, accel, asked):
    conn = FakeQMP(answers)
    assert vm_facts.accelerator(conn, None, commands) == accel
    assert conn.asked == asked


def test_a_vm_with_several_monitors_is_inspected_once_through_one_that_answers(monkeypatch):
    def fake_inspect(sock, timeout, target=None):
        if sock.endswith("held.sock"):
            return {"qmp_socket": sock, "error": "in use by another client", "error_kind": "busy"}
        return {"qmp_socket": sock, "pid": int(sock.split("/")[2])}

    monkeypatch.setattr(vm_facts, "inspect", fake_inspect)
    found = [{"pid": 1, "qmp_socket": "/run/1/held.sock"}, {"pid": 1, "qmp_socket": "/run/1/qmp.sock"},
             {"pid": 2, "qmp_socket": "/run/2/held.sock"}, {"pid": 3, "qmp_socket": "/run/3/qmp.sock"}]
    got = vm_facts.inspect_discovered(found, 1.0, is_vm=lambda pid, report: True)
    assert got == [{"qmp_socket": "/run/1/qmp.sock", "pid": 1},
                   {"qmp_socket": "/run/2/held.sock", "error": "in use by another client", "error_kind": "busy"},
                   {"qmp_socket": "/run/3/qmp.sock", "pid": 3}]


def test_only_a_process_that_answers_qmp_as_itself_or_listens_on_the_socket_is_a_vm(monkeypatch):
    monkeypatch.setattr(vm_facts.qmp, "listens_on", lambda pid, path: pid == 5)
    assert vm_facts._is_vm(1, {"pid": 1})
    assert not vm_facts._is_vm(3, {"pid": 1}), "a client that names another process's socket"
    assert vm_facts._is_vm(5, {"qmp_socket": "/run/a", "error": "busy", "error_kind": "busy"}), "a held monitor"
    assert not vm_facts._is_vm(4, {"qmp_socket": "/run/a", "error": "missing", "error_kind": "missing"})


def test_a_vm_whose_pidfile_or_monitor_is_libvirts_is_managed_by_libvirt():
    parsed = {"pidfile": "/run/libvirt/qemu/db1.pid", "qmp_sockets": ["/var/lib/libvirt/qemu/domain-1-db1/monitor.sock"]}
    assert vm_facts.manager(parsed) == "libvirt"
    assert vm_facts.manager({"pidfile": None, "qmp_sockets": ["/var/lib/libvirt/qemu/db1.monitor"]}) == "libvirt"
    assert vm_facts.manager({"pidfile": "/run/qemu-server/100.pid", "qmp_sockets": ["/run/qemu-server/100.qmp"]}) is None
    session = "/home/u/.config/libvirt/qemu/lib/domain-1-db1/monitor.sock"
    assert vm_facts.manager({"pidfile": "/run/user/1000/libvirt/qemu/run/db1.pid", "qmp_sockets": [session]}) == "libvirt"


def test_a_monitor_held_by_libvirt_is_reported_as_libvirts(monkeypatch):
    def busy(address, timeout):
        raise vm_facts.QMPError("busy", "QMP socket %s (QEMU PID 7) is in use by another client" % address, pid=7)

    monkeypatch.setattr(vm_facts, "QMPConnection", busy)
    argv = ["/usr/libexec/qemu-kvm", "-pidfile", "/run/libvirt/qemu/db1.pid"]
    monkeypatch.setattr(vm_facts.process, "read_argv", lambda pid: argv)
    report = vm_facts.inspect("/var/lib/libvirt/qemu/domain-1-db1/monitor.sock", 1.0)
    assert report["managed_by"] == "libvirt" and report["error_kind"] == "busy"
    assert "upgrade it through libvirt" in report["error"]


def test_what_a_qemu_binary_or_process_cannot_change_is_asked_once(monkeypatch):
    monkeypatch.setattr(vm_facts, "_PER_IMAGE", {})
    monkeypatch.setattr(vm_facts, "_PER_BINARY", {})
    answers = {"query-version": {"qemu": {"major": 11, "minor": 1, "micro": 3}, "package": ""},
               "qom-get": "pc-q35-10.0-machine", "query-qmp-schema": SCHEMA, "query-kvm": {"enabled": False},
               "query-machines": [{"name": "pc-q35-11.1", "alias": "q35"}]}
    conn = FakeQMP(answers)
    binary = (8, 1234, 4096, 1, 2, (), 64055, 64055, (64055,), None, 4026531837)
    key = (4242, 1000, (8, 1234), ("/usr/bin/qemu-system-x86_64", "-S"))
    first = vm_facts._per_image(conn, key, None, binary)
    assert first["machine_type"] == "pc-q35-10.0" and first["aliases"] == {"q35": "pc-q35-11.1"}
    assert first["cpr_commands"] == ["cprsave"] and first["accelerator"] == "tcg"

    def asks(image_key, binary_key):
        before = len(conn.asked)
        vm_facts._per_image(conn, image_key, None, binary_key)
        return conn.asked[before:]
    # The re-check before the pause: the same process, binary and argv.
    assert asks(key, binary) == []
    # Another VM on the same binary file with the same -compat, run as the same user: only what is its own.
    assert asks((4343, 1001, (8, 1234), key[3]), binary) == ["qom-get", "query-kvm"]
    # The same PID after an exec (another argv or binary), or a process whose start time was not read.
    assert asks((4242, 1000, (8, 1234), key[3] + ("-incoming", "defer")), binary) == ["qom-get", "query-kvm"]
    assert asks((4242, None, (8, 1234), key[3]), binary) == ["qom-get", "query-kvm"]
    assert asks((4242, None, (8, 1234), key[3]), binary) == ["qom-get", "query-kvm"]
    # The binary with another -compat (which can hide members from its schema), as another user, under another
    # LSM label or in another user namespace, another binary file, or one whose file or argv could not be read for
    # sure: asked anew.
    others = (binary[:5] + (("unstable-output=hide",),) + binary[6:], binary[:6] + (0, 0, ()) + binary[9:],
              binary[:9] + ("system_u:system_r:svirt_t:s0:c12,c34", binary[10]), binary[:10] + (4026532201,),
              (8, 1234, 4096, 1, 3) + binary[5:], None)
    for pid, other in enumerate(others, 5000):
        assert "query-qmp-schema" in asks((pid, 1, (8, 1234), key[3]), other)


BINARY_ANSWERS = {"query-version": {"qemu": {"major": 11, "minor": 1, "micro": 3}, "package": ""},
                  "query-qmp-schema": SCHEMA, "query-machines": []}


class SchemaTakesTime(FakeQMP):
    """A QEMU that takes SCHEMA_DELAY seconds to answer query-qmp-schema; the client gives up on an answer after
    its timeout."""

    def __init__(self, schema_delay, timeout=5.0):
        FakeQMP.__init__(self, BINARY_ANSWERS)
        self.schema_delay, self.timeout = schema_delay, timeout

    def execute(self, command, arguments=None):
        if command == "query-qmp-schema":
            time.sleep(self.schema_delay)
        return FakeQMP.execute(self, command, arguments)


@pytest.fixture
def no_binary_known(monkeypatch):
    monkeypatch.setattr(vm_facts, "_PER_BINARY", {})
    monkeypatch.setattr(vm_facts, "_ASKING", {})


def test_vms_of_one_binary_inspected_side_by_side_ask_its_schema_once(no_binary_known):
    # QEMU takes its time: the others would ask in the meantime, if they asked at all.
    conns = [SchemaTakesTime(0.05) for _i in range(8)]
    started = threading.Barrier(len(conns))

    def one(conn):
        started.wait()
        return vm_facts._per_binary(conn, ("binary", "user"))
    facts = parallel.side_by_side(one, conns, len(conns))
    assert sum(c.asked.count("query-qmp-schema") for c in conns) == 1
    assert all(f == facts[0] for f in facts)


def test_a_stalled_answer_holds_the_others_up_no_longer_than_one_answer_may_take(no_binary_known):
    stalling = SchemaTakesTime(2.0, timeout=0.1)  # on purpose, each answer under the client's own timeout
    prompt = [SchemaTakesTime(0, timeout=0.1) for _i in range(3)]
    t0 = time.monotonic()
    first = threading.Thread(target=vm_facts._per_binary, args=(stalling, ("binary", "user")))
    first.start()
    time.sleep(0.05)  # the stalling QEMU asks first and holds the binary's lock
    done = parallel.side_by_side(lambda c: (vm_facts._per_binary(c, ("binary", "user")), time.monotonic() - t0),
                                 prompt, len(prompt))
    first.join()
    assert all(took < 1.0 for _facts, took in done)
    assert all(c.asked.count("query-qmp-schema") == 1 for c in prompt)


def test_the_compat_policy_of_an_argv_is_part_of_what_shares_a_schema():
    argv = ["qemu-system-x86_64", "-compat", "deprecated-output=hide", "-name", "vm", "--compat",
            "unstable-input=reject"]
    assert process.parse_argv(argv)["compat"] == ["deprecated-output=hide", "unstable-input=reject"]
