# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A live upgrade in three steps, one per module, for every dialect.

- ``prepare`` (qemu_cprsave): every check, the per-VM lock, QEMU armed.  The
  guest keeps running.
- ``switch`` (qemu_cprexec): checks again, then pause, hand-over and resume, all
  in this one call, so no guest ever waits paused for the next Ansible task.
  A failure is rolled back where QEMU allows it.
- ``verify`` (qemu_cprload): the guest runs the new binary in the state it had;
  the lock is released; the pause is reported.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import contextlib
import os
import time

from ansible_collections.cpr.qemu.plugins.module_utils import parallel, process, qemu_binary, readiness, validation, vm_facts
from ansible_collections.cpr.qemu.plugins.module_utils.privilege import identity
from ansible_collections.cpr.qemu.plugins.module_utils.recovery import detached, session as sessions, state
from ansible_collections.cpr.qemu.plugins.module_utils.dialects import cpr_exec, cpr_transfer, live_update
from ansible_collections.cpr.qemu.plugins.module_utils.dialects import switch as common
from ansible_collections.cpr.qemu.plugins.module_utils.qmp import QMPConnection, QMPError, event_time

DIALECTS = {cpr_exec.MODE: cpr_exec, cpr_transfer.MODE: cpr_transfer, live_update.MODE: live_update}
# Dialects in which the old QEMU process exec's the new binary: the binary is
# looked up in QEMU's own root, and device state goes through a state file.
EXEC_DIALECTS = (cpr_exec.MODE, live_update.MODE)


class UpgradeError(Exception):
    """A step failed.  ``details`` go into the module result (where the guest is, for one)."""

    def __init__(self, message, **details):
        super(UpgradeError, self).__init__(message)
        self.message = message
        self.details = details


def _label(facts, qmp_socket):
    return "VM %s (%s)" % (facts.get("name") or "?", qmp_socket)


def _connect(qmp_socket, timeout, label=None):
    try:
        return QMPConnection(qmp_socket, timeout=timeout).connect()
    except QMPError as e:
        raise UpgradeError("%s: %s" % (label or qmp_socket, e.message), error_kind=e.kind)


def _choose(dialect, facts, label):
    """The dialect to use and how this QEMU spells it."""
    dialects, preferred = readiness.assess(facts)
    if dialect == "auto":
        if preferred:
            return preferred, dialects[preferred]["via"]
        reasons = ["%s: %s" % (d, "; ".join(v["reasons"])) for d, v in sorted(dialects.items())]
        raise UpgradeError("%s cannot be live-upgraded: %s" % (label, " | ".join(reasons)))
    if not dialects[dialect]["ready"]:
        raise UpgradeError("%s is not ready for %s: %s (dialects ready: %s)"
                           % (label, dialect, "; ".join(dialects[dialect]["reasons"]),
                              preferred and ", ".join(d for d in dialects if dialects[d]["ready"]) or "none"))
    return dialect, dialects[dialect]["via"]


def _binary_root(dialect, pid, new_root):
    """Where the new binary is looked up: an exec happens inside QEMU's own root."""
    if dialect in EXEC_DIALECTS:
        return "/proc/%d/root" % pid
    return new_root or "/"


def _probe(path, root, facts, label, argv):
    """The new binary, judged (trust.py) and run as the VM's QEMU runs: no more rights than that.

    It is asked, too, which options of argv take a value, where the VM's own binary could not tell.
    """
    run_as = process.credentials(facts["pid"])
    try:
        target = qemu_binary.probe(path, root, run_as=run_as)
        qemu_binary.learn_options(path, root, argv, run_as)
    except qemu_binary.BinaryError as e:
        raise UpgradeError("%s: %s" % (label, e))
    if facts["machine"]["type"] not in target["machine_types"]:
        raise UpgradeError("%s: the new QEMU %s (%s) does not offer the VM's machine type %s"
                           % (label, path, target["version"], facts["machine"]["type"]))
    return target


def _release(version):
    return tuple(int(x) for x in version.split(".")[:2])


def _refuse_older_release(running, target, label):
    """QEMU loads the CPR state of its own release series or an older one only (seen here: 10.0 fails
    vmstate_load_state on 11.1's, after the pause): a move back across releases is refused before it."""
    if _release(target) < _release(running):
        raise UpgradeError("%s: QEMU %s cannot take over a guest from the newer release %s (QEMU loads the CPR "
                           "state of its own release series or an older one only); nothing was changed"
                           % (label, target, running))


