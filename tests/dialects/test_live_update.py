# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
"""The live-update dialect on the SIMULATOR of the series (tests/simulator/), for each version it offers.

First the simulator's own fidelity to the series as posted (QEMU's argument
checking, runstates, volatile RAM, chardevs, the fate of a failed exec), then
the modules' work on it: two upgrades in a row per version, and every check
that keeps a guest from being stopped by a cprsave whose cprexec would fail.
"""
import os
import shutil
import subprocess
import time

import pytest

import vmlab
from conftest import NO_STATE, switch_state
from ansible_collections.cpr.qemu.plugins.module_utils import upgrade
from ansible_collections.cpr.qemu.plugins.module_utils.recovery import session as sessions
from ansible_collections.cpr.qemu.plugins.module_utils.dialects import live_update
from ansible_collections.cpr.qemu.plugins.module_utils.dialects import switch as common
from ansible_collections.cpr.qemu.plugins.module_utils.qmp import QMPConnection

VERSIONS = (5, 6, 8)
COMMANDS = {5: ("cprsave", "cprexec", "cprload"), 6: ("cpr-save", "cpr-exec", "cpr-load"),
            8: ("cpr-save", "cpr-exec", "cpr-load")}
FILE_KEY = {5: "file", 6: "filename", 8: "filename"}


def _sim(lab_vm, name, series=5, **spec):
    spec.setdefault("qemu", "sim")
    spec.setdefault("mem_mb", 64)
    return lab_vm("%s-v%d" % (name, series), series=series, **spec)


def _save_args(vm, series, mode="restart"):
    return {FILE_KEY[series]: vm.run_dir + "/state", "mode": mode}


def _load_args(vm, series):
    args = {FILE_KEY[series]: vm.run_dir + "/state"}
    return dict(args, mode="restart") if series == 8 else args


def _refused(vm, command, arguments, message):
    with pytest.raises(vmlab.LabError) as e:
        vm.qmp(command, arguments)
    assert str(e.value) == "QMP %s: %s" % (command, message)


def _wait_gone(vm, timeout=10):
    deadline = time.monotonic() + timeout
    while vm.running() and time.monotonic() < deadline:
        time.sleep(0.05)
    return not vm.running()


# --- the simulator behaves as the series does ---------------------------------


