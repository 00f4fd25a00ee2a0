# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The live-update dialect (QEMU builds carrying the live-update series): its rules and QMP conversation.

The series as posted: ``cprsave {file, mode}`` stops a running guest into
runstate save-vm and writes device state; ``cprexec {argv}`` exec's the new
binary in the same process, guest RAM kept in memfds; the new binary starts
paused (-S, which the series requires) and ``cprload {file}`` loads device
state and resumes the guest if it ran at cprsave.  From V6 the commands are
spelled cpr-save {filename, mode}, cpr-exec {argv} and cpr-load {filename}; V8
adds cpr-load's mode and replaces ``-machine memfd-alloc=on`` by
``-cpr-enable restart``.  The argument names are read from the QEMU's own
schema (query-qmp-schema) and must be one of those layouts.

After cprsave nothing can be taken back safely: a failed exec ends the
process in the series (the guest is lost), and a build refuses at cprexec
what it does not support.  So everything the series would refuse after
cprsave is checked before it (``blockers``).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import time

from ansible_collections.cpr.qemu.plugins.module_utils import fault
from ansible_collections.cpr.qemu.plugins.module_utils.dialects import switch as common
from ansible_collections.cpr.qemu.plugins.module_utils.qmp import QMPCommandError, QMPError

MODE = "live-update"
SPELLINGS = (("cprsave", "cprexec", "cprload"), ("cpr-save", "cpr-exec", "cpr-load"))
STATE_FD_ENV = "QEMU_CPR_STATE"

# Chardev backends the series marks capable of cpr (V5 "cpr for simple
# devices", then its pty and socket patches); any other (a file, say) must be
# reopened by the new QEMU, which the series allows only when the chardev says
# so (close-on-cpr=on up to V5, reopen-on-cpr=on from V6).
_CAPABLE_BACKENDS = ("null", "socket", "pty", "stdio", "serial", "mux")
_SOCKET_PREFIXES = ("unix:", "tcp:", "telnet:", "disconnected:")


def spelling(commands):
    """(save, exec, load) as a QEMU with these commands spells them, or None."""
    return next((s for s in SPELLINGS if s[0] in commands), None)


def protocol(facts):
    """How to talk to this build: commands, the file argument's name, whether load takes a mode.

    Returns (protocol, problems): a build whose commands take other arguments
    than any posted version of the series is not one the collection can drive.
    """
    names = spelling(facts["cpr_commands"])
    if names is None:
        return None, ["QEMU %s has no cprsave or cpr-save command (not a live-update build)" % facts["version"]]
    args = facts["cpr_arguments"]
    save, exec_, load = (args.get(n, {}) for n in names)
    file_key = next((k for k in ("file", "filename") if set(save) == {k, "mode"}), None)
    problems = []
    if file_key is None or "restart" not in save.get("mode", ()):
        problems.append("%s takes (%s), not a file name and a mode that offers restart"
                        % (names[0], ", ".join(sorted(save))))
    if set(exec_) != {"argv"}:
        problems.append("%s takes (%s), not argv" % (names[1], ", ".join(sorted(exec_))))
    load_mode = set(load) == {file_key, "mode"}
    if set(load) != {file_key} and not load_mode:
        problems.append("%s takes (%s), not %s" % (names[2], ", ".join(sorted(load)), file_key))
    if problems:
        return None, ["this build's live-update commands match no posted version of the series: %s"
                      % "; ".join(problems)]
    return {"save": names[0], "exec": names[1], "load": names[2], "file_key": file_key,
            "load_mode": load_mode, "early": names[0] == "cprsave"}, []


def _chardev_backend(filename):
    return "socket" if filename.startswith(_SOCKET_PREFIXES) else filename.split(":", 1)[0]


def chardev_blockers(facts, proto):
    """Chardevs the series refuses: at cprexec up to V5, as cpr-save blockers in V8 (V6/V7 do not check)."""
    if not proto["early"] and not proto["load_mode"]:
        return []
    option = "close-on-cpr" if proto["early"] else "reopen-on-cpr"
    given = facts["chardev_options"]
    reasons = []
    for c in facts["chardevs"]:
        opts = given.get(c["label"], {})
        backend = _chardev_backend(c["filename"])
        capable = backend in _CAPABLE_BACKENDS and not (backend == "socket" and (
            opts.get("tls-creds") or opts.get("websocket") == "on"))
        if not capable and opts.get(option) != "on":
            reasons.append("chardev %s (%s) is not capable of cpr and lacks %s=on: the series refuses it "
                           "after the guest is stopped" % (c["label"], c["filename"], option))
    return reasons


def ram_blockers(facts):
    """Guest RAM must survive the exec: memfd-alloc=on (V3-V7), or -cpr-enable restart and shared memfds (V8)."""
    if facts["memfd_alloc"] is not None:
        if facts["memfd_alloc"]:
            return []
        return ["started without -machine memfd-alloc=on: its RAM is volatile and would not survive the exec"]
    reasons = []
    if "restart" not in facts["cpr_enable"]:
        reasons.append("started without -cpr-enable restart (this build has no memfd-alloc): the series "
                       "refuses cpr-save")
    for mem in facts["memory_backends"]:
        if mem["kind"] not in ("memory-backend-memfd", "memory-backend-file") or not mem["share"]:
            reasons.append("memory backend '%s' (%s, share=%s) is volatile: the series needs a "
                           "memory-backend-memfd or -file with share=on"
                           % (mem["id"], mem["kind"], "on" if mem["share"] else "off"))
    return reasons


