# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
name: upgrade_outcome
short_description: Each VM's result from one batch of a live upgrade
version_added: 0.1.0
description:
  - Joins what M(cpr.qemu.qemu_cprsave) (in a loop), M(cpr.qemu.qemu_cprexec) (with O(cpr.qemu.qemu_cprexec#module:sessions))
    and M(cpr.qemu.qemu_cprload) (in a loop) registered for a batch of VMs into one result per VM, as the
    P(cpr.qemu.live_upgrade#role) role reports them.
  - The sessions given to M(cpr.qemu.qemu_cprexec) must be those of the checkpoints that did not fail, in
    order, and M(cpr.qemu.qemu_cprload) must loop over the switches that did not fail, in order.
author:
  - cpr.qemu contributors (@cpr-qemu)
options:
  _input:
    description: The batch's entries of the plan made by P(cpr.qemu.upgrade_plan#filter), in order.
    type: list
    elements: dict
    required: true
  saves:
    description: What the looped M(cpr.qemu.qemu_cprsave) registered.
    type: dict
    required: true
  switch:
    description: What M(cpr.qemu.qemu_cprexec) registered (skipped if no checkpoint succeeded).
    type: dict
    required: true
  loads:
    description: What the looped M(cpr.qemu.qemu_cprload) registered.
    type: dict
    required: true
  host:
    description: The inventory host, recorded in each result.
    type: str
    required: true
  on_precheck_failure:
    description: A VM whose checkpoint was refused is V(skipped) (its guest untouched) or V(failed).
    type: str
    choices: [skip, fail]
    default: skip
  started_at:
    description: When the batch's checkpoints began, seconds since the epoch; recorded in each VM's result that went
      on to the switch.
    type: float
  finished_at:
    description: When the batch's verification ended, seconds since the epoch; recorded like O(started_at).
    type: float
"""

EXAMPLES = r"""
- name: Record the batch
  ansible.builtin.set_fact:
    results: >-
      {{ results + (batch | cpr.qemu.upgrade_outcome(saves=saves, switch=switch, loads=loads,
                                                     host=inventory_hostname)) }}
"""

RETURN = r"""
_value:
  description:
    - One result per VM of the batch, the plan entry with C(host), C(status) (V(upgraded), V(planned) in
      check mode, V(already-current), V(skipped) or V(failed)), C(reason), C(dialect), C(pid_after),
      C(version_after), C(pause_ms), C(paused_at) (QEMU's time of the pause, seconds since the epoch) and,
      for a failure, C(guest) (where the guest is) and C(recovered) (whether the guest runs on its old QEMU,
      as before; false when that is not known). A VM that went on to the switch also has C(started_at) and
      C(finished_at), when given.
    - A refused checkpoint is V(skipped) (or V(failed), see O(on_precheck_failure)) only when it was the VM's
      own pre-check; a lock held by another run, a module that died or an unreachable host are V(failed).
  type: list
  elements: dict
"""

from ansible.errors import AnsibleFilterError

UNPAUSED = "old QEMU, not paused"
UNKNOWN = "unknown: check it with cpr.qemu.qemu_cpr_info and settle it with cpr.qemu.qemu_cpr_recover"
HELD = "another live upgrade of this VM is in progress"


def _record(entry, host, status, reason, **more):
    record = dict(entry, host=host, status=status, reason=reason, pid_after=None, version_after=None,
                  pause_ms=None, paused_at=None)
    record.update(more)
    return record


def _refused(save):
    """Whether a failed qemu_cprsave was a pre-check refusal: the module answered and no other run holds the VM.

    qemu_cprsave never pauses a guest, but a lock held by another run (or left by an interrupted one), a module
    that died or a host that was unreachable are not the guest's own pre-checks."""
    msg = save.get("msg") or ""
    # (A refusal's result may carry an "exception" too: fail_json records the exception it was raised from.)
    return not (HELD in msg or save.get("unreachable") or "module_stderr" in save or "MODULE FAILURE" in msg)


def upgrade_outcome(batch, saves, switch, loads, host, on_precheck_failure="skip", started_at=None, finished_at=None):
    save_results = saves.get("results", [])
    if len(save_results) != len(batch):
        raise AnsibleFilterError("upgrade_outcome: %d checkpoints for a batch of %d VMs"
                                 % (len(save_results), len(batch)))
    switches = iter(switch.get("switches", []))
    loads_iter = iter(loads.get("results", []))
    out = []
    for entry, save in zip(batch, save_results):
        if save.get("failed"):
            refused = _refused(save)
            status = "skipped" if refused and on_precheck_failure == "skip" else "failed"
            out.append(_record(entry, host, status, save.get("msg", "the checkpoint failed"),
                               guest=UNPAUSED if refused or HELD in (save.get("msg") or "") else UNKNOWN,
                               recovered=refused or HELD in (save.get("msg") or "")))
            continue
        session = save.get("session") or {}
        if session.get("noop"):
            out.append(_record(entry, host, "already-current", save.get("msg", ""),
                               pid_after=entry.get("pid_before"), version_after=entry.get("version_before")))
            continue
        # From here on the VM went to the switch: its time span is the batch's.
        entry = dict(entry, started_at=started_at, finished_at=finished_at)
        outcome = next(switches, None)
        if outcome is None:
            # qemu_cprexec failed as a whole (it never reported this VM): where the guest is is unknown.
            out.append(_record(entry, host, "failed", switch.get("msg", "qemu_cprexec did not run"),
                               dialect=session.get("dialect"), guest=UNKNOWN, recovered=False))
            continue
        if outcome.get("failed"):
            # Only what the module says proves the guest safe; silence is no proof.
            out.append(_record(entry, host, "failed", outcome.get("msg"), dialect=session.get("dialect"),
                               guest=outcome.get("guest") or UNKNOWN, recovered=bool(outcome.get("recovered"))))
            continue
        load = next(loads_iter, {})
        switched = outcome.get("session") or {}
        if load.get("failed") or not load:
            out.append(_record(entry, host, "failed", load.get("msg", "qemu_cprload did not run"),
                               dialect=session.get("dialect"), pid_after=outcome.get("new_pid"),
                               pause_ms=outcome.get("pause_ms"), paused_at=switched.get("stop_time"),
                               guest="new QEMU, PID %s, not verified" % outcome.get("new_pid"), recovered=False))
            continue
        planned = bool(session.get("check_mode"))
        out.append(_record(entry, host, "planned" if planned else "upgraded",
                           save.get("msg") if planned else load.get("msg"), dialect=session.get("dialect"),
                           pid_after=load.get("new_pid"), version_after=load.get("new_version"),
                           pause_ms=load.get("pause_ms"), paused_at=switched.get("stop_time")))
    return out


class FilterModule(object):
    def filters(self):
        return {"upgrade_outcome": upgrade_outcome}
