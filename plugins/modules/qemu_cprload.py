#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
module: qemu_cprload
short_description: Verify a live-upgraded VM on its new QEMU and release its lock (step 3 of 3)
version_added: 0.1.0
description:
  - Last of three steps, after M(cpr.qemu.qemu_cprexec). Connects to the new QEMU's QMP socket and
    checks that it is the new process, runs the new binary and version, reports the incoming
    migration C(completed), and holds the guest in the runstate it had before the upgrade.
  - Resumes the guest only if it was running before the upgrade and is found paused (a paused guest
    stays paused). Then removes the state file and releases the per-VM lock.
  - Returns the guest's pause, measured from QEMU's own event timestamps.
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
      - Verifies only; the guest is not resumed and the lock is kept.
  diff_mode:
    support: full
    details:
      - The diff shows the VM before the live upgrade and as verified on its new QEMU (RV(diff)) - its
        binary, QEMU version, PID, CPR dialect and machine type; in check mode, after as it would be.
      - A VM that already ran the new binary has equal before and after.
options:
  session:
    description:
      - The RV(cpr.qemu.qemu_cprexec#module:session) that M(cpr.qemu.qemu_cprexec) returned.
    type: dict
    required: true
seealso:
  - module: cpr.qemu.qemu_cprsave
  - module: cpr.qemu.qemu_cprexec
"""

EXAMPLES = r"""
- name: Verify the upgrade and release the lock
  cpr.qemu.qemu_cprload:
    session: "{{ cpr_exec.session }}"
  register: cpr_load

- name: Fail the play if the pause was too long
  ansible.builtin.assert:
    that: cpr_load.pause_ms is none or cpr_load.pause_ms < 500
"""

RETURN = r"""
pause_ms:
  description: >-
    Milliseconds from the old QEMU's C(STOP) event to the new QEMU's C(RESUME) event; null when the
    guest was paused before the upgrade (it stays paused) or the VM already ran the new binary.
  returned: success
  type: float
  sample: 11.6
dialect:
  description: The CPR dialect used.
  returned: success
  type: str
  sample: cpr-transfer
old_version:
  description: QEMU version before.
  returned: success
  type: str
  sample: 10.0.2
new_version:
  description: QEMU version now.
  returned: success
  type: str
  sample: 11.1.3
old_pid:
  description: PID of the QEMU before.
  returned: success
  type: int
new_pid:
  description:
    - PID of the QEMU now (the same for C(cpr-exec) and C(live-update)).
    - In check mode, null where a new QEMU would start (C(cpr-transfer)).
  returned: success
  type: int
runstate:
  description: The guest's runstate now.
  returned: when the upgrade was carried out
  type: str
  sample: running
vm:
  description: The VM, as named in messages.
  returned: success
  type: str
  sample: VM web1 (/run/vm/web1/qmp.sock)
machine_type:
  description: The VM's machine type, kept across the upgrade.
  returned: success
  type: str
  sample: pc-q35-10.0
old_binary:
  description: The binary the VM ran before, as its QEMU saw it.
  returned: success
  type: str
  sample: /usr/bin/qemu-system-x86_64
new_binary:
  description: The binary the VM runs now (in check mode, would run), as its QEMU sees it.
  returned: success
  type: str
diff:
  description: In diff mode, the VM before and after the upgrade, named in both headers (as
    RV(cpr.qemu.qemu_cprsave#module:diff)).
  returned: success, in diff mode
  type: dict
error_kind:
  description: As RV(cpr.qemu.qemu_cprsave#module:error_kind).
  returned: failure, where known
  type: str
  sample: held
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.cpr.qemu.plugins.module_utils import diff, options, upgrade
from ansible_collections.cpr.qemu.plugins.module_utils.qmp import HAS_QEMU_QMP, QEMU_QMP_IMPORT_ERROR


def main():
    module = AnsibleModule(
        argument_spec=dict(
            session=dict(type="dict", required=True),
            timeout=dict(type="float", default=5.0),
        ),
        supports_check_mode=True,
    )
    if not HAS_QEMU_QMP:
        module.fail_json(msg=missing_required_lib("qemu.qmp"), exception=QEMU_QMP_IMPORT_ERROR)
    if options.timeout_problem(module.params["timeout"]):
        module.fail_json(msg=options.timeout_problem(module.params["timeout"]))
    try:
        changed, result, msg = upgrade.verify(module.params["session"], timeout=module.params["timeout"],
                                              check_mode=module.check_mode)
    except upgrade.UpgradeError as e:
        module.fail_json(msg=e.message, **e.details)
    module.exit_json(changed=changed, msg=msg, **dict(result, **diff.result(module._diff, diff.of_verified(result))))


if __name__ == "__main__":
    main()
