# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Everything CPR needs to know about one running VM, from QMP and /proc together.

``gather`` collects plain data; readiness.py judges it; ``inspect`` does both for
one QMP socket and never raises for a VM it cannot reach: the report says why.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import threading

from ansible_collections.cpr.qemu.plugins.module_utils import parallel, process, qemu_binary, readiness
from ansible_collections.cpr.qemu.plugins.module_utils.privilege import identity, trust
from ansible_collections.cpr.qemu.plugins.module_utils.recovery import recover, session, state
from ansible_collections.cpr.qemu.plugins.module_utils.dialects import switch
from ansible_collections.cpr.qemu.plugins.module_utils import qmp
from ansible_collections.cpr.qemu.plugins.module_utils.qmp import QMPConnection, QMPCommandError, QMPError

_MACHINE_SUFFIX = "-machine"
# The live-update series' commands, in both spellings.
CPR_COMMANDS = ("cprsave", "cprexec", "cprload", "cpr-save", "cpr-exec", "cpr-load")


def _qom_get(conn, path, prop):
    """A QOM property, or None where this QEMU has no such property."""
    try:
        return conn.execute("qom-get", {"path": path, "property": prop})
    except QMPCommandError:
        return None


def _children_types(conn, path):
    """{child name: QOM type} of a QOM container (``child<TYPE>`` entries)."""
    try:
        entries = conn.execute("qom-list", {"path": path})
    except QMPCommandError:
        return {}
    out = {}
    for e in entries:
        t = e.get("type", "")
        if t.startswith("child<") and t.endswith(">"):
            out[e["name"]] = t[6:-1]
    return out


def migration_modes(schema):
    """Values of the MigMode enum in a query-qmp-schema result (type names are mangled)."""
    for entry in schema:
        values = entry.get("values") or []
        if entry.get("meta-type") == "enum" and "normal" in values and any(
                v.startswith("cpr-") for v in values):
            return list(values)
    return []


def command_arguments(schema, command):
    """{member: type} of a command's arguments in a query-qmp-schema result; an enum member's
    type is its list of values (schema type names are mangled, so types are looked up by name)."""
    types = dict((e["name"], e) for e in schema)
    cmd = types.get(command)
    if not cmd or cmd.get("meta-type") != "command":
        return {}
    members = types.get(cmd.get("arg-type"), {}).get("members", [])
    return dict((m["name"], types.get(m["type"], {}).get("values") or m["type"]) for m in members)


def has_member(schema, member):
    return any(m.get("name") == member for e in schema if e.get("meta-type") == "object"
               for m in e.get("members", []))


def schema_commands(schema):
    """The names of the commands a query-qmp-schema result lists (what query-commands would answer)."""
    return [e["name"] for e in schema if e.get("meta-type") == "command"]


def accelerator(conn, argv_accel, commands=None):
    """The accelerator in use: query-accelerators (QEMU 10.2+), else query-kvm and the argv.  ``commands``
    (the schema's) spares asking a QEMU that has no query-accelerators."""
    if commands is None or "query-accelerators" in commands:
        try:
            return conn.execute("query-accelerators")["enabled"]
        except QMPCommandError:
            pass
    if conn.execute("query-kvm").get("enabled"):
        return "kvm"
    return argv_accel or "tcg"


def untrusted_reason(pid):
    """Why the collection will not act for this process (its executable is not root's alone), or None."""
    try:
        trust.check_process_executable(pid)
    except trust.UntrustedError as e:
        return str(e)
    return None


def runs_as(ident):
    """Who the VM's QEMU runs as (identity.capture()): what a live upgrade must keep (its environment stays
    private)."""
    return dict((k, ident[k]) for k in ("uid", "gid", "groups", "umask", "cgroups", "lsm_label", "systemd_unit",
                                        "systemd_main_pid", "scheduling"))


# Where libvirt keeps the pidfiles and monitors of the QEMUs it runs.
_LIBVIRT_DIRS = ("/run/libvirt/", "/var/run/libvirt/", "/var/lib/libvirt/")
# A session libvirtd's: ~/.config/libvirt/qemu/..., $XDG_RUNTIME_DIR/libvirt/qemu/...
_LIBVIRT_SESSION = ("/.config/libvirt/", "/libvirt/qemu/")


