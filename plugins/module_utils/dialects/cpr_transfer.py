# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The cpr-transfer dialect (upstream QEMU 10.0+): the QMP conversation, in one place.

A second QEMU is started with two -incoming channels on UNIX sockets: 'cpr'
(over which the old QEMU passes its memfds) and 'main' (device state).  The old
QEMU's ``migrate`` sends both; the new one loads and is resumed; the old one,
left in 'postmigrate', is then killed.

Two things seen on real QEMU shape this file:
- Both QEMUs bind the VM's QMP socket path (the new one unlinks and rebinds it).
  A QEMU that exits cleanly unlinks its UNIX sockets by path, so quitting the
  old QEMU would delete the new one's QMP socket: the old QEMU is killed with
  SIGKILL instead (its block devices were already handed over at 'completed').
  For the same reason a new QEMU that dies would take the old one's QMP path
  with it, so the old socket is kept under a second name (a hard link to the
  same socket) and renamed back on rollback.
- After 'completed' the old QEMU still accepts ``cont``; resuming it while the
  new one runs would run the guest twice on shared RAM.  The old QEMU is only
  resumed once the new one is known dead.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import signal
import stat
import subprocess
import time

from ansible_collections.cpr.qemu.plugins.module_utils import fault, process, validation
from ansible_collections.cpr.qemu.plugins.module_utils.privilege import identity
from ansible_collections.cpr.qemu.plugins.module_utils.recovery import session as sessions, state
from ansible_collections.cpr.qemu.plugins.module_utils.dialects import switch as common
from ansible_collections.cpr.qemu.plugins.module_utils.qmp import QMPError, listens_on

MODE = "cpr-transfer"
OLD_SOCKET_SUFFIX = ".cpr-old"
# The old QEMU's pidfile's second name, while a new QEMU writes its own.
PIDFILE_SUFFIX = ".cpr-old"


def channels(session):
    return [
        {"channel-type": "main", "addr": {"transport": "socket", "type": "unix", "path": session["main_socket"]}},
        {"channel-type": "cpr", "addr": {"transport": "socket", "type": "unix", "path": session["cpr_socket"]}},
    ]


def pidfile(session):
    """The VM's -pidfile as QEMU was given it (relative to its working directory, or absolute), or None."""
    return process.parse_argv(session["new_argv"])["pidfile"]


def qemu_argv(session):
    """The new QEMU's own argv: new argv, paused, both incoming channels."""
    incoming = []
    for channel in channels(session):
        incoming += ["-incoming", json.dumps(channel, separators=(",", ":"))]
    return session["new_argv"] + ["-S"] + incoming


def launch_argv(session):
    """The command that starts the new QEMU: launcher, then QEMU's argv."""
    return list(session["launcher"]) + qemu_argv(session)


def arm(conn, session):
    del session  # cpr-transfer needs no parameter but the mode
    conn.execute("migrate-set-capabilities", {"capabilities": [{"capability": "events", "state": True}]})
    conn.execute("migrate-set-parameters", {"mode": MODE})


def disarm(conn):
    conn.execute("migrate-set-parameters", {"mode": "normal"})


def is_armed(conn, session):
    del session
    return conn.execute("query-migrate-parameters").get("mode") == MODE


def _listens(pid, path):
    """Whether process PID itself listens on the UNIX socket it names PATH, in its network namespace (the old
    QEMU's: identity.py): not another process that bound that name. Its root and working directory are looked
    up on each call: they change as the launch stage, a launcher and QEMU exec one another."""
    try:
        return listens_on(pid, process.host_path(pid, path))
    except OSError:
        return False


def start_new_qemu(session):
    """Start the new QEMU detached and as the old one runs (identity.py: user, groups, working directory,
    environment, umask, cgroups, namespaces, scheduling and limits): its own session, no terminal, output to a
    log in the root-only lock dir.

    It must outlive this module, the SSH connection and Ansible.  Raises identity.IdentityError, before
    anything is started, when the old QEMU's identity cannot be reproduced (launch_command checks).  Returns
    the process, its log's path and the write end of its gate: nothing runs until a byte is written there, and
    nothing ever runs once it is closed without one.
    """
    ident = identity.capture(session["pid"])
    # QEMU's own -run-with user=/chroot= would die in a QEMU that already runs as that user.
    argv = identity.argv_for(session["new_argv"], ident) + qemu_argv(session)[len(session["new_argv"]):]
    log_path = os.path.join(session["lock_dir"], "new-qemu.log")
    with identity.namespace_fds(ident) as namespaces:
        # After the namespaces are open: they are the VM's QEMU's.
        if common.starttime(session["pid"]) != session["pid_starttime"]:
            raise identity.IdentityError("PID %d is no longer the VM's QEMU" % session["pid"])
        gate, gate_open = os.pipe()
        try:
            cmd, kwargs = identity.launch_command(argv, ident, session["launcher"], namespaces, session["old_argv"],
                                                  gate=gate)
            log = os.open(log_path, os.O_CREAT | os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                        start_new_session=True, close_fds=True, **kwargs)
            finally:
                os.close(log)
        except BaseException:
            os.close(gate_open)
            raise
        finally:
            os.close(gate)
    return proc, log_path, gate_open


