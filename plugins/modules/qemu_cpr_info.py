#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
module: qemu_cpr_info
short_description: Report which running QEMU VMs can be live-upgraded, by which CPR dialect, and why not
version_added: 0.1.0
description:
  - Inspects running QEMU VMs on this host over QMP and C(/proc) and reports, for each VM,
    everything a live upgrade by CPR (checkpoint and restart) depends on.
  - Reports which CPR dialects the VM's QEMU speaks (upstream C(cpr-exec) and C(cpr-transfer)
    from the C(MigMode) enum in C(query-qmp-schema); the live-update series' C(cprsave) or
    C(cpr-save) from C(query-commands)) and, per dialect, whether the VM is ready, with the
    reasons when it is not.
  - With O(target_binary), also reports the target QEMU's version, whether it still offers the
    VM's machine type, and whether the VM is outdated.
  - Never changes anything; the guests are not paused.
author:
  - cpr.qemu contributors (@cpr-qemu)
extends_documentation_fragment:
  - cpr.qemu.qmp
  - cpr.qemu._attributes
  - cpr.qemu._attributes.INFO_MODULE
  - cpr.qemu._attributes.PLATFORM
  - cpr.qemu._attributes.ACTION_GROUP
options:
  qmp_sockets:
    description:
      - QMP UNIX socket paths of the VMs to inspect, as plain paths or C(unix:PATH).
      - When empty, every process on this host that names a QMP UNIX socket on its command line
        (C(-qmp unix:...), or C(-chardev socket,...) with C(-mon mode=control) or C(-object monitor-qmp))
        is discovered, whatever its binary is called (C(/usr/libexec/qemu-kvm) too). It is reported
        when that socket answers QMP as the process itself, or, when no socket answers (another client
        holds it), when its executable is root's alone. Each VM is inspected once, through the first of
        its QMP sockets that answers.
      - TCP monitors are refused.
    type: list
    elements: str
    default: []
  target_binary:
    description:
      - Absolute path of the QEMU binary the VMs would be upgraded to.
      - The binary is run (C(-version), C(-machine help)) to learn its version and machine types.
    type: path
  target_root:
    description:
      - Root directory in which O(target_binary) lives, for a QEMU that runs under C(chroot).
        The binary is then run as C(chroot ROOT BINARY).
    type: path
    default: /
notes:
  - A VM given in O(qmp_sockets) that cannot be inspected fails the module, after all other VMs
    were inspected. A discovered VM that cannot be inspected (for example because another client
    holds its monitor) is reported with RV(vms[].error) and a warning.
seealso:
  - name: QEMU CPR documentation
    description: Upstream description of the cpr-transfer and cpr-exec migration modes.
    link: https://www.qemu.org/docs/master/devel/migration/CPR.html
"""

EXAMPLES = r"""
- name: Report every VM on the host
  cpr.qemu.qemu_cpr_info:
  register: cpr

- name: List the VMs that can be live-upgraded now
  ansible.builtin.debug:
    msg: "{{ cpr.vms | selectattr('preferred_dialect') | map(attribute='name') | list }}"

- name: Check two VMs against the QEMU a package upgrade just installed
  cpr.qemu.qemu_cpr_info:
    qmp_sockets:
      - /run/vm/web1/qmp.sock
      - /run/vm/db1/qmp.sock
    target_binary: /usr/bin/qemu-system-x86_64
  register: cpr

- name: Find outdated VMs with a JMESPath query
  ansible.builtin.debug:
    msg: "{{ cpr.vms | community.general.json_query('[?target.outdated].name') }}"
