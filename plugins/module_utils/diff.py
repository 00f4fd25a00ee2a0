# -*- coding: utf-8 -*-
# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What qemu_cprsave, qemu_cprexec and qemu_cprload return in diff mode: the VM before and after its live upgrade.

Each of the three steps shows the whole upgrade its session carries, so that the first one (and check mode)
already shows where the VM goes: ``before`` is the VM on the QEMU qemu_cprsave found, ``after`` the VM on
the new QEMU - as it is once switched and verified, or as it would be.  Before the switch, the PID a
cpr-transfer's new QEMU will have is not known: it is null then.  A VM already on the target binary has
equal ``before`` and ``after``.

One diff per VM: ``{before, after, before_header, after_header}``, both headers naming the VM, as
Ansible's callbacks render it (a unified diff of the two records, one per VM).  With several VMs
(qemu_cprexec's ``sessions``) the module returns a list of them, which the callbacks render one after the other.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.cpr.qemu.plugins.module_utils.upgrade import EXEC_DIALECTS


def record(binary, version, pid, dialect, machine_type):
    """One side of a VM's diff."""
    return {"binary": binary, "version": version, "pid": pid, "dialect": dialect, "machine_type": machine_type}


def vm_diff(name, before, after):
    return {"before": before, "after": after, "before_header": name, "after_header": name}


def _path(binary):
    """The path of a binary as the session keeps it ({path, root, ...} from process.binary_facts) or as a path."""
    return binary.get("path") if isinstance(binary, dict) else binary


def _new_pid(s):
    """The PID of the QEMU that runs (or would run) the guest once switched; None while it is not known."""
    if s.get("new_pid") is not None:
        return s["new_pid"]
    # In these dialects the old QEMU process exec's the new binary: the PID stays.
    return s.get("pid") if s.get("dialect") in EXEC_DIALECTS else None


def of_session(s):
    """The diff of the VM of a session (as qemu_cprsave and qemu_cprexec return it, or the locked one)."""
    before = record(_path(s.get("old_binary")), s.get("old_version"), s.get("pid"), s.get("dialect"),
                    s.get("machine_type"))
    if s.get("noop"):
        after = dict(before)
    else:
        after = record(s.get("new_binary"), s.get("new_version"), _new_pid(s), s.get("dialect"),
                       s.get("machine_type"))
    return vm_diff(s.get("vm"), before, after)


def of_verified(result):
    """The diff of qemu_cprload's result (upgrade.verify): the VM on its old QEMU and where it runs now."""
    before = record(_path(result.get("old_binary")), result.get("old_version"), result.get("old_pid"),
                    result.get("dialect"), result.get("machine_type"))
    after = record(result.get("new_binary"), result.get("new_version"), result.get("new_pid"),
                   result.get("dialect"), result.get("machine_type"))
    return vm_diff(result.get("vm"), before, after)


def of_switches(switches):
    """One diff per VM of qemu_cprexec's ``sessions`` that has a session (switched, or needing no switch), in
    order; a VM whose switch failed has none."""
    return [of_session(o["session"]) for o in switches if o.get("session")]


def result(wanted, diff):
    """The module result's ``diff``, only when the task runs in diff mode: ``{"diff": diff}`` or ``{}``."""
    return {"diff": diff} if wanted else {}