@pytest.mark.parametrize("series", VERSIONS)
def test_each_build_follows_one_version_of_the_series(series):
    """As a real build carries one version of the series, so does each build of the simulator: its command line
    cannot make it another (one binary, one QMP schema)."""
    other = 6 if series == 5 else 5
    done = subprocess.run([vmlab.sim_binary(series), "-simulate-series", str(other), "-version"],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode != 0
    assert "this build simulates version %d of the series" % series in done.stderr


@pytest.mark.parametrize("series", VERSIONS)
def test_series_checks_arguments_as_qemu_does(lab_vm, series):
    """A driver that sends the wrong argument names is refused, in QEMU's words, before anything happens."""
    save, exec_, load = COMMANDS[series]
    vm = _sim(lab_vm, "lu-args", series)
    other = "filename" if series == 5 else "file"
    _refused(vm, save, {other: vm.run_dir + "/state", "mode": "restart"}, "Parameter '%s' is missing" % FILE_KEY[series])
    _refused(vm, save, dict(_save_args(vm, series), extra=1), "Parameter 'extra' is unexpected")
    _refused(vm, save, _save_args(vm, series, mode="bogus"), "Parameter 'mode' does not accept value 'bogus'")
    _refused(vm, exec_, {"args": [vmlab.sim_binary(series)]}, "Parameter 'argv' is missing")
    _refused(vm, exec_, {"argv": [vmlab.sim_binary(series)], "args": []}, "Parameter 'args' is unexpected")
    _refused(vm, exec_, {"argv": [1]}, "Invalid parameter type for 'argv[0]', expected: string")
    _refused(vm, exec_, {"argv": "x"}, "Invalid parameter type for 'argv', expected: array")
    if series == 8:
        _refused(vm, load, {"filename": vm.run_dir + "/state"}, "Parameter 'mode' is missing")
    else:
        _refused(vm, load, {"filename": "x", "file": "x", "mode": "restart"}, "Parameter '%s' is unexpected"
                 % ("filename" if series == 5 else "file"))
    assert vm.qmp("query-status")["status"] == "running"
    assert not os.path.exists(vm.run_dir + "/state")
    if series == 5:
        assert vm.qmp("cprinfo") == {"modes": ["reboot", "restart"]}
    else:
        _refused(vm, "cprinfo", None, "The command cprinfo has not been found")


@pytest.mark.parametrize("series", (5, 6))
def test_series_volatile_ram(lab_vm, series):
    """V1-V5 refuse volatile RAM in reboot mode only; V6/V7 in every mode."""
    save = COMMANDS[series][0]
    vm = _sim(lab_vm, "lu-volatile", series, memfd_alloc=False)
    _refused(vm, save, _save_args(vm, series, mode="reboot"), "Memory region pc.ram is volatile")
    if series == 6:
        _refused(vm, save, _save_args(vm, series), "Memory region pc.ram is volatile")
        return
    # V5 takes restart mode without memfd-alloc: the RAM does not survive the exec (the guest boots anew).
    vm.qmp(save, _save_args(vm, series))
    vm.qmp(COMMANDS[series][1], {"argv": vm.argv + ["-S"]})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            vm.qmp(COMMANDS[series][2], _load_args(vm, series))
            break
        except (vmlab.LabError, OSError):
            time.sleep(0.05)
    assert len(vm.wait_ticks(2).boots) == 2


def test_series_v8_blockers_at_cpr_save(lab_vm):
    vm = _sim(lab_vm, "lu-v8blk", 8, memfd_alloc=False)
    _refused(vm, "cpr-save", _save_args(vm, 8), "cpr mode is not enabled.  Use -cpr-enable.")
    vm2 = _sim(lab_vm, "lu-v8chr", 8, serial_reopen=False)
    _refused(vm2, "cpr-save", _save_args(vm2, 8), "chardev ser0 -> file does not allow cpr. See reopen-on-cpr.")
    for v in (vm, vm2):
        assert v.qmp("query-status")["status"] == "running"


@pytest.mark.parametrize("series", VERSIONS)
def test_series_refusals_around_exec_and_load(lab_vm, series):
    save, exec_, load = COMMANDS[series]
    vm = _sim(lab_vm, "lu-refuse", series)
    _refused(vm, exec_, {"argv": [vmlab.sim_binary(series)]}, "runstate is not save-vm")
    _refused(vm, load, _load_args(vm, series), "%s called for a running VM" % load)
    vm.qmp(save, _save_args(vm, series, mode="reboot"))
    assert vm.qmp("query-status")["status"] == "save-vm"
    _refused(vm, exec_, {"argv": [vmlab.sim_binary(series)]}, "%s requires %s with restart mode" % (exec_, save))
    assert oct(os.stat(vm.run_dir + "/state").st_mode & 0o777) == "0o600"
    with open(vm.run_dir + "/not-state", "w") as f:
        f.write("garbage")
    bad = dict(_load_args(vm, series), **{FILE_KEY[series]: vm.run_dir + "/not-state"})
    _refused(vm, load, bad, ("error: %s is not a vmstate file" if series == 5 else "%s is not a vmstate file")
             % (vm.run_dir + "/not-state"))
    vm.qmp("cont")
    assert vm.qmp("query-status")["status"] == "running"


@pytest.mark.parametrize("series", VERSIONS)
def test_series_leaves_a_paused_guest_paused_and_refuses_its_exec(lab_vm, series):
    """vm_stop(RUN_STATE_SAVE_VM) changes the runstate only of a running VM."""
    save, exec_, _load = COMMANDS[series]
    vm = _sim(lab_vm, "lu-pausedser", series)
    vm.qmp("stop")
    vm.qmp(save, _save_args(vm, series))
    assert vm.qmp("query-status")["status"] == "paused"
    _refused(vm, exec_, {"argv": vm.argv + ["-S"]}, "runstate is not save-vm")
    assert vm.running()


@pytest.mark.parametrize("series", (5, 6))
def test_series_refuses_exec_on_xen(lab_vm, series):
    save, exec_, _load = COMMANDS[series]
    vm = _sim(lab_vm, "lu-xen", series, xen=True)
    vm.qmp(save, _save_args(vm, series))
    _refused(vm, exec_, {"argv": [vmlab.sim_binary(series)]}, "xen does not support %s" % exec_)


def test_series_v5_refuses_a_file_chardev_at_cprexec(lab_vm):
    """V5 checks chardevs in cprexec, after cprsave has stopped the guest."""
    vm = _sim(lab_vm, "lu-chardev", 5, serial_reopen=False)
    vm.qmp("cprsave", _save_args(vm, 5))
    _refused(vm, "cprexec", {"argv": vm.argv + ["-S"]}, "error: chardev ser0 -> file is not capable of cpr")
    assert vm.qmp("query-status")["status"] == "save-vm"
    vm.qmp("cont")


@pytest.mark.parametrize("series, no_shutdown", [(5, False), (6, False), (6, True)])
def test_series_failed_exec(lab_vm, series, no_shutdown):
    """V5: exit with 'execvp failed: ...'; V6+: 'execvp PATH failed: ...' and the shutdown path."""
    save, exec_, _load = COMMANDS[series]
    vm = _sim(lab_vm, "lu-lost" + ("-ns" if no_shutdown else ""), series, no_shutdown=no_shutdown)
    vm.qmp(save, _save_args(vm, series))
    vm.qmp(exec_, {"argv": ["/nonexistent/qemu-system-x86_64", "-S"]})
    if no_shutdown:
        time.sleep(1)
        assert vm.running()
        assert vm.qmp("query-status")["status"] == "save-vm"
        assert "execvp /nonexistent/qemu-system-x86_64 failed" in vm.stderr()
        return
    assert _wait_gone(vm)
    expected = "execvp failed: No such file" if series == 5 else "execvp /nonexistent/qemu-system-x86_64 failed"
    assert expected in vm.stderr()


# --- the modules on the live-update dialect ------------------------------------

def _upgrade(vm, binary):
    changed, s, _msg = upgrade.prepare(vm.qmp_socket, binary)
    assert changed and s["dialect"] == "live-update"
    changed, s, _msg = upgrade.switch(s)
    assert changed
    changed, result, msg = upgrade.verify(s)
    assert changed, msg
    return s, result


@pytest.mark.parametrize("series", VERSIONS)
def test_two_upgrades_in_a_row_keep_the_guest_in_memfd_ram(lab_vm, series):
    """The second upgrade runs on a process whose environment the first exec wrote (V5: QEMU_FD_* of
    RAM blocks and of a socket chardev; V6+: QEMU_CPR_STATE)."""
    agent = os.path.join(vmlab.RUN_BASE, "lu-cycle-v%d" % series, "agent.sock")
    vm = _sim(lab_vm, "lu-cycle", series, binary_copy=True,
              extra_args=("-chardev", "socket,id=agent0,path=%s,server=on,wait=off" % agent))
    before = vm.wait_ticks(5)
    for binary in (vmlab.sim_binary(series), vm.binary):
        s, result = _upgrade(vm, binary)
        assert s["via"] == "/".join(COMMANDS[series])
        assert result["new_pid"] == result["old_pid"] == vm.pid
        assert result["pause_ms"] > 0
    assert os.readlink("/proc/%d/exe" % vm.pid) == vm.binary
    with open("/proc/%d/cmdline" % vm.pid, "rb") as f:
        assert b"\0-S\0" in f.read()  # the series requires the new binary to start paused
    with open("/proc/%d/environ" % vm.pid, "rb") as f:
        environ = f.read()
    assert (b"QEMU_FD_agent0=" in environ) == (series == 5)
    assert (b"QEMU_CPR_STATE=" in environ) == (series != 5)
    after = vm.wait_ticks(6)
    assert after.problems() == [] and len(after.boots) == 1
    assert after.fill_sum == before.fill_sum and len(after.sums) > len(before.sums)
    assert switch_state(vm) == NO_STATE


def _refused_before_pause(vm, message, binary=None, **kw):
    with pytest.raises(upgrade.UpgradeError) as e:
        upgrade.prepare(vm.qmp_socket, binary or vmlab.sim_binary(vm.spec.series), **kw)
    assert message in e.value.message, e.value.message
    assert vm.qmp("query-status")["status"] in ("running", "paused")
    assert switch_state(vm) == NO_STATE
    return e.value.message


def test_paused_guest_is_refused_before_cprsave(lab_vm):
    vm = _sim(lab_vm, "lu-paused", binary_copy=True)
    vm.qmp("stop")
    _refused_before_pause(vm, "the guest is paused")
    assert vm.qmp("query-status")["status"] == "paused"


@pytest.mark.parametrize("series", (5, 8))
def test_chardev_the_series_would_refuse_is_refused_before_cprsave(lab_vm, series):
    vm = _sim(lab_vm, "lu-chrpre", series, serial_reopen=False, binary_copy=True)
    _refused_before_pause(vm, "chardev ser0 (file) is not capable of cpr and lacks %s=on"
                          % ("close-on-cpr" if series == 5 else "reopen-on-cpr"))


def test_vfio_is_refused_before_cprsave(lab_vm):
    vm = _sim(lab_vm, "lu-vfio", binary_copy=True, extra_args=("-device", "vfio-pci,host=0000:00:01.0,id=hostdev0"))
    _refused_before_pause(vm, "VFIO devices (hostdev0)")


def test_precheck_missing_binary(lab_vm):
    vm = _sim(lab_vm, "lu-nobin", binary_copy=True)
    _refused_before_pause(vm, "does not exist", binary="/nonexistent/qemu-system-x86_64")


def test_precheck_binary_not_executable(lab_vm):
    vm = _sim(lab_vm, "lu-noexec", binary_copy=True)
    target = vm.run_dir + "/qemu-not-executable"
    shutil.copy2(vmlab.sim_binary(vm.spec.series), target)
    os.chmod(target, 0o644)
    _refused_before_pause(vm, "is not executable", binary=target)


@pytest.mark.parametrize("series", VERSIONS)
def test_precheck_volatile_ram(lab_vm, series):
    vm = _sim(lab_vm, "lu-nomemfd", series, memfd_alloc=False, binary_copy=True)
    _refused_before_pause(vm, "-cpr-enable restart" if series == 8 else "memfd-alloc=on")


def test_precheck_xen(lab_vm):
    vm = _sim(lab_vm, "lu-xenpre", xen=True, binary_copy=True)
    _refused_before_pause(vm, "Xen")


def test_precheck_runstate(lab_vm):
    vm = _sim(lab_vm, "lu-prelaunch", paused=True, binary_copy=True)
    with pytest.raises(upgrade.UpgradeError) as e:
        upgrade.prepare(vm.qmp_socket, vmlab.sim_binary(5))
    assert "runstate is 'prelaunch'" in e.value.message


@pytest.mark.parametrize("change, message", [
    (lambda argv: [a.replace(",memfd-alloc=on", "") for a in argv], "lacks -machine memfd-alloc=on"),
    (lambda argv: [("256M" if a == "64M" else a) for a in argv], "-m size=256M differs from the VM's -m size=64M"),
])
def test_precheck_new_argv(lab_vm, change, message):
    """An operator argv that would start the new binary without its memfds, or asking for more RAM
    than they hold, is refused at the switch."""
    vm = _sim(lab_vm, "lu-argv%d" % len(message), binary_copy=True)
    _changed, s, _msg = upgrade.prepare(vm.qmp_socket, vmlab.sim_binary(5))
    with pytest.raises(upgrade.UpgradeError) as e:
        upgrade.switch(s, argv=change(s["new_argv"]))
    assert message in e.value.message
    assert "the guest was not touched" in e.value.message
    assert vm.qmp("query-status")["status"] == "running"
    assert vm.evidence().problems() == []


def test_precheck_environment_over_the_exec_limit(lab_vm):
    vm = _sim(lab_vm, "lu-argmax", binary_copy=True)
    _changed, s, _msg = upgrade.prepare(vm.qmp_socket, vmlab.sim_binary(5))
    huge = s["new_argv"] + ["-name", "x" * (os.sysconf("SC_ARG_MAX"))]
    with pytest.raises(upgrade.UpgradeError) as e:
        upgrade.switch(s, argv=huge)
    assert "exec limit" in e.value.message
    assert vm.qmp("query-status")["status"] == "running"


# --- after cprsave: where the guest is on each failure ---------------------------

@pytest.mark.parametrize("series, no_shutdown", [(5, False), (6, True)])
def test_exec_that_fails_after_every_check(lab_vm, series, no_shutdown):
    """The binary vanishes between the last check and the exec.  V5 (and V6+ without a pause action)
    end the process: the guest is lost and the result says so.  V6+ with -no-shutdown lives on in
    save-vm: the guest is resumed on the old QEMU."""
    vm = _sim(lab_vm, "lu-execfail" + ("-ns" if no_shutdown else ""), series, no_shutdown=no_shutdown,
              binary_copy=True)
    target = vm.run_dir + "/qemu-vanishing"
    shutil.copy2(vmlab.sim_binary(vm.spec.series), target)
    _changed, given, _msg = upgrade.prepare(vm.qmp_socket, target)
    s = sessions.load(given)
    os.unlink(target)
    with QMPConnection(vm.qmp_socket) as conn:
        with pytest.raises(common.SwitchFailed) as e:
            live_update.switch(conn, s, 10, 5.0)
    if no_shutdown:
        assert e.value.recovered
        assert "the exec of %s failed" % target in e.value.message
        assert e.value.guest == "old QEMU, PID %d, running" % vm.pid
        evidence = vm.wait_ticks(2)
        assert evidence.problems() == [] and len(evidence.boots) == 1
    else:
        assert not e.value.recovered and e.value.guest == "lost"
        assert "the guest is lost" in e.value.message
        assert _wait_gone(vm)