def manager(parsed):
    """Which management stack runs this VM and holds its monitor ("libvirt"), as its argv says, or None."""
    paths = [parsed["pidfile"] or ""] + parsed["qmp_sockets"]
    return "libvirt" if any(p.startswith(_LIBVIRT_DIRS) or any(d in p for d in _LIBVIRT_SESSION)
                            for p in paths) else None


def _manager_of(pid):
    """manager() of a process's argv (read as best it can be), or None if it cannot be read."""
    try:
        return manager(process.parse_argv(process.read_argv(pid)))
    except (OSError, TypeError):
        return None


def learn_options(pid, argv):
    """Ask the VM's own QEMU binary, as the VM's user and inside its root, which of its options take a
    value (process.learn_options).  Returns why it could not be asked, or None."""
    real, effective = process.user_ids(pid)
    if real != effective:
        return "it runs with real ids %s and effective ids %s (a setuid program?): nothing is run for it" % (
            real, effective)
    same_root = os.readlink("/proc/%d/root" % pid) == "/" and \
        os.readlink("/proc/%d/ns/mnt" % pid) == os.readlink("/proc/self/ns/mnt")
    root = "/" if same_root else "/proc/%d/root" % pid
    try:
        qemu_binary.learn_options(process.binary_facts(pid)["path"], root, argv, process.credentials(pid))
    except qemu_binary.BinaryError as e:
        return str(e)
    return None


# What a QEMU binary says of itself over QMP (its version and machine types, and from its schema the commands and
# migration modes it has) is the same in every process that runs it with the same -compat policy (QEMU's only
# option that changes what introspection shows, by hiding deprecated or unstable members). query-qmp-schema alone
# costs QEMU some 60 times what query-status does, and hundreds of milliseconds the first time a process is asked.
# So it is asked once per module run and binary file for the processes that could already reach one another (the
# signals, files and monitor sockets of their user): same user and groups, LSM label and user namespace. A QEMU
# that lies about its binary misleads no VM it could not already command: not another tenant's VM that runs as
# the same user under another label (libvirt's sVirt), nor one in another user namespace.
_PER_BINARY = {}
# What one process cannot change while it runs one binary with one argv (a cpr-exec keeps the PID and its start
# time, not the binary or the argv): its machine type and accelerator. The re-check right before the pause does
# not ask again what the checkpoint asked.
_PER_IMAGE = {}


def _binary_key(pid, compat, owner):
    """The file a process runs (as its open file shows it), its -compat policy, and who runs it (``owner``, its
    runs_as(): user, groups and LSM label; and its user namespace); None where any of it cannot be read."""
    try:
        st = os.stat("/proc/%d/exe" % pid)
        user_ns = os.stat("/proc/%d/ns/user" % pid).st_ino
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, tuple(compat), owner["uid"],
            owner["gid"], tuple(sorted(owner["groups"])), owner["lsm_label"], user_ns)


# VMs are inspected side by side: the first of a binary's VMs asks, the others wait for its answers.
_ASKING = {}
_ASKING_LOCK = threading.Lock()


def _ask_binary(conn):
    # The schema lists every command: no query-commands, and no query-accelerators where there is none.
    schema = conn.execute("query-qmp-schema")
    commands = schema_commands(schema)
    cpr_commands = sorted(c for c in commands if c in CPR_COMMANDS)
    return {
        "version": conn.execute("query-version"),
        "aliases": dict((m["alias"], m["name"]) for m in conn.execute("query-machines") if m.get("alias")),
        "commands": commands,
        "migration_modes": migration_modes(schema),
        "cpr_exec_command": has_member(schema, "cpr-exec-command"),
        "cpr_commands": cpr_commands,
        "cpr_arguments": dict((c, command_arguments(schema, c)) for c in cpr_commands),
    }


def _per_binary(conn, key):
    if key is None:
        return _ask_binary(conn)
    with _ASKING_LOCK:
        asking = _ASKING.setdefault(key, threading.Lock())
    # No longer than one answer may take: a QEMU that stalls its answers holds up the others by that much at most,
    # and then each asks for itself.
    if not asking.acquire(timeout=conn.timeout):
        return _ask_binary(conn)
    try:
        if key not in _PER_BINARY:
            _PER_BINARY[key] = _ask_binary(conn)
        return _PER_BINARY[key]
    finally:
        asking.release()