def _check_new_argv(argv, facts, qmp_as_given, dialect, label, root):
    """Refuse, before any pause, a new argv the new QEMU could not take over with.  ``root`` is the host
    path of the root the new QEMU starts in, None where a launcher of the operator's decides it."""
    problems = validation.check_argv(argv, facts, qmp_as_given, dialect)
    old_argv = process.read_argv(facts["pid"])
    if dialect == cpr_transfer.MODE:
        problems += cpr_transfer.pidfile_problems({"pid": facts["pid"], "new_argv": argv,
                                                   "uid": process.credentials(facts["pid"])[0]})
    elif identity.argv_chroots(old_argv) is not None and process.credentials(facts["pid"])[0] != 0:
        problems.append("QEMU chrooted itself into %s and runs unprivileged: the new binary would be looked "
                        "up inside that chroot, where it cannot chroot again" % identity.argv_chroots(old_argv))
    if facts["accelerator"] == "kvm" and root is not None:
        problems += validation.kvm_problems(root, *process.credentials(facts["pid"]))
    if dialect == live_update.MODE:
        proto = live_update.protocol(facts)[0]
        problems += validation.check_live_update_fds(facts["pid"], argv, [c["label"] for c in facts["chardevs"]],
                                                     early=proto["early"])
    if problems:
        raise UpgradeError("%s: the new QEMU's argv would not take the guest over: %s"
                           % (label, "; ".join(problems)))


def prepare(qmp_socket, new_binary, dialect="auto", new_root=None, launcher=None, state_dir=None,
            timeout=5.0, check_mode=False):
    """qemu_cprsave: check everything, lock the VM, arm QEMU.  Returns (changed, session, msg)."""
    relative = validation.relative_paths(new_binary=new_binary, new_root=new_root, state_dir=state_dir)
    if relative:
        raise UpgradeError("%s must be absolute paths; nothing was changed" % ", ".join(relative))
    conn = _connect(qmp_socket, timeout)
    try:
        facts = vm_facts.gather(conn)
        label = _label(facts, qmp_socket)
        pid = facts["pid"]
        argv = process.read_argv(pid)
        qmp_as_given = process.qmp_socket_as_given(pid, argv, qmp_socket)
        if qmp_as_given is None:
            raise UpgradeError("%s: %s is not a QMP socket on QEMU's command line; the new QEMU could not "
                               "recreate it" % (label, qmp_socket))
        key = state.vm_key(qmp_socket)
        # An interrupted upgrade may have left the guest paused on the target binary: never call that current.
        if os.path.lexists(sessions.lock_path(state.lock_dir(key))):
            raise UpgradeError("%s: %s" % (label, sessions.held_message(state.lock_dir(key))), error_kind="held")
        chosen, via = _choose(dialect, facts, label)
        root = _binary_root(chosen, pid, new_root)
        target = _probe(new_binary, root, facts, label, argv)
        _refuse_older_release(facts["version"], target["version"], label)
        base = {"vm": label, "qmp_socket_host": qmp_socket, "pid": pid, "dialect": chosen, "via": via,
                "old_version": facts["version"], "new_version": target["version"], "old_binary": facts["binary"],
                "machine_type": facts["machine"]["type"], "new_binary": new_binary, "check_mode": check_mode}
        if target["file_id"] == facts["binary"]["file_id"] and not facts["binary"]["replaced_on_disk"]:
            base["noop"] = True
            return False, base, "%s already runs %s (QEMU %s)" % (label, new_binary, facts["version"])

        new_argv = validation.derive_argv(argv, new_binary, facts["machine"]["type"])
        if chosen in EXEC_DIALECTS:
            # The exec'd QEMU already runs as the user QEMU dropped to: its -run-with user= would try again
            # (setgroups as that user) and die, the guest with it.
            new_argv = identity.argv_for(new_argv, identity.capture(pid))
        # Where the new QEMU starts, unless a launcher of the operator's decides it.
        new_qemu_root = None if chosen == cpr_transfer.MODE and launcher else root
        _check_new_argv(new_argv, facts, qmp_as_given, chosen, label, new_qemu_root)

        work_dir = state_dir or state.work_dir_for(qmp_as_given)
        uid, gid, _groups = process.credentials(pid)
        s = dict(base, token=sessions.new_token(), started=time.time(), step="saved",
                 qmp_socket=qmp_as_given, pid_starttime=common.starttime(pid), uid=uid, gid=gid,
                 runstate_before=facts["runstate"], old_argv=argv,
                 new_root=root, new_qemu_root=new_qemu_root, new_binary_file_id=target["file_id"],
                 new_argv=new_argv, key=key, lock_dir=state.lock_dir(key), work_dir=work_dir,
                 pid_ns=os.readlink("/proc/self/ns/pid"),
                 protocol=live_update.protocol(facts)[0] if chosen == live_update.MODE else None,
                 state_file=os.path.join(work_dir, "state"),
                 main_socket=os.path.join(work_dir, "main.sock"),
                 cpr_socket=os.path.join(work_dir, "cpr.sock"),
                 launcher=list(launcher) if launcher else (
                     ["chroot", new_root] if new_root and new_root != "/" else []))
        if check_mode:
            try:
                os.close(state.open_dir(state.qemu_base(pid, work_dir), os.path.dirname(work_dir), (uid,)))
            except state.StateError as e:
                raise UpgradeError("%s: the work directory %s cannot be made: %s" % (label, work_dir, e))
            return True, s, "%s would be upgraded from QEMU %s to %s by %s" % (
                label, facts["version"], target["version"], chosen)
        try:
            state.lock_dir(key, create=True)
        except state.StateError as e:
            raise UpgradeError("%s: %s" % (label, e))
        # Held from before the session exists until QEMU is armed: a recovery leaves it alone meanwhile.
        with _holding(s, timeout):
            try:
                sessions.acquire(s["lock_dir"], s)
            except sessions.LockError as e:
                raise UpgradeError("%s: %s" % (label, e), error_kind="held")
            try:
                os.close(state.open_work_dir(state.qemu_base(pid, work_dir), work_dir, uid, gid, create=True))
                DIALECTS[chosen].arm(conn, s)
            except (state.StateError, QMPError) as e:
                sessions.release(s["lock_dir"])
                raise UpgradeError("%s: preparing %s failed: %s" % (label, chosen, e))
        return True, s, "%s is checked, locked and armed for %s to QEMU %s" % (label, chosen, target["version"])
    finally:
        conn.close()


