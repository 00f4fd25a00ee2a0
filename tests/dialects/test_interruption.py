# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
"""Interruptions: the module signalled mid-switch, the switching process killed at each named point.

The real qemu_cprexec module runs as a process of its own, as Ansible runs it,
with the test-only fault hook (plugins/module_utils/fault.py) holding or
killing the switch at a point.  Whatever happens, qemu_cpr_recover's logic then
settles the VM, and the guest's console proves one continuous life, exactly
one QEMU process is left for it, and no lock or file of the switch remains.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

import vmlab
from conftest import NO_STATE, switch_state
from ansible_collections.cpr.qemu.plugins.module_utils import fault, upgrade
from ansible_collections.cpr.qemu.plugins.module_utils.recovery import recover, session as sessions, state
from ansible_collections.cpr.qemu.plugins.modules import qemu_cprexec

TARGET = "/usr/bin/qemu-system-x86_64"


def _vm(lab_vm, dialect, name):
    # Each guest writes its disk: at the end of the test, whatever the fault did, no acknowledged write is lost.
    if dialect == "cpr-exec":
        return lab_vm(name, binary_copy=True, event_monitor=True, disk="virtio-blk")
    if dialect == "cpr-transfer":
        return lab_vm(name, qemu="10.0", event_monitor=True, disk="virtio-blk")
    return lab_vm(name, qemu="sim", mem_mb=64, binary_copy=True)


def _prepare(vm, dialect, qmp_socket=None):
    if dialect == "cpr-exec":
        kw = {"dialect": "cpr-exec"}
        binary = TARGET
    elif dialect == "cpr-transfer":
        kw = {"dialect": "cpr-transfer", "new_root": vmlab.ROOT, "launcher": vmlab.launcher()}
        binary = TARGET
    else:
        kw, binary = {}, vmlab.sim_binary(5)
    changed, s, _msg = upgrade.prepare(qmp_socket or vm.qmp_socket, binary, **kw)
    assert changed and s["dialect"] == dialect
    return s


def _module(given, fault_spec, tmp_path):
    """qemu_cprexec as Ansible runs it: its own process, arguments from a file, result on stdout.
    ``given``: one session, or a list of them (several VMs at once)."""
    args = tmp_path / "args.json"
    key = "sessions" if isinstance(given, list) else "session"
    args.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {key: given, "switch_timeout": 60}}))
    env = dict(os.environ, **{fault.ENV: fault_spec})
    return subprocess.Popen([sys.executable, qemu_cprexec.__file__, str(args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=_default_signals)


def _default_signals():
    """The signals the tests send act as they do on a module that Ansible runs, even where this test run inherited
    them ignored (under nohup, SIGHUP; in a background job of a shell without job control, SIGINT)."""
    for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


def _held(given):
    try:
        return sessions.load(given)
    except sessions.LockError:
        return None


def _wait(what, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError("timed out waiting for %s" % what.__doc__)


def _refusal(vm, dialect):
    """A new upgrade's refusal, once a QEMU answers at the VM's socket (an exec may be under way)."""
    kw = {"new_root": vmlab.ROOT, "launcher": vmlab.launcher()} if dialect == "cpr-transfer" else {}
    try:
        upgrade.prepare(vm.qmp_socket, TARGET if dialect != "live-update" else vmlab.sim_binary(5), **kw)
    except upgrade.UpgradeError as e:
        # A QMP error kind means no QEMU answers yet; "held" is the refusal looked for.
        return None if e.details.get("error_kind") not in (None, "held") else e.message
    raise AssertionError("a VM with an interrupted upgrade was prepared again")


def _settle_and_prove(vm, dialect, expected_action, before):
    settled = recover.settle_all([vm.qmp_socket], timeout=20)
    assert [s["action"] for s in settled] == [expected_action], settled
    assert settled[0]["recovered"], settled[0]["msg"]
    survivors = vm.successors() + ([(vm.pid, vm.starttime)] if vm.running() else [])
    assert len(survivors) == 1, "QEMU processes left for the VM: %s" % survivors
    if survivors[0][0] != vm.pid:
        vm.adopt(survivors[0][0])
    assert vm.qmp("query-status")["status"] == "running"
    after = vm.wait_ticks(3)
    assert after.problems() == [] and len(after.boots) == 1
    assert after.fill_sum == before.fill_sum
    assert switch_state(vm) == NO_STATE
    return settled[0]


# One per dialect: the module gets SIGKILL, SIGHUP (SSH gone, become over a tty) or SIGINT (Ctrl-C) while its
# switch is held at a point; the switch goes on to the end without it.
@pytest.mark.parametrize("dialect, point, sig", [
    ("cpr-exec", "after-stop", signal.SIGKILL),
    ("cpr-transfer", "after-completed", signal.SIGHUP),
    ("live-update", "after-exec", signal.SIGINT),
])
def test_the_switch_finishes_when_the_module_dies(lab_vm, tmp_path, dialect, point, sig):
    vm = _vm(lab_vm, dialect, "int-mod-" + dialect)
    before = vm.evidence()
    given = _prepare(vm, dialect)
    assert vm.lock_dir() == given["lock_dir"]  # the lab cleans up what the modules name so
    module = _module(given, "%s:sleep=2" % point, tmp_path)
    _wait(lambda: (_held(given) or {}).get("step") == "switching", 30)
    time.sleep(0.5)  # the switch is now held at the point
    os.killpg(module.pid, sig)
    module.wait(timeout=30)
    assert module.returncode != 0
    held = _wait(lambda: (_held(given) or {}).get("step") == "switched" and _held(given), 60)
    assert held["owner"]["pid"] != module.pid  # the switch ran in a process of its own
    _settle_and_prove(vm, dialect, "finished", before)


def test_vms_sharing_a_socket_directory_switch_at_once_and_finish_when_the_module_dies(lab_vm, tmp_path):
    """Proxmox's layout: every VM's QMP socket in one directory.  Each has its own lock and work directory;
    both switch in one qemu_cprexec (its sessions), and finish although the module gets SIGHUP mid-way."""
    shared = os.path.join(vmlab.RUN_BASE, "qemu-server")
    os.makedirs(shared, exist_ok=True)
    sockets = [os.path.join(shared, "%d.qmp" % n) for n in (100, 101)]
    locks = [os.path.join(state.LOCK_BASE, state.vm_key(sock)) for sock in sockets]
    try:
        shapes = (("int-shared-exec", "11.1", True, sockets[0]), ("int-shared-xfer", "10.0", False, sockets[1]))
        vms = [lab_vm(name, event_monitor=True, binary_copy=binary_copy, qemu=qemu,
                      extra_args=("-qmp", "unix:%s,server=on,wait=off" % sock))
               for name, qemu, binary_copy, sock in shapes]
        before = [vm.evidence() for vm in vms]
        given = [_prepare(vms[0], "cpr-exec", sockets[0]), _prepare(vms[1], "cpr-transfer", sockets[1])]
        assert len(set(g["lock_dir"] for g in given)) == 2 and len(set(g["work_dir"] for g in given)) == 2
        module = _module(given, "after-stop:sleep=2", tmp_path)
        _wait(lambda: all((_held(g) or {}).get("step") == "switching" for g in given), 30)
        time.sleep(0.5)
        os.killpg(module.pid, signal.SIGHUP)
        module.wait(timeout=30)
        _wait(lambda: all((_held(g) or {}).get("step") == "switched" for g in given), 60)
        settled = recover.settle_all(sockets, timeout=20)
        assert sorted(s["action"] for s in settled) == ["finished", "finished"], settled
        for vm, was in zip(vms, before):
            survivors = vm.successors() + ([(vm.pid, vm.starttime)] if vm.running() else [])
            assert len(survivors) == 1, survivors
            if survivors[0][0] != vm.pid:
                vm.adopt(survivors[0][0])
            after = vm.wait_ticks(3)
            assert after.problems() == [] and len(after.boots) == 1 and after.fill_sum == was.fill_sum
        assert [p for p in os.listdir(shared) if not p.endswith(".qmp")] == []  # no .cpr, no .cpr-old
        assert not any(os.path.exists(os.path.join(lock, "session.json")) for lock in locks)
    finally:
        for lock in locks:
            shutil.rmtree(lock, ignore_errors=True)


# The process that runs the switch is killed (SIGKILL, the OOM killer) at each point it passes.
POINTS = {
    "cpr-exec": (("before-migrate", "rolled-back"), ("after-stop", "finished"), ("after-completed", "finished"),
                 ("after-exec", "finished"), ("after-cont", "finished")),
    "cpr-transfer": (("after-launch", "rolled-back"), ("before-migrate", "rolled-back"), ("after-stop", "finished"), ("after-completed", "finished"),
                     ("after-exec", "finished"), ("after-cont", "finished"), ("before-kill-old", "finished")),
    "live-update": (("before-migrate", "rolled-back"), ("after-stop", "rolled-back"), ("after-exec", "finished"),
                    ("after-cont", "finished")),
}
KILLED = [(dialect, point, action) for dialect, points in POINTS.items() for point, action in points]


def test_every_point_of_the_fault_hook_is_covered():
    assert set(point for _dialect, point, _action in KILLED) == set(fault.POINTS)


@pytest.mark.parametrize("dialect, point, action", KILLED)
def test_a_switch_killed_at_each_point_is_settled(lab_vm, tmp_path, dialect, point, action):
    vm = _vm(lab_vm, dialect, "int-kill-%s-%s" % (dialect, point))
    before = vm.evidence()
    given = _prepare(vm, dialect)
    module = _module(given, "%s:kill" % point, tmp_path)
    out, _err = module.communicate(timeout=120)
    result = json.loads(out)
    assert result["failed"] and result["recovered"] is False and result["guest"] == "unknown", result
    assert "qemu_cpr_recover" in result["msg"]
    held = _held(given)
    assert held["step"] == "switching" and not recover.owner_alive(held)
    assert recover.describe(held)["stuck"]
    # Whatever QEMU answers at the VM's socket now, a new upgrade is refused, never found "already current".
    assert "another live upgrade of this VM is in progress" in _wait(lambda: _refusal(vm, dialect), 30)
    _settle_and_prove(vm, dialect, action, before)
