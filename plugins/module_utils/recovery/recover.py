# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Find and settle what an interrupted live upgrade left half-way (qemu_cpr_recover, qemu_cpr_info).

Every upgrade's session lives in its VM's root-only lock directory (state.py)
with the step it reached and the process driving it (``owner``).  A session
whose owner is gone was interrupted; the facts of the QEMU processes then say
where the guest is, and settling is deterministic:

- ``saved`` (checked and armed, never paused): disarm, release (``released``);
- the switch got as far as a new QEMU that holds the guest: finish there
  (resume it if the guest ran before, kill the old QEMU of a cpr-transfer
  first: it is never resumed once the new one may run the guest) (``finished``);
- it did not: cancel what is under way, give the old QEMU its QMP socket back,
  resume the guest there (``rolled-back``);
- ``switched`` (only the verify step was missing): resume if needed, release
  (``finished``);
- a process holds the session (session.hold: a module checking, switching or
  verifying it, another recovery), or its switch's owner still runs: nothing is
  done (``in-progress``); no QEMU holds the
  guest any more (``lost``, with the recovery steps); a QEMU holds it but does
  not answer (``stuck``).

Then the switch's files are removed and the lock released.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import time

from ansible_collections.cpr.qemu.plugins.module_utils import process
from ansible_collections.cpr.qemu.plugins.module_utils.recovery import session as sessions, state
from ansible_collections.cpr.qemu.plugins.module_utils.dialects import cpr_exec, cpr_transfer, live_update
from ansible_collections.cpr.qemu.plugins.module_utils.dialects import switch as common
from ansible_collections.cpr.qemu.plugins.module_utils.qmp import QMPConnection, QMPError

DIALECTS = {cpr_exec.MODE: cpr_exec, cpr_transfer.MODE: cpr_transfer, live_update.MODE: live_update}
_LOADING = ("inmigrate", "prelaunch")


class Unsettled(Exception):
    """The session cannot be settled: ``action`` is lost or stuck; the message has the recovery steps."""

    def __init__(self, action, guest, message):
        super(Unsettled, self).__init__(message)
        self.action, self.guest, self.message = action, guest, message


def found(base=state.LOCK_BASE):
    """(lock directory, session) of every live upgrade this host has a lock for.

    A session made in another PID namespace (a container sharing /run) is not this host's: its PIDs mean
    other processes here.
    """
    out = []
    for lock_dir in state.lock_dirs(base):
        s = _read(lock_dir)
        if s is not None and _ours(s):
            out.append((lock_dir, s))
    return out


def _read(lock_dir):
    """The session in LOCK_DIR; None where there is none (only the new QEMU's log is left)."""
    try:
        return sessions.read(lock_dir)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"step": "unreadable"}


def _ours(s):
    """Whether a session was made in this PID namespace (its PIDs mean processes here)."""
    ours = os.readlink("/proc/self/ns/pid")
    return s.get("pid_ns", ours) == ours


def _alive(pid, start):
    return bool(pid) and common.alive(pid, start)


def owner_alive(s):
    owner = s.get("owner") or {}
    return _alive(owner.get("pid"), owner.get("starttime"))


def describe(s, now=None):
    """What qemu_cpr_info reports of a session: its step, age, whether its owner lives, whether it is stuck."""
    now = time.time() if now is None else now
    alive = owner_alive(s)
    return {"token": s.get("token"), "dialect": s.get("dialect"), "step": s.get("step"),
            "started": s.get("started"), "age_s": round(now - s.get("started", now), 1), "owner_alive": alive,
            "stuck": s.get("step") not in ("saved",) and not alive,
            "old_qemu_alive": _alive(s.get("pid"), s.get("pid_starttime")),
            "new_qemu_alive": _alive(s.get("new_pid"), s.get("new_pid_starttime"))
            if s.get("dialect") == cpr_transfer.MODE else None}


