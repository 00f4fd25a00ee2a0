#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
module: qemu_cpr_recover
short_description: Settle live upgrades that were interrupted half-way
version_added: 0.1.0
description:
  - Finds every live upgrade of this host that an interruption left half-way (its session in the VM's
    root-only lock directory, with the step it reached and the process that drove it) and settles each
    deterministically from the facts of its QEMU processes.
  - A session whose switch was never started (checked and armed only) is released and QEMU disarmed.
  - When a new QEMU holds the guest (loaded, or already running), the switch is finished there - for
    C(cpr-transfer) the old QEMU is killed first, since it must never run the guest again once the new one
    may - and the guest resumed if it ran before.
  - When no new QEMU holds it, a migration under way is cancelled, the old QEMU gets its QMP socket back and
    the guest is resumed there.
  - A session whose switch ended but was not verified is verified (the guest resumed if needed).
  - A session that a module is working on (checking, arming, switching or verifying it; it holds an flock on
    the session's lock directory, which dies with it) or that another recovery is settling is left alone
    (C(in-progress)). A guest that no QEMU runs
    any more (C(lost)) or whose QEMU does not answer (C(stuck)) is reported with the recovery steps and its
    lock kept.
  - Then the switch's files are removed and the lock released.
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
      - Reports the sessions it would settle; nothing is changed.
  diff_mode:
    support: none
    details:
      - RV(settled) tells, per session, what was done and where the guest runs now.
options:
  qmp_sockets:
    description:
      - QMP socket paths (as given to M(cpr.qemu.qemu_cprsave)) of the VMs whose sessions to settle.
      - When empty, every session of this host.
    type: list
    elements: str
    default: []
notes:
  - The module fails, after settling every other session, when a session ends C(lost), C(stuck) or
    C(in-progress).
  - A session at step C(saved) is released even if another run is between its M(cpr.qemu.qemu_cprsave) and
    M(cpr.qemu.qemu_cprexec) tasks; that run's next step then fails with the guest untouched.
seealso:
  - module: cpr.qemu.qemu_cpr_info
  - module: cpr.qemu.qemu_cprexec
"""

EXAMPLES = r"""
- name: Settle whatever an interrupted run left on this host
  cpr.qemu.qemu_cpr_recover:
  register: settled

- name: Show where each guest is
  ansible.builtin.debug:
    msg: "{{ settled.settled | map(attribute='msg') | list }}"
"""

RETURN = r"""
settled:
  description: One entry per session found.
  returned: always
  type: list
  elements: dict
  contains:
    vm:
      description: The VM, as named in messages.
      type: str
    qmp_socket:
      description: Its QMP socket, as the upgrade was given it.
      type: str
    key:
      description: Names the VM's state (C(/run/cpr-qemu/KEY)).
      type: str
    step:
      description: The step the upgrade had reached (C(saved), C(switching), C(failed), C(switched)).
      type: str
    dialect:
      description: The CPR dialect of the upgrade.
      type: str
    old_version:
      description: The QEMU version the VM ran before the upgrade.
      type: str
    new_version:
      description: The QEMU version it was being upgraded to.
      type: str
    old_binary:
      description: The binary the VM ran before (C(path), and C(root) it ran in), for a rollback.
      type: dict
    action:
      description:
        - What was done - C(released), C(rolled-back), C(finished) (each with the guest running, or paused as
          it was before), or nothing - C(in-progress), C(lost), C(stuck), C(would-settle) (check mode).
      type: str
    guest:
      description: Where the guest is now.
      type: str
      sample: new QEMU, PID 4242, running
    recovered:
      description: True when the session is settled and the guest runs on exactly one QEMU.
      type: bool
    msg:
      description: What happened, or the recovery steps.
      type: str
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.cpr.qemu.plugins.module_utils import options
from ansible_collections.cpr.qemu.plugins.module_utils.recovery import recover
from ansible_collections.cpr.qemu.plugins.module_utils.qmp import HAS_QEMU_QMP, QEMU_QMP_IMPORT_ERROR


def main():
    module = AnsibleModule(
        argument_spec=dict(
            qmp_sockets=dict(type="list", elements="str", default=[]),
            timeout=dict(type="float", default=5.0),
        ),
        supports_check_mode=True,
    )
    if not HAS_QEMU_QMP:
        module.fail_json(msg=missing_required_lib("qemu.qmp"), exception=QEMU_QMP_IMPORT_ERROR)
    p = module.params
    if options.timeout_problem(p["timeout"]):
        module.fail_json(msg=options.timeout_problem(p["timeout"]))
    settled = recover.settle_all(p["qmp_sockets"], p["timeout"], module.check_mode)
    changed = any(s["recovered"] for s in settled)
    unsettled = [s for s in settled if not s["recovered"] and s["action"] != "would-settle"]
    msg = "; ".join(s["msg"] for s in settled) or "no live upgrade to settle"
    if unsettled:
        why = "; ".join(s["msg"] for s in unsettled)
        module.fail_json(msg="%d of %d sessions not settled: %s" % (len(unsettled), len(settled), why),
                         changed=changed, settled=settled)
    module.exit_json(changed=changed, settled=settled, msg=msg)


if __name__ == "__main__":
    main()
