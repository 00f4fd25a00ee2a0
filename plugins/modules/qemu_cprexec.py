#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
module: qemu_cprexec
short_description: Switch a running VM to the new QEMU binary (step 2 of 3)
version_added: 0.1.0
description:
  - Second of three steps, after M(cpr.qemu.qemu_cprsave). Checks the VM and the new QEMU again, then
    pauses the guest, hands it to the new binary and resumes it, all within this one task, so no guest
    waits paused for the next Ansible task.
  - C(cpr-exec) migrates to a state file in the session's private state directory; QEMU exec's the new
    binary in the same process (same PID).
  - C(cpr-transfer) starts the new QEMU detached (it outlives this module, the SSH connection and
    Ansible) with its main and cpr channels on private UNIX sockets, migrates, resumes the new QEMU,
    then stops the old one.
  - The new QEMU starts paused (C(-S)) and is resumed by this module only if the guest was running, so
    the pause is measured from QEMU's own event timestamps and a paused guest stays paused.
  - If the switch fails and QEMU allows it, the guest is resumed on the old QEMU and the lock is
    released; RV(guest) says where the guest runs. Where it does not, the module fails with the
    recovery steps in its message and keeps the lock.
  - The switch runs in a child process of its own session, with no terminal and SIGHUP, SIGINT and
    SIGTERM ignored; the module waits for it. Ctrl-C, a dropped SSH connection or a killed module
    cannot interrupt a guest's pause, since the child finishes the switch and records its outcome in the
    VM's session. A switch that is itself killed (SIGKILL, the OOM killer) leaves a session that
    M(cpr.qemu.qemu_cpr_info) reports as stuck and M(cpr.qemu.qemu_cpr_recover) settles.
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
      - Reports what would happen; the guest is not touched.
  diff_mode:
    support: full
    details:
      - The diff shows the VM before and after the switch (RV(diff)) - its binary, QEMU version, PID, CPR
        dialect and machine type; in check mode, after as it would be (the PID null where a new QEMU would
        start).
      - With O(sessions), one diff per VM that switched or needed no switch, each headed by the VM's name.
      - A VM that already runs the new binary has equal before and after.
