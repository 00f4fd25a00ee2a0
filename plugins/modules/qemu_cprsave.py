#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
module: qemu_cprsave
short_description: Check, lock and arm a running QEMU VM for a live upgrade (step 1 of 3)
version_added: 0.1.0
description:
  - First of three steps that move a running guest to a new QEMU binary by CPR, with the guest
    paused only for a moment and never lost. Then M(cpr.qemu.qemu_cprexec) switches and
    M(cpr.qemu.qemu_cprload) verifies.
  - Runs every check the chosen dialect needs before any guest is paused (runstate, Xen, shared
    RAM, C(aux-ram-share), C(spawn=deny), migration blockers), validates the new binary (exists, is
    executable, runs, reports its version, offers the VM's versioned machine type) and the new QEMU's
    argv (same RAM backends, machine type pinned, the same QMP socket), takes a per-VM lock, and
    arms QEMU (migration mode, C(cpr-exec-command), migration events).
  - The guest keeps running. The returned RV(session) is the input of the next two steps.
  - A VM that already runs O(new_binary) (the same file, not replaced on disk) is left alone
    (C(changed=false)), and so are the next two steps given its session.
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
      - All checks run; no lock is taken and QEMU is not armed.
  diff_mode:
    support: full
    details:
      - The diff shows the VM before and after the live upgrade this step prepares (RV(diff)) - its binary,
        QEMU version, PID, CPR dialect and machine type - as it would be once switched; the same in check mode.
      - The new QEMU's PID is null where it is not known before the switch (C(cpr-transfer) starts a new
        process; C(cpr-exec) and C(live-update) keep the PID).
      - A VM that already runs O(new_binary) has equal before and after.
options:
  qmp_socket:
    description:
      - The VM's QMP UNIX socket, as a path on this host (as M(cpr.qemu.qemu_cpr_info) reports it).
    type: path
    required: true
  new_binary:
    description:
      - Absolute path of the QEMU binary to upgrade to.
      - For C(cpr-exec) and C(live-update) the path as the VM's QEMU sees it (inside its root, if it runs
        under chroot).
      - For C(cpr-transfer) the path inside O(new_root).
    type: path
    required: true
  dialect:
    description:
      - The CPR dialect. V(auto) picks the first the VM is ready for of V(cpr-exec), V(live-update)
        (QEMU builds carrying the live-update series, C(cprsave)/C(cprexec)/C(cprload) or C(cpr-save)/...)
        and V(cpr-transfer).
    type: str
    choices: [auto, cpr-exec, cpr-transfer, live-update]
    default: auto
  new_root:
    description:
      - C(cpr-transfer) only. Root directory the new QEMU runs in; O(new_binary) is checked there.
      - Without O(launcher), the new QEMU is then started as C(chroot NEW_ROOT NEW_BINARY ...).
    type: path
  launcher:
    description:
      - C(cpr-transfer) only. A command prefix that starts the new QEMU, for example one that enters a
        container or a chroot with the mounts QEMU needs. It must exec QEMU (keep the PID) and let
        QEMU see the VM's QMP socket directory at the same path as the old QEMU does.
      - It runs as root, already in the old QEMU's network, IPC, UTS and cgroup namespaces, where QEMU's user
        may listen on local addresses and abstract sockets, so it must not trust a local service there. It must
        leave QEMU in them; a switch whose new QEMU is found elsewhere is rolled back before the pause.
    type: list
    elements: str
  state_dir:
    description:
      - The work directory, as the QEMU processes see it, for what QEMU itself must reach at the same path
        before and after the switch - the cpr-exec and live-update state file, the cpr-transfer sockets.
        Created with mode 0700 for QEMU's user and removed after the upgrade.
      - Defaults to C(QMP_SOCKET.cpr) beside the VM's QMP socket, so that VMs whose sockets share one
        directory each have their own.
      - Root reaches it one directory at a time from QEMU's root, follows no symlink that anyone but root
        could have made, and creates and removes entries there only through the directory's descriptor.
    type: path
notes:
  - The session lock is C(/run/cpr-qemu/NAME-KEY/session.json), in a directory only root may use, one per
    VM (keyed by its QMP socket as QEMU was given it and the root QEMU runs in). While it exists no other
    run can upgrade the VM; M(cpr.qemu.qemu_cprload) releases it, and so does a failed switch that left the
    guest on the old QEMU.
seealso:
  - module: cpr.qemu.qemu_cprexec
  - module: cpr.qemu.qemu_cprload
  - module: cpr.qemu.qemu_cpr_info
"""

EXAMPLES = r"""
- name: Check, lock and arm the VM
  cpr.qemu.qemu_cprsave:
    qmp_socket: /run/vm/web1/qmp.sock
    new_binary: /usr/bin/qemu-system-x86_64
  register: cpr_save

- name: Switch to the new binary (the guest pauses for a moment)
  cpr.qemu.qemu_cprexec:
    session: "{{ cpr_save.session }}"
  register: cpr_exec

- name: Verify and release the lock
  cpr.qemu.qemu_cprload:
    session: "{{ cpr_exec.session }}"
  register: cpr_load