def _per_image(conn, key, argv_accel, binary_key):
    known = _PER_IMAGE.get(key) if key[1] is not None else None
    if known is None:
        machine_type = (_qom_get(conn, "/machine", "type") or "")
        if machine_type.endswith(_MACHINE_SUFFIX):
            machine_type = machine_type[:-len(_MACHINE_SUFFIX)]
        binary = _per_binary(conn, binary_key)
        known = dict(binary, machine_type=machine_type,
                     accelerator=accelerator(conn, argv_accel, binary["commands"]))
        if key[1] is not None:
            _PER_IMAGE[key] = known
    return known


def gather(conn):
    """Facts about the VM behind an open QMPConnection (its peer PID is the QEMU process)."""
    pid = conn.pid
    argv = process.read_argv(pid)
    untrusted = untrusted_reason(pid)
    # A binary that is not root's alone never runs: its argv is read as best it can be.
    options_error = untrusted or learn_options(pid, argv)
    parsed = process.parse_argv(argv)
    masked = process.mask_argv(argv)
    shown = process.parse_argv(masked)  # what results may carry: secrets masked
    binary = process.binary_facts(pid)
    # Nothing is asked of the system about a process the collection does not act for.
    ident = None if untrusted else identity.capture(pid)
    owner = None if untrusted else runs_as(ident)
    # An argv not read for sure may hide a -compat: nothing is shared for it (nor for an untrusted binary).
    unknown = process.unknown_options(argv)
    shared = None if options_error or unknown else _binary_key(pid, parsed["compat"], owner)
    image = _per_image(conn, (pid, switch.starttime(pid), tuple(binary["file_id"]), tuple(argv)), parsed["accel"],
                       shared)
    if owner is not None:
        # Judged where QEMU offers cpr-transfer only: the one dialect that starts a process of its own.
        owner["transfer_refusals"] = (identity.problems(ident, argv)
                                      if "cpr-transfer" in image["migration_modes"] else [])
    v = image["version"]["qemu"]
    status = conn.execute("query-status")
    machine_type = image["machine_type"]
    given = parsed["machine"]

    memory = []
    objects = _children_types(conn, "/objects")
    for dev in conn.execute("query-memdev"):
        memory.append({"id": dev.get("id"), "kind": objects.get(dev.get("id"), "unknown"),
                       "share": bool(dev.get("share")), "size": dev.get("size")})

    vfio = []
    for container in ("/machine/peripheral", "/machine/peripheral-anon"):
        vfio += [name for name, t in sorted(_children_types(conn, container).items())
                 if t.startswith("vfio-")]

    accel = image["accelerator"]
    migrate = conn.execute("query-migrate")

    return {
        "pid": pid,
        "name": parsed["name"],
        "binary": binary,
        "untrusted": untrusted,
        "runs_as": owner,
        "version": "%d.%d.%d" % (v["major"], v["minor"], v["micro"]),
        "package": image["version"].get("package", "").strip(),
        "runstate": status["status"],
        "argv": masked,
        "unknown_options": unknown,
        "options_error": options_error,
        "pidfile": parsed["pidfile"],
        "managed_by": manager(parsed),
        "accelerator": accel,
        "xen": accel == "xen" or machine_type.startswith("xen"),
        "machine": {"given": given, "type": machine_type,
                    "alias": bool(given) and given != machine_type and image["aliases"].get(given) == machine_type},
        "memory_backends": memory,
        "aux_ram_share": _qom_get(conn, "/machine", "aux-ram-share"),
        "memfd_alloc": _qom_get(conn, "/machine", "memfd-alloc"),
        "sandbox": parsed["sandbox"],
        "exec_denied": parsed["spawn_denied"],
        "vfio_devices": sorted(set(vfio + parsed["vfio_devices"])),
        "migration": {"status": migrate.get("status", "none"),
                      "blocked_reasons": migrate.get("blocked-reasons", [])},
        "migration_modes": image["migration_modes"],
        "cpr_exec_command": image["cpr_exec_command"],
        "cpr_commands": image["cpr_commands"],
        "cpr_arguments": image["cpr_arguments"],
        "cpr_enable": parsed["cpr_enable"],
        "chardevs": [{"label": c["label"], "filename": c.get("filename", "")}
                     for c in conn.execute("query-chardev")],
        "chardev_options": shown["chardevs"],
        "netdevs": shown["netdevs"],
        "tun_fds": process.tun_fds(pid),
    }


