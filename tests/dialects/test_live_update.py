"""The live-update dialect on the SIMULATOR of the series (tests/simulator/).

First the simulator's own fidelity to the series (each refusal, the lost guest
of a failed exec), then the modules' work on it: the full cycle in both
spellings, a paused guest, and every pre-check that keeps a guest from being
lost.
"""
import os
import shutil
import time

import pytest

import vmlab
from ansible_collections.cpr.qemu.plugins.module_utils import upgrade

SPELLINGS = {"early": ("cprsave", "cprexec", "cprload"), "late": ("cpr-save", "cpr-exec", "cpr-load")}


def _sim(lab_vm, name, **spec):
    spec.setdefault("qemu", "sim")
    spec.setdefault("mem_mb", 64)
    return lab_vm(name, **spec)


def _refused(vm, command, arguments, message):
    with pytest.raises(vmlab.LabError) as e:
        vm.qmp(command, arguments)
    assert message in str(e.value)


# --- the simulator behaves as the series does ---------------------------------

@pytest.mark.parametrize("spelling", sorted(SPELLINGS))
def test_series_refuses_volatile_ram(lab_vm, spelling):
    vm = _sim(lab_vm, "lu-volatile-" + spelling, spelling=spelling, memfd_alloc=False)
    save = SPELLINGS[spelling][0]
    _refused(vm, save, {"file": vm.run_dir + "/state", "mode": "restart"}, "Memory region pc.ram is volatile")
    assert vm.qmp("query-status")["status"] == "running"


@pytest.mark.parametrize("spelling", sorted(SPELLINGS))
def test_series_refusals_around_exec_and_load(lab_vm, spelling):
    save, exec_, load = SPELLINGS[spelling]
    vm = _sim(lab_vm, "lu-refuse-" + spelling, spelling=spelling)
    state = vm.run_dir + "/state"
    _refused(vm, exec_, {"args": [vmlab.SIM_BIN]}, "runstate is not save-vm")
    _refused(vm, load, {"file": state}, "cpr-load called for a running VM")
    vm.qmp(save, {"file": state, "mode": "restart"})
    assert vm.qmp("query-status")["status"] == "save-vm"
    assert oct(os.stat(state).st_mode & 0o777) == "0o600"
    with open(vm.run_dir + "/not-state", "w") as f:
        f.write("garbage")
    _refused(vm, load, {"file": vm.run_dir + "/not-state"}, "is not a vmstate file")
    vm.qmp("cont")
    assert vm.qmp("query-status")["status"] == "running"


@pytest.mark.parametrize("spelling", sorted(SPELLINGS))
def test_series_refuses_exec_on_xen(lab_vm, spelling):
    save, exec_, _load = SPELLINGS[spelling]
    vm = _sim(lab_vm, "lu-xen-" + spelling, spelling=spelling, xen=True)
    vm.qmp(save, {"file": vm.run_dir + "/state", "mode": "restart"})
    _refused(vm, exec_, {"args": [vmlab.SIM_BIN]}, "xen does not support %s" % exec_)


def test_series_loses_the_guest_when_exec_fails(lab_vm):
    vm = _sim(lab_vm, "lu-lost")
    vm.qmp("cprsave", {"file": vm.run_dir + "/state", "mode": "restart"})
    vm.qmp("cprexec", {"args": ["/nonexistent/qemu-system-x86_64", "-S"]})
    deadline = time.monotonic() + 10
    while vm.running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not vm.running()
    assert "execvp /nonexistent/qemu-system-x86_64 failed" in vm.stderr()


# --- the modules on the live-update dialect ------------------------------------

@pytest.mark.parametrize("spelling", sorted(SPELLINGS))
def test_full_cycle_keeps_the_guest_in_memfd_ram_across_exec(lab_vm, spelling):
    vm = _sim(lab_vm, "lu-cycle-" + spelling, spelling=spelling, binary_copy=True)
    before = vm.wait_ticks(5)
    changed, s, _msg = upgrade.prepare(vm.qmp_socket, vmlab.SIM_BIN)
    assert changed and s["dialect"] == "live-update" and s["via"] == "/".join(SPELLINGS[spelling])
    changed, s, _msg = upgrade.switch(s)
    assert changed
    changed, result, msg = upgrade.verify(s)
    assert changed, msg
    assert result["new_pid"] == result["old_pid"] == vm.pid
    assert result["pause_ms"] > 0
    assert os.readlink("/proc/%d/exe" % vm.pid) == vmlab.SIM_BIN
    # The module added -S: the series requires the new binary to start paused.
    with open("/proc/%d/cmdline" % vm.pid, "rb") as f:
        assert b"\0-S\0" in f.read()
    after = vm.wait_ticks(6)
    assert after.problems() == [] and len(after.boots) == 1
    assert after.fill_sum == before.fill_sum and len(after.sums) > len(before.sums)
    assert after.last_tick >= before.last_tick + 6