- name: Show the pause
  ansible.builtin.debug:
    msg: "{{ cpr_load.msg }}"
"""

RETURN = r"""
session:
  description:
    - The upgrade session, input of M(cpr.qemu.qemu_cprexec). Argv values that carry secrets are masked;
      the modules read the unmasked argv from the lock file.
  returned: success
  type: dict
  contains:
    vm:
      description: The VM, as named in messages.
      type: str
    token:
      description: Identifies this session; the lock holds the same token.
      type: str
    dialect:
      description: The CPR dialect chosen.
      type: str
      sample: cpr-exec
    pid:
      description: PID of the VM's QEMU now.
      type: int
    runstate_before:
      description: The guest's runstate before the upgrade.
      type: str
      sample: running
    old_version:
      description: QEMU version the VM runs now.
      type: str
    new_version:
      description: QEMU version of O(new_binary).
      type: str
    new_argv:
      description: The new QEMU's argv, without the C(-S) and C(-incoming) the modules add.
      type: list
      elements: str
    key:
      description: Names the VM's state (its lock directory C(/run/cpr-qemu/KEY)).
      type: str
    work_dir:
      description: The work directory, as QEMU sees it.
      type: str
    noop:
      description: True when the VM already runs O(new_binary); the next steps then do nothing.
      type: bool
      returned: when the VM already runs O(new_binary)
    check_mode:
      description: True when made in check mode; the next steps then only report.
      type: bool
dialect:
  description: The CPR dialect chosen.
  returned: success
  type: str
  sample: cpr-transfer
old_version:
  description: QEMU version the VM runs now.
  returned: success
  type: str
  sample: 10.0.2
new_version:
  description: QEMU version of O(new_binary).
  returned: success
  type: str
  sample: 11.1.3
diff:
  description:
    - In diff mode, the VM before and after the live upgrade, named in both headers.
    - RV(diff.before) is the VM as found; RV(diff.after) as it will be once switched.
  returned: success, in diff mode
  type: dict
  contains:
    before:
      description: The VM on its QEMU now.
      type: dict
      contains:
        binary:
          description: The binary the VM's QEMU runs, as QEMU sees it.
          type: str
          sample: /usr/bin/qemu-system-x86_64
        version:
          description: Its QEMU version.
          type: str
          sample: 10.0.2
        pid:
          description: Its QEMU's PID.
          type: int
        dialect:
          description: The CPR dialect that moves the VM.
          type: str
          sample: cpr-transfer
        machine_type:
          description: The VM's machine type, kept across the upgrade.
          type: str
          sample: pc-q35-10.0
    after:
      description:
        - The VM on its new QEMU, with the keys of RV(diff.before).
        - Its C(pid) is null for C(cpr-transfer), whose new QEMU does not run yet.
      type: dict
    before_header:
      description: The VM, as named in messages.
      type: str
      sample: VM web1 (/run/vm/web1/qmp.sock)
    after_header:
      description: The VM, as named in messages.
      type: str
      sample: VM web1 (/run/vm/web1/qmp.sock)
error_kind:
  description:
    - On failure, where it is one an automation may act on; V(held) - another run's session, or a module or a
      recovery working on this VM's session right now, held the VM, and this step did nothing.
  returned: failure, where known
  type: str
  sample: held
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.cpr.qemu.plugins.module_utils import diff, options, upgrade
from ansible_collections.cpr.qemu.plugins.module_utils.recovery import session
from ansible_collections.cpr.qemu.plugins.module_utils.qmp import HAS_QEMU_QMP, QEMU_QMP_IMPORT_ERROR


def main():
    module = AnsibleModule(
        argument_spec=dict(
            qmp_socket=dict(type="path", required=True),
            new_binary=dict(type="path", required=True),
            dialect=dict(type="str", default="auto", choices=["auto", "cpr-exec", "cpr-transfer", "live-update"]),
            new_root=dict(type="path"),
            launcher=dict(type="list", elements="str"),
            state_dir=dict(type="path"),
            timeout=dict(type="float", default=5.0),
        ),
        supports_check_mode=True,
    )
    if not HAS_QEMU_QMP:
        module.fail_json(msg=missing_required_lib("qemu.qmp"), exception=QEMU_QMP_IMPORT_ERROR)
    p = module.params
    if options.timeout_problem(p["timeout"]):
        module.fail_json(msg=options.timeout_problem(p["timeout"]))
    try:
        changed, s, msg = upgrade.prepare(
            p["qmp_socket"], p["new_binary"], dialect=p["dialect"], new_root=p["new_root"],
            launcher=p["launcher"], state_dir=p["state_dir"], timeout=p["timeout"],
            check_mode=module.check_mode)
    except upgrade.UpgradeError as e:
        module.fail_json(msg=e.message, **e.details)
    module.exit_json(changed=changed, msg=msg, session=session.public(s), dialect=s["dialect"],
                     old_version=s["old_version"], new_version=s["new_version"],
                     **diff.result(module._diff, diff.of_session(s)))


if __name__ == "__main__":
    main()