def blockers(facts):
    """Reasons this VM cannot be live-upgraded by the series, checked before cprsave."""
    proto, reasons = protocol(facts)
    if proto is None:
        return reasons
    if facts["runstate"] == "paused":
        reasons.append("the guest is paused: the series' cprsave stops only a running guest into runstate "
                       "save-vm and its cprexec refuses any other runstate; resume it, or use another dialect")
    reasons += ram_blockers(facts)
    reasons += chardev_blockers(facts, proto)
    if facts["vfio_devices"]:
        reasons.append("VFIO devices (%s): the series unmaps their DMA inside cprexec and refuses there if the "
                       "kernel lacks VFIO_UPDATE_VADDR; the collection does not take that risk"
                       % ", ".join(facts["vfio_devices"]))
    return reasons


def arm(conn, session):
    """The series takes everything with the commands themselves: nothing to arm."""
    del conn, session


def disarm(conn):
    del conn


def is_armed(conn, session):
    del conn, session
    return True


def _file_args(proto, state_file):
    return {proto["file_key"]: state_file}


def _back_to_old(conn, session, why):
    """Resume the guest on the old QEMU (cprsave left it in save-vm) and raise SwitchFailed saying where it is."""
    vm, pid = session["vm"], session["pid"]
    try:
        runstate = common.resume_old(conn, session["runstate_before"])
    except QMPError as e:
        raise common.SwitchFailed(
            "%s: %s; the old QEMU (PID %d) refuses to resume the guest (%s): it is stopped there. Recovery: "
            "query-status on %s; if QEMU asks for a reset, system_reset then cont (the guest reboots), or "
            "restart the VM" % (vm, why, pid, e, session["qmp_socket"]),
            guest="old QEMU, PID %d, stopped" % pid, recovered=False)
    raise common.SwitchFailed("%s: %s; the guest is %s on the old QEMU (PID %d)" % (vm, why, runstate, pid),
                              guest="old QEMU, PID %d, %s" % (pid, runstate), recovered=True)


def _exec(conn, session, timeout):
    """cprexec, then wait until the process has exec'd (QMP hangs up) or says the exec failed."""
    proto, pid, start = session["protocol"], session["pid"], session["pid_starttime"]
    try:
        conn.execute(proto["exec"], {"argv": session["new_argv"] + ["-S"]})
    except QMPCommandError as e:
        _back_to_old(conn, session, "%s refused: %s" % (proto["exec"], e.desc))
    shutdown = conn.wait_event("SHUTDOWN", timeout)
    if shutdown is not None and not conn.wait_hangup(1.0) and common.alive(pid, start):
        # V6+: a failed execvp takes the shutdown path; with QEMU's shutdown
        # action pause (-no-shutdown) the process lives on, guest stopped.
        _back_to_old(conn, session, "the exec of %s failed (QEMU reported SHUTDOWN, reason %s, and lives on; "
                     "its log names the error)" % (session["new_binary"], shutdown.get("data", {}).get("reason")))
    if conn.connected and shutdown is None:
        _back_to_old(conn, session, "%s was accepted but QEMU did not exec within %ss" % (proto["exec"], timeout))


def _switch(conn, session, timeout, qmp_timeout):
    """cprsave, cprexec, cprload.  Returns {new_pid, stop, resume}; raises SwitchFailed."""
    proto = session["protocol"]
    vm, pid, start = session["vm"], session["pid"], session["pid_starttime"]
    deadline = time.monotonic() + timeout
    old_identity = common.socket_identity(session["qmp_socket_host"])
    running = session["runstate_before"] == "running"
    file_args = _file_args(proto, session["state_file"])
    load_args = dict(file_args, mode="restart") if proto["load_mode"] else file_args

    fault.point("before-migrate")
    try:
        conn.execute(proto["save"], dict(file_args, mode="restart"))
    except QMPCommandError as e:
        _back_to_old(conn, session, "%s refused: %s" % (proto["save"], e.desc))
    stop = conn.wait_event("STOP", 2.0) if running else None
    fault.point("after-stop")
    fault.point("after-completed")
    _exec(conn, session, timeout)

    same_process = common.same_process(
        pid, start,
        "%s: QEMU (PID %d) exited after %s (a failed exec ends the process in this series): the guest "
        "is lost. Its RAM went with the process. Recovery: restart the VM from its configuration "
        "(the guest reboots)." % (vm, pid, proto["exec"]))
    new = common.connect_new(session["qmp_socket_host"], old_identity, same_process, deadline, qmp_timeout)
    if new is None:
        raise common.SwitchFailed(
            "%s: QEMU (PID %d) exec'd %s but its QMP socket %s did not come up within %ss; the guest waits "
            "there, paused. Recovery: once the socket answers, send %s %s."
            % (vm, pid, session["new_binary"], session["qmp_socket"], timeout, proto["load"], _json(load_args)),
            guest="new QEMU, PID %d, not answering" % pid, recovered=False)
    fault.point("after-exec")
    try:
        new.execute(proto["load"], load_args)
        fault.point("after-cont")
        resume = new.wait_event("RESUME", max(1.0, deadline - time.monotonic())) if running else None
        if running and resume is None:
            raise QMPError("timeout", "%s returned but the guest did not resume" % proto["load"])
    except QMPError as e:
        raise common.SwitchFailed(
            "%s: the new QEMU (PID %d) did not load the guest: %s. Recovery: check query-status; if it is "
            "not running, retry %s %s, then cont." % (vm, pid, e, proto["load"], _json(load_args)),
            guest="new QEMU, PID %d, not resumed" % pid, recovered=False)
    finally:
        new.close()
    return {"new_pid": pid, "new_pid_starttime": start, "stop": stop, "resume": resume}


switch = common.paused_throughout(_switch)


def _json(args):
    return "{%s}" % ", ".join('"%s": "%s"' % kv for kv in sorted(args.items()))
