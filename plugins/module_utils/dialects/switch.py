# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Steps every dialect's switch shares: finding the new QEMU, resuming it, stopping the old one, and the turns in
which switches that run side by side pause their guests.

The new QEMU always starts with -S: the module resumes it with ``cont``, so
QEMU's own RESUME event timestamps the end of the guest's pause exactly, and a
guest that was paused before the upgrade simply stays paused.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import contextlib
import os
import signal
import threading
import time

from ansible_collections.cpr.qemu.plugins.module_utils import fault
from ansible_collections.cpr.qemu.plugins.module_utils.qmp import QMPConnection, QMPError, event_time

# Polled while the guest is paused: every millisecond here is pause.
_POLL = 0.0005


class SwitchFailed(Exception):
    """The switch did not complete.  ``guest`` says where the guest is now."""

    def __init__(self, message, guest, recovered):
        super(SwitchFailed, self).__init__(message)
        self.message = message
        self.guest = guest
        self.recovered = recovered


def ignore(**fields):
    """A dialect's ``record`` where nothing is kept (tests that drive a dialect directly)."""
    del fields


class Turns(object):
    """The pauses of switches that run side by side, taken one at a time once every switch is ready to pause.

    The work before a pause (re-checks, starting the new QEMU) gains from running side by side; pauses that
    overlap on a few cores only lengthen each other (bench/scale.py, 8 VMs 8 at once on 2 cores: the longest
    pause was 120 ms against 15 ms for one VM alone; one at a time, 8 ms against 6). A switch waits at most
    READY_WAIT seconds for the others to be ready, so one whose new QEMU is slow to start holds no other's pause
    for long; its guest is not paused while it waits.
    """

    READY_WAIT = 5.0

    def __init__(self, switches):
        self._cond = threading.Condition()
        self._unready = switches
        self._pausing = False

    def member(self):
        """One switch's place (Turn): it pauses through ``pause()``, or ``leave()``s."""
        return Turn(self)

    def arrive(self):
        """A switch is ready to pause, or will not pause."""
        with self._cond:
            self._unready -= 1
            self._cond.notify_all()

    def take(self):
        """Wait for the others to be ready (READY_WAIT at most) and for no pause to run; then pause."""
        with self._cond:
            end = time.monotonic() + self.READY_WAIT
            while self._pausing or (self._unready > 0 and time.monotonic() < end):
                self._cond.wait(max(0.001, end - time.monotonic()) if not self._pausing else None)
            self._pausing = True

    def release(self):
        with self._cond:
            self._pausing = False
            self._cond.notify_all()


class Turn(object):
    """A switch's place among Turns: ``with turn.pause():`` around the guest's pause; ``leave()`` when the
    switch ends (a no-op once it paused)."""

    def __init__(self, turns):
        self._turns, self._counted = turns, False

    def leave(self):
        if not self._counted:
            self._counted = True
            self._turns.arrive()

    @contextlib.contextmanager
    def pause(self):
        self.leave()
        self._turns.take()
        try:
            yield
        finally:
            self._turns.release()


def alone():
    """The turn of a switch that runs by itself: it pauses when it is ready."""
    return Turns(1).member()


def paused_throughout(switch_body):
    """A dialect's switch(conn, session, timeout, qmp_timeout, record, turn) from ``switch_body(conn, session,
    timeout, qmp_timeout)``, for dialects whose guest is paused from the first command on: the whole switch takes
    its turn. Nothing is recorded on the way: a recovery learns where the guest is from the one process (its
    binary, its runstate)."""
    def switch(conn, session, timeout, qmp_timeout, record=ignore, turn=None):
        del record
        with (turn or alone()).pause():
            return switch_body(conn, session, timeout, qmp_timeout)
    switch.__doc__ = switch_body.__doc__
    return switch


def starttime(pid):
    """Start time of a process in clock ticks, or None if it does not exist (or is a zombie)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    if fields[0] == "Z":
        return None
    return int(fields[19])


def alive(pid, start):
    return start is not None and starttime(pid) == start


class Survived(Exception):
    """A QEMU that had to die did not (stuck in the kernel): two QEMUs may hold one guest."""


def kill(pid, start, timeout=10.0):
    """SIGKILL a process, only if it is still the one that started at ``start``; wait until it is gone.

    Raises Survived if it is still there after ``timeout``.
    """
    if not alive(pid, start):
        return
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while alive(pid, start):
        if time.monotonic() > deadline:
            raise Survived("QEMU PID %d survived SIGKILL for %ss" % (pid, timeout))
        time.sleep(0.01)


def socket_identity(path):
    """Which socket file is at ``path`` now: (device, inode, ctime).

    The inode number alone is not enough: a filesystem may give the freed
    number of an unlinked socket to the next one bound at the same path.
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_ctime_ns)