@contextlib.contextmanager
def _holding(given, wait, **untouched):
    """sessions.hold() of the session ``given`` names (by its key, not by a path it gives), for the ``with``
    block, waiting up to ``wait`` seconds for a brief holder (a recovery); UpgradeError (with ``untouched``'s
    details) where another process (a recovery, another run) still holds it."""
    try:
        fd = sessions.hold(state.lock_dir(given.get("key") or ""), wait)
    except sessions.Held as e:
        raise UpgradeError("%s: %s" % (given.get("vm", "VM"), e), error_kind="held", **untouched)
    except (sessions.LockError, state.StateError) as e:
        raise UpgradeError("%s: %s" % (given.get("vm", "VM"), e), **untouched)
    try:
        yield
    finally:
        os.close(fd)


def _locked(given):
    try:
        return sessions.load(given)
    except sessions.LockError as e:
        raise UpgradeError("%s: %s" % (given.get("vm", "VM"), e))


def _recheck(conn, s, argv, label):
    """Everything that can be checked, checked again right before the pause; updates the session."""
    if conn.pid != s["pid"]:
        raise UpgradeError("%s: the QMP socket now belongs to PID %d, not %d" % (label, conn.pid, s["pid"]))
    facts = vm_facts.gather(conn)
    ready = readiness.assess(facts)[0][s["dialect"]]
    if not ready["ready"]:
        raise UpgradeError("%s is no longer ready for %s: %s" % (label, s["dialect"], "; ".join(ready["reasons"])))
    new_argv = list(argv) if argv else s["new_argv"]
    target = _probe(new_argv[0], s["new_root"], facts, label, new_argv)
    _check_new_argv(new_argv, facts, s["qmp_socket"], s["dialect"], label, s["new_qemu_root"])
    changed_argv = new_argv != s["new_argv"]
    s.update(new_argv=new_argv, new_binary=new_argv[0], new_version=target["version"],
             new_binary_file_id=target["file_id"], runstate_before=facts["runstate"])
    dialect = DIALECTS[s["dialect"]]
    if changed_argv or not dialect.is_armed(conn, s):
        dialect.arm(conn, s)
    fd = state.open_work_dir(state.qemu_base(s["pid"], s["work_dir"]), s["work_dir"], s["uid"], s["gid"])
    try:
        if s["dialect"] in EXEC_DIALECTS:
            state.create_file(fd, os.path.basename(s["state_file"]), s["uid"], s["gid"])
    finally:
        os.close(fd)
    if s["dialect"] == cpr_transfer.MODE:
        with cpr_transfer.SocketDir(s, s["pid"]):
            pass  # its directory must be reachable before the pause


