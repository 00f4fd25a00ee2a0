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
    C(cpr-save) from the commands the schema lists) and, per dialect, whether the VM is ready, with the
    reasons when it is not.
  - With O(target_binary), also reports the target QEMU's version, whether it still offers the
    VM's machine type, and whether the VM is outdated.
  - Also sets host facts, the drift inventory (RV(ansible_facts.cpr_qemu_vms) and RV(ansible_facts.cpr_qemu_summary))
    with, per VM, its running and installed QEMU build, whether its binary is still on disk, whether it is CPR-capable
    now, what blocks it and what to change at its next restart; small, every key always present, no command line.
    The filter P(cpr.qemu.drift_metrics#filter) turns them into a Prometheus textfile.
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
  - The facts describe the VMs this call inspected (every VM of the host when O(qmp_sockets) is empty). To have
    them gathered with the other facts (and so kept in a fact cache such as AWX's), list the module in the
    C(FACTS_MODULES) setting, for example C(ansible_facts_modules=['ansible.builtin.setup', 'cpr.qemu.qemu_cpr_info']);
    it needs no options.
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

- name: Refresh the drift inventory facts (in check mode too)
  cpr.qemu.qemu_cpr_info:
    target_binary: /usr/bin/qemu-system-x86_64

- name: VMs that are not CPR-capable, and what to change at their next restart
  ansible.builtin.debug:
    msg: "{{ ansible_facts.cpr_qemu_vms | rejectattr('cpr_capable') | items2dict(key_name='qmp_socket', value_name='next_restart') }}"

- name: Publish the drift inventory for node-exporter's textfile collector
  ansible.builtin.copy:
    content: "{{ ansible_facts.cpr_qemu_vms | cpr.qemu.drift_metrics(inventory_hostname) }}"
    dest: /var/lib/prometheus/node-exporter/cpr_qemu.prom
    mode: "0644"
"""

RETURN = r"""
ansible_facts:
  description: The drift inventory, as host facts.
  returned: always
  type: dict
  contains:
    cpr_qemu_vms:
      description:
        - One entry per VM, in the order of RV(vms). Every key is always present (null where unknown, for instance
          for a VM that could not be inspected).
      type: list
      elements: dict
      contains:
        name:
          description: The guest name from C(-name), or null.
          type: str
          sample: web1
        qmp_socket:
          description: The QMP socket the VM was inspected through; identifies the VM on the host.
          type: str
          sample: /run/vm/web1/qmp.sock
        pid:
          description: PID of its QEMU process, or null.
          type: int
          sample: 4242
        error_kind:
          description: >-
            Null when the VM was inspected; otherwise why not, as RV(vms[].error_kind) (V(busy), V(timeout), ...).
            RV(ansible_facts.cpr_qemu_vms[].blockers) then holds the message and the VM counts as not CPR-capable.
          type: str
        runstate:
          description: Its runstate (C(query-status)).
          type: str
          sample: running
        machine_type:
          description: The versioned machine type it runs.
          type: str
          sample: pc-q35-10.0
        running_version:
          description: The QEMU version it runs.
          type: str
          sample: 10.0.2
        running_package:
          description: The package string of the QEMU it runs.
          type: str
          sample: Debian 1:10.0.2+ds-2+deb13u1~bpo12+1
        binary_path:
          description: The binary its QEMU runs, as QEMU sees it (inside RV(ansible_facts.cpr_qemu_vms[].binary_root)).
          type: str
          sample: /usr/bin/qemu-system-x86_64
        binary_root:
          description: Its QEMU's root directory (C(/) unless it runs under chroot).
          type: str
          sample: /
        binary_state:
          description: >-
            V(present) when the file at RV(ansible_facts.cpr_qemu_vms[].binary_path) is the one QEMU runs;
            V(replaced) when another file is there now (as after a package upgrade); V(deleted) when none is.
          type: str
          choices: [present, replaced, deleted]
          sample: replaced
        installed_version:
          description: The QEMU version of O(target_binary), or null without it.
          type: str
          sample: 11.1.3
        installed_package:
          description: The package string of O(target_binary), or null without it.
          type: str
        outdated:
          description: >-
            With O(target_binary), RV(vms[].target.outdated) (the target is newer, or the VM's binary was replaced
            on disk). Without it, true when the VM's binary was replaced or deleted on disk, else null (unknown).
          type: bool
        cpr_capable:
          description: Whether a CPR dialect is ready for the VM now (RV(vms[].preferred_dialect) is set).
          type: bool
        preferred_dialect:
          description: RV(vms[].preferred_dialect).
          type: str
          sample: cpr-transfer
        offered_dialects:
          description: The dialects its QEMU offers, ready or not, in the order C(cpr-exec), C(live-update), C(cpr-transfer).
          type: list
          elements: str
          sample: [cpr-transfer]
        blockers:
          description: >-
            Empty when the VM is CPR-capable. Otherwise why not: the reasons of every dialect its QEMU offers (of
            every dialect when it offers none), each once, as RV(vms[].dialects) words them; or the error of a VM
            that could not be inspected.
          type: list
          elements: str
          sample: ["-machine aux-ram-share=on is not set: QEMU's auxiliary RAM (ROMs, video memory) would not survive the restart"]
        next_restart:
          description:
            - What to change in the VM's configuration at its next restart so that
              RV(ansible_facts.cpr_qemu_vms[].next_restart_dialect) becomes ready; empty when the VM is CPR-capable
              or no change the collection knows would help.
            - Each change removes one of RV(ansible_facts.cpr_qemu_vms[].blockers); the collection knows these -
              guest RAM in shared memory (C(-object memory-backend-memfd,id=ID,size=SIZE,share=on and -machine
              memory-backend=ID) instead of plain C(-m); C(share=on) on a memory backend), C(-machine aux-ram-share=on),
              C(queues=2) on a single-queue tap (cpr-transfer), and for the live-update series C(-machine memfd-alloc=on),
              C(-cpr-enable restart) and C(close-on-cpr=on) or C(reopen-on-cpr=on) on a chardev.
            - Blockers without a known change (a non-migratable device, a systemd service, an untrusted binary...) stay
              in RV(ansible_facts.cpr_qemu_vms[].blockers) and may still stand in the way.
          type: list
          elements: str
          sample:
            - -object memory-backend-memfd,id=ram0,size=4G,share=on and -machine memory-backend=ram0 (instead of QEMU's private anonymous 'pc.ram')
            - -machine aux-ram-share=on
        next_restart_dialect:
          description: >-
            The dialect RV(ansible_facts.cpr_qemu_vms[].next_restart) is for: of the offered dialects, the one left
            with the fewest other blockers, then needing the fewest changes. Null when there is no change to make.
          type: str
          sample: cpr-transfer
        managed_by:
          description: RV(vms[].managed_by) (V(libvirt) or null).
          type: str
        untrusted:
          description: Whether the collection does not trust the VM's QEMU binary (the reason is in the blockers).
          type: bool
    cpr_qemu_summary:
      description: Counts over RV(ansible_facts.cpr_qemu_vms); every key is always present.
      type: dict
      contains:
        vms:
          description: VMs in RV(ansible_facts.cpr_qemu_vms).
          type: int
          sample: 6
        inspected:
          description: VMs that could be inspected.
          type: int
        uninspected:
          description: VMs that could not be inspected (they count as not CPR-capable).
          type: int
        cpr_capable:
          description: VMs a CPR dialect is ready for now.
          type: int
          sample: 5
        not_cpr_capable:
          description: The other VMs.
          type: int
          sample: 1
        outdated:
          description: VMs whose RV(ansible_facts.cpr_qemu_vms[].outdated) is true.
          type: int
        binary_replaced:
          description: VMs whose binary was replaced on disk.
          type: int
        binary_deleted:
          description: VMs whose binary was deleted on disk.
          type: int
        fixable_at_restart:
          description: VMs with a non-empty RV(ansible_facts.cpr_qemu_vms[].next_restart).
          type: int
        managed_by_libvirt:
          description: VMs libvirt runs.
          type: int
        untrusted:
          description: VMs whose QEMU binary the collection does not trust.
          type: int
        preferred_dialects:
          description: Per dialect (C(cpr-exec), C(live-update), C(cpr-transfer), always all three), the VMs it is preferred for.
          type: dict
          sample: {cpr-exec: 2, live-update: 0, cpr-transfer: 3}
        installed_version:
          description: The QEMU version of O(target_binary), or null without it.
          type: str
          sample: 11.1.3
        installed_binary:
          description: O(target_binary), or null.
          type: str
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
        - Who the VM's QEMU runs as and how it is scheduled and limited, which a live upgrade keeps (a
          cpr-transfer starts the new QEMU with the same identity, or refuses before the pause).
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
        scheduling:
          description:
            - How the kernel schedules and limits it; policy, nice, CPUs and I/O priority as its main
              thread shows them (what the threads QEMU starts inherit).
            - A VM under C(SCHED_DEADLINE) or C(SCHED_EXT), with hard limits above the module's where the module
              lacks C(CAP_SYS_RESOURCE), or whose user could not run the new QEMU's threads beside the old one's
              (C(RLIMIT_NPROC)) is refused for C(cpr-transfer) before the pause.
          type: dict
          contains:
            policy:
              description: The scheduling policy's number (0 C(SCHED_OTHER), 1 C(SCHED_FIFO), 2 C(SCHED_RR),
                3 C(SCHED_BATCH), 5 C(SCHED_IDLE), 6 C(SCHED_DEADLINE)).
              type: int
            reset_on_fork:
              description: Whether the processes and threads it starts begin without its real-time policy and
                negative nice (C(SCHED_RESET_ON_FORK)).
              type: bool
            rt_priority:
              description: Its real-time priority (0 outside C(SCHED_FIFO) and C(SCHED_RR)).
              type: int
            nice:
              description: Its nice value.
              type: int
            cpus:
              description: The CPUs it may run on.
              type: list
              elements: int
            io_priority:
              description:
                - Its I/O priority as C([class, level]) (class 1 C(realtime), 2 C(best-effort), 3 C(idle), whose
                  level is always 0); where it has none of its own, the one its policy and nice give. Null where it
                  cannot be asked.
              type: list
              elements: int
            oom_score_adj:
              description: Its OOM score adjustment.
              type: int
            coredump_filter:
              description: Which of its memory a core dump holds (C(/proc/PID/coredump_filter), systemd's
                C(CoredumpFilter=)), as an integer; null where it cannot be read.
              type: int
            thp_disabled:
              description: Whether transparent huge pages are off for it (C(PR_SET_THP_DISABLE)). A kernel without
                them shows every process so; the mode that keeps them where QEMU asks for them
                (C(PR_THP_DISABLE_EXCEPT_ADVISED)) shows as on, and is not carried.
              type: bool
            limits:
              description: Its resource limits, each C([soft, hard]) by the name of C(RLIMIT_<NAME>), null for
                unlimited.
              type: dict
              sample: {NOFILE: [1024, 524288], CORE: [0, null]}
        transfer_refusals:
          description:
            - Why a C(cpr-transfer) could not start the new QEMU as this one runs, each also a reason C(cpr-transfer)
              is not ready; empty where it could, or where QEMU does not offer C(cpr-transfer).
            - The main process of a systemd service, an LSM label, a PID, time or user namespace of its own, a
              namespace another user namespace owns, the scheduling above, a working directory or cgroup that
              cannot be reached.
          type: list
          elements: str
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

from ansible_collections.cpr.qemu.plugins.module_utils import drift, options, process, qemu_binary, validation, vm_facts
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
        vms = vm_facts.inspect_each(p["qmp_sockets"], p["timeout"], target)
    else:
        vms = vm_facts.inspect_discovered(process.discover(), p["timeout"], target)
    vms.sort(key=lambda vm: vm["qmp_socket"])

    failed = [vm for vm in vms if "error" in vm]
    result = dict(changed=False, vms=vms, ansible_facts=drift.facts(vms, target))
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
