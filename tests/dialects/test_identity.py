# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
"""Every dialect keeps who the VM runs as.

cpr-transfer: a VM running as nobody, in a pids cgroup of its own, niced,
pinned, limited and with an OOM score adjustment, is moved from QEMU 10.0 to
11.1 (in the trixie root, through the lab's launcher) by the modules' three
steps.  The new QEMU must have the old one's uid, gid, groups, working
directory, umask, cgroups, scheduling and limits, and the guest one continuous
life.

cpr-exec (11.1) and the live-update series (the simulator): the same process
exec's the new binary; it must come out with the same uid, gid, groups,
cgroups, umask and working directory, and qemu_cpr_info's ``runs_as`` must not
change.  Both ways of running as nobody are tried for cpr-exec: started as
nobody, and dropped by QEMU itself (-run-with user=).
"""
import os
import shutil
import tempfile

import pytest

import vmlab
from conftest import NO_STATE, switch_state
from ansible_collections.cpr.qemu.plugins.module_utils import upgrade, vm_facts
from ansible_collections.cpr.qemu.plugins.module_utils.privilege import identity

TARGET = "/usr/bin/qemu-system-x86_64"
NOBODY, NOGROUP = 65534, 65534
KEPT = ("uid", "gid", "groups", "cwd", "umask", "cgroups", "lsm_label", "no_new_privs", "caps", "environ",
        "scheduling")
# How a service manager may have QEMU scheduled and limited (systemd's OOMScoreAdjust=, LimitNOFILE=,
# LimitCORE=, CPUSchedulingPolicy=, CPUSchedulingResetOnFork=, Nice=, CPUAffinity=, IOSchedulingClass=,
# CoredumpFilter=): none of it the modules' own. Limits are only lowered and the OOM score adjustment raised: this
# machine's root may lack CAP_SYS_RESOURCE.
SCHEDULED = ("sh", "-c", 'echo 300 > /proc/self/oom_score_adj && echo 0x23 > /proc/self/coredump_filter && exec "$@"',
             "sh",
             "prlimit", "--nofile=512:8192", "--core=0", "chrt", "--batch", "--reset-on-fork", "0", "nice", "-n", "7",
             "taskset", "-c", str(sorted(os.sched_getaffinity(0))[-1]), "ionice", "-c", "3")


def _kept(ident):
    kept = {k: ident[k] for k in KEPT}
    kept["groups"] = sorted(kept["groups"])
    kept["environ"] = sorted(kept["environ"])
    kept["cgroups"] = sorted((c["hierarchy"], tuple(c["controllers"]), c["path"]) for c in kept["cgroups"])
    return kept


def _upgrade(vm):
    changed, s, _msg = upgrade.prepare(vm.qmp_socket, TARGET, dialect="cpr-transfer", new_root=vmlab.ROOT,
                                       launcher=vmlab.launcher())
    assert changed
    _changed, s, _msg = upgrade.switch(s, switch_timeout=120.0)
    _changed, result, _msg = upgrade.verify(s)
    vm.adopt(result["new_pid"])  # stop() kills the successor too, but the record follows the VM
    return result


@pytest.mark.parametrize("drop_by", ["launch", "qemu"])
def test_cpr_transfer_keeps_user_groups_cwd_umask_and_cgroups(lab_vm, drop_by):
    """drop_by=qemu: QEMU dropped to nobody itself (-run-with user=); its successor, started as
    nobody, must not get that option (it would die in setgroups)."""
    vm = lab_vm("id-%s" % drop_by, qemu="10.0", uid=NOBODY, gid=NOGROUP, drop_by=drop_by, own_cgroup=True,
                launch_prefix=SCHEDULED)
    old_pid = vm.pid
    before = identity.capture(old_pid)
    assert (before["uid"], before["gid"]) == (NOBODY, NOGROUP)
    assert before["cwd"] == vm.run_dir
    own = [c for c in before["cgroups"] if c["controllers"] == ["pids"]]
    assert own and own[0]["path"] == vm.cgroup[len(vmlab.PIDS_CGROUP):], before["cgroups"]
    assert identity.problems(before, vm.argv) == []
    sched = before["scheduling"]
    assert (sched["policy"], sched["reset_on_fork"], sched["nice"], sched["oom_score_adj"],
            sched["limits"]["CORE"]) == (os.SCHED_BATCH, True, 7, 300, [0, 0])
    assert (sched["io_priority"], sched["coredump_filter"]) == ([3, 0], 0x23)

    result = _upgrade(vm)

    new_pid = result["new_pid"]
    assert new_pid != old_pid and result["new_version"].startswith("11.1")
    after = identity.capture(new_pid)
    assert _kept(after) == _kept(before)
    assert after["root"] == vmlab.ROOT  # it does run in the 11.1 root
    with open("/proc/%d/cmdline" % new_pid, "rb") as f:
        argv = f.read().split(b"\0")
    assert b"-run-with" not in argv
    assert not vmlab._alive(old_pid, vm.starttime or 0)
    evidence = vm.wait_ticks(3, timeout=120)
    assert evidence.problems() == []
    assert len(evidence.boots) == 1


# ---------------------------------------------------------------- the exec dialects: same process, same identity

