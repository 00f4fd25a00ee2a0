# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
"""The VM shapes real hosts run, live-upgraded by every dialect their QEMU offers, or refused before the pause.

Each shape is a lab VM whose command line is written the way a management
stack writes it (vmlab.LabVM.qemu_args): libvirt's JSON -object/-device/
-blockdev, its -chardev + -mon (or 11.1's -object monitor-qmp) monitor,
-pidfile and seccomp sandbox; Proxmox VE's shared directory of QMP sockets and
pidfiles, -daemonize and virtio-scsi disk, several VMs in one batch; and a VM
started by hand with relative paths and the -drive shorthand.  Every guest
writes one sector per tick to its qcow2 disk (on a backing image) and fsyncs
it before it prints the tick: after the upgrade the VM is halted and every
printed tick must be on the image.  The guest's one boot, its continuous
ticks and its RAM checksum prove it lived through the switch.
"""
import os
import shutil

import pytest

import vmlab
from conftest import NO_STATE, switch_state
from ansible_collections.cpr.qemu.plugins.module_utils import upgrade, vm_facts

TARGET = "/usr/bin/qemu-system-x86_64"
NOBODY, NOGROUP = 65534, 65534


def _prepare(vm, dialect):
    extra = {"new_root": vmlab.ROOT, "launcher": vmlab.launcher()} if dialect == "cpr-transfer" else {}
    changed, s, msg = upgrade.prepare(vm.qmp_socket, TARGET, dialect=dialect, **extra)
    assert changed, msg
    return s


def _finish(vm, s, result):
    if s["dialect"] == "cpr-transfer":
        vm.adopt(result["new_pid"])
    return result


def _upgrade(vm, dialect):
    """prepare, switch, verify through module_utils, as the three modules run them."""
    s = _prepare(vm, dialect)
    _changed, s, _msg = upgrade.switch(s, switch_timeout=120.0)
    _changed, result, _msg = upgrade.verify(s)
    return _finish(vm, s, result)


def _assert_carried_traffic(vm, netns, new_pid):
    """The new QEMU's tap is the VM's, in its network namespace: the guest's pings, counted from a tick after
    the switch on, go on and are answered (a tap the new QEMU made in another namespace answers none)."""
    assert os.readlink("/proc/%d/ns/net" % new_pid) == netns
    switched = vm.wait_ticks(vm.evidence().last_tick + 1, timeout=120).net[-1]
    evidence = vm.wait_ticks(vm.evidence().last_tick + 3, timeout=120)
    lost, sent = evidence.net_losses(), evidence.net[-1][2] + 1
    print("%s: pings lost across the switch: %s of %d" % (vm.spec.name, lost, sent))
    assert lost <= 5, evidence.net
    # Losses count only up to the last reply: the pings must also go on, and be answered, after the switch.
    assert evidence.net[-1][1] > switched[1] and evidence.net[-1][2] > switched[2], (switched, evidence.net[-1])


def _assert_lived_and_wrote(vm, ticks=3):
    """One boot, ticks that went on, the RAM checksum kept; then halted, every printed tick on its disk."""
    evidence = vm.wait_ticks(vm.evidence().last_tick + ticks, timeout=180)
    assert evidence.problems() == []
    assert len(evidence.boots) == 1
    vm.halt()
    assert vm.disk_problems() == []
    assert switch_state(vm) == NO_STATE


def _pidfile_pid(vm):
    with open(vm.pidfile) as f:
        return int(f.read().split()[0])


# (shape, QEMU the VM runs, dialect, extra spec).  11.1's libvirt shape has its monitor as -object monitor-qmp;
# a NIC on a multi-queue tap.
LIVE = [
    ("libvirt", "10.0", "cpr-transfer", {}),
    ("libvirt", "10.0", "cpr-transfer", {"nic": True, "nic_queues": 2}),
    ("libvirt", "11.1", "cpr-transfer", {"monitor_object": True}),
    ("plain", "10.0", "cpr-transfer", {}),
    ("plain", "11.1", "cpr-exec", {}),
    ("plain", "11.1", "cpr-transfer", {}),
    ("proxmox", "11.1", "cpr-exec", {}),
    ("proxmox", "11.1", "cpr-transfer", {}),
]


def _case_id(case):
    shape, qemu, dialect, extra = case
    return "-".join([shape, qemu, dialect] + ["%s=%s" % kv for kv in sorted(extra.items()) if kv[0] != "gid"])


