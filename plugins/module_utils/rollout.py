# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A host's planned VMs live-upgraded in batches, in one process (qemu_cpr_upgrade).

Each batch is the three steps of upgrade.py for up to ``parallel`` VMs: their checks (prepare) run side by
side, their switches overlap (switch_at_once, in the detached child: the pauses one at a time), their
verifications run side by side.
A batch starts only before the deadline, while no earlier VM went over the pause budget and no earlier
failure left a guest not known to run on its old QEMU. One VM's failure never touches another's.

Every VM gets one result: its plan entry with ``status`` (``upgraded``, ``planned`` in check mode,
``already-current``, ``skipped`` or ``failed``), ``reason``, ``dialect``, ``pid_after``, ``version_after``,
``pause_ms``, ``paused_at``, and for a VM that went to the switch ``started_at``/``finished_at`` (its batch's
time span); a failure also has ``guest`` (where the guest is) and ``recovered`` (whether it runs on its old
QEMU as before).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import time

from ansible_collections.cpr.qemu.plugins.module_utils import diff, health, parallel, upgrade, vm_facts

UNPAUSED = "old QEMU, not paused"
UNKNOWN = "unknown: check it with cpr.qemu.qemu_cpr_info and settle it with cpr.qemu.qemu_cpr_recover"


class Limits(object):
    """When batches stop starting: ``deadline`` (seconds since the epoch, or None) and ``pause_budget_ms``."""

    def __init__(self, deadline=None, pause_budget_ms=None, clock=time.time):
        self.deadline = deadline
        self.pause_budget_ms = pause_budget_ms
        self.clock = clock

    def stop_before(self, halted):
        """Why the next batch must not start, or ''."""
        if halted:
            return halted
        if self.deadline is not None and self.clock() > self.deadline:
            return "maintenance window closed at %s" % time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.deadline))
        return ""

    def stop_after(self, results):
        """Why no batch may start after one with these results, or ''."""
        lost = [r for r in results if r["status"] == "failed" and not r.get("recovered")]
        if lost:
            return "stopped after a failure that was not recovered: %s (guest: %s)" % (lost[0]["vm"], lost[0]["guest"])
        over = [r for r in results if self.pause_budget_ms is not None and r.get("pause_ms") is not None
                and r["pause_ms"] > self.pause_budget_ms]
        if over:
            return "pause budget exceeded: %s paused %s ms (budget %s ms)" % (
                over[0]["vm"], over[0]["pause_ms"], self.pause_budget_ms)
        return ""


def _result(entry, status, reason, **more):
    result = dict(entry, status=status, reason=reason, pid_after=None, version_after=None, pause_ms=None,
                  paused_at=None)
    result.update(more)
    return result


class Step(object):
    """What one step of the three did for a VM: ``value`` or ``error`` (the UpgradeError, or an unexpected
    exception as ``unexpected``); after a verification, ``health`` is the guest's health gate (health.check),
    when one was asked for."""

    def __init__(self, value=None, error=None, unexpected=None):
        self.value, self.error, self.unexpected = value, error, unexpected
        self.health = None


class Gate(object):
    """The guest health gate after each switch: ``probes`` maps a VM (its name or QMP socket) to the operator's
    ``tcp:HOST:PORT`` probe; every guest gets the runstate and, where the VM has one, the guest agent."""

    def __init__(self, probes=None, timeout=health.DEFAULT_TIMEOUT):
        self.probes, self.timeout = probes or {}, timeout

    def check(self, entry, session, verified):
        probe = self.probes.get(entry.get("vm")) or self.probes.get(entry.get("qmp_socket"))
        return health.check(session["qmp_socket_host"], verified["new_pid"],
                            expected_runstate=session.get("runstate_before") or "running", probe=probe,
                            timeout=self.timeout)


def _run(call):
    try:
        return Step(value=call())
    except upgrade.UpgradeError as e:
        return Step(error=e)
    except Exception as e:  # pylint: disable=broad-except
        # A fault of this code must not hide the other VMs' results.
        return Step(unexpected=e)