def _abandon(conn, s):
    """Leave the VM as it was before qemu_cprsave: QEMU disarmed, nothing of the switch left, lock released."""
    try:
        DIALECTS[s["dialect"]].disarm(conn)
    except QMPError:
        pass
    state.remove_work_dir(state.qemu_base(s["pid"], s["work_dir"]), s["work_dir"], s["uid"])
    sessions.release(s["lock_dir"])


def _not_switching(given, argv, check_mode):
    """(changed, session, msg) of a session that needs no switch (already current, or check mode), else None."""
    if given.get("noop"):
        return False, given, "%s already runs %s" % (given.get("vm"), given.get("new_binary"))
    if check_mode or given.get("check_mode"):
        s = dict(given)
        if argv:
            s["new_argv"] = list(argv)
        return True, s, "%s would switch to %s by %s" % (s["vm"], s["new_binary"], s["dialect"])
    return None


def _outcome(given, run):
    """One VM's switch outcome as a dict: ``{vm, changed, failed, msg, session, pause_ms, new_pid}``, plus
    ``guest`` and ``recovered`` when the failure came after the checks."""
    try:
        changed, s, msg = run()
    except UpgradeError as e:
        return dict(e.details, vm=given.get("vm"), changed=False, failed=True, msg=e.message)
    except Exception as e:  # pylint: disable=broad-except
        # A fault of this code must not hide the other VMs' outcomes.
        return {"vm": given.get("vm"), "changed": False, "failed": True, "guest": "unknown", "recovered": False,
                "msg": "%s: the switch failed unexpectedly: %r. Check the VM with cpr.qemu.qemu_cpr_info and "
                       "settle it with cpr.qemu.qemu_cpr_recover" % (given.get("vm"), e)}
    return {"vm": s.get("vm"), "changed": changed, "failed": False, "msg": msg, "session": s,
            "pause_ms": s.get("pause_ms"), "new_pid": s.get("new_pid", s.get("pid"))}


def _switch_all(givens, argv, timeout, switch_timeout):
    """Every VM's switch, each in its own thread: their checks and new QEMUs side by side, their pauses one at a
    time (switch.Turns); runs in the detached child."""
    turns = common.Turns(len(givens))

    def one(given):
        turn = turns.member()
        try:
            return _outcome(given, lambda: _switch(given, argv, timeout, switch_timeout, turn))
        finally:
            turn.leave()
    return parallel.side_by_side(one, givens)


def _switch_detached(givens, argv, timeout, switch_timeout):
    """_switch_all in a child that no signal to the module reaches and that outlives it (detached.py)."""
    try:
        return detached.run(lambda: _switch_all(givens, argv, timeout, switch_timeout))
    except (detached.ChildDied, RuntimeError) as e:
        why = str(e).split("\n", 1)[0]
        return [{"vm": g.get("vm"), "changed": False, "failed": True, "guest": "unknown", "recovered": False,
                 "msg": "%s: %s. Where the guest is now is not known: check the VM with cpr.qemu.qemu_cpr_info "
                        "and settle it with cpr.qemu.qemu_cpr_recover" % (g.get("vm"), why)} for g in givens]


def switch(given, argv=None, timeout=5.0, switch_timeout=60.0, check_mode=False):
    """qemu_cprexec: re-check, then pause, hand the guest over and resume it.  Returns (changed, session, msg).

    The switch runs in a detached child (detached.py): whatever happens to this process, the pause ends.
    """
    done = _not_switching(given, argv, check_mode)
    if done:
        return done
    outcome = _switch_detached([given], argv, timeout, switch_timeout)[0]
    if outcome["failed"]:
        raise UpgradeError(outcome["msg"], **dict((k, outcome[k]) for k in ("guest", "recovered", "error_kind")
                                                  if k in outcome))
    return outcome["changed"], outcome["session"], outcome["msg"]


