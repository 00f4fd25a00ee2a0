# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
"""After the pause: each way a switch can fail, and where the guest ends up."""
import os
import re
import shutil
import signal
import threading
import time

import pytest

import vmlab
from conftest import switch_state
from ansible_collections.cpr.qemu.plugins.module_utils import upgrade, validation
from ansible_collections.cpr.qemu.plugins.module_utils.dialects import cpr_exec, cpr_transfer
from ansible_collections.cpr.qemu.plugins.module_utils import process
from ansible_collections.cpr.qemu.plugins.module_utils.recovery import session as sessions, state
from ansible_collections.cpr.qemu.plugins.module_utils.dialects import switch as common
from ansible_collections.cpr.qemu.plugins.module_utils.qmp import QMPConnection

TARGET = "/usr/bin/qemu-system-x86_64"


def _prepared(vm, binary, **kw):
    changed, s, _msg = upgrade.prepare(vm.qmp_socket, binary, **kw)
    assert changed
    return sessions.load(s)


def _recorded(vm, done, timeout=5.0):
    """The VM's STOP and RESUME events from its second monitor, once ``done(names)``
    holds (the recorder writes them from another process, a moment after QEMU sends them)."""
    deadline = time.monotonic() + timeout
    while True:
        names = [e["event"] for e in vm.events() if e["event"] in ("STOP", "RESUME")]
        if done(names) or time.monotonic() > deadline:
            return names


def _stopped_and_resumed(names):
    return names.count("STOP") == 1 and names[-1] == "RESUME"


def _assert_stopped_once_and_resumed(vm):
    names = _recorded(vm, _stopped_and_resumed)
    assert _stopped_and_resumed(names), names


def _assert_never_left_stopped(vm):
    """The guest was not stopped, or was stopped once and resumed."""
    names = _recorded(vm, _stopped_and_resumed, timeout=2.0)
    assert "STOP" not in names or _stopped_and_resumed(names), names


def _assert_alive_on_old(vm, s):
    """The guest runs on the old QEMU, reachable at its QMP path, one continuous life."""
    with QMPConnection(vm.qmp_socket) as conn:
        assert conn.pid == s["pid"]
        assert conn.execute("query-status")["status"] == "running"
    evidence = vm.wait_ticks(2)
    assert evidence.problems() == []
    assert len(evidence.boots) == 1


def _switch(dialect, vm, s, timeout=20):
    with QMPConnection(vm.qmp_socket) as conn:
        dialect.arm(conn, s)
        if dialect is cpr_exec:
            fd = state.open_work_dir(state.qemu_base(s["pid"], s["work_dir"]), s["work_dir"], s["uid"], s["gid"])
            state.create_file(fd, "state", s["uid"], s["gid"])
            os.close(fd)
        return dialect.switch(conn, s, timeout, 5.0)


def test_failed_execvp_leaves_the_guest_running_on_the_old_qemu(lab_vm):
    vm = lab_vm("dl-execfail", disk="virtio-blk", event_monitor=True)
    copy = vmlab.ROOT + "/usr/local/bin/qemu-system-x86_64-dl-execfail"
    shutil.copy2(vmlab.ROOT + TARGET, copy)
    try:
        s = _prepared(vm, "/usr/local/bin/qemu-system-x86_64-dl-execfail")
    finally:
        os.unlink(copy)  # gone after every check passed: QEMU's execvp fails
    with pytest.raises(common.SwitchFailed) as e:
        _switch(cpr_exec, vm, s)
    assert e.value.recovered
    assert "did not happen" in e.value.message
    assert e.value.guest.startswith("old QEMU, PID %d, running" % s["pid"])
    _assert_stopped_once_and_resumed(vm)
    _assert_alive_on_old(vm, s)
    assert process.binary_facts(s["pid"])["path"] == TARGET