class Host(object):
    """One host's roll-out: the options every VM shares, and the batches."""

    def __init__(self, target, on_precheck_failure="skip", timeout=5.0, switch_timeout=60.0, check_mode=False,
                 gate=None):
        # target: the default new_binary, new_root, launcher and dialect; an entry's own
        # target_binary/target_root/launcher/switch_dialect win.
        self.target = target
        self.on_precheck_failure = on_precheck_failure
        self.timeout, self.switch_timeout, self.check_mode = timeout, switch_timeout, check_mode
        # The guest health gate (Gate), or None.
        self.gate = gate
        # Each VM's before and after (diff.py), for every VM that is upgraded or already current, in order.
        self.diffs = []

    def _prepare(self, entry):
        own = entry.get("target_binary") is not None
        return upgrade.prepare(
            entry["qmp_socket"], entry["target_binary"] if own else self.target["new_binary"],
            dialect=entry.get("switch_dialect") or self.target.get("dialect") or "auto",
            new_root=entry.get("target_root") if own else self.target.get("new_root"),
            launcher=(entry.get("launcher") or None) if own else self.target.get("launcher"),
            timeout=self.timeout, check_mode=self.check_mode)

    def _verify(self, pair):
        entry, session = pair
        step = _run(lambda: upgrade.verify(session, timeout=self.timeout, check_mode=self.check_mode))
        # After verify: QMP serves one client, and the gate asks the new QEMU too.
        if step.value is not None and self.gate is not None and not self.check_mode:
            step.health = self.gate.check(entry, session, step.value[1])
        return step

    def _checkpoint_result(self, entry, step):
        """The result of a VM whose checkpoint did not lead to a switch, or None."""
        if step.unexpected is not None:
            # prepare never pauses a guest; a lock it may have taken is released by the next run's recovery.
            return _result(entry, "failed", "%s: the checks failed unexpectedly: %r" % (entry["vm"], step.unexpected),
                           guest=UNPAUSED, recovered=True)
        if step.error is not None:
            # A lock another run holds is no pre-check of this VM's: it fails, the guest untouched.
            held = step.error.details.get("error_kind") == "held"
            status = "skipped" if not held and self.on_precheck_failure == "skip" else "failed"
            return _result(entry, status, step.error.message, guest=UNPAUSED, recovered=True)
        session, msg = step.value[1:]
        if session.get("noop"):
            self.diffs.append(diff.of_session(session))
            return _result(entry, "already-current", msg, pid_after=entry.get("pid_before"),
                           version_after=entry.get("version_before"))
        return None

    def _verified_result(self, entry, outcome, step, span):
        switched = outcome.get("session") or {}
        dialect = switched.get("dialect")
        if step.value is None:
            why = step.error.message if step.error is not None else "verification failed unexpectedly: %r" % (
                step.unexpected,)
            return _result(entry, "failed", why, dialect=dialect, pid_after=outcome.get("new_pid"),
                           pause_ms=outcome.get("pause_ms"), paused_at=switched.get("stop_time"),
                           guest="new QEMU, PID %s, not verified" % outcome.get("new_pid"), recovered=False, **span)
        verified, msg = step.value[1:]
        self.diffs.append(diff.of_verified(verified))
        planned = bool(switched.get("check_mode"))
        done = dict(dialect=dialect, pid_after=verified.get("new_pid"), version_after=verified.get("new_version"),
                    pause_ms=verified.get("pause_ms"), paused_at=switched.get("stop_time"), **span)
        if step.health is None:
            return _result(entry, "planned" if planned else "upgraded", msg, **done)
        if step.health["healthy"]:
            return _result(entry, "upgraded", "%s; health gate: %s" % (msg, step.health["detail"]),
                           health=step.health, **done)
        # The switch worked, but the guest is not well: the host stops here, and an operator must look.
        return _result(entry, "failed", "%s; but the guest failed its health gate (%s): %s"
                       % (msg, step.health["how"], step.health["detail"]), health=step.health,
                       guest="new QEMU, PID %s, health gate failed" % verified.get("new_pid"), recovered=False, **done)

    def batch(self, entries, clock=time.time):
        """The three steps for ENTRIES at once; one result per entry, in order."""
        span = {"started_at": clock()}
        saves = parallel.side_by_side(lambda e: _run(lambda: self._prepare(e)), entries)
        results = [self._checkpoint_result(e, s) for e, s in zip(entries, saves)]
        todo = [i for i, r in enumerate(results) if r is None]
        outcomes = upgrade.switch_at_once([saves[i].value[1] for i in todo], timeout=self.timeout,
                                          switch_timeout=self.switch_timeout, check_mode=self.check_mode) if todo else []
        switched = [(i, o) for i, o in zip(todo, outcomes) if not o["failed"]]
        loads = parallel.side_by_side(self._verify, [(entries[i], o["session"]) for i, o in switched])
        span["finished_at"] = clock()
        for i, outcome in zip(todo, outcomes):
            if outcome["failed"]:
                # Only what the switch says proves the guest safe; silence is no proof.
                results[i] = _result(entries[i], "failed", outcome.get("msg"), dialect=saves[i].value[1].get("dialect"),
                                     guest=outcome.get("guest") or UNKNOWN, recovered=bool(outcome.get("recovered")),
                                     **span)
        for (i, outcome), step in zip(switched, loads):
            results[i] = self._verified_result(entries[i], outcome, step, span)
        return results

    def run(self, entries, at_once, limits):
        """Every entry, ``at_once`` at a time, within LIMITS.  Returns (results, halted): a VM whose batch did
        not start is ``skipped`` with the reason, which is also ``halted``."""
        results, halted = [], ""
        if self.check_mode:
            # Nothing is paused in check mode: a plan checks as many VMs side by side as discovery inspects.
            at_once = max(at_once, vm_facts.INSPECTIONS_AT_ONCE)
        for start in range(0, len(entries), at_once):
            chunk = entries[start:start + at_once]
            stop = limits.stop_before(halted)
            if stop:
                halted = stop
                results.extend(_result(e, "skipped", stop, pid_after=e.get("pid_before"),
                                       version_after=e.get("version_before")) for e in chunk)
                continue
            done = self.batch(chunk, limits.clock)
            results.extend(done)
            halted = limits.stop_after(done)
        return results, halted
