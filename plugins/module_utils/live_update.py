# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The live-update dialect (QEMU builds carrying the live-update series): the QMP conversation.

``cprsave {file, mode: restart}`` stops the guest (runstate save-vm) and writes
device state; ``cprexec {args}`` exec's the new binary in the same process,
guest RAM kept in memfds recorded in the environment; the new binary starts
paused (-S, which the series requires) and ``cprload {file}`` loads device
state and resumes the guest if it ran before.  From the series' V6 on the
commands are spelled cpr-save, cpr-exec and cpr-load.

In the series a failed execvp ends in QEMU's shutdown path and the guest is
lost, so everything is validated before cprsave, and once cprsave has stopped
the guest nothing but the exec stands between it and cprload.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import time

from ansible_collections.cpr.qemu.plugins.module_utils import switch as common
from ansible_collections.cpr.qemu.plugins.module_utils.qmp import QMPCommandError, QMPError

MODE = "live-update"


def commands(session):
    """(save, exec, load) as this QEMU spells them."""
    return tuple(session["via"].split("/"))


def arm(conn, session):
    """The series takes everything with the commands themselves: nothing to arm."""
    del conn, session


def disarm(conn):
    del conn


def is_armed(conn, session):
    del conn, session
    return True


def switch(conn, session, timeout, qmp_timeout):
    """cprsave, cprexec, cprload.  Returns {new_pid, stop, resume}; raises SwitchFailed."""
    save, exec_, load = commands(session)
    vm, pid, start = session["vm"], session["pid"], session["pid_starttime"]
    deadline = time.monotonic() + timeout
    old_identity = common.socket_identity(session["qmp_socket_host"])
    running = session["runstate_before"] == "running"

    def back_to_old(why):
        runstate = common.resume_old(conn, session["runstate_before"])
        raise common.SwitchFailed("%s: %s; the guest is %s on the old QEMU (PID %d)" % (vm, why, runstate, pid),
                                  guest="old QEMU, PID %d, %s" % (pid, runstate), recovered=True)

    try:
        conn.execute(save, {"file": session["state_file"], "mode": "restart"})
    except QMPCommandError as e:
        back_to_old("%s refused: %s" % (save, e.desc))
    stop = conn.wait_event("STOP", 2.0) if running else None
    try:
        conn.execute(exec_, {"args": session["new_argv"] + ["-S"]})
    except QMPCommandError as e:
        back_to_old("%s refused: %s" % (exec_, e.desc))
    if not conn.wait_hangup(timeout):
        back_to_old("%s was accepted but QEMU did not exec within %ss" % (exec_, timeout))

    same_process = common.same_process(
        pid, start,
        "%s: QEMU (PID %d) exited after %s (a failed exec ends the process in this series): the guest "
        "is lost. Its RAM went with the process. Recovery: restart the VM from its configuration "
        "(the guest reboots)." % (vm, pid, exec_))
    new = common.connect_new(session["qmp_socket_host"], old_identity, same_process, deadline, qmp_timeout)
    if new is None:
        raise common.SwitchFailed(
            "%s: QEMU (PID %d) exec'd %s but its QMP socket %s did not come up within %ss; the guest waits "
            "there, paused. Recovery: once the socket answers, send %s {\"file\": \"%s\"}."
            % (vm, pid, session["new_binary"], session["qmp_socket"], timeout, load, session["state_file"]),
            guest="new QEMU, PID %d, not answering" % pid, recovered=False)
    try:
        new.execute(load, {"file": session["state_file"]})
        resume = new.wait_event("RESUME", max(1.0, deadline - time.monotonic())) if running else None
        if running and resume is None:
            raise QMPError("timeout", "%s returned but the guest did not resume" % load)
    except QMPError as e:
        raise common.SwitchFailed(
            "%s: the new QEMU (PID %d) did not load the guest: %s. Recovery: check query-status; if it is "
            "not running, retry %s {\"file\": \"%s\"}, then cont." % (vm, pid, e, load, session["state_file"]),
            guest="new QEMU, PID %d, not resumed" % pid, recovered=False)
    finally:
        new.close()
    return {"new_pid": pid, "new_pid_starttime": start, "stop": stop, "resume": resume}
