"""cpr-transfer keeps who the VM runs as: its successor gets the old QEMU's identity.

A VM running as nobody, in a pids cgroup of its own, is moved from QEMU 10.0 to
11.1 (in the trixie root, through the lab's launcher) by the modules' three
steps.  The new QEMU must have the old one's uid, gid, groups, working
directory, umask and cgroups, and the guest one continuous life.
"""
import pytest

import vmlab
from ansible_collections.cpr.qemu.plugins.module_utils import identity, upgrade

TARGET = "/usr/bin/qemu-system-x86_64"
NOBODY, NOGROUP = 65534, 65534
KEPT = ("uid", "gid", "groups", "cwd", "umask", "cgroups", "lsm_label", "no_new_privs", "caps", "environ")


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
    vm = lab_vm("id-%s" % drop_by, qemu="10.0", uid=NOBODY, gid=NOGROUP, drop_by=drop_by, own_cgroup=True)
    old_pid = vm.pid
    before = identity.capture(old_pid)
    assert (before["uid"], before["gid"]) == (NOBODY, NOGROUP)
    assert before["cwd"] == vm.run_dir
    own = [c for c in before["cgroups"] if c["controllers"] == ["pids"]]
    assert own and own[0]["path"] == vm.cgroup[len(vmlab.PIDS_CGROUP):], before["cgroups"]
    assert identity.problems(before, vm.argv) == []

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