# What an exec keeps: the environment is QEMU's business (the live-update series adds its QEMU_FD_* entries).
EXEC_KEPT = tuple(k for k in KEPT if k != "environ")


def _root_owned_copy(source, directory, cleanup_list):
    """A copy of a binary where root alone could have put it: a VM running as nobody keeps its binary copy in
    its run directory, which is nobody's, and such a binary is untrusted (trust.py), so the target is a copy
    of root's instead."""
    path = os.path.join(directory, "qemu-system-x86_64-%s-%d" % (os.path.basename(vmlab.RUN_BASE), os.getpid()))
    shutil.copy2(source, path)
    cleanup_list.append(path)
    return path


@pytest.fixture
def copies():
    made = []
    yield made
    for path in made:
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.unlink(path)


def _exec_upgrade(vm, binary, dialect):
    before, runs_as = identity.capture(vm.pid), vm_facts.inspect(vm.qmp_socket, 10.0)["runs_as"]
    assert (before["uid"], before["gid"]) == (NOBODY, NOGROUP)
    assert [c["path"] for c in before["cgroups"] if c["controllers"] == ["pids"]] == \
        [vm.cgroup[len(vmlab.PIDS_CGROUP):]]
    changed, s, _msg = upgrade.prepare(vm.qmp_socket, binary, dialect=dialect)
    assert changed and s["dialect"] == dialect
    _changed, s, _msg = upgrade.switch(s, switch_timeout=120.0)
    _changed, result, _msg = upgrade.verify(s)
    assert result["new_pid"] == vm.pid
    after = identity.capture(vm.pid)
    assert dict((k, _kept(after)[k]) for k in EXEC_KEPT) == dict((k, _kept(before)[k]) for k in EXEC_KEPT)
    assert vm_facts.inspect(vm.qmp_socket, 10.0)["runs_as"] == runs_as
    assert switch_state(vm) == NO_STATE
    evidence = vm.wait_ticks(3, timeout=120)
    assert evidence.problems() == [] and len(evidence.boots) == 1
    return result


@pytest.mark.parametrize("drop_by", ["launch", "qemu"])
def test_cpr_exec_keeps_user_groups_and_cgroups(lab_vm, copies, drop_by):
    """drop_by=qemu: QEMU dropped to nobody itself (-run-with user=65534:65534).  A fresh QEMU 11.1 started
    as nobody with that option dies ("Failed to setgroups(1, [65534])"); an exec'd 11.1.3 was seen to
    live on with it, but the modules take no chance on other builds: the exec'd argv drops QEMU's own
    privilege options once the process runs unprivileged (it runs as that user already)."""
    vm = lab_vm("idx-%s" % drop_by, qemu="11.1", uid=NOBODY, gid=NOGROUP, drop_by=drop_by, own_cgroup=True,
                launch_prefix=SCHEDULED)
    target = _root_owned_copy(vmlab.ROOT + TARGET, vmlab.ROOT + "/usr/local/bin", copies)
    result = _exec_upgrade(vm, target[len(vmlab.ROOT):], "cpr-exec")
    assert result["new_version"].startswith("11.1")
    with open("/proc/%d/cmdline" % vm.pid, "rb") as f:
        assert b"-run-with" not in f.read().split(b"\0")


def test_live_update_keeps_user_groups_and_cgroups(lab_vm, copies):
    vm = lab_vm("idx-lu", qemu="sim", series=5, mem_mb=64, uid=NOBODY, gid=NOGROUP, own_cgroup=True)
    directory = tempfile.mkdtemp(prefix="cpr-identity-", dir="/var/lib")
    copies.append(directory)
    os.chmod(directory, 0o755)
    _exec_upgrade(vm, _root_owned_copy(vmlab.sim_binary(5), directory, []), "live-update")


def test_a_vm_in_a_pid_namespace_of_its_own_is_not_ready_for_cpr_transfer(lab_vm):
    """A new QEMU could not be started in the old one's PID namespace (a process cannot enter one): qemu_cpr_info
    says cpr-transfer is not ready, and why, and qemu_cprsave refuses it with nothing changed."""
    vm = lab_vm("id-pidns", qemu="10.0", launch_prefix=("unshare", "--pid", "--fork"))
    with open("/proc/%d/task/%d/children" % (vm.pid, vm.pid)) as f:
        vm.adopt(int(f.read().split()[0]))  # QEMU is unshare's child, the namespace's first process
    report = vm_facts.inspect(vm.qmp_socket, 10.0)
    assert report["pid"] == vm.pid
    refusals = report["runs_as"]["transfer_refusals"]
    assert len(refusals) == 1 and "pid:[" in refusals[0], refusals
    assert report["dialects"]["cpr-transfer"]["reasons"] == refusals and report["preferred_dialect"] is None
    with pytest.raises(upgrade.UpgradeError, match="not ready for cpr-transfer: PID %d: it runs in pid:" % vm.pid):
        upgrade.prepare(vm.qmp_socket, TARGET, dialect="cpr-transfer", new_root=vmlab.ROOT, launcher=vmlab.launcher())
    assert switch_state(vm) == NO_STATE and vm.running()