def switch_at_once(given_sessions, timeout=5.0, switch_timeout=60.0, check_mode=False):
    """qemu_cprexec with several sessions: switch each VM in its own thread (their pauses one at a time).

    One VM's failure never touches another's switch.  Returns one outcome per session, in order (_outcome).
    """
    outcomes, todo = [], []
    for given in given_sessions:
        done = _not_switching(given, None, check_mode)
        outcomes.append(_outcome(given, lambda d=done: d) if done else None)
        if not done:
            todo.append(given)
    switched = iter(_switch_detached(todo, None, timeout, switch_timeout) if todo else [])
    return [o if o is not None else next(switched) for o in outcomes]


def _switch(given, argv, timeout, switch_timeout, turn):
    """The switch itself (in the detached child, which holds the session throughout): re-check, pause (in its
    turn), hand over, resume."""
    with _holding(given, timeout, guest="as it was: this switch did not start", recovered=True):
        return _switch_held(given, argv, timeout, switch_timeout, turn)


def _switch_held(given, argv, timeout, switch_timeout, turn):
    s = _locked(given)
    label, dialect = s["vm"], DIALECTS[s["dialect"]]
    if s["step"] != "saved":
        raise UpgradeError("%s: this session is at step '%s', not 'saved'" % (label, s["step"]))
    untouched = {"guest": "old QEMU, PID %d, %s" % (s["pid"], s["runstate_before"]), "recovered": True}
    if not common.alive(s["pid"], s["pid_starttime"]):
        sessions.release(s["lock_dir"])
        raise UpgradeError("%s: QEMU PID %d exited since qemu_cprsave; nothing was changed" % (label, s["pid"]),
                           guest="no QEMU: PID %d exited before the switch" % s["pid"], recovered=False)

    try:
        conn = _connect(s["qmp_socket_host"], timeout, label)
    except UpgradeError as e:
        sessions.release(s["lock_dir"])
        raise UpgradeError("%s; the guest was not touched and the lock is released" % e.message,
                           **dict(untouched, **e.details))
    try:
        try:
            _recheck(conn, s, argv, label)
        except (UpgradeError, validation.ValidationError, state.StateError, QMPError) as e:
            _abandon(conn, s)
            raise UpgradeError("%s; the guest was not touched, QEMU is disarmed and the lock released"
                               % (e.message if isinstance(e, UpgradeError) else "%s: %s" % (label, e)), **untouched)
        me = os.getpid()
        s.update(step="switching", owner={"pid": me, "starttime": common.starttime(me)}, switch_started=time.time())
        sessions.update(s["lock_dir"], s)

        def record(mark=None, **fields):
            """Keep what a recovery must know: fields in the session, or (inside the pause) a mark."""
            if mark:
                sessions.mark(s["lock_dir"], mark)
            if fields:
                s.update(fields)
                sessions.update(s["lock_dir"], s)
        try:
            outcome = dialect.switch(conn, s, switch_timeout, timeout, record, turn)
        except common.SwitchFailed as e:
            if e.recovered:
                _abandon(conn, s)
            else:
                s.update(step="failed", failure=e.message)
                sessions.update(s["lock_dir"], s)
            raise UpgradeError(e.message, guest=e.guest, recovered=e.recovered)
        except (validation.ValidationError, state.StateError, QMPError, OSError) as e:
            s.update(step="failed", failure=str(e))
            sessions.update(s["lock_dir"], s)
            raise UpgradeError("%s: the switch failed unexpectedly: %s. Check the VM with cpr.qemu.qemu_cpr_info "
                               "and settle it with cpr.qemu.qemu_cpr_recover" % (label, e),
                               guest="unknown", recovered=False)
    finally:
        conn.close()

    stop, resume = outcome["stop"], outcome["resume"]
    new_pid = outcome["new_pid"]
    # Paths reached through the old QEMU's /proc entry die with it (cpr-transfer).
    s.update(qmp_socket_host=process.host_path(new_pid, s["qmp_socket"]))
    s.update(step="switched", new_pid=new_pid, new_pid_starttime=outcome["new_pid_starttime"],
             stop_time=event_time(stop) if stop else None, resume_time=event_time(resume) if resume else None,
             pause_ms=common.pause_ms(stop, resume))
    sessions.update(s["lock_dir"], s)
    return True, s, "%s switched to QEMU %s (PID %d) by %s%s" % (
        label, s["new_version"], s["new_pid"], s["dialect"],
        ", guest paused %.1f ms" % s["pause_ms"] if s["pause_ms"] is not None else ", guest stays paused")