def switched(conn):
    """What verifying a switch asks of the QEMU that took the guest over: the binary it runs, its version, the
    guest's runstate and the incoming migration's status."""
    v = conn.execute("query-version")["qemu"]
    return {"binary": process.binary_facts(conn.pid),
            "version": "%d.%d.%d" % (v["major"], v["minor"], v["micro"]),
            "runstate": conn.execute("query-status")["status"],
            "migration": {"status": conn.execute("query-migrate").get("status", "none")}}


def session_of(address):
    """The live-upgrade session of the VM behind this QMP socket (recover.describe), or None."""
    try:
        held = session.read(state.lock_dir(state.vm_key(address)))
    except (OSError, ValueError, state.StateError):
        return None
    return recover.describe(held)


def last_upgrade_of(address, pid):
    """What the last finished upgrade of the VM behind this QMP socket did (session.record_upgrade), while the
    QEMU it left the guest on still runs it; else None."""
    try:
        return session.last_upgrade(state.lock_dir(state.vm_key(address)), pid)
    except (OSError, state.StateError):
        return None


def inspect(address, timeout, target=None):
    """The full report for the VM behind one QMP socket, as qemu_cpr_info returns it.

    ``target`` is a probed target binary (qemu_binary.probe()) or None.  A VM
    that cannot be inspected is reported with ``error`` and ``error_kind``.
    """
    try:
        with QMPConnection(address, timeout=timeout) as conn:
            facts = gather(conn)
    except QMPError as e:
        report = {"qmp_socket": address, "error": e.message, "error_kind": e.kind}
        if e.kind == "busy" and _manager_of(e.pid) == "libvirt":
            report.update(managed_by="libvirt", error="%s: libvirt runs this VM and holds its monitor; the "
                          "collection leaves it alone (libvirt would lose track of a QEMU replaced behind its back): "
                          "upgrade it through libvirt" % address)
        return report
    except OSError as e:
        # The process went away between the QMP greeting and reading /proc.
        return {"qmp_socket": address, "error": "cannot read the QEMU process: %s" % e,
                "error_kind": "process"}
    facts["qmp_socket"] = address
    facts["session"] = session_of(address)
    facts["last_upgrade"] = last_upgrade_of(address, facts["pid"])
    facts["dialects"], facts["preferred_dialect"] = readiness.assess(facts)
    facts["devices"] = readiness.devices(facts)
    if target is not None:
        facts["target"] = readiness.assess_target(facts, target)
    return facts


def _is_vm(pid, report):
    """Whether a discovered process is a QEMU to report: its socket answered QMP as this very process, or
    (a monitor held by another client, say) the process itself listens on it.  Anything else that names
    a QMP socket on its command line (a client, a wrapper's argv) is not the collection's business."""
    if "error" not in report:
        return report["pid"] == pid
    return qmp.listens_on(pid, report["qmp_socket"])


# A host's VMs are inspected a few at a time: each inspection mostly waits for its QEMU's answers.
INSPECTIONS_AT_ONCE = 8


def inspect_discovered(found, timeout, target=None, is_vm=_is_vm):
    """One report per QEMU among the discovered processes, through the first of its QMP sockets that answers.

    ``found`` is process.discover()'s list.  A VM may have several monitors (one held by a
    management tool, say): it is one VM, reported once, with the error of its first socket if none
    answers.
    """
    by_pid = {}
    for entry in found:
        by_pid.setdefault(entry["pid"], []).append(entry["qmp_socket"])

    def one(pid):
        first = None
        for sock in by_pid[pid]:
            report = inspect(sock, timeout, target)
            if "error" not in report:
                return report
            first = first or report
        return first
    reports = parallel.side_by_side(one, list(by_pid), INSPECTIONS_AT_ONCE)
    return [report for pid, report in zip(by_pid, reports) if is_vm(pid, report)]


def inspect_each(sockets, timeout, target=None):
    """inspect() of each QMP socket, INSPECTIONS_AT_ONCE at a time; the reports in the sockets' order."""
    return parallel.side_by_side(lambda s: inspect(s, timeout, target), sockets, INSPECTIONS_AT_ONCE)