def _connect(path, pid, timeout):
    """A QMP connection to process ``pid`` at ``path``, or None if it does not answer there."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = QMPConnection(path, timeout=timeout).connect()
        except QMPError:
            conn = None
        if conn is not None:
            if conn.pid == pid:
                return conn
            conn.close()
        if time.monotonic() > deadline:
            return None
        time.sleep(0.1)


def _wait_loaded(conn, deadline):
    """The runstate of a new QEMU once it has loaded the guest (or given up); it waits paused (-S)."""
    status = conn.execute("query-status")["status"]
    while status in _LOADING and time.monotonic() < deadline:
        time.sleep(0.05)
        status = conn.execute("query-status")["status"]
    return status


def _resume(conn, s):
    """Resume the guest on this QEMU if it ran before the upgrade; its runstate after."""
    status = conn.execute("query-status")["status"]
    if s["runstate_before"] == "running" and status != "running":
        conn.execute("cont")
        status = conn.execute("query-status")["status"]
    return status


def _lost(s, why):
    return Unsettled("lost", "lost", "%s: %s: no QEMU runs the guest any more. Recovery: restart the VM from its "
                                     "configuration (the guest reboots), then remove %s"
                     % (s["vm"], why, sessions.lock_path(s["lock_dir"])))


def _settle_in_place(s, timeout):
    """cpr-exec and live-update: one process, before or after its exec."""
    pid, vm = s["pid"], s["vm"]
    if not _alive(pid, s["pid_starttime"]):
        raise _lost(s, "QEMU (PID %d) exited during the switch" % pid)
    conn = _connect(s["qmp_socket_host"], pid, timeout)
    if conn is None:
        raise Unsettled("stuck", "QEMU PID %d, not answering" % pid,
                        "%s: QEMU (PID %d) holds the guest but does not answer on %s. Recovery: once it answers, "
                        "run qemu_cpr_recover again; if it hangs, restart the VM from its configuration"
                        % (vm, pid, s["qmp_socket"]))
    try:
        on_new = process.binary_facts(pid)["file_id"] == s["new_binary_file_id"]
        deadline = time.monotonic() + timeout
        if on_new:
            status = _wait_loaded(conn, deadline)
            if s["dialect"] == live_update.MODE and status == "prelaunch":
                proto = s["protocol"]
                args = {proto["file_key"]: s["state_file"]}
                conn.execute(proto["load"], dict(args, mode="restart") if proto["load_mode"] else args)
            elif s["dialect"] == cpr_exec.MODE and conn.execute("query-migrate").get("status") != "completed":
                raise Unsettled("stuck", "new QEMU, PID %d, %s" % (pid, status),
                                "%s: the new QEMU (PID %d) did not load the guest (runstate %s). Recovery: check "
                                "query-migrate there; if it failed, restart the VM from its configuration"
                                % (vm, pid, status))
            return "finished", "new QEMU, PID %d, %s" % (pid, _resume(conn, s)), pid
        if s["dialect"] == cpr_exec.MODE:
            common.cancel_migration(conn, deadline)
        status = _resume(conn, s)
        try:
            DIALECTS[s["dialect"]].disarm(conn)
        except QMPError:
            pass
        return "rolled-back", "old QEMU, PID %d, %s" % (pid, status), pid
    finally:
        conn.close()


def _settle_pidfile(s, pid, step):
    """The pidfile's second name given back or dropped (PidFile): a pidfile that cannot be reached (its
    directory gone, say) never keeps a guest from being settled."""
    try:
        with cpr_transfer.PidFile(s, pid) as pids:
            getattr(pids, step)()
    except (state.StateError, OSError):
        pass


def _settle_transfer(s, timeout):
    """cpr-transfer: the old QEMU and perhaps a new one; at most one of them may ever run the guest."""
    vm = s["vm"]
    old, new = (s["pid"], s["pid_starttime"]), (s.get("new_pid"), s.get("new_pid_starttime"))
    deadline = time.monotonic() + timeout
    if _alive(*new):
        conn = _connect(process.host_path(new[0], s["qmp_socket"]), new[0], 1.0)
        if conn is not None:
            try:
                status = _wait_loaded(conn, deadline)
                loaded = status == "running" or (
                    status == "paused" and conn.execute("query-migrate").get("status") == "completed")
                if loaded:
                    common.kill(*old)  # before any cont: the old QEMU must never run the guest again
                    with cpr_transfer.SocketDir(s, new[0]) as sockets:
                        sockets.drop_old()
                    _settle_pidfile(s, new[0], "drop_old")
                    return "finished", "new QEMU, PID %d, %s" % (new[0], _resume(conn, s)), new[0]
            finally:
                conn.close()
        if sessions.marked(s["lock_dir"], sessions.CONT_SENT):
            raise Unsettled("stuck", "new QEMU, PID %d, told to run the guest" % new[0],
                            "%s: the new QEMU (PID %d) was told to run the guest but does not answer as running; "
                            "the old QEMU (PID %d) must never run it again. Recovery: check the new QEMU on %s "
                            "(query-status, then cont); if it hangs, kill both and restart the VM from its "
                            "configuration" % (vm, new[0], old[0], s["qmp_socket"]))
        common.kill(*new)  # it never took the guest over
    if not _alive(*old):
        raise _lost(s, "neither the old QEMU (PID %d) nor a new one runs" % old[0])
    if sessions.marked(s["lock_dir"], sessions.CONT_SENT):
        # The new QEMU may have run the guest on the shared RAM: the old one's device state is stale.
        raise Unsettled("lost", "old QEMU, PID %d, postmigrate (never to be resumed)" % old[0],
                        "%s: the new QEMU (PID %s) was told to run the guest and is gone; the old QEMU (PID %d) "
                        "must never run it again (its device state is older than the guest's RAM). Recovery: kill "
                        "PID %d, restart the VM from its configuration (the guest reboots), then remove %s"
                        % (s["vm"], new[0], old[0], old[0], sessions.lock_path(s["lock_dir"])))
    with cpr_transfer.SocketDir(s, old[0]) as sockets:
        sockets.give_back_if_taken()  # the old QEMU's QMP socket back at its path
    _settle_pidfile(s, old[0], "give_back")
    conn = _connect(process.host_path(old[0], s["qmp_socket"]), old[0], timeout)
    if conn is None:
        raise Unsettled("stuck", "old QEMU, PID %d, not answering" % old[0],
                        "%s: the old QEMU (PID %d) holds the guest but does not answer on %s. Recovery: once it "
                        "answers, run qemu_cpr_recover again" % (vm, old[0], s["qmp_socket"]))
    try:
        common.cancel_migration(conn, deadline)
        status = _resume(conn, s)
        try:
            cpr_transfer.disarm(conn)
        except QMPError:
            pass
    finally:
        conn.close()
    return "rolled-back", "old QEMU, PID %d, %s" % (old[0], status), old[0]


def _finish_switched(s, timeout):
    """The switch ended, its verification did not run: resume if needed."""
    pid = s["new_pid"]
    conn = _connect(process.host_path(pid, s["qmp_socket"]), pid, timeout)
    if conn is None:
        if not _alive(pid, s["new_pid_starttime"]):
            raise _lost(s, "the new QEMU (PID %d) exited after the switch" % pid)
        raise Unsettled("stuck", "new QEMU, PID %d, not answering" % pid,
                        "%s: the new QEMU (PID %d) does not answer on %s. Recovery: once it answers, run "
                        "qemu_cpr_recover again" % (s["vm"], pid, s["qmp_socket"]))
    try:
        return "finished", "new QEMU, PID %d, %s" % (pid, _resume(conn, s)), pid
    finally:
        conn.close()


def _release_prepared(s, timeout):
    """Checked and armed, never paused: disarm the old QEMU."""
    pid = s["pid"]
    conn = _connect(s["qmp_socket_host"], pid, timeout) if _alive(pid, s["pid_starttime"]) else None
    status = "gone"
    if conn is not None:
        try:
            DIALECTS[s["dialect"]].disarm(conn)
            status = conn.execute("query-status")["status"]
        except QMPError:
            pass
        finally:
            conn.close()
    return "released", "old QEMU, PID %d, %s" % (pid, status), pid


def _settle_step(s, timeout):
    if s["step"] == "saved":
        return _release_prepared(s, timeout)
    if s["step"] == "switched":
        return _finish_switched(s, timeout)
    if s["dialect"] == cpr_transfer.MODE:
        return _settle_transfer(s, timeout)
    return _settle_in_place(s, timeout)


def settle(lock_dir, s, timeout=5.0, check_mode=False):
    """Settle one session, holding it (session.hold) and reading it again once held; returns ``{vm, qmp_socket,
    key, step, action, guest, recovered, msg}``, or None where its holder ended it meanwhile."""
    try:
        held = sessions.hold(lock_dir)
    except sessions.Held as e:
        return dict(_described(s), action="in-progress", guest="unknown", recovered=False,
                    msg="%s: %s; nothing was done" % (s.get("vm"), e))
    except sessions.LockError:
        return None  # its lock directory is gone
    try:
        s = _read(lock_dir)
        if s is None or not _ours(s):
            return None
        return _settle(lock_dir, s, timeout, check_mode)
    finally:
        os.close(held)


def _described(s):
    old = s.get("old_binary") or {}
    return {"vm": s.get("vm"), "qmp_socket": s.get("qmp_socket_host"), "key": s.get("key"), "step": s.get("step"),
            "dialect": s.get("dialect"), "old_version": s.get("old_version"), "new_version": s.get("new_version"),
            "old_binary": {"path": old.get("path"), "root": old.get("root")} if old else None}


def _settle(lock_dir, s, timeout, check_mode):
    out = _described(s)
    if s.get("step") == "unreadable":
        return dict(out, action="stuck", guest="unknown", recovered=False,
                    msg="the session in %s cannot be read: check the VM with qemu_cpr_info" % lock_dir)
    if s["step"] == "switching" and owner_alive(s):
        return dict(out, action="in-progress", guest="unknown", recovered=False,
                    msg="%s: the switch is still running (PID %d): nothing was done" % (s["vm"], s["owner"]["pid"]))
    if check_mode:
        return dict(out, action="would-settle", guest="unknown", recovered=False,
                    msg="%s: the session at step %s would be settled" % (s["vm"], s["step"]))
    try:
        action, guest, pid = _settle_step(s, timeout)
    except Unsettled as e:
        s.update(step="failed", failure=e.message)
        sessions.update(lock_dir, s)
        return dict(out, action=e.action, guest=e.guest, recovered=False, msg=e.message)
    except (QMPError, OSError, common.Survived, state.StateError) as e:
        return dict(out, action="stuck", guest="unknown", recovered=False,
                    msg="%s: settling the session at step %s failed: %s; the lock %s is kept"
                        % (s["vm"], s["step"], e, sessions.lock_path(lock_dir)))
    if _alive(pid, s["new_pid_starttime"] if pid == s.get("new_pid") else s["pid_starttime"]):
        state.remove_work_dir(state.qemu_base(pid, s["work_dir"]), s["work_dir"], s["uid"])
    sessions.release(lock_dir)
    return dict(out, action=action, guest=guest, recovered=True,
                msg="%s: the upgrade interrupted at step %s is settled: %s; the guest is on the %s"
                    % (s["vm"], s["step"], action, guest))


def settle_all(qmp_sockets=(), timeout=5.0, check_mode=False, base=state.LOCK_BASE):
    """Settle every session of this host (or those of the VMs behind ``qmp_sockets``)."""
    wanted = set(qmp_sockets)
    settled = [settle(lock_dir, s, timeout, check_mode) for lock_dir, s in found(base)
               if not wanted or s.get("qmp_socket_host") in wanted or s.get("qmp_socket") in wanted]
    return [outcome for outcome in settled if outcome is not None]