options:
  session:
    description:
      - The RV(cpr.qemu.qemu_cprsave#module:session) that M(cpr.qemu.qemu_cprsave) returned.
      - Exactly one of O(session) and O(sessions) is required.
    type: dict
  sessions:
    description:
      - Several VMs' sessions, switched at once, each in its own thread. Their re-checks and new QEMUs run side
        by side, their pauses one after another, each as short as a VM's alone.
      - One VM's failed switch never touches another's; RV(switches) has each VM's outcome and the
        task fails if any VM failed.
    type: list
    elements: dict
    version_added: 0.1.0
  argv:
    description:
      - The new QEMU's full argv, starting with the new binary, instead of the one the session derived
        (the VM's own argv on the new binary, machine type pinned to its versioned name).
      - Validated like the derived one. Must not contain C(-incoming), C(-S) or C(-daemonize), since
        the module adds what the dialect needs.
      - Only with O(session).
      - Secret values in it (C(data=), C(password=)) are masked in the results; to keep them out of
        the host's log of module invocations too, pass secrets with C(-object secret,file=...).
    type: list
    elements: str
  switch_timeout:
    description:
      - Seconds the switch may take from the pause to the guest running on the new QEMU before it is
        rolled back (or, where it cannot be, reported).
      - At least 5; a new QEMU needs that to start and load even on a busy host.
    type: float
    default: 60.0
seealso:
  - module: cpr.qemu.qemu_cprsave
  - module: cpr.qemu.qemu_cprload
"""

EXAMPLES = r"""
- name: Switch to the new binary
  cpr.qemu.qemu_cprexec:
    session: "{{ cpr_save.session }}"
  register: cpr_exec

- name: Switch with an argv of our own (for example a new device option)
  cpr.qemu.qemu_cprexec:
    session: "{{ cpr_save.session }}"
    argv: "{{ cpr_save.session.new_argv + ['-msg', 'timestamp=on'] }}"

- name: Switch the VMs checkpointed in a loop, all at once
  cpr.qemu.qemu_cprexec:
    sessions: "{{ cpr_saves.results | map(attribute='session') | list }}"
  register: cpr_execs
"""

RETURN = r"""
session:
  description: The session, input of M(cpr.qemu.qemu_cprload), now with the new QEMU's PID and the pause.
  returned: success
  type: dict
  contains:
    new_pid:
      description: PID of the new QEMU (the same as before for C(cpr-exec)).
      type: int
    pause_ms:
      description: >-
        Milliseconds from the old QEMU's C(STOP) event to the new QEMU's C(RESUME) event; null if the
        guest was paused before and stays paused.
      type: float
    step:
      description: V(switched).
      type: str
pause_ms:
  description: The guest's pause in milliseconds (see RV(session.pause_ms)).
  returned: success
  type: float
  sample: 12.4
new_pid:
  description: PID of the QEMU that runs the guest now.
  returned: success
  type: int
guest:
  description: Where the guest is after a failed switch.
  returned: failure after the checks
  type: str
  sample: old QEMU, PID 4242, running
recovered:
  description: Whether a failed switch left the guest running (or paused, as before) on the old QEMU.
  returned: failure after the checks
  type: bool
switches:
  description: With O(sessions), each VM's outcome, in the order of O(sessions).
  returned: always, with O(sessions)
  type: list
  elements: dict
  contains:
    vm:
      description: The VM's name.
      type: str
    failed:
      description: Whether this VM's switch failed.
      type: bool
    changed:
      description: Whether this VM was switched.
      type: bool
    msg:
      description: What happened to this VM.
      type: str
    session:
      description: The VM's session for M(cpr.qemu.qemu_cprload), as RV(session); absent if it failed.
      type: dict
    pause_ms:
      description: The VM's pause in milliseconds, as RV(pause_ms).
      type: float
    new_pid:
      description: PID of the QEMU that runs the VM now.
      type: int
    guest:
      description: Where the guest is after a failed switch, as RV(guest).
      type: str
    recovered:
      description: As RV(recovered).
      type: bool
diff:
  description:
    - In diff mode, the VM before and after the switch, named in both headers (as
      RV(cpr.qemu.qemu_cprsave#module:diff)).
    - With O(sessions), a list of them, one per VM that switched or needed no switch, in the order of O(sessions).
  returned: in diff mode, on success and, with O(sessions), when some VM failed
  type: raw
  sample:
    before:
      binary: /usr/bin/qemu-system-x86_64
      version: 10.0.2
      pid: 4242
      dialect: cpr-transfer
      machine_type: pc-q35-10.0
    after:
      binary: /usr/bin/qemu-system-x86_64
      version: 11.1.3
      pid: 4300
      dialect: cpr-transfer
      machine_type: pc-q35-10.0
    before_header: VM web1 (/run/vm/web1/qmp.sock)
    after_header: VM web1 (/run/vm/web1/qmp.sock)
error_kind:
  description: As RV(cpr.qemu.qemu_cprsave#module:error_kind).
  returned: failure, where known
  type: str
  sample: held
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.cpr.qemu.plugins.module_utils import diff, options, process, upgrade
from ansible_collections.cpr.qemu.plugins.module_utils.recovery import session
from ansible_collections.cpr.qemu.plugins.module_utils.qmp import HAS_QEMU_QMP, QEMU_QMP_IMPORT_ERROR


MIN_SWITCH_TIMEOUT = 5.0


def main():
    module = AnsibleModule(
        argument_spec=dict(
            session=dict(type="dict"),
            sessions=dict(type="list", elements="dict"),
            argv=dict(type="list", elements="str"),
            switch_timeout=dict(type="float", default=60.0),
            timeout=dict(type="float", default=5.0),
        ),
        mutually_exclusive=[("session", "sessions")],
        required_one_of=[("session", "sessions")],
        required_by={"argv": "session"},
        supports_check_mode=True,
    )
    if not HAS_QEMU_QMP:
        module.fail_json(msg=missing_required_lib("qemu.qmp"), exception=QEMU_QMP_IMPORT_ERROR)
    p = module.params
    if options.timeout_problem(p["timeout"]):
        module.fail_json(msg=options.timeout_problem(p["timeout"]))
    if p["switch_timeout"] < MIN_SWITCH_TIMEOUT:
        module.fail_json(msg="switch_timeout must be at least %s seconds (it is %s); nothing was changed"
                         % (MIN_SWITCH_TIMEOUT, p["switch_timeout"]))
    if p["sessions"] is not None:
        switches = upgrade.switch_at_once(p["sessions"], timeout=p["timeout"], switch_timeout=p["switch_timeout"],
                                          check_mode=module.check_mode)
        for outcome in switches:
            if "session" in outcome:
                outcome["session"] = session.public(outcome["session"])
        changed = any(o["changed"] for o in switches)
        failed = [o for o in switches if o["failed"]]
        diffs = diff.result(module._diff, diff.of_switches(switches))
        if failed:
            module.fail_json(msg="%d of %d VMs failed to switch: %s" % (
                len(failed), len(switches), "; ".join(o["msg"] for o in failed)), changed=changed, switches=switches,
                **diffs)
        module.exit_json(changed=changed, switches=switches, msg="; ".join(o["msg"] for o in switches)
                         or "no VM to switch", **diffs)
    # Only the secret values are hidden: masking the whole argv would mask
    # every option name wherever it appears in messages.
    module.no_log_values.update(process.secret_values(p["argv"] or []))
    try:
        changed, s, msg = upgrade.switch(p["session"], argv=p["argv"], timeout=p["timeout"],
                                         switch_timeout=p["switch_timeout"], check_mode=module.check_mode)
    except upgrade.UpgradeError as e:
        module.fail_json(msg=e.message, **e.details)
    module.exit_json(changed=changed, msg=msg, session=session.public(s), pause_ms=s.get("pause_ms"),
                     new_pid=s.get("new_pid", s.get("pid")), **diff.result(module._diff, diff.of_session(s)))


if __name__ == "__main__":
    main()
