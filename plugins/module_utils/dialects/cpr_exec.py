# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The cpr-exec dialect (upstream QEMU 10.2+): the QMP conversation, in one place.

QEMU saves device state to a file, exec's the new binary in the same process
(same PID) with guest RAM kept in its memfds, and the new binary loads the
file given to it with -incoming.  A failed execvp is recovered by QEMU itself
(migration 'failed', guest resumed); a new binary that execs but cannot load
loses the guest, which is why everything is validated before ``switch``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import time

from ansible_collections.cpr.qemu.plugins.module_utils import fault
from ansible_collections.cpr.qemu.plugins.module_utils.dialects import switch as common
from ansible_collections.cpr.qemu.plugins.module_utils.qmp import QMPError

MODE = "cpr-exec"


def exec_command(session):
    """The argv QEMU will exec: the new argv, paused, loading the state file."""
    return session["new_argv"] + ["-S", "-incoming", "file:" + session["state_file"]]


def arm(conn, session):
    """Set migration mode and exec command now, so that ``switch`` only has to migrate."""
    conn.execute("migrate-set-capabilities", {"capabilities": [{"capability": "events", "state": True}]})
    conn.execute("migrate-set-parameters", {"mode": MODE, "cpr-exec-command": exec_command(session)})


def disarm(conn):
    conn.execute("migrate-set-parameters", {"mode": "normal"})


def is_armed(conn, session):
    params = conn.execute("query-migrate-parameters")
    return params.get("mode") == MODE and params.get("cpr-exec-command") == exec_command(session)


def _switch(conn, session, timeout, qmp_timeout):
    """Pause, save, exec and resume.  Returns {new_pid, stop, resume}; raises SwitchFailed."""
    vm = session["vm"]
    deadline = time.monotonic() + timeout
    old_identity = common.socket_identity(session["qmp_socket_host"])
    fault.point("before-migrate")
    conn.execute("migrate", {"uri": "file:" + session["state_file"]})
    status, stop = common.wait_migration(conn, deadline)
    if status == "completed":
        fault.point("after-completed")
        # QEMU execs right after 'completed'; if the exec fails it reports
        # 'failed' next and resumes the guest itself.
        while conn.connected and status == "completed" and time.monotonic() < deadline:
            ev = conn.wait_event("MIGRATION", 0.05)
            if ev is not None:
                status = ev["data"]["status"]
    if status != "completed" or conn.connected:
        if conn.connected and status not in ("failed", "cancelled"):
            # Timed out mid-way: cancel before the guest may run again on this QEMU.
            status = common.cancel_migration(conn, time.monotonic() + qmp_timeout)
        why = migration_error_or(conn, status)
        runstate = common.resume_old(conn, session["runstate_before"])
        raise common.SwitchFailed(
            "%s: cpr-exec did not happen (%s); QEMU stayed on the old binary and the guest is %s there"
            % (vm, why, runstate), guest="old QEMU, PID %d, %s" % (session["pid"], runstate), recovered=True)

    pid, start = session["pid"], session["pid_starttime"]

    same_process = common.same_process(pid, start, lost_message(session, "QEMU (PID %d) exited after the exec" % pid))
    new = common.connect_new(session["qmp_socket_host"], old_identity, same_process, deadline, qmp_timeout)
    if new is None:
        raise common.SwitchFailed(
            "%s: QEMU (PID %d) exec'd %s but its QMP socket %s did not come up within %ss; the guest is "
            "paused in it (started with -S). Recovery: once the socket answers, check query-status and "
            "query-migrate, then send cont; if the process hangs, restart the VM from its configuration."
            % (session["vm"], pid, session["new_binary"], session["qmp_socket"], timeout),
            guest="new QEMU, PID %d, not answering" % pid, recovered=False)
    fault.point("after-exec")
    try:
        resume = common.resume_new(new, session["runstate_before"], deadline)
    except QMPError as e:
        new.close()
        raise common.SwitchFailed(lost_message(session, str(e)),
                                  guest="new QEMU, PID %d, not resumed" % pid, recovered=False)
    new.close()
    return {"new_pid": pid, "new_pid_starttime": start, "stop": stop, "resume": resume}


switch = common.paused_throughout(_switch)


def migration_error_or(conn, status):
    if conn.connected:
        return common.migration_error(conn)
    return "migration status %s" % status


def lost_message(session, what):
    return ("%s: %s. The guest's RAM is in QEMU's memfds and its device state in %s, but no QEMU is "
            "running the guest. Recovery: check the new QEMU's errors in the system journal, then restart "
            "the VM from its configuration (the guest reboots)." % (session["vm"], what, session["state_file"]))