@pytest.mark.parametrize("shape, qemu, dialect, extra", LIVE, ids=[_case_id(c) for c in LIVE])
def test_a_shape_is_upgraded_live_and_loses_no_write(lab_vm, shape, qemu, dialect, extra):
    # 11.1 to 11.1 needs another binary than the running one: the VM runs a private copy of 11.1's.
    vm = lab_vm("shape-%d" % LIVE.index((shape, qemu, dialect, extra)), qemu=qemu, shape=shape,
                binary_copy=qemu == "11.1", **extra)
    vm.wait_ticks(3, timeout=180)
    facts = vm_facts.inspect(vm.qmp_socket, 10.0)
    assert "error" not in facts, facts
    assert facts["unknown_options"] == [] and facts["options_error"] is None
    assert facts["dialects"][dialect]["ready"], facts["dialects"][dialect]
    old_pid = vm.pid
    netns = os.readlink("/proc/%d/ns/net" % old_pid)
    result = _upgrade(vm, dialect)
    if vm.pidfile:
        # The pidfile names the QEMU that runs the guest, and nothing of the switch is left beside it.
        assert _pidfile_pid(vm) == result["new_pid"] == vm.pid
        assert not os.path.exists(vm.pidfile + ".cpr-new")
    if dialect == "cpr-exec":
        assert result["new_pid"] == old_pid
    if extra.get("nic"):
        _assert_carried_traffic(vm, netns, result["new_pid"])
    _assert_lived_and_wrote(vm)


def test_libvirt_shape_with_its_sandbox_refuses_cpr_exec_before_the_pause(lab_vm):
    """-sandbox spawn=deny forbids the exec: cpr-exec is refused with the reason, and nothing changes."""
    vm = lab_vm("shape-libvirt-sandbox", qemu="11.1", shape="libvirt")
    facts = vm_facts.inspect(vm.qmp_socket, 10.0)
    assert not facts["dialects"]["cpr-exec"]["ready"]
    assert any("spawn" in r for r in facts["dialects"]["cpr-exec"]["reasons"]), facts["dialects"]["cpr-exec"]
    with pytest.raises(upgrade.UpgradeError) as e:
        upgrade.prepare(vm.qmp_socket, TARGET, dialect="cpr-exec")
    assert "spawn" in e.value.message
    assert vm_facts.inspect(vm.qmp_socket, 10.0)["runstate"] == "running"
    assert switch_state(vm) == NO_STATE
    _assert_lived_and_wrote(vm, ticks=1)


def test_a_pidfile_the_new_qemu_could_not_write_is_refused_before_the_pause(lab_vm):
    """libvirt runs QEMU as its own user (here nobody, dropped before the exec as libvirt does: QEMU's own
    -run-with user= dies under libvirt's sandbox, elevateprivileges=deny) with its pidfile in a directory of
    root's: a new QEMU as nobody could not write its pidfile there, and root writes none for it."""
    vm = lab_vm("shape-nobody-pid", qemu="10.0", shape="libvirt", uid=NOBODY, gid=NOGROUP)
    with pytest.raises(upgrade.UpgradeError) as e:
        _prepare(vm, "cpr-transfer")
    assert "cannot create files in the directory of its -pidfile" in e.value.message, e.value.message
    assert switch_state(vm) == NO_STATE
    _assert_lived_and_wrote(vm, ticks=1)


def test_proxmox_vms_sharing_one_directory_are_upgraded_in_one_batch(lab_vm):
    """Two daemonized VMs whose sockets and pidfiles share one directory, moved by cpr-transfer at once."""
    vms = [lab_vm("shape-pve-%d" % n, qemu="10.0", shape="proxmox") for n in (100, 101)]
    assert len(set(os.path.dirname(vm.qmp_socket) for vm in vms)) == 1
    sessions = [_prepare(vm, "cpr-transfer") for vm in vms]
    outcomes = upgrade.switch_at_once(sessions, switch_timeout=120.0)
    for vm, outcome in zip(vms, outcomes):
        assert not outcome["failed"], outcome["msg"]
        _changed, verified, _msg = upgrade.verify(outcome["session"])
        _finish(vm, outcome["session"], verified)
        assert _pidfile_pid(vm) == verified["new_pid"]
    for vm in vms:
        _assert_lived_and_wrote(vm)


def test_a_relative_state_dir_is_refused_before_anything(lab_vm):
    vm = lab_vm("shape-relative", qemu="11.1", shape="plain")
    with pytest.raises(upgrade.UpgradeError) as e:
        upgrade.prepare(vm.qmp_socket, TARGET, dialect="cpr-exec", state_dir="cpr-here")
    assert "state_dir must be absolute" in e.value.message
    assert switch_state(vm) == NO_STATE


def test_a_vm_with_a_single_queue_tap_is_refused_before_the_pause(lab_vm):
    """A second QEMU cannot attach to a single-queue tap the old one holds (EBUSY), and an exec keeps the
    old fd open (QEMU opens /dev/net/tun without O_CLOEXEC): both dialects refuse, naming the tap."""
    vm = lab_vm("shape-tap1", qemu="11.1", binary_copy=True, nic=True, disk="virtio-blk")
    for dialect, words in (("cpr-exec", "fd survives the exec"), ("cpr-transfer", "single-queue tap")):
        with pytest.raises(upgrade.UpgradeError) as e:
            _prepare(vm, dialect)
        assert words in e.value.message, e.value.message
    assert switch_state(vm) == NO_STATE
    before = vm.evidence().net[-1]
    _assert_lived_and_wrote(vm, ticks=2)
    assert vm.evidence().net[-1][1] > before[1], "the guest's pings went on"