"""

RETURN = r"""
vms:
  description: One entry per VM, sorted by QMP socket path.
  returned: always
  type: list
  elements: dict
  contains:
    qmp_socket:
      description: The QMP socket, as given or as discovered (through C(/proc/PID/root) for a QEMU in another root).
      type: str
      sample: /run/vm/web1/qmp.sock
    error:
      description: Why this VM could not be inspected; the other keys are then absent.
      type: str
      returned: when the VM could not be inspected
      sample: QMP socket /run/vm/web1/qmp.sock (QEMU PID 4242) is in use by another client; ...
    error_kind:
      description: >-
        A stable keyword for RV(vms[].error): V(missing), V(not-socket), V(permission), V(refused), V(busy),
        V(no-greeting), V(not-qmp), V(tcp-refused), V(timeout), V(disconnected), V(command), V(process).
      type: str
      returned: when the VM could not be inspected
    pid:
      description: PID of the QEMU process serving this socket (from the socket's peer credentials).
      type: int
      sample: 4242
    name:
      description: The guest name from C(-name), if any.
      type: str
      sample: web1
    binary:
      description: The binary the QEMU process runs.
      type: dict
      contains:
        path:
          description: Path as QEMU sees it (inside RV(vms[].binary.root)).
          type: str
          sample: /usr/bin/qemu-system-x86_64
        root:
          description: The process's root directory (C(/) unless it runs under chroot).
          type: str
          sample: /
        replaced_on_disk:
          description: >-
            True when the file QEMU was started from was deleted or replaced since (C(/proc/PID/exe)
            reads C((deleted))), as after a package upgrade.
          type: bool
        file_id:
          description: Device and inode of the running binary, to compare with another file.
          type: list
          elements: int
    version:
      description: QEMU version from C(query-version).
      type: str
      sample: 10.0.2
    package:
      description: QEMU package string from C(query-version).
      type: str
      sample: Debian 1:10.0.2+ds-2+deb13u1~bpo12+1
    runstate:
      description: Runstate from C(query-status).
      type: str
      sample: running
    argv:
      description: QEMU's command line, with secret values (C(data=), C(password=)) masked.
      type: list
      elements: str
    unknown_options:
      description: >-
        Options of the command line that neither the VM's QEMU binary nor the target binary said whether they
        take a value (each binary is asked, C(-version -NAME), as the VM's user). A VM with any is not upgraded.
      type: list
      elements: str
      sample: []
    options_error:
      description: Why the VM's own binary could not be asked about its options (untrusted, gone from disk), or null.
      type: str
    pidfile:
      description: >-
        The C(-pidfile) QEMU was given, as QEMU sees it, or null. The new QEMU of a cpr-transfer writes its own
        there, once the old one's has been moved aside (C(PIDFILE.cpr-old)) for the switch.
      type: str
      sample: /run/qemu-server/100.pid
    devices:
      description: >-
        Every memory backend, network backend and VFIO device the collection saw, with whether each upstream
        dialect carries it across and why not: the same reasons RV(vms[].dialects) holds.
      type: list
      elements: dict
      contains:
        id:
          description: The device's or backend's id (null for a C(-nic) without one).
          type: str
          sample: net0
        kind:
          description: Its QOM type, C(netdev TYPE), or C(vfio).
          type: str
          sample: netdev tap
        carried:
          description: "V(cpr-exec) and V(cpr-transfer): true when that dialect carries it across."
          type: dict
          sample: {cpr-exec: false, cpr-transfer: true}
        reasons:
          description: Per dialect that does not carry it, why.
          type: dict
    managed_by:
      description: >-
        V(libvirt) when libvirt runs the VM (its pidfile or QMP monitor lies in libvirt's directories); such a VM
        is never upgraded by this collection, since libvirt would lose track of its process. Null otherwise.
        Also returned with RV(vms[].error) when libvirt holds the VM's monitor (instead of a plain V(busy)).
      type: str
    accelerator:
      description: Accelerator in use (C(query-accelerators), else C(query-kvm) and the command line).
      type: str
      sample: kvm
    xen:
      description: Whether the VM runs on Xen.
      type: bool
    machine:
      description: The machine type.
      type: dict
      contains:
        given:
          description: As given on the command line (may be an alias such as C(q35)).
          type: str
          sample: q35
        type:
          description: The versioned machine type QEMU runs (QOM C(/machine) type).
          type: str
          sample: pc-q35-10.0
        alias:
          description: Whether RV(vms[].machine.given) is an alias of RV(vms[].machine.type).
          type: bool
    memory_backends:
      description: Guest RAM backends from C(query-memdev).
      type: list
      elements: dict
      contains:
        id:
          description: Backend id; C(pc.ram) is the implicit backend of plain C(-m).
          type: str
        kind:
          description: QOM type, for example C(memory-backend-memfd).
          type: str
        share:
          description: Whether the backend is shared (C(share=on)).
          type: bool
        size:
          description: Size in bytes.
          type: int
    aux_ram_share:
      description: The machine's C(aux-ram-share) property; null where this QEMU has no such property.
      type: bool
    memfd_alloc:
      description: The machine's C(memfd-alloc) property (live-update builds); null where absent.
      type: bool
    sandbox:
      description: Whether QEMU runs under C(-sandbox on).
      type: bool
    exec_denied:
      description: Whether C(-sandbox on,spawn=deny) forbids QEMU to exec a new binary.
      type: bool
    vfio_devices:
      description: VFIO devices of the VM.
      type: list
      elements: str
    migration:
      description: Migration state from C(query-migrate).
      type: dict
      contains:
        status:
          description: Migration status (C(none) when no migration ran).
          type: str
        blocked_reasons:
          description: Why QEMU would refuse to migrate (non-migratable devices and the like).
          type: list
          elements: str
    migration_modes:
      description: Values of QEMU's C(MigMode) enum.
      type: list
      elements: str
      sample: [normal, cpr-reboot, cpr-transfer, cpr-exec]
    cpr_exec_command:
      description: Whether QEMU has the C(cpr-exec-command) migration parameter.
      type: bool
    runs_as:
      description:
        - Who the VM's QEMU runs as, which a live upgrade keeps (a cpr-transfer starts the new QEMU with the same
          identity, or refuses before the pause).
      type: dict
      contains:
        uid:
          description: Effective user id.
          type: int
        gid:
          description: Effective group id.
          type: int
        groups:
          description: Supplementary groups.
          type: list
          elements: int
        umask:
          description: The process's umask (an integer; 18 is 0022).
          type: int
        cgroups:
          description: Every cgroup it is in (C(hierarchy), C(controllers), C(path)), v1 and v2.
          type: list
          elements: dict
        lsm_label:
          description: Its LSM label, or null where it has none (or is unconfined).
          type: str
        systemd_unit:
          description: The systemd service its cgroup names, or null. A QEMU that is the service's main process
            is ready for no dialect that changes the PID (C(cpr-transfer)).
          type: str
        systemd_main_pid:
          description: That service's main PID, from systemd, or null where systemd could not be asked.
          type: int
    untrusted:
      description:
        - Why the collection will not act for this VM, or null. A QEMU process is trusted only if the executable
          it runs (the inode, through C(/proc/PID/exe)) and every directory above it are owned by root and
          writable by neither group nor others (the rule of sshd's C(StrictModes)); otherwise someone other than
          root could have chosen what runs there. An untrusted VM is ready for no dialect, and nothing is probed,
          exec'd or launched for it.
      type: str
    cpr_commands:
      description: The live-update series' QMP commands this QEMU has.
      type: list
      elements: str
    cpr_arguments:
      description:
        - Per live-update command, its arguments as this QEMU's schema (C(query-qmp-schema)) defines them, the
          type of each (an enum's list of values). The modules send exactly these names, and refuse a build whose
          commands match no posted version of the series.
      type: dict
      sample: {cprsave: {file: str, mode: [reboot, restart]}, cprexec: {argv: "[str]"}, cprload: {file: str}}
    cpr_enable:
      description: The C(-cpr-enable) modes on QEMU's command line (version 8 of the live-update series).
      type: list
      elements: str
    chardevs:
      description: The VM's chardevs as C(query-chardev) reports them.
      type: list
      elements: dict
      contains:
        label:
          description: The chardev's id.
          type: str
        filename:
          description: Its backend and address as QEMU describes it (C(file), C(unix:PATH,server=on), ...).
          type: str
    chardev_options:
      description: The C(-chardev) options of QEMU's command line, by chardev id (C(close-on-cpr), C(reopen-on-cpr)...).
      type: dict
    session:
      description:
        - The VM's live-upgrade session, or null. A session with RV(vms[].session.stuck) was interrupted (its
          process is gone), and M(cpr.qemu.qemu_cpr_recover) settles it. While a VM has a session it is ready
          for no dialect.
      type: dict
      contains:
        token:
          description: Identifies the session.
          type: str
        dialect:
          description: The CPR dialect of the upgrade.
          type: str
        step:
          description: How far it got - C(saved), C(switching), C(failed), C(switched).
          type: str
        started:
          description: When it started (seconds since the epoch).
          type: float
        age_s:
          description: Seconds since it started.
          type: float
        owner_alive:
          description: Whether the process that drives its switch still runs.
          type: bool
        stuck:
          description: True when it was interrupted (past C(saved) and no process drives it).
          type: bool
        old_qemu_alive:
          description: Whether the VM's QEMU from before the upgrade still runs.
          type: bool
        new_qemu_alive:
          description: C(cpr-transfer) only - whether the new QEMU it started still runs.
          type: bool
    dialects:
      description: Per CPR dialect (C(cpr-exec), C(live-update), C(cpr-transfer)), whether this VM can use it.
      type: dict
      sample:
        cpr-exec:
          offered: false
          via: null
          ready: false
          reasons: ["QEMU 10.0.2 does not offer migration mode cpr-exec (its modes: normal, cpr-reboot, cpr-transfer)"]
        cpr-transfer:
          offered: true
          via: migrate mode cpr-transfer
          ready: true
          reasons: []
    preferred_dialect:
      description: The first ready dialect in the order C(cpr-exec), C(live-update), C(cpr-transfer); null if none is ready.
      type: str
      sample: cpr-transfer
    target:
      description: How the VM relates to O(target_binary).
      type: dict
      returned: when O(target_binary) is given and the VM could be inspected
      contains:
        path:
          description: O(target_binary).
          type: str
        root:
          description: O(target_root).
          type: str
        version:
          description: The target's QEMU version.
          type: str
          sample: 11.1.3
        package:
          description: The target's package string from C(-version).
          type: str
        offers_machine_type:
          description: Whether the target offers the VM's versioned machine type.
          type: bool
        machine_pin_required:
          description: >-
            The VM was started with a machine alias that names another versioned type in the target,
            so the new QEMU must be given the versioned type explicitly.
          type: bool
        on_target_binary:
          description: Whether the VM already runs the target file itself (same device and inode, not replaced).
          type: bool
        outdated:
          description: Whether the target is a newer QEMU than the VM runs, or the VM's binary was replaced on disk.
          type: bool
        notes:
          description: What the operator should know about this target for this VM.
          type: list
          elements: str
target:
  description: The probed target binary.
  returned: when O(target_binary) is given
  type: dict
  contains:
    path:
      description: O(target_binary).
      type: str
    root:
      description: O(target_root).
      type: str
    version:
      description: Its QEMU version.
      type: str
    package:
      description: Its package string.
      type: str
    machine_types:
      description: Every machine type it offers.
      type: list
      elements: str
    machine_aliases:
      description: Its machine aliases and the versioned types they name.
      type: dict
    file_id:
      description: Device and inode of the target file.
      type: list
      elements: int
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.cpr.qemu.plugins.module_utils import options, process, qemu_binary, validation, vm_facts
from ansible_collections.cpr.qemu.plugins.module_utils.qmp import HAS_QEMU_QMP, QEMU_QMP_IMPORT_ERROR


def main():
    module = AnsibleModule(
        argument_spec=dict(
            qmp_sockets=dict(type="list", elements="str", default=[]),
            target_binary=dict(type="path"),
            target_root=dict(type="path", default="/"),
            timeout=dict(type="float", default=5.0),
        ),
        supports_check_mode=True,
    )
    if not HAS_QEMU_QMP:
        module.fail_json(msg=missing_required_lib("qemu.qmp"), exception=QEMU_QMP_IMPORT_ERROR)
    p = module.params
    if options.timeout_problem(p["timeout"]):
        module.fail_json(msg=options.timeout_problem(p["timeout"]))
    relative = validation.relative_paths(target_binary=p["target_binary"], target_root=p["target_root"])
    if relative:
        module.fail_json(msg="%s must be absolute paths" % ", ".join(relative))

    target = None
    if p["target_binary"]:
        try:
            target = qemu_binary.probe(p["target_binary"], p["target_root"])
        except qemu_binary.BinaryError as e:
            module.fail_json(msg=str(e))

    explicit = bool(p["qmp_sockets"])
    if explicit:
        vms = [vm_facts.inspect(s, p["timeout"], target) for s in p["qmp_sockets"]]
    else:
        vms = vm_facts.inspect_discovered(process.discover(), p["timeout"], target)
    vms.sort(key=lambda vm: vm["qmp_socket"])

    failed = [vm for vm in vms if "error" in vm]
    result = dict(changed=False, vms=vms)
    if target is not None:
        result["target"] = target
    if failed and explicit:
        module.fail_json(msg="could not inspect %d of %d VMs: %s"
                         % (len(failed), len(vms), "; ".join(vm["error"] for vm in failed)), **result)
    for vm in failed:
        module.warn("skipped %s: %s" % (vm["qmp_socket"], vm["error"]))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