def connect_new(path, old_identity, pid_ok, deadline, qmp_timeout):
    """Connect to the new QEMU's QMP socket once it has bound ``path`` anew.

    The new QEMU unlinks and rebinds the VM's QMP path; until then the path is
    the old socket, and a connection there would reach the old QEMU (whose
    monitor we hold, so it would not answer) or nobody.  ``pid_ok(pid)`` must
    accept the peer; it is also called with None on every poll and may raise
    to say that the new QEMU is gone.  Returns the connection, or None at the
    deadline.
    """
    while time.monotonic() < deadline:
        identity = socket_identity(path)
        if identity is not None and identity != old_identity:
            try:
                conn = QMPConnection(path, timeout=qmp_timeout).connect()
            except QMPError:
                conn = None
            if conn is not None:
                if pid_ok(conn.pid):
                    return conn
                conn.close()
        pid_ok(None)
        time.sleep(_POLL)
    return None


def same_process(pid, start, lost):
    """connect_new's peer check after an exec in place: the new QEMU is the old process.

    If that process is gone, the guest went with it: raises SwitchFailed with
    ``lost`` (what happened and how to recover).
    """
    def check(peer):
        if not alive(pid, start):
            raise SwitchFailed(lost, guest="lost", recovered=False)
        return peer == pid
    return check


def resume_new(conn, runstate_before, deadline, before_cont=None):
    """Wait until the new QEMU has loaded the guest (paused, by -S), then resume it if it ran before.

    Returns QEMU's RESUME event (None if the guest stays paused).  ``before_cont()``
    is called right before cont: from then on the new QEMU may run the guest,
    and the old one must never be resumed.
    """
    while True:
        status = conn.execute("query-status")["status"]
        if status == "paused":
            break
        if status not in ("inmigrate", "prelaunch"):
            raise QMPError("runstate", "the new QEMU is in runstate '%s' instead of loading the guest" % status)
        if time.monotonic() > deadline:
            raise QMPError("timeout", "the new QEMU did not finish loading the guest in time")
        time.sleep(_POLL)
    migrated = conn.execute("query-migrate").get("status")
    if migrated != "completed":
        raise QMPError("migration", "the new QEMU reports incoming migration '%s', not completed" % migrated)
    if runstate_before != "running":
        return None
    if before_cont is not None:
        before_cont()
    conn.execute("cont")
    fault.point("after-cont")
    resume = conn.wait_event("RESUME", max(1.0, deadline - time.monotonic()))
    if resume is None:
        raise QMPError("timeout", "the new QEMU accepted cont but sent no RESUME event")
    return resume


def wait_migration(conn, deadline):
    """Follow the old QEMU's MIGRATION events to an end state; return (status, STOP event)."""
    stop = None
    status = None
    while status not in ("completed", "failed", "cancelled"):
        ev = conn.wait_event(["STOP", "MIGRATION"], max(0.0, deadline - time.monotonic()))
        if ev is None:
            break
        if ev["event"] == "STOP":
            stop = ev
            fault.point("after-stop")
        else:
            status = ev["data"]["status"]
    return status, stop


def cancel_migration(conn, deadline):
    """Cancel a migration still under way and wait for it to end (a guest must never be resumed mid-way)."""
    status = conn.execute("query-migrate").get("status", "none")
    if status in ("none", "completed", "failed", "cancelled"):
        return status
    conn.execute("migrate_cancel")
    while status not in ("completed", "failed", "cancelled") and time.monotonic() < deadline:
        time.sleep(_POLL * 20)
        status = conn.execute("query-migrate").get("status", "none")
    return status


def migration_error(conn):
    try:
        info = conn.execute("query-migrate")
    except QMPError as e:
        return str(e)
    return info.get("error-desc") or "status %s" % info.get("status")


def resume_old(conn, runstate_before):
    """Make sure the guest runs again on the old QEMU after a failed switch.  Returns its runstate."""
    status = conn.execute("query-status")["status"]
    if runstate_before == "running" and status != "running":
        conn.execute("cont")
        status = conn.execute("query-status")["status"]
    return status


def pause_ms(stop, resume):
    if stop is None or resume is None:
        return None
    return round((event_time(resume) - event_time(stop)) * 1000.0, 1)