def _unlaunch(proc, gate_open):
    """Close the gate unopened (start_new_qemu): the launch stage ends at its end of file, having started
    nothing; wait for it."""
    os.close(gate_open)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _open_gate(gate_open):
    """Let the new QEMU start (start_new_qemu), once its PID is recorded."""
    try:
        os.write(gate_open, b"1")
    except BrokenPipeError:
        pass  # the launch stage is gone already: the wait for its listener sees it exit
    finally:
        os.close(gate_open)


def _ended(returncode):
    """How a process ended, as Popen's returncode tells it (negative: the signal that killed it)."""
    if returncode < 0:
        try:
            return "killed by %s" % signal.Signals(-returncode).name
        except ValueError:
            return "killed by signal %d" % -returncode
    return "exit status %d" % returncode


def _log_tail(path, argv):
    """The end of the new QEMU's log, with every secret of argv (the command that started it) masked."""
    try:
        with open(path, errors="replace") as f:
            text = f.read()
    except OSError:
        return ""
    return " ".join(process.mask_text(text, process.secret_values(argv)).split())[-400:]


class _DirFd:
    """A directory worked on through its fd (``self.fd``, None for no directory), closed on leaving ``with``."""

    fd = None

    def close(self):
        if self.fd is not None:
            os.close(self.fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class PidFile(_DirFd):
    """The VM's -pidfile across the switch.  The old QEMU holds a lock on it to its end, and a new QEMU given
    the same -pidfile would die on that lock.  So, right before the new QEMU starts, the pidfile's name moves
    to a second name (PIDFILE.cpr-old), and the new QEMU, given the very same -pidfile, writes its own as
    QEMU's user (as the old one did).  A rollback moves the old one back over it; once the old QEMU is gone,
    the second name goes.  Root only renames names in that directory, and only once the name is known to
    be the very file the old QEMU holds open for writing; it writes no file's content."""

    def __init__(self, session, pid):
        self.path = pidfile(session)
        self.fd = None
        if self.path:
            self.name = os.path.basename(self.path)
            self.aside = self.name + PIDFILE_SUFFIX
            self.fd = state.open_dir(state.qemu_base(pid, self.path), os.path.dirname(self.path),
                                     (session["uid"],))

    def problems(self, pid, uid, gid, groups):
        """Why the pidfile could not be handed to a new QEMU running as uid/gid/groups; empty if it can."""
        if self.fd is None:
            return []
        try:
            st = os.stat(self.name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is None or not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) not in process.open_for_writing(pid):
            return ["its -pidfile %s, as it resolves now, is not the file QEMU holds open (a relative path that "
                    "-daemonize's change of directory left behind?): it is not touched" % self.path]
        if not validation.permits(os.fstat(self.fd), uid, gid, groups, 0o3):
            return ["QEMU's user (uid %d) cannot create files in the directory of its -pidfile %s, so the new "
                    "QEMU could not write its own" % (uid, self.path)]
        return []

    def move_aside(self):
        if self.fd is not None:
            state.remove_entry(self.fd, self.aside)
            os.rename(self.name, self.aside, src_dir_fd=self.fd, dst_dir_fd=self.fd)

    def give_back(self):
        """The old QEMU's pidfile back at its name (over the new QEMU's, if it wrote one)."""
        if self.fd is None:
            return
        try:
            os.rename(self.aside, self.name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except FileNotFoundError:
            pass

    def drop_old(self):
        if self.fd is not None:
            state.remove_entry(self.fd, self.aside)


def pidfile_problems(session):
    """Why the VM's pidfile could not be handed to a new QEMU (checked before the pause)."""
    pid = session["pid"]
    try:
        with PidFile(session, pid) as pids:
            return pids.problems(pid, *process.credentials(pid))
    except (state.StateError, OSError) as e:
        return ["the directory of its -pidfile cannot be used: %s" % e]


class SocketDir(_DirFd):
    """The directory of the VM's QMP socket, worked on through its fd (QEMU's user may write it)."""

    def __init__(self, session, pid):
        path = session["qmp_socket"]
        self.name = os.path.basename(path)
        self.backup = self.name + OLD_SOCKET_SUFFIX
        self.fd = state.open_dir(state.qemu_base(pid, path), os.path.dirname(path), (session["uid"],))

    def keep_old(self):
        """A second name for the old QEMU's QMP socket: a new QEMU that dies unlinks the path."""
        state.remove_entry(self.fd, self.backup)
        os.link(self.name, self.backup, src_dir_fd=self.fd, dst_dir_fd=self.fd, follow_symlinks=False)

    def give_back(self, old_identity, qmp_host):
        """The old QEMU's QMP socket back at its path (if the new QEMU took the path over), the second name gone."""
        if common.socket_identity(qmp_host) == old_identity:
            state.remove_entry(self.fd, self.backup)
        else:
            os.rename(self.backup, self.name, src_dir_fd=self.fd, dst_dir_fd=self.fd)

    def give_back_if_taken(self):
        """give_back, for a recovery that does not know the old socket's identity: the second name is it."""
        try:
            kept = os.stat(self.backup, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        try:
            here = os.stat(self.name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            here = None
        if here is not None and (here.st_dev, here.st_ino) == (kept.st_dev, kept.st_ino):
            state.remove_entry(self.fd, self.backup)
        else:
            os.rename(self.backup, self.name, src_dir_fd=self.fd, dst_dir_fd=self.fd)

    def drop_old(self):
        state.remove_entry(self.fd, self.backup)


def _clean_work_dir(session):
    fd = state.open_work_dir(state.qemu_base(session["pid"], session["work_dir"]), session["work_dir"],
                             session["uid"], session["gid"])
    try:
        for name in ("cpr.sock", "main.sock"):
            state.remove_entry(fd, name)
    finally:
        os.close(fd)


def switch(conn, session, timeout, qmp_timeout, record=common.ignore, turn=None):
    """Start the new QEMU, migrate, resume the new one, kill the old one.  Raises SwitchFailed.

    ``record(**fields)`` keeps what a recovery must know in the session: the new QEMU's PID, and (a mark,
    cheap inside the pause) that it was told to run the guest.  The pause, from migrate to the new QEMU's
    resume, takes its ``turn`` (switch.Turns) once the new QEMU listens.
    """
    with SocketDir(session, session["pid"]) as sockets, PidFile(session, session["pid"]) as pids:
        return _switch(conn, session, sockets, pids, timeout, qmp_timeout, record, turn or common.alone())


def _switch(conn, session, sockets, pids, timeout, qmp_timeout, record, turn):
    vm = session["vm"]
    deadline = time.monotonic() + timeout
    qmp_host = session["qmp_socket_host"]
    _clean_work_dir(session)
    sockets.keep_old()
    # Taken after the link, which changes the socket's ctime.
    old_identity = common.socket_identity(qmp_host)

    def not_started(why):
        """Undo what was done for the launch; the guest was never paused."""
        pids.give_back()
        sockets.give_back(old_identity, qmp_host)
        _clean_work_dir(session)
        return common.SwitchFailed("%s: %s; the guest was not paused" % (vm, why),
                                   guest="old QEMU, PID %d, %s" % (session["pid"], session["runstate_before"]),
                                   recovered=True)

    try:
        pids.move_aside()
        proc, log_path, gate_open = start_new_qemu(session)
    except (identity.IdentityError, state.StateError, OSError) as e:
        raise not_started("the new QEMU was not started: %s" % e)
    try:
        new_start = common.starttime(proc.pid)
        fault.point("after-launch")
        record(new_pid=proc.pid, new_pid_starttime=new_start,
               old_socket_backup=session["qmp_socket"] + OLD_SOCKET_SUFFIX)
    except Exception as e:
        _unlaunch(proc, gate_open)
        raise not_started("the new QEMU's PID could not be recorded (%s), so it was not let start" % e)
    except BaseException:
        os.close(gate_open)
        raise
    _open_gate(gate_open)

    def rollback(why):
        """Kill the new QEMU, give the old one its QMP path back, and resume the guest there."""
        try:
            common.kill(proc.pid, new_start)
        except common.Survived as e:
            raise common.SwitchFailed(
                "%s: cpr-transfer could not roll back (%s): %s; the old QEMU (PID %d) is left paused, since "
                "resuming it would run the guest twice. Kill the new QEMU, then cont on %s%s"
                % (vm, why, e, session["pid"], session["qmp_socket"], OLD_SOCKET_SUFFIX),
                guest="old QEMU, PID %d, paused; new QEMU PID %d alive" % (session["pid"], proc.pid),
                recovered=False)
        proc.poll()
        sockets.give_back(old_identity, qmp_host)
        pids.give_back()
        runstate = common.resume_old(conn, session["runstate_before"])
        _clean_work_dir(session)
        log = _log_tail(log_path, launch_argv(session))
        raise common.SwitchFailed(
            "%s: cpr-transfer rolled back: %s%s; the guest is %s on the old QEMU (PID %d), which keeps its "
            "QMP socket" % (vm, why, " (its log: %s)" % log if log else "", runstate, session["pid"]),
            guest="old QEMU, PID %d, %s" % (session["pid"], runstate), recovered=True)

    while not _listens(proc.pid, session["cpr_socket"]):
        if proc.poll() is not None:
            rollback("the new QEMU exited before listening (%s)" % _ended(proc.returncode))
        if time.monotonic() > deadline:
            rollback("the new QEMU did not listen on %s in %ss" % (session["cpr_socket"], timeout))
        # Before the pause, so a slower poll costs the guest nothing; with many switches at once, a poll every
        # millisecond took the CPU the new QEMUs needed to start.
        time.sleep(0.01)
    # A launcher that enters namespaces of its own would give the guest a tap and sockets elsewhere.
    moved = [kind for kind in sorted(identity.JOINED_NAMESPACES)
             if identity.namespace(proc.pid, kind) != identity.namespace(session["pid"], kind)]
    if moved:
        rollback("the new QEMU runs in other %s namespaces than the old one (its launcher moved it?)"
                 % ", ".join(moved))

    with turn.pause():
        # The others' pauses may have come first: the migration gets the whole timeout.
        deadline = time.monotonic() + timeout
        fault.point("before-migrate")
        try:
            conn.execute("migrate", {"channels": channels(session)})
        except QMPError as e:
            rollback("the old QEMU refused to migrate: %s" % e)
        status, stop = common.wait_migration(conn, deadline)
        if status != "completed":
            rollback("migration %s: %s" % (status or "timed out", common.migration_error(conn)))
        fault.point("after-completed")

        def new_alive(peer):
            if proc.poll() is not None:
                rollback("the new QEMU exited while loading the guest (%s)" % _ended(proc.returncode))
            return peer == proc.pid

        # Until the new QEMU is told to run the guest, any failure, expected or not, rolls back; after that
        # the old QEMU is never resumed.
        progress = {}
        try:
            new = common.connect_new(process.host_path(proc.pid, session["qmp_socket"]), old_identity, new_alive,
                                     deadline, qmp_timeout)
            if new is None:
                rollback("the new QEMU opened no QMP socket in %ss" % timeout)
            fault.point("after-exec")
            try:
                resume = common.resume_new(new, session["runstate_before"], deadline,
                                           lambda: (progress.update(cont_sent=True), record(mark=sessions.CONT_SENT)))
            finally:
                new.close()
        except common.SwitchFailed:
            raise
        except Exception as e:  # pylint: disable=broad-except
            if not progress.get("cont_sent"):
                rollback("the new QEMU did not take the guest over: %s" % e)
            common.kill(session["pid"], session["pid_starttime"])
            sockets.drop_old()
            pids.drop_old()
            raise common.SwitchFailed(
                "%s: the new QEMU (PID %d) was told to run the guest, then failed to confirm it: %s. The old QEMU "
                "was killed (it must never run the guest again). Check the VM with cpr.qemu.qemu_cpr_info; if it "
                "is not running, send cont on %s" % (vm, proc.pid, e, session["qmp_socket"]),
                guest="new QEMU, PID %d, told to run" % proc.pid, recovered=False)

    # The guest runs on the new QEMU: the old one must never run it again.
    fault.point("before-kill-old")
    try:
        common.kill(session["pid"], session["pid_starttime"])
    except common.Survived as e:
        raise common.SwitchFailed(
            "%s: the guest runs on the new QEMU (PID %d), but the old one (PID %d) %s. It is in postmigrate and "
            "must never be resumed: kill it" % (vm, proc.pid, session["pid"], str(e).split(" ", 3)[-1]),
            guest="new QEMU, PID %d, running; old QEMU PID %d alive" % (proc.pid, session["pid"]), recovered=False)
    sockets.drop_old()
    pids.drop_old()
    return {"new_pid": proc.pid, "new_pid_starttime": new_start, "stop": stop, "resume": resume}