def test_a_multi_queue_tap_carries_traffic_across_cpr_transfer_of_the_lab_shape(lab_vm):
    """The guest pings its end of the tap (inside a network namespace of the test's) every 100 ms; the new
    QEMU attaches a queue of its own while the old one holds its own."""
    vm = lab_vm("shape-tapmq", qemu="10.0", nic=True, nic_queues=2, disk="virtio-blk")
    vm.wait_ticks(4, timeout=120)
    netns = os.readlink("/proc/%d/ns/net" % vm.pid)
    result = _upgrade(vm, "cpr-transfer")
    _assert_carried_traffic(vm, netns, result["new_pid"])
    _assert_lived_and_wrote(vm, ticks=0)


# ---------------------------------------------------------------- KVM (the guest is the firmware alone: a Linux
# guest hangs under this machine's nested KVM; what is proven is that the VM runs on the new QEMU under KVM)


def _runs_under_kvm(vm, pid):
    facts = vm_facts.inspect(vm.qmp_socket, 10.0)
    assert (facts["pid"], facts["accelerator"], facts["runstate"]) == (pid, "kvm", "running"), facts
    assert switch_state(vm) == NO_STATE


def test_kvm_needs_dev_kvm_where_the_new_qemu_starts(lab_vm):
    """Seen: a new QEMU chrooted into a root without /dev/kvm died at start; it is refused before the pause.
    Through the lab's launcher, which binds /dev into that root, the VM moves."""
    vm = lab_vm("shape-kvm-xfer", qemu="10.0", kvm=True)
    _runs_under_kvm(vm, vm.pid)
    with pytest.raises(upgrade.UpgradeError) as e:
        upgrade.prepare(vm.qmp_socket, TARGET, dialect="cpr-transfer", new_root=vmlab.ROOT)
    assert "/dev/kvm is not there in the new QEMU's root %s" % vmlab.ROOT in e.value.message
    _runs_under_kvm(vm, vm.pid)
    result = _upgrade(vm, "cpr-transfer")
    _runs_under_kvm(vm, result["new_pid"])


def test_kvm_exec_needs_dev_kvm_for_the_user_qemu_dropped_to(lab_vm):
    """A QEMU that dropped to nobody (-run-with user=) opened /dev/kvm (0600 root) as root: its exec'd self
    could not; refused.  One that runs as root is exec'd under KVM."""
    dropped = lab_vm("shape-kvm-nobody", qemu="11.1", kvm=True, uid=NOBODY, gid=NOGROUP, drop_by="qemu")
    # Another binary than the running one, where root alone could have put it (the run directory is nobody's).
    target = "/usr/local/bin/qemu-system-x86_64-%s" % os.path.basename(vmlab.RUN_BASE)
    shutil.copy2(vmlab.ROOT + TARGET, vmlab.ROOT + target)
    try:
        with pytest.raises(upgrade.UpgradeError) as e:
            upgrade.prepare(dropped.qmp_socket, target, dialect="cpr-exec")
    finally:
        os.unlink(vmlab.ROOT + target)
    assert "cannot be opened for reading and writing by uid %d" % NOBODY in e.value.message, e.value.message
    _runs_under_kvm(dropped, dropped.pid)
    vm = lab_vm("shape-kvm-exec", qemu="11.1", kvm=True, binary_copy=True)
    result = _upgrade(vm, "cpr-exec")
    _runs_under_kvm(vm, result["new_pid"])


KVM_SHAPES = [("libvirt", "10.0", "cpr-transfer"), ("proxmox", "10.0", "cpr-transfer"), ("plain", "10.0", "cpr-transfer"),
              ("proxmox", "11.1", "cpr-exec"), ("plain", "11.1", "cpr-exec")]


@pytest.mark.parametrize("shape, qemu, dialect", KVM_SHAPES, ids=["-".join(c) for c in KVM_SHAPES])
def test_a_shape_under_kvm_moves(lab_vm, shape, qemu, dialect):
    vm = lab_vm("shape-kvm-%d" % KVM_SHAPES.index((shape, qemu, dialect)), qemu=qemu, shape=shape, kvm=True,
                disk=None, binary_copy=qemu == "11.1")
    _runs_under_kvm(vm, vm.pid)
    result = _upgrade(vm, dialect)
    _runs_under_kvm(vm, result["new_pid"])
    if vm.pidfile:
        assert _pidfile_pid(vm) == result["new_pid"]
