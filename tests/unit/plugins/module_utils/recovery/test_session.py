# -*- coding: utf-8 -*-
# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import signal
import stat
import time

import pytest

from ansible_collections.cpr.qemu.plugins.module_utils.recovery import recover, session, state
from ansible_collections.cpr.qemu.plugins.module_utils.dialects import switch

KEY = "qmp.sock-0123456789abcdef"


def _session(token="t1"):
    return {"token": token, "key": KEY, "dialect": "cpr-exec", "step": "saved",
            "started": 0, "new_argv": ["q", "-object", "secret,id=s,data=hunter2"]}


@pytest.fixture
def lock_dir(tmp_path):
    base = tmp_path / "base"
    base.mkdir(mode=0o700)
    return state.lock_dir(KEY, str(base), create=True)


def _hold_elsewhere(lock_dir, for_s=60):
    """A child process that holds LOCK_DIR (session.hold) for FOR_S seconds or until it is killed, as a module,
    the detached switch or a recovery would."""
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            session.hold(lock_dir)
            os.write(ready_w, b"1")
            time.sleep(for_s)
        finally:
            os._exit(0)
    os.close(ready_w)
    try:
        assert os.read(ready_r, 1) == b"1"
    finally:
        os.close(ready_r)
    return pid


def _kill(pid):
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def test_a_session_is_held_by_one_process_at_a_time_and_let_go_when_it_dies(lock_dir):
    holder = _hold_elsewhere(lock_dir)
    try:
        with pytest.raises(session.Held, match="another process is working on this VM's live upgrade"):
            session.hold(lock_dir, wait=0.2)
    finally:
        _kill(holder)  # SIGKILL, as the OOM killer: the kernel lets the lock go
    os.close(session.hold(lock_dir))


def test_a_brief_holder_is_waited_for(lock_dir):
    holder = _hold_elsewhere(lock_dir, for_s=0.3)
    try:
        os.close(session.hold(lock_dir, wait=10))
    finally:
        os.waitpid(holder, 0)


def test_a_missing_lock_directory_is_no_hold(lock_dir):
    with pytest.raises(session.LockError, match="no live upgrade of this VM is in progress") as e:
        session.hold(lock_dir + "-gone")
    assert not isinstance(e.value, session.Held)


def test_the_session_written_aside_leaves_nothing_beside_it(lock_dir):
    """acquire writes the session aside and links it into place (a reader never finds half of it): the file
    aside is gone whether the link took or another run's session was there."""
    session.acquire(lock_dir, _session())
    assert sorted(os.listdir(lock_dir)) == [session.LOCK_NAME]
    with pytest.raises(session.LockError):
        session.acquire(lock_dir, _session("t2"))
    assert sorted(os.listdir(lock_dir)) == [session.LOCK_NAME] and session.read(lock_dir)["token"] == "t1"


def test_a_recovery_leaves_a_session_alone_while_another_process_holds_it(lock_dir):
    """A module between loading a saved session and marking it switching (its re-checks) holds it: a recovery
    run meanwhile (a second playbook run) must neither disarm QEMU nor release the lock under it."""
    session.acquire(lock_dir, dict(_session(), vm="vm1", pid=1, qmp_socket_host="/nonexistent/qmp.sock"))
    holder = _hold_elsewhere(lock_dir)
    try:
        out = recover.settle(lock_dir, session.read(lock_dir), timeout=1.0)
    finally:
        _kill(holder)
    assert out["action"] == "in-progress" and not out["recovered"], out
    assert "another process is working" in out["msg"]
    assert session.read(lock_dir)["step"] == "saved"


def test_the_lock_is_exclusive_and_names_the_holder(lock_dir):
    session.acquire(lock_dir, _session())
    assert stat.S_IMODE(os.stat(session.lock_path(lock_dir)).st_mode) == 0o600
    with pytest.raises(session.LockError, match="in progress: session t1 \\(cpr-exec, step saved\\)"):
        session.acquire(lock_dir, _session("t2"))


def test_load_checks_the_token(lock_dir):
    base = os.path.dirname(lock_dir)
    session.acquire(lock_dir, _session())
    assert session.load(_session(), base)["new_argv"][-1].endswith("hunter2")
    with pytest.raises(session.LockError, match="not the one in progress"):
        session.load(_session("other"), base)
    session.release(lock_dir)
    with pytest.raises(session.LockError, match="run qemu_cprsave first"):
        session.load(_session(), base)


def test_load_refuses_a_key_that_is_a_path(lock_dir):
    with pytest.raises(session.LockError, match="is not the key of a VM's state"):
        session.load(dict(_session(), key="../../etc-0123456789abcdef"), os.path.dirname(lock_dir))


def test_update_replaces_a_planted_temporary_file(lock_dir):
    session.acquire(lock_dir, _session())
    with open(session.lock_path(lock_dir) + ".new", "w") as f:
        f.write("planted")
    session.update(lock_dir, dict(_session(), step="switching"))
    assert session.read(lock_dir)["step"] == "switching"
    assert not os.path.exists(session.lock_path(lock_dir) + ".new")


def test_public_masks_secrets():
    out = session.public(_session())
    assert "hunter2" not in str(out)
    assert _session()["new_argv"][-1].endswith("hunter2")


def test_the_last_upgrade_is_kept_for_the_qemu_it_left_the_guest_on(tmp_path):
    me = os.getpid()
    record = {"pid": me, "pid_starttime": switch.starttime(me), "old_version": "10.0.2", "pause_ms": 6.5}
    session.record_upgrade(str(tmp_path), record)
    session.record_upgrade(str(tmp_path), dict(record, pause_ms=7.5))  # rewritten whole
    assert session.last_upgrade(str(tmp_path), me) == dict(record, pause_ms=7.5)
    # Another process, or the same PID started anew, is not the QEMU the record names.
    assert session.last_upgrade(str(tmp_path), 1) is None
    session.record_upgrade(str(tmp_path), dict(record, pid_starttime=1))
    assert session.last_upgrade(str(tmp_path), me) is None
    (tmp_path / session.LAST_UPGRADE).write_text("not json")
    assert session.last_upgrade(str(tmp_path), me) is None
