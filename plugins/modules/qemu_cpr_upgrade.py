#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
module: qemu_cpr_upgrade
short_description: Live-upgrade a host's planned VMs in batches - checkpoint, switch and verify each
version_added: 0.1.0
description:
  - Runs the three steps of M(cpr.qemu.qemu_cprsave), M(cpr.qemu.qemu_cprexec) and M(cpr.qemu.qemu_cprload) for
    every VM given, O(parallel) at a time, in one process on the host. Within a batch the VMs' checks run side
    by side, their switches overlap (each in the detached child that no signal to the module reaches) and
    their verifications run side by side.
  - A batch starts only before O(deadline), while no earlier VM's pause exceeded O(pause_budget_ms), and while
    no earlier failure left a guest not known to run on its old QEMU as before. VMs whose batch does not start
    are reported V(skipped) with the reason.
  - One VM's failure never touches another's. The module fails, after every VM is reported, when a VM failed.
  - The P(cpr.qemu.live_upgrade#role) role runs it with the VMs its plan picked.
author:
  - cpr.qemu contributors (@cpr-qemu)
extends_documentation_fragment:
  - cpr.qemu.qmp
  - cpr.qemu._attributes
  - cpr.qemu._attributes.PLATFORM
  - cpr.qemu._attributes.ACTION_GROUP
attributes:
  check_mode:
    support: full
    details:
      - Every check of every VM runs; no VM is locked, armed or paused. Each result is V(planned).
  diff_mode:
    support: full
    details:
      - One diff per VM upgraded (or that would be) or already current, as RV(cpr.qemu.qemu_cprload#module:diff).
options:
  vms:
    description:
      - The VMs, in order, as the entries of P(cpr.qemu.upgrade_plan#filter) whose C(action) is V(upgrade); each result
        is its entry with the outcome added.
      - Each needs C(qmp_socket) and C(vm) (its label). A VM with a C(target_binary) moves to that binary in its
        C(target_root) (default V(/)), started by its C(launcher) (none - C(chroot) into C(target_root) unless
        that is V(/)), instead of O(new_binary), O(new_root) and O(launcher). C(switch_dialect), where set, is
        the VM's dialect instead of O(dialect). C(pid_before) and C(version_before) go into the result of a VM
        that is not switched.
    type: list
    elements: dict
    required: true
  new_binary:
    description: Absolute path of the new QEMU binary, inside O(new_root), for the VMs without their own.
    type: path
  new_root:
    description: Root directory of O(new_binary), as for M(cpr.qemu.qemu_cprsave).
    type: path
  launcher:
    description: For cpr-transfer, the command prefix that starts the new QEMU, as for M(cpr.qemu.qemu_cprsave).
    type: list
    elements: str
    default: []
  dialect:
    description: The CPR dialect, as for M(cpr.qemu.qemu_cprsave).
    type: str
    choices: [auto, cpr-exec, cpr-transfer, live-update]
    default: auto
  parallel:
    description:
      - How many VMs switch at once. Their checks, new QEMUs and verifications run side by side; their pauses
        come one after another, each as short as a VM's alone.
      - In check mode, where nothing is paused, at least 8 VMs are checked at once.
    type: int
    default: 1
  pause_budget_ms:
    description: No batch starts after one in which a VM's pause exceeded this many milliseconds.
    type: float
  deadline:
    description: End of the maintenance window, UTC, as C(YYYY-MM-DDTHH:MM:SSZ); no batch starts after it.
    type: str
  on_precheck_failure:
    description: A VM that fails its checks is V(skipped) (its guest untouched) or V(failed).
    type: str
    choices: [skip, fail]
    default: skip
  switch_timeout:
    description: Seconds one switch may take before it is rolled back, as for M(cpr.qemu.qemu_cprexec).
    type: float
    default: 60.0
  health_gate:
    description:
      - After each VM's switch and verification, check that the guest is well before the next batch - its
        runstate is what it was before the upgrade and, for a running guest, the QEMU guest agent answers
        C(guest-ping) where the VM has an agent channel (a C(-chardev socket) QEMU listens on, for a
        virtio-serial port named C(org.qemu.guest_agent.0)), and the O(health_probes) of the VM connects.
      - A guest that fails it is V(failed) (its switch worked; C(health) says what failed) and no later batch
        starts.
      - Root talks to an agent socket only where the VM's QEMU itself listens on it, and only to that QEMU.
    type: bool
    default: false
  health_probes:
    description:
      - Per VM (by guest name or QMP socket), a probe the gate adds - V(tcp:HOST:PORT), a TCP connection from
        the host that must be accepted (nothing is sent).
    type: dict
    default: {}
  health_timeout:
    description: Seconds the gate may take per VM.
    type: float
    default: 10.0
seealso:
  - module: cpr.qemu.qemu_cprsave
  - module: cpr.qemu.qemu_cprexec
  - module: cpr.qemu.qemu_cprload
"""

EXAMPLES = r"""
- name: Upgrade the VMs the plan picked, two at a time, until 04:00 UTC
  cpr.qemu.qemu_cpr_upgrade:
    vms: "{{ plan | selectattr('action', 'equalto', 'upgrade') | list }}"
    new_binary: /usr/bin/qemu-system-x86_64
    parallel: 2
    pause_budget_ms: 500
    deadline: "2026-11-28T04:00:00Z"
  register: upgraded
"""

RETURN = r"""
results:
  description:
    - One result per VM of O(vms), in order - its entry with C(status) (V(upgraded), V(planned) in check mode,
      V(already-current), V(skipped) or V(failed)), C(reason), C(dialect), C(pid_after), C(version_after),
      C(pause_ms), C(paused_at) (QEMU's time of the pause, seconds since the epoch) and, for a VM that went to
      the switch, C(started_at) and C(finished_at) (its batch's time span, seconds since the epoch).
    - A failure also has C(guest) (where the guest is now) and C(recovered) (whether it runs on its old QEMU as
      before; false when that is not known). With O(health_gate), a VM that went through the gate has
      C(health) - C(healthy), C(how) (V(runstate), V(guest-agent) or V(tcp)), C(detail) and C(checks). A refused check is V(skipped) (or V(failed), see
      O(on_precheck_failure)); a lock another run holds is V(failed), its guest untouched.
  returned: always
  type: list
  elements: dict
halted:
  description: Why the host's batches stopped starting, or empty.
  returned: always
  type: str
  sample: "pause budget exceeded: VM web1 (/run/vm/web1/qmp.sock) paused 1210.4 ms (budget 1000 ms)"
diff:
  description: In diff mode, each VM's before and after, named in both headers.
  returned: in diff mode
  type: list
  elements: dict
"""

import calendar
import time

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.cpr.qemu.plugins.module_utils import diff, health, options, rollout
from ansible_collections.cpr.qemu.plugins.module_utils.qmp import HAS_QEMU_QMP, QEMU_QMP_IMPORT_ERROR

MIN_SWITCH_TIMEOUT = 5.0


def _deadline(text):
    """The deadline in seconds since the epoch, or None; ValueError if it is not YYYY-MM-DDTHH:MM:SSZ."""
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")) if text else None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            vms=dict(type="list", elements="dict", required=True),
            new_binary=dict(type="path"),
            new_root=dict(type="path"),
            launcher=dict(type="list", elements="str", default=[]),
            dialect=dict(type="str", default="auto", choices=["auto", "cpr-exec", "cpr-transfer", "live-update"]),
            parallel=dict(type="int", default=1),
            pause_budget_ms=dict(type="float"),
            deadline=dict(type="str"),
            on_precheck_failure=dict(type="str", default="skip", choices=["skip", "fail"]),
            switch_timeout=dict(type="float", default=60.0),
            health_gate=dict(type="bool", default=False),
            health_probes=dict(type="dict", default={}),
            health_timeout=dict(type="float", default=10.0),
            timeout=dict(type="float", default=5.0),
        ),
        supports_check_mode=True,
    )
    if not HAS_QEMU_QMP:
        module.fail_json(msg=missing_required_lib("qemu.qmp"), exception=QEMU_QMP_IMPORT_ERROR)
    p = module.params
    problems = [options.timeout_problem(p["timeout"])]
    if p["switch_timeout"] < MIN_SWITCH_TIMEOUT:
        problems.append("switch_timeout must be at least %s seconds (it is %s)" % (MIN_SWITCH_TIMEOUT, p["switch_timeout"]))
    if p["parallel"] < 1:
        problems.append("parallel must be 1 or more (it is %s)" % p["parallel"])
    if p["pause_budget_ms"] is not None and p["pause_budget_ms"] <= 0:
        problems.append("pause_budget_ms must be above 0 (it is %s)" % p["pause_budget_ms"])
    incomplete = [i for i, e in enumerate(p["vms"]) if not e.get("qmp_socket") or not e.get("vm")]
    if incomplete:
        problems.append("each of vms needs qmp_socket and vm (not: entries %s)" % incomplete)
    if not p["new_binary"] and any(e.get("target_binary") is None for e in p["vms"]):
        problems.append("new_binary is needed for the VMs without a target_binary of their own")
    for vm, probe in p["health_probes"].items():
        try:
            health.parse_probe(probe)
        except health.HealthError as e:
            problems.append("health_probes of %s: %s" % (vm, e.message))
    try:
        deadline = _deadline(p["deadline"])
    except ValueError:
        problems.append("deadline must be a UTC time YYYY-MM-DDTHH:MM:SSZ (it is '%s')" % p["deadline"])
    problems = [m for m in problems if m]
    if problems:
        module.fail_json(msg="; ".join(problems) + "; nothing was checked or changed")

    host = rollout.Host({"new_binary": p["new_binary"], "new_root": p["new_root"], "launcher": p["launcher"],
                         "dialect": p["dialect"]},
                        on_precheck_failure=p["on_precheck_failure"], timeout=p["timeout"],
                        switch_timeout=p["switch_timeout"], check_mode=module.check_mode,
                        gate=rollout.Gate(p["health_probes"], p["health_timeout"]) if p["health_gate"] else None)
    results, halted = host.run(p["vms"], p["parallel"], rollout.Limits(deadline, p["pause_budget_ms"]))
    changed = any(r["status"] in ("upgraded", "planned") for r in results)
    failed = [r for r in results if r["status"] == "failed"]
    out = dict(changed=changed, results=results, halted=halted, **diff.result(module._diff, host.diffs))
    if failed:
        module.fail_json(msg="%d of %d VMs failed: %s" % (len(failed), len(results),
                                                          "; ".join(r["reason"] or r["vm"] for r in failed)), **out)
    counts = dict((s, sum(1 for r in results if r["status"] == s)) for s in set(r["status"] for r in results))
    module.exit_json(msg=", ".join("%d %s" % (n, s) for s, n in sorted(counts.items())) or "no VM given", **out)


if __name__ == "__main__":
    main()
