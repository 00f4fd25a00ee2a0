# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
"""Real-QEMU tests of each dialect's switch, driven without Ansible.

They inject the faults that the modules' checks keep operators from
reaching (a binary that vanishes between the check and the exec, a new QEMU
that dies), to prove what the switch does after the guest is paused.
Run by scripts/test.sh (stage "dialects") with the collection on PYTHONPATH.
"""
import glob
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lab"))

import vmlab  # noqa: E402


@pytest.fixture
def lab_vm(request):
    """Start lab VMs by spec; every one is stopped at the end, pass or fail, and one with a disk proven."""
    started = []

    def start(name, **spec):
        vm = vmlab.LabVM(vmlab.VMSpec(name, **spec)).start()
        started.append(vm)
        if not spec.get("paused") and not spec.get("kvm"):  # a KVM guest is the firmware: no ticks
            vm.wait_ticks(2)
        return vm
    yield start
    # A VM with a disk proves at its end, whatever happened to it (an upgrade, a rollback, a recovery),
    # that every tick its guest printed is on the image: no acknowledged write was lost.
    lost = []
    for vm in started:
        try:
            if vm.spec.disk_kind:
                vm.halt()
                lost += ["%s: %s" % (vm.spec.name, why) for why in vm.disk_problems()]
        finally:
            vm.stop()  # and its lock directory
    assert not lost, lost


def switch_state(vm):
    """What a live upgrade left for this VM: its session locks (in /run/cpr-qemu) and its work directory
    beside the QMP socket (with what is in it).  Both empty once an upgrade is over, whatever its end."""
    locks = []
    for lock in glob.glob("/run/cpr-qemu/*/session.json"):
        with open(lock) as f:
            if json.load(f).get("qmp_socket") == vm.qmp_socket:
                locks.append(lock)
    work = vm.qmp_socket + ".cpr"
    return {"locks": locks, "work_dir": sorted(os.listdir(work)) if os.path.isdir(work) else None,
            "backup_socket": os.path.lexists(vm.qmp_socket + ".cpr-old")}


NO_STATE = {"locks": [], "work_dir": None, "backup_socket": False}
