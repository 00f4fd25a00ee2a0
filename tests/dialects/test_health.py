# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
"""The guest health gate (health.check) on real QEMU, before and after a live upgrade.

The lab guest has no QEMU guest agent: its /init runs a STAND-IN for one on
the virtio-serial port named org.qemu.guest_agent.0 (a shell loop answering
guest-sync-delimited, guest-sync and guest-ping), which the lab can tell to
stop answering.  The VM's chardev socket for that port is one QEMU listens on;
after cpr-transfer the new QEMU recreates it at the same path from the same
argv, after cpr-exec the exec'd QEMU does, and the gate must find the guest
answering there.
"""
import time

import pytest

import vmlab
from conftest import NO_STATE, switch_state
from ansible_collections.cpr.qemu.plugins.module_utils import health, process, upgrade

TARGET = "/usr/bin/qemu-system-x86_64"


def _upgrade(vm, dialect):
    """prepare, switch, verify through module_utils, as the three modules run them; the verify result."""
    extra = {"new_root": vmlab.ROOT, "launcher": vmlab.launcher()} if dialect == "cpr-transfer" else {}
    changed, s, msg = upgrade.prepare(vm.qmp_socket, TARGET, dialect=dialect, **extra)
    assert changed, msg
    _changed, s, _msg = upgrade.switch(s, switch_timeout=120.0)
    _changed, result, _msg = upgrade.verify(s)
    if dialect == "cpr-transfer":
        vm.adopt(result["new_pid"])
    return result


def _healthy_by_agent(vm, pid):
    result = health.check(vm.qmp_socket, pid, timeout=10)
    assert result["healthy"], result
    assert result["how"] == "guest-agent" and result["checks"] == ["runstate", "guest-agent"], result
    return result


# (shape, QEMU the VM runs, dialect): the plain shape names the socket by a path relative to QEMU's working directory.
CASES = [("lab", "10.0", "cpr-transfer"), ("lab", "11.1", "cpr-transfer"), ("lab", "11.1", "cpr-exec"),
         ("plain", "10.0", "cpr-transfer")]


@pytest.mark.parametrize("shape,qemu,dialect", CASES, ids=["-".join(c) for c in CASES])
def test_the_guest_agent_answers_after_the_upgrade(lab_vm, shape, qemu, dialect):
    # 11.1 -> 11.1: the VM runs a private copy of the binary, so the root's own is a new one to it.
    vm = lab_vm("health-%s-%s-%s" % (shape, qemu.replace(".", ""), dialect), qemu=qemu, shape=shape, disk=None,
                guest_agent=True, binary_copy=qemu == "11.1")
    vm.wait_agent()
    old_pid = vm.pid
    _healthy_by_agent(vm, old_pid)

    result = _upgrade(vm, dialect)
    assert result["runstate"] == "running"
    new_pid = result["new_pid"]
    assert (new_pid != old_pid) if dialect == "cpr-transfer" else (new_pid == old_pid)
    # The new QEMU listens on the very path of the VM's argv: it recreated the channel's socket.
    argv = process.read_argv(new_pid)
    channel = health.agent_channel(argv)
    assert channel["path"] == ("qga.sock" if shape == "plain" else vm.agent_socket)
    assert health.socket_use(new_pid, vm.agent_socket) == (True, False)

    _healthy_by_agent(vm, new_pid)
    evidence = vm.wait_ticks(2)
    assert evidence.problems() == [] and len(evidence.boots) == 1
    assert switch_state(vm) == NO_STATE


def test_a_silent_agent_or_a_stopped_guest_fails_within_the_timeout(lab_vm):
    vm = lab_vm("health-silent", qemu="11.1", guest_agent=True)
    vm.wait_agent()
    _healthy_by_agent(vm, vm.pid)

    vm.qmp("stop")
    result = health.check(vm.qmp_socket, vm.pid, timeout=5)
    assert not result["healthy"] and result["how"] == "runstate" and result["kind"] == "runstate", result
    assert "paused" in result["detail"]
    vm.qmp("cont")
    _healthy_by_agent(vm, vm.pid)

    vm.stop_agent()  # the guest runs on, its agent stand-in answers nothing any more
    started = time.monotonic()
    result = health.check(vm.qmp_socket, vm.pid, timeout=3)
    took = time.monotonic() - started
    assert not result["healthy"] and result["how"] == "guest-agent" and result["kind"] == "timeout", result
    assert 2.5 < took < 4.5, took
    assert vm.qmp("query-status")["status"] == "running"


def test_a_libvirt_shaped_channel_is_found_and_asked(lab_vm):
    """libvirt writes the port as a JSON -device on a virtio-serial controller of its own."""
    vm = lab_vm("health-libvirt", qemu="11.1", shape="libvirt", disk=None, guest_agent=True)
    vm.wait_agent()
    assert health.agent_channel(process.read_argv(vm.pid))["chardev"] == "charchannel0"
    _healthy_by_agent(vm, vm.pid)