def test_new_qemu_dying_in_load_resumes_the_old_one(lab_vm):
    """The unpinned alias across versions: 11.1 reads 'q35' as pc-q35-11.1 and dies in load."""
    vm = lab_vm("dl-alias", disk="virtio-blk", qemu="10.0", event_monitor=True)
    s = _prepared(vm, TARGET, new_root=vmlab.ROOT, launcher=vmlab.launcher())
    s["new_argv"] = [a.replace("pc-q35-10.0,", "q35,") for a in s["new_argv"]]
    with pytest.raises(common.SwitchFailed) as e:
        _switch(cpr_transfer, vm, s)
    assert e.value.recovered, e.value.message
    # The new QEMU gives up and exits, and the old QEMU's migration fails: whichever the switch sees first, the
    # new QEMU's log says why.
    assert re.search(r"rolled back: (migration failed|the new QEMU exited while loading the guest \(exit status "
                     r"1\))", e.value.message), e.value.message
    assert "(its log: " in e.value.message and "local is 'pc-q35-11.1'" in e.value.message
    _assert_stopped_once_and_resumed(vm)
    _assert_alive_on_old(vm, s)
    assert switch_state(vm)["backup_socket"] is False and switch_state(vm)["work_dir"] == []


def test_new_qemu_with_other_ram_is_rolled_back(lab_vm):
    vm = lab_vm("dl-ram", disk="virtio-blk", binary_copy=True, event_monitor=True)
    s = _prepared(vm, TARGET, dialect="cpr-transfer", new_root=vmlab.ROOT, launcher=vmlab.launcher())
    argv = validation.strip_options(s["new_argv"], {"object"})
    s["new_argv"] = [a.replace("memory-backend=ram0,", "") for a in argv]
    with pytest.raises(common.SwitchFailed) as e:
        _switch(cpr_transfer, vm, s)
    assert e.value.recovered, e.value.message
    assert "Unknown ramblock" in e.value.message or "exited" in e.value.message
    _assert_never_left_stopped(vm)
    _assert_alive_on_old(vm, s)
    assert switch_state(vm)["backup_socket"] is False and switch_state(vm)["work_dir"] == []


def _kill_when_listening(path, pid_holder):
    """SIGKILL the process that listens on ``path`` as soon as it appears."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if os.path.exists(path):
            for pid in map(int, filter(str.isdigit, os.listdir("/proc"))):
                try:
                    with open("/proc/%d/cmdline" % pid, "rb") as f:
                        if path.encode() in f.read():
                            os.kill(pid, signal.SIGKILL)
                            pid_holder.append(pid)
                            return
                except OSError:
                    continue
        time.sleep(0.0005)


def test_new_qemu_killed_during_the_transfer_resumes_the_old_one(lab_vm):
    vm = lab_vm("dl-kill", disk="virtio-blk", qemu="10.0", event_monitor=True)
    s = _prepared(vm, TARGET, new_root=vmlab.ROOT, launcher=vmlab.launcher())
    killed = []
    killer = threading.Thread(target=_kill_when_listening,
                              args=(process.host_path(s["pid"], s["cpr_socket"]), killed))
    killer.start()
    try:
        with pytest.raises(common.SwitchFailed) as e:
            _switch(cpr_transfer, vm, s)
    finally:
        killer.join()
    assert killed, "the new QEMU was never seen listening"
    assert e.value.recovered, e.value.message
    assert not common.alive(killed[0], common.starttime(killed[0]))
    _assert_alive_on_old(vm, s)
    assert switch_state(vm)["backup_socket"] is False and switch_state(vm)["work_dir"] == []


def test_guest_lost_is_reported_with_recovery_steps(lab_vm):
    """cpr-exec into a binary that cannot load the guest: exactly what the checks exist for."""
    vm = lab_vm("dl-lost")
    copy = vmlab.ROOT + "/usr/local/bin/qemu-system-x86_64-dl-lost"
    shutil.copy2(vmlab.ROOT + TARGET, copy)
    try:
        s = _prepared(vm, "/usr/local/bin/qemu-system-x86_64-dl-lost")
        # Plain RAM in the exec'd argv: the new QEMU cannot find ram0 and exits.
        argv = validation.strip_options(s["new_argv"], {"object"})
        s["new_argv"] = [a.replace("memory-backend=ram0,", "") for a in argv]
        with pytest.raises(common.SwitchFailed) as e:
            _switch(cpr_exec, vm, s, timeout=10)
    finally:
        os.unlink(copy)
    assert not e.value.recovered
    assert e.value.guest in ("lost",) or e.value.guest.startswith("new QEMU")
    assert "Recovery:" in e.value.message
