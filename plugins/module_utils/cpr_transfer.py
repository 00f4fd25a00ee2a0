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
import subprocess
import time

from ansible_collections.cpr.qemu.plugins.module_utils import process
from ansible_collections.cpr.qemu.plugins.module_utils import switch as common
from ansible_collections.cpr.qemu.plugins.module_utils import validation
from ansible_collections.cpr.qemu.plugins.module_utils.qmp import QMPError

MODE = "cpr-transfer"
OLD_SOCKET_SUFFIX = ".cpr-old"


def channels(session):
    return [
        {"channel-type": "main", "addr": {"transport": "socket", "type": "unix", "path": session["main_socket"]}},
        {"channel-type": "cpr", "addr": {"transport": "socket", "type": "unix", "path": session["cpr_socket"]}},
    ]


def launch_argv(session):
    """The command that starts the new QEMU: launcher, new argv, paused, both incoming channels."""
    incoming = []
    for channel in channels(session):
        incoming += ["-incoming", json.dumps(channel, separators=(",", ":"))]
    return list(session["launcher"]) + session["new_argv"] + ["-S"] + incoming


def arm(conn, session):
    del session  # cpr-transfer needs no parameter but the mode
    conn.execute("migrate-set-capabilities", {"capabilities": [{"capability": "events", "state": True}]})
    conn.execute("migrate-set-parameters", {"mode": MODE})


def disarm(conn):
    conn.execute("migrate-set-parameters", {"mode": "normal"})


def is_armed(conn, session):
    del session
    return conn.execute("query-migrate-parameters").get("mode") == MODE


def _host(session, key):
    return process.host_path(session["pid"], session[key])


def start_new_qemu(session):
    """Start the new QEMU detached: its own session, no terminal, output to a log in the state dir.

    It must outlive this module, the SSH connection and Ansible.
    """
    log_path = os.path.join(session["state_dir_host"], "new-qemu.log")
    validation.create_private_file(log_path, session["uid"])
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(launch_argv(session), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, close_fds=True)
    return proc, log_path


def _log_tail(path, argv):
    """The end of the new QEMU's log, with every secret of argv (the command that started it) masked."""
    try:
        with open(path, errors="replace") as f:
            text = f.read()
    except OSError:
        return ""
    return " ".join(process.mask_text(text, process.secret_values(argv)).split())[-400:]


def switch(conn, session, timeout, qmp_timeout):
    """Start the new QEMU, migrate, resume the new one, kill the old one.  Raises SwitchFailed."""
    vm = session["vm"]
    deadline = time.monotonic() + timeout
    qmp_host = session["qmp_socket_host"]
    old_identity = common.socket_identity(qmp_host)
    backup = qmp_host + OLD_SOCKET_SUFFIX
    cpr_host, main_host = _host(session, "cpr_socket"), _host(session, "main_socket")
    for path in (cpr_host, main_host, backup):
        validation.remove_stale_socket(path)
    os.link(qmp_host, backup)

    proc, log_path = start_new_qemu(session)
    new_start = common.starttime(proc.pid)

    def rollback(why):
        """Kill the new QEMU, give the old one its QMP path back, and resume the guest there."""
        common.kill(proc.pid, new_start)
        proc.poll()
        if common.socket_identity(qmp_host) == old_identity:
            os.unlink(backup)  # the new QEMU never took the path over
        else:
            os.rename(backup, qmp_host)
        runstate = common.resume_old(conn, session["runstate_before"])
        for path in (cpr_host, main_host):
            validation.remove_stale_socket(path)
        log = _log_tail(log_path, launch_argv(session))
        raise common.SwitchFailed(
            "%s: cpr-transfer rolled back: %s%s; the guest is %s on the old QEMU (PID %d), which keeps its "
            "QMP socket" % (vm, why, " (new QEMU said: %s)" % log if log else "", runstate, session["pid"]),
            guest="old QEMU, PID %d, %s" % (session["pid"], runstate), recovered=True)

    while not common.listening(session["cpr_socket"]):
        if proc.poll() is not None:
            rollback("the new QEMU exited before listening (status %s)" % proc.returncode)
        if time.monotonic() > deadline:
            rollback("the new QEMU did not listen on %s in %ss" % (session["cpr_socket"], timeout))
        time.sleep(0.001)

    try:
        conn.execute("migrate", {"channels": channels(session)})
    except QMPError as e:
        rollback("the old QEMU refused to migrate: %s" % e)
    status, stop = common.wait_migration(conn, deadline)
    if status != "completed":
        rollback("migration %s: %s" % (status or "timed out", common.migration_error(conn)))

    def new_alive(peer):
        if proc.poll() is not None:
            rollback("the new QEMU exited while loading the guest (status %s)" % proc.returncode)
        return peer == proc.pid

    # Until the new QEMU runs the guest, any failure, expected or not, rolls back.
    try:
        new = common.connect_new(process.host_path(proc.pid, session["qmp_socket"]), old_identity, new_alive,
                                 deadline, qmp_timeout)
        if new is None:
            rollback("the new QEMU opened no QMP socket in %ss" % timeout)
        try:
            resume = common.resume_new(new, session["runstate_before"], deadline)
        finally:
            new.close()
    except common.SwitchFailed:
        raise
    except Exception as e:  # pylint: disable=broad-except
        rollback("the new QEMU did not take the guest over: %s" % e)

    # The guest runs on the new QEMU: the old one must never run it again.
    common.kill(session["pid"], session["pid_starttime"])
    os.unlink(backup)
    for path in (cpr_host, main_host):
        validation.remove_stale_socket(path)
    return {"new_pid": proc.pid, "new_pid_starttime": new_start, "stop": stop, "resume": resume}