def _verified(s, new_binary, new_pid):
    """qemu_cprload's result of a session: the VM, its QEMU before (binary, version, PID) and after, the dialect
    and the machine type; the pause is null unless set."""
    old = s.get("old_binary") or {}
    return {"vm": s.get("vm"), "dialect": s.get("dialect"), "machine_type": s.get("machine_type"),
            "old_binary": old.get("path"), "old_version": s.get("old_version"), "old_pid": s.get("pid"),
            "new_binary": new_binary, "new_version": s.get("new_version"), "new_pid": new_pid, "pause_ms": None}


def verify(given, timeout=5.0, check_mode=False):
    """qemu_cprload: check the guest on the new QEMU, release the lock.  Returns (changed, result, msg)."""
    if given.get("noop"):
        return False, _verified(given, (given.get("old_binary") or {}).get("path"), given.get("pid")), \
            "%s already runs %s" % (given.get("vm"), given.get("new_binary"))
    if given.get("check_mode"):
        # The PID is known already where the old QEMU exec's the new binary.
        return True, _verified(given, given.get("new_binary"), given.get("pid") if given.get("dialect") in
                               EXEC_DIALECTS else None), \
            "%s would be verified on QEMU %s" % (given.get("vm"), given.get("new_version"))
    with _holding(given, timeout):
        return _verify_held(given, timeout, check_mode)


def _verify_held(given, timeout, check_mode):
    s = _locked(given)
    label = s["vm"]
    if s["step"] != "switched":
        raise UpgradeError("%s: this session is at step '%s': qemu_cprexec has not switched the VM%s"
                           % (label, s["step"], " (%s)" % s["failure"] if s.get("failure") else ""))
    new_pid = s["new_pid"]
    conn = _connect(s["qmp_socket_host"], timeout, label)
    changed = False
    try:
        facts = vm_facts.switched(conn)
        problems = []
        if conn.pid != new_pid:
            problems.append("the QMP socket belongs to PID %d, not the new QEMU's %d" % (conn.pid, new_pid))
        if facts["binary"]["file_id"] != s["new_binary_file_id"]:
            problems.append("QEMU runs %s, not the new binary %s" % (facts["binary"]["path"], s["new_binary"]))
        if facts["version"] != s["new_version"]:
            problems.append("QEMU reports version %s, not %s" % (facts["version"], s["new_version"]))
        if s["dialect"] != live_update.MODE and facts["migration"]["status"] != "completed":
            problems.append("incoming migration is '%s', not completed" % facts["migration"]["status"])
        runstate = facts["runstate"]
        # Only a guest on the right QEMU is resumed: any other problem leaves it as it is.
        if s["runstate_before"] == "running" and runstate == "paused" and not check_mode and not problems:
            conn.execute("cont")
            runstate = conn.execute("query-status")["status"]
            changed = True
        if runstate != s["runstate_before"]:
            problems.append("the guest is %s, it was %s before the upgrade" % (runstate, s["runstate_before"]))
        if problems:
            raise UpgradeError("%s: the upgrade is not verified: %s. The lock %s is kept until this is resolved"
                               % (label, "; ".join(problems), sessions.lock_path(s["lock_dir"])))
    except QMPError as e:
        raise UpgradeError("%s: %s" % (label, e))
    finally:
        conn.close()
    result = dict(_verified(s, s["new_binary"], new_pid), pause_ms=s["pause_ms"], runstate=runstate)
    if not check_mode:
        # The device state file has served; the new QEMU's log stays in the lock directory (it still
        # writes to it).
        state.remove_work_dir(state.qemu_base(new_pid, s["work_dir"]), s["work_dir"], s["uid"])
        sessions.record_upgrade(s["lock_dir"], {
            "token": s["token"], "pid": new_pid, "pid_starttime": common.starttime(new_pid),
            "old_pid": s["pid"], "old_version": s["old_version"], "new_version": s["new_version"],
            "dialect": s["dialect"], "pause_ms": s["pause_ms"], "paused_at": s.get("stop_time"),
            "verified_at": time.time()})
        sessions.release(s["lock_dir"])
        changed = True
    return changed, result, "%s runs QEMU %s (PID %d), %s; guest paused %s" % (
        label, s["new_version"], new_pid, runstate,
        "%.1f ms" % s["pause_ms"] if s["pause_ms"] is not None else "throughout (it was paused before)")