def test_paused_guest_stays_paused(lab_vm):
    vm = _sim(lab_vm, "lu-paused", binary_copy=True)
    vm.wait_ticks(2)
    vm.qmp("stop")
    ticks = vm.evidence().last_tick
    _changed, s, _msg = upgrade.prepare(vm.qmp_socket, vmlab.SIM_BIN)
    _changed, s, _msg = upgrade.switch(s)
    _changed, result, _msg = upgrade.verify(s)
    assert result["runstate"] == "paused" and result["pause_ms"] is None
    time.sleep(1)
    assert vm.evidence().last_tick == ticks
    assert vm.qmp("query-status")["status"] == "paused"


def _refused_before_pause(vm, message, binary=vmlab.SIM_BIN, **kw):
    with pytest.raises(upgrade.UpgradeError) as e:
        upgrade.prepare(vm.qmp_socket, binary, **kw)
    assert message in e.value.message, e.value.message
    assert vm.qmp("query-status")["status"] == "running"
    assert not os.path.exists(vm.run_dir + "/cpr-state/session.json")
    return e.value.message


def test_precheck_missing_binary(lab_vm):
    vm = _sim(lab_vm, "lu-nobin", binary_copy=True)
    _refused_before_pause(vm, "does not exist", binary="/nonexistent/qemu-system-x86_64")


def test_precheck_binary_not_executable(lab_vm):
    vm = _sim(lab_vm, "lu-noexec", binary_copy=True)
    target = vm.run_dir + "/qemu-not-executable"
    shutil.copy2(vmlab.SIM_BIN, target)
    os.chmod(target, 0o644)
    _refused_before_pause(vm, "is not executable", binary=target)


def test_precheck_memfd_alloc_off(lab_vm):
    vm = _sim(lab_vm, "lu-nomemfd", memfd_alloc=False, binary_copy=True)
    _refused_before_pause(vm, "memfd-alloc=on")


def test_precheck_xen(lab_vm):
    vm = _sim(lab_vm, "lu-xenpre", xen=True, binary_copy=True)
    _refused_before_pause(vm, "Xen")


def test_precheck_runstate(lab_vm):
    vm = _sim(lab_vm, "lu-prelaunch", paused=True, binary_copy=True)
    with pytest.raises(upgrade.UpgradeError) as e:
        upgrade.prepare(vm.qmp_socket, vmlab.SIM_BIN)
    assert "runstate is 'prelaunch'" in e.value.message


def test_precheck_argv_without_memfd_alloc(lab_vm):
    """An operator argv that would start the new binary without its memfds is refused at the switch."""
    vm = _sim(lab_vm, "lu-argv", binary_copy=True)
    _changed, s, _msg = upgrade.prepare(vm.qmp_socket, vmlab.SIM_BIN)
    argv = [a.replace(",memfd-alloc=on", "") for a in s["new_argv"]]
    with pytest.raises(upgrade.UpgradeError) as e:
        upgrade.switch(s, argv=argv)
    assert "lacks -machine memfd-alloc=on" in e.value.message
    assert "the guest was not touched" in e.value.message
    assert vm.qmp("query-status")["status"] == "running"
    assert vm.evidence().problems() == []


def test_precheck_environment_over_the_exec_limit(lab_vm):
    vm = _sim(lab_vm, "lu-argmax", binary_copy=True)
    _changed, s, _msg = upgrade.prepare(vm.qmp_socket, vmlab.SIM_BIN)
    huge = s["new_argv"] + ["-name", "x" * (os.sysconf("SC_ARG_MAX"))]
    with pytest.raises(upgrade.UpgradeError) as e:
        upgrade.switch(s, argv=huge)
    assert "exec limit" in e.value.message
    assert vm.qmp("query-status")["status"] == "running"
