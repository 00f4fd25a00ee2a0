# -*- coding: utf-8 -*-
# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ctypes
import os
import resource
import subprocess
import sys
import time

import pytest

from ansible_collections.cpr.qemu.plugins.module_utils.privilege import identity, scheduling, syscalls

PIDS_CGROUP = "/sys/fs/cgroup/pids"
OTHER_UID, OTHER_GID, OTHER_GROUPS = 65534, 65533, [5, 6]


# ---------------------------------------------------------------- a fake /proc

# /proc/PID/stat of a QEMU (comm with a space and a parenthesis): nice 5, rt_priority 0, policy 3 (SCHED_BATCH).
STAT = ("4242 (qemu-system (x86) S 1 4242 4242 0 -1 4194624 9 0 0 0 5 3 0 0 25 5 7 0 812 1e9 2e4 "
        "18446744073709551615 1 1 0 0 0 0 0 4096 17 1 0 0 0 0 %d 3 0 0 0 0 0 0 0 0 0\n")
LIMITS = ("Limit                     Soft Limit           Hard Limit           Units     \n"
          "Max cpu time              unlimited            unlimited            seconds   \n"
          "Max core file size        0                    unlimited            bytes     \n"
          "Max open files            1024                 4096                 files     \n"
          "Max locked memory         65536                65536                bytes     \n"
          "Max realtime timeout      unlimited            unlimited            us        \n")


def _fake_proc(tmp_path, pid=4242, status=None, environ=b"A=1\0B=two words\0", cgroup=None,
               attr=None, cwd=None, rt_priority=0, namespaces=None):
    """A /proc with one process; its cwd is a real directory, its root '/', its namespaces this process's
    but for NAMESPACES."""
    base = tmp_path / "proc" / str(pid)
    (base / "attr").mkdir(parents=True)
    (base / "ns").mkdir()
    for kind in ("net", "ipc", "uts", "cgroup", "pid", "time", "user"):
        os.symlink(dict(namespaces or {}).get(kind) or os.readlink("/proc/self/ns/" + kind), str(base / "ns" / kind))
    fields = {"Name": "qemu-system-x86", "Umask": "0027", "Uid": "107\t107\t107\t107",
              "Gid": "108\t108\t108\t108", "Groups": "108 36 ", "NoNewPrivs": "1",
              "CapPrm": "0000000000000000", "CapEff": "0000000000000000", "CapAmb": "0000000000000000",
              "Cpus_allowed": "d", "Cpus_allowed_list": "0,2-3", "THP_enabled": "0"}
    fields.update(status or {})
    (base / "status").write_text("".join("%s:\t%s\n" % kv for kv in fields.items()))
    (base / "stat").write_text(STAT % rt_priority)
    (base / "oom_score_adj").write_text("-500\n")
    (base / "coredump_filter").write_text("00000023\n")
    (base / "limits").write_text(LIMITS)
    (base / "environ").write_bytes(environ)
    (base / "cgroup").write_text(cgroup or "9:name=systemd:/machine/vm1\n8:pids:/machine/vm1\n"
                                           "2:cpu,cpuacct:/machine\n0::/machine/vm1\n")
    if attr is not None:
        (base / "attr" / "current").write_bytes(attr)
    workdir = tmp_path / "work"
    workdir.mkdir(exist_ok=True)
    os.symlink(cwd or str(workdir), str(base / "cwd"))
    os.symlink("/", str(base / "root"))
    return str(tmp_path / "proc"), pid, str(workdir)


@pytest.fixture
def no_systemd(monkeypatch):
    """For a fake /proc: systemd is not asked, nor the kernel of the fake PID's scheduling flag and I/O
    priority (idle)."""
    monkeypatch.setattr(identity, "unit_main_pid", lambda unit: None)
    monkeypatch.setattr(scheduling, "_reset_on_fork", lambda pid: False)
    monkeypatch.setattr(scheduling, "_io_priority", lambda pid, policy, nice: [3, 0])


def test_capture_reads_every_item_from_proc(tmp_path, no_systemd):
    proc, pid, workdir = _fake_proc(tmp_path)
    ident = identity.capture(pid, proc=proc)
    assert (ident["uid"], ident["gid"], ident["groups"]) == (107, 108, [108, 36])
    assert ident["umask"] == 0o027
    assert ident["no_new_privs"] is True
    assert ident["cwd"] == workdir
    assert ident["environ"] == ["A=1", "B=two words"]
    assert ident["cgroups"] == [
        {"hierarchy": 9, "controllers": ["name=systemd"], "path": "/machine/vm1"},
        {"hierarchy": 8, "controllers": ["pids"], "path": "/machine/vm1"},
        {"hierarchy": 2, "controllers": ["cpu", "cpuacct"], "path": "/machine"},
        {"hierarchy": 0, "controllers": [], "path": "/machine/vm1"},
    ]
    assert ident["lsm_label"] is None  # no attr/current: no LSM
    assert ident["systemd_unit"] is None
    assert ident["scheduling"] == {
        "policy": 3, "reset_on_fork": False, "rt_priority": 0, "nice": 5, "cpus": [0, 2, 3], "io_priority": [3, 0],
        "oom_score_adj": -500,
        "limits": {"CPU": [None, None], "CORE": [0, None], "NOFILE": [1024, 4096], "MEMLOCK": [65536, 65536],
                   "RTTIME": [None, None]},
        "coredump_filter": 0x23, "thp_disabled": True}


def test_an_exiting_process_whose_coredump_filter_reads_empty_is_captured(tmp_path, no_systemd):
    """An exiting process's coredump_filter reads empty: that fails no capture (every dialect needs one), and
    cpr-transfer refuses what it could not read."""
    proc, pid, _workdir = _fake_proc(tmp_path)
    with open(os.path.join(proc, str(pid), "coredump_filter"), "w"):
        pass
    assert identity.capture(pid, proc=proc)["scheduling"]["coredump_filter"] is None


@pytest.mark.parametrize("text, cpus", [("0", [0]), ("0-3", [0, 1, 2, 3]), ("1,4-5,7\n", [1, 4, 5, 7]), ("", [])])
def test_cpu_list(text, cpus):
    assert scheduling.cpu_list(text) == cpus


OWN_LIMITS = {"NOFILE": [1024, 4096], "MEMLOCK": [65536, 65536], "CORE": [0, None]}
SYS_RESOURCE = 1 << scheduling.CAP_SYS_RESOURCE


def _tasks_proc(tmp_path):
    """A /proc of three processes: 4242 (uid 107, 5 threads), 4300 (uid 107, 3), 4400 (root's, 50)."""
    for pid, uid, threads in ((4242, 107, 5), (4300, 107, 3), (4400, 0, 50)):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "status").write_text("Name:\tx\nUid:\t%d\t%d\t%d\t%d\nThreads:\t%d\n"
                                                    % (uid, uid, uid, uid, threads))
    (tmp_path / "loadavg").write_text("0.50 0.40 0.30 1/58 4401\n")
    return str(tmp_path)


@pytest.mark.parametrize("io_priority, policy, nice, to_set", [
    # Class "none" where the policy and nice give it: the module's own must not pass on.
    ([2, 4], 0, 0, 0),  # best-effort at the level nice 0 gives
    ([2, 5], 3, 7, 0),
    ([3, 0], 5, 0, 0),  # SCHED_IDLE's
    ([1, 4], 1, 0, 0),  # SCHED_FIFO's
    ([3, 0], 0, 0, 3 << 13),  # ionice -c 3
    ([2, 0], 0, 7, 2 << 13),  # ionice -c 2 -n 0 beside nice 7
    ([1, 2], 0, 0, 1 << 13 | 2),
])
def test_io_priority_to_set(io_priority, policy, nice, to_set):
    assert scheduling.io_priority_to_set({"io_priority": io_priority, "policy": policy, "nice": nice}) == to_set


@pytest.mark.parametrize("change, caps, uid, refused", [
    ({}, 0, 107, []),
    ({"policy": 1, "rt_priority": 10}, 0, 107, []),
    # sched_setattr's policy, which Python cannot set, and a BPF scheduler's.
    ({"policy": 6}, 0, 107, ["it runs under the scheduling policy SCHED_DEADLINE, which the new QEMU would not get"]),
    ({"policy": 7}, 0, 107, ["it runs under the scheduling policy SCHED_EXT, which the new QEMU would not get"]),
    # Unread (an exiting process's coredump_filter; a process gone before ioprio_get).
    ({"io_priority": None, "coredump_filter": None}, 0, 107,
     ["its io_priority, coredump_filter cannot be read here, so the new QEMU would not get them"]),
    # A hard limit above the module's is raised only with CAP_SYS_RESOURCE.
    ({"limits": {"NOFILE": [1024, 8192], "MEMLOCK": [65536, None], "CORE": [0, None]}}, 0, 107,
     ["its hard limits are above this module's (MEMLOCK unlimited > 65536, NOFILE 8192 > 4096), which cannot "
      "raise them without CAP_SYS_RESOURCE"]),
    ({"limits": {"NOFILE": [1024, 8192]}}, SYS_RESOURCE, 107, []),
    ({"limits": {"NOFILE": [64, 2048]}}, 0, 107, []),
    # The user's 8 tasks and the old QEMU's 5 threads again: 13.
    ({"limits": {"NPROC": [12, 100]}}, SYS_RESOURCE, 107,
     ["its user (uid 107) runs 8 tasks and may run 12 (RLIMIT_NPROC): a new QEMU with the old one's 5 threads "
      "would not fit beside it"]),
    ({"limits": {"NPROC": [13, 100]}}, SYS_RESOURCE, 107, []),
    ({"limits": {"NPROC": [12, 100]}}, SYS_RESOURCE, 0, []),  # root's tasks are not limited
    ({"limits": {"NPROC": [63, 100]}}, SYS_RESOURCE, 107, []),  # the host's 58 tasks and 5 fit: not counted
])
def test_scheduling_problems(tmp_path, change, caps, uid, refused):
    sched = dict({"policy": 0, "reset_on_fork": False, "rt_priority": 0, "nice": 0, "cpus": [0],
                  "io_priority": [2, 4], "oom_score_adj": 0, "limits": {},
                  "coredump_filter": 0x33, "thp_disabled": False}, **change)
    assert scheduling.problems(sched, uid, 4242, OWN_LIMITS, caps, proc=_tasks_proc(tmp_path)) == refused


@pytest.mark.parametrize("attr, label", [
    (b"unconfined\n", None),
    (b"", None),
    (b"libvirt-3c1f (enforce)\n", "libvirt-3c1f (enforce)"),
    (b"system_u:system_r:svirt_t:s0:c12,c34\0", "system_u:system_r:svirt_t:s0:c12,c34"),
])
def test_lsm_label(tmp_path, no_systemd, attr, label):
    proc, pid, _workdir = _fake_proc(tmp_path, attr=attr)
    assert identity.capture(pid, proc=proc)["lsm_label"] == label


@pytest.mark.parametrize("kind, refused", [
    ("pid", "it runs in pid:[1] of its own, which the new QEMU would not share: its PID namespace"),
    ("time", "it runs in time:[1] of its own, which the new QEMU would not share: its time namespace"),
    ("user", "it runs in user:[1] of its own, which the new QEMU would not share: its user namespace"),
])
def test_a_pid_time_or_user_namespace_of_its_own_is_refused(tmp_path, no_systemd, kind, refused):
    proc, pid, _workdir = _fake_proc(tmp_path, namespaces={kind: "%s:[1]" % kind})
    ident = identity.capture(pid, proc=proc)
    assert identity.namespaces_to_join(ident) == []
    found = [f for f in identity.problems(ident, mountinfo=_mountinfo(tmp_path, [])) if "namespace" in f]
    assert len(found) == 1 and found[0].startswith("PID %d: %s" % (pid, refused)), found


def test_root_joins_no_namespace_its_user_namespace_does_not_own(tmp_path):
    """In a user namespace of its own the VM's user holds every capability in the network namespace it made:
    root would act (and its launcher connect) where that user listens."""
    proc = subprocess.Popen(["unshare", "--user", "--map-root-user", "--net", "--", "sleep", "300"])
    try:
        deadline = time.monotonic() + 10
        while os.readlink("/proc/%d/ns/user" % proc.pid) == os.readlink("/proc/self/ns/user"):
            assert proc.poll() is None and time.monotonic() < deadline, "the test process did not start"
            time.sleep(0.02)
        ident = identity.capture(proc.pid)
        found = identity.problems(ident)
        owner = ident["namespaces"]["user"]
        assert "PID %d: its net namespace is owned by %s, not by %s" % (
            proc.pid, owner, os.readlink("/proc/self/ns/user")) in found, found
        with pytest.raises(identity.IdentityError) as e:
            with identity.namespace_fds(ident):
                pass
        assert "its net namespace is owned by %s" % owner in str(e.value)
    finally:
        proc.kill()
        proc.wait()


def test_lsm_label_is_refused(tmp_path, no_systemd):
    proc, pid, _workdir = _fake_proc(tmp_path, attr=b"system_u:system_r:svirt_t:s0:c1,c2\n")
    found = identity.problems(identity.capture(pid, proc=proc))
    assert any("LSM label 'system_u:system_r:svirt_t:s0:c1,c2'" in p for p in found), found


def test_real_process_without_lsm_has_no_label():
    assert identity.capture(os.getpid())["lsm_label"] is None or os.path.exists("/sys/kernel/security/lsm")


@pytest.mark.parametrize("main_pid, refused", [(4242, True), (None, True), (17, False)])
def test_main_process_of_a_systemd_service(tmp_path, monkeypatch, main_pid, refused):
    asked = []
    monkeypatch.setattr(identity, "unit_main_pid", lambda unit: asked.append(unit) or main_pid)
    proc, pid, _workdir = _fake_proc(tmp_path, cgroup="1:name=systemd:/system.slice/vm-web1.service\n"
                                                      "0::/system.slice/vm-web1.service\n")
    ident = identity.capture(pid, proc=proc)
    assert ident["systemd_unit"] == "vm-web1.service"
    assert asked == ["vm-web1.service"]
    assert ident["systemd_main_pid"] == main_pid
    found = [p for p in identity.problems(ident) if "systemd service vm-web1.service" in p]
    assert bool(found) == refused, found


def test_v2_only_service_and_scope():
    assert identity.service_of([{"hierarchy": 0, "controllers": [], "path": "/system.slice/q.service/vm"}]) \
        == "q.service"
    assert identity.service_of([{"hierarchy": 0, "controllers": [], "path": "/qemu.slice/100.scope"}]) is None
    assert identity.service_of([{"hierarchy": 4, "controllers": ["pids"], "path": "/a.service"}]) is None


def _mountinfo(tmp_path, lines):
    path = tmp_path / "mountinfo"
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


def test_cgroup_dirs_follow_mountinfo(tmp_path):
    mounts = identity._mounts(_mountinfo(tmp_path, [
        "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct",
        "39 31 0:36 /lxc/c1 /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids",
        "40 31 0:37 / /mnt/sd\\040cg rw - cgroup cgroup rw,xattr,name=systemd",
        "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw",
    ]))

    def where(hid, controllers, path):
        return identity.cgroup_dir({"hierarchy": hid, "controllers": controllers, "path": path}, mounts)
    assert where(2, ["cpu", "cpuacct"], "/machine") == "/sys/fs/cgroup/cpu,cpuacct/machine"
    assert where(8, ["pids"], "/lxc/c1/vm") == "/sys/fs/cgroup/pids/vm"
    assert where(8, ["pids"], "/elsewhere") is None  # outside what this mount shows
    assert where(9, ["name=systemd"], "/") == "/mnt/sd cg"
    assert where(0, [], "/machine/vm1") == "/sys/fs/cgroup/unified/machine/vm1"
    assert where(5, ["memory"], "/") is None  # not mounted here


def test_problems_name_each_reason(tmp_path, no_systemd):
    proc, pid, _workdir = _fake_proc(
        tmp_path, environ=b"A=1\0junk\0A=2\0", cwd="/nonexistent/dir",
        status={"Uid": "0\t0\t0\t0", "CapEff": "0000000000000400"})
    ident = identity.capture(pid, proc=proc)
    found = identity.problems(ident, argv=["qemu-system-x86_64", "-run-with", "chroot=/var/empty"],
                              mountinfo=_mountinfo(tmp_path, []))
    text = "\n".join(found)
    assert "working directory /nonexistent/dir" in text
    assert "entry 2 of its environment (4 bytes) is no NAME=VALUE" in text and "junk" not in text
    assert "sets A twice" in text
    assert "runs as root with capabilities 0000000000000400" in text
    assert "chroots itself" not in text  # root can chroot again
    assert "cgroup /machine/vm1 of hierarchy pids is not reachable" in text
    assert all(p.startswith("PID %d: " % pid) for p in found)


def test_unprivileged_with_capabilities_or_own_chroot_is_refused(tmp_path, no_systemd):
    proc, pid, _workdir = _fake_proc(tmp_path, status={"CapAmb": "0000000000003000"})
    ident = identity.capture(pid, proc=proc)
    text = "\n".join(identity.problems(ident, argv=["q", "-run-with", "user=qemu,chroot=/var/empty"]))
    assert "capabilities (CapAmb=0000000000003000)" in text
    assert "chroots itself into /var/empty after start-up as uid 107" in text


@pytest.mark.parametrize("argv, uid, want", [
    (["q", "-m", "1G", "-run-with", "user=nobody", "-S"], 65534, ["q", "-m", "1G", "-S"]),
    (["q", "-run-with", "async-teardown=on,user=65534:65534,chroot=/x", "disk.img"], 65534,
     ["q", "-run-with", "async-teardown=on", "disk.img"]),
    (["q", "--runas", "qemu", "-chroot", "/var/empty", "-nodefaults"], 107, ["q", "-nodefaults"]),
    (["q", "-run-with", "user=nobody"], 0, ["q", "-run-with", "user=nobody"]),
    (["q", "-name", "a,,b", "-run-with", "exit-with-parent=on"], 107,
     ["q", "-name", "a,,b", "-run-with", "exit-with-parent=on"]),
])
def test_argv_for_drops_qemus_own_privilege_drop(argv, uid, want):
    assert identity.argv_for(argv, {"uid": uid}) == want


# ---------------------------------------------------------------- real processes

def _assert_root():
    assert os.geteuid() == 0, "these tests start processes as other users and create cgroups: run them as root"


@pytest.fixture
def own_cgroup():
    """A pids cgroup of this test's own, removed afterwards (its processes are killed first)."""
    _assert_root()
    assert os.path.isdir(PIDS_CGROUP), "no cgroup v1 pids hierarchy at %s" % PIDS_CGROUP
    path = os.path.join(PIDS_CGROUP, "cpr-qemu-test-%d" % os.getpid())
    os.mkdir(path)
    try:
        yield path
    finally:
        deadline = time.monotonic() + 10
        while True:
            try:
                os.rmdir(path)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


@pytest.fixture
def workdir(tmp_path):
    """A directory the other user can enter, below a parent it cannot (like a VM's run directory)."""
    d = tmp_path / "vm dir"
    d.mkdir()
    os.chmod(str(d), 0o755)
    return str(d)


VM_ENV = {"PATH": "/usr/bin:/bin", "VM_NAME": "web1", "SPACED": "a b  c", "EMPTY": ""}


# How the other process is scheduled and limited, none of it this process's own (limits only lowered: this
# machine's root may lack CAP_SYS_RESOURCE).
OTHER_CPUS = sorted(os.sched_getaffinity(0))[-1:]
OTHER_NOFILE = [min(256, resource.getrlimit(resource.RLIMIT_NOFILE)[0]), 4096]
# The I/O priority (idle), core dump filter and no-THP flag are the process's own: each kept over exec.
# THP is turned off by prctl(PR_SET_THP_DISABLE) in Python, which adds LC_CTYPE to the environment (PEP 538).
SCHEDULED = ("prlimit --nofile=%d:%d --core=0 chrt --batch --reset-on-fork 0 nice -n 7 taskset -c %d ionice -c 3 "
             "%s -c 'import ctypes, os, sys; ctypes.CDLL(None).prctl(41, 1, 0, 0, 0); os.environ.pop(\"LC_CTYPE\", None); "
             "os.execvp(sys.argv[1], sys.argv[1:])'" % (OTHER_NOFILE[0], OTHER_NOFILE[1], OTHER_CPUS[0], sys.executable))


@pytest.fixture
def other_process(own_cgroup, workdir):
    """A process started without identity.py as another user, in own_cgroup, with its own cwd, env, umask,
    scheduling, limits and network, IPC and UTS namespaces."""
    procs = os.path.join(own_cgroup, "cgroup.procs")
    script = ('echo $$ > "$0" && umask 0027 && echo 300 > /proc/self/oom_score_adj && echo 0x23 > /proc/self/coredump_filter '
              '&& exec unshare --net --ipc --uts '
              '-- %s setpriv --reuid=%d --regid=%d --groups=%s -- sleep 300'
              % (SCHEDULED, OTHER_UID, OTHER_GID, ",".join(map(str, OTHER_GROUPS))))
    proc = subprocess.Popen(["/bin/sh", "-c", script, procs], cwd=workdir, env=VM_ENV)
    try:
        deadline = time.monotonic() + 10
        while identity.capture(proc.pid)["uid"] != OTHER_UID:
            assert proc.poll() is None and time.monotonic() < deadline, "the test process did not start"
            time.sleep(0.02)
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _cgroup_lines(pid):
    with open("/proc/%d/cgroup" % pid) as f:
        return sorted(f.read().splitlines())


def test_capture_a_real_process(other_process, own_cgroup, workdir):
    ident = identity.capture(other_process.pid)
    assert (ident["uid"], ident["gid"], sorted(ident["groups"])) == (OTHER_UID, OTHER_GID, OTHER_GROUPS)
    assert ident["umask"] == 0o027
    assert ident["cwd"] == workdir
    # sh exports PWD before it execs.
    assert sorted(ident["environ"]) == sorted(["%s=%s" % kv for kv in VM_ENV.items()] + ["PWD=" + workdir])
    pids = [cg for cg in ident["cgroups"] if cg["controllers"] == ["pids"]]
    assert pids == [{"hierarchy": pids[0]["hierarchy"], "controllers": ["pids"],
                     "path": "/" + os.path.basename(own_cgroup)}]
    assert ident["lsm_label"] is None
    sched = ident["scheduling"]
    assert (sched["policy"], sched["reset_on_fork"], sched["nice"], sched["cpus"], sched["oom_score_adj"]) == (
        os.SCHED_BATCH, True, 7, OTHER_CPUS, 300)
    assert (sched["io_priority"], sched["coredump_filter"], sched["thp_disabled"]) == ([3, 0], 0x23, True)
    assert sched["limits"]["NOFILE"] == OTHER_NOFILE and sched["limits"]["CORE"] == [0, 0]
    assert identity.problems(ident) == []


PROBE = "id -u; id -G; pwd; umask; cat /proc/self/cgroup; echo ENV; env"


def _run(argv, ident, launcher=(), before=lambda: None):
    """ARGV run as IDENT's process runs (launch_command, its namespaces open as cpr_transfer opens them);
    ``before`` runs once the command is built."""
    with identity.namespace_fds(ident) as namespaces:
        cmd, kwargs = identity.launch_command(argv, ident, launcher, namespaces)
        before()
        return subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              start_new_session=True, close_fds=True, timeout=30, check=False, **kwargs)


def _launched(ident, launcher=()):
    out = _run(["/bin/sh", "-c", PROBE], ident, launcher)
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout.decode()


def _assert_same(text, other_process, workdir):
    lines = text.splitlines()
    ident = identity.capture(other_process.pid)
    assert int(lines[0]) == OTHER_UID
    assert sorted(map(int, lines[1].split())) == sorted([OTHER_GID] + OTHER_GROUPS)
    assert lines[2] == workdir
    assert lines[3] == "0027"
    end = lines.index("ENV")
    assert sorted(lines[4:end]) == _cgroup_lines(other_process.pid)
    env = lines[end + 1:]
    for entry in ident["environ"]:
        assert entry in env, (entry, env)
    assert not [e for e in env if e.startswith(identity.SPEC_VAR)]
    assert not [e for e in env if e.split("=")[0] not in VM_ENV and e.split("=")[0] not in ("PWD", "OLDPWD")]


def test_launch_command_reproduces_the_identity(other_process, workdir):
    ident = identity.capture(other_process.pid)
    _assert_same(_launched(ident), other_process, workdir)


def test_launch_command_through_a_launcher_that_needs_root(other_process, workdir):
    """chroot needs CAP_SYS_CHROOT: the identity is dropped only after the launcher."""
    ident = identity.capture(other_process.pid)
    _assert_same(_launched(ident, launcher=["chroot", "/"]), other_process, workdir)


@pytest.mark.parametrize("launcher", [(), ("chroot", "/")])
def test_launched_process_is_the_popend_pid_scheduled_and_limited_alike(other_process, launcher):
    """The scheduling and the limits are set as root before the identity is dropped (a raised hard limit, a
    lower OOM score adjustment need it), and before a launcher, which passes them on."""
    ident = identity.capture(other_process.pid)
    with identity.namespace_fds(ident) as namespaces:
        cmd, kwargs = identity.launch_command(["/bin/sleep", "30"], ident, launcher, namespaces)
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, start_new_session=True, close_fds=True, **kwargs)
    try:
        deadline = time.monotonic() + 10
        while True:
            with open("/proc/%d/cmdline" % proc.pid, "rb") as f:
                if f.read() == b"/bin/sleep\x0030\x00":
                    break
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        launched = identity.capture(proc.pid)
        assert launched["uid"] == OTHER_UID
        assert launched["scheduling"] == ident["scheduling"]
        assert identity.namespaces_to_join(ident) == ["ipc", "net", "uts"]
        assert launched["namespaces"] == ident["namespaces"]
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("opened", [True, False])
def test_nothing_starts_until_the_gate_opens_and_nothing_once_it_closed_unopened(other_process, opened):
    """cpr_transfer records the new QEMU's PID before it opens the gate: a switch that dies in between (its
    end of the pipe closed) leaves no process that nobody knows of."""
    ident = identity.capture(other_process.pid)
    gate, gate_open = os.pipe()
    try:
        with identity.namespace_fds(ident) as namespaces:
            cmd, kwargs = identity.launch_command(["/bin/true"], ident, (), namespaces, gate=gate)
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
                                    close_fds=True, **kwargs)
    finally:
        os.close(gate)
    time.sleep(0.2)
    assert proc.poll() is None  # held at the gate
    if opened:
        os.write(gate_open, b"1")
    os.close(gate_open)
    _out, err = proc.communicate(timeout=30)
    refused = (126, b"cpr.qemu identity launcher: wait for the module: it is gone\n")
    assert (proc.returncode, err) == ((0, b"") if opened else refused)


@pytest.fixture
def plain_process():
    """A process started as this one is, before the test changes this process's own I/O priority and THP flag."""
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


def test_the_modules_own_io_priority_and_thp_flag_do_not_pass_on(plain_process):
    """A module run under ionice or with THP off (a unit's IOSchedulingClass=, say) starts a new QEMU as the old
    one runs, not as the module does: the stage sets both either way."""
    ident = identity.capture(plain_process.pid)
    libc = ctypes.CDLL(None, use_errno=True)
    syscalls.call("ioprio_set", 1, 0, 2 << 13)  # best-effort, level 0: not what nice 0 gives
    assert libc.prctl(41, 1, 0, 0, 0) == 0
    try:
        out = _run(["/bin/sh", "-c", "grep THP_enabled /proc/self/status; ionice"], ident)
    finally:
        syscalls.call("ioprio_set", 1, 0, 0)
        libc.prctl(41, 0, 0, 0, 0)
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode().split() == ["THP_enabled:", "1", "none:", "prio", "0"]


def test_a_root_launcher_runs_under_its_own_limits(other_process, tmp_path):
    """The VM's user chose its limits (a file size limit would cut what a root launcher writes): they are set
    after the launcher, for QEMU alone."""
    ident = identity.capture(other_process.pid)
    seen = tmp_path / "launcher-limits"
    launcher = ["/bin/sh", "-c", 'cat /proc/self/limits > "$0" && exec "$@"', str(seen)]
    _assert_same(_launched(ident, launcher=launcher), other_process, workdir=ident["cwd"])
    with open("/proc/self/limits") as f:
        assert scheduling.limits(seen.read_text()) == scheduling.limits(f.read())


# add_key(2)'s system call number, where the tests run.
ADD_KEY = {"x86_64": 248}


def test_the_new_process_has_a_session_keyring_of_its_own(other_process):
    """A key in the module's session keyring (an SSH login links root's keys there) is not the new QEMU's:
    it possesses none of it, and cannot view it (/proc/keys lists what the reader may view)."""
    libc = ctypes.CDLL(None, use_errno=True)
    # This test process's own session keyring, so that the key goes nowhere else.
    assert syscalls.call("keyctl", 1, None) > 0
    name = b"cpr-qemu-test-%d" % os.getpid()
    assert libc.syscall(ADD_KEY[os.uname().machine], b"user", name, b"root-only", 9, -3) > 0  # session keyring
    with open("/proc/keys") as f:
        assert name.decode() in f.read()
    ident = identity.capture(other_process.pid)
    for launcher in ((), ("chroot", "/")):
        out = _run(["/bin/cat", "/proc/keys"], ident, launcher)
        assert out.returncode == 0, out.stderr
        assert name not in out.stdout


def test_a_failing_step_stops_before_qemu(other_process, tmp_path):
    ident = identity.capture(other_process.pid)
    ident["cwd"] = str(tmp_path / "gone")
    marker = tmp_path / "ran"
    out = _run(["/bin/sh", "-c", "touch %s" % marker], ident)
    assert out.returncode == 126
    assert b"cpr.qemu identity launcher: chdir" in out.stderr
    assert not marker.exists()


def test_a_vanished_cgroup_stops_before_qemu(other_process, own_cgroup, tmp_path):
    ident = identity.capture(other_process.pid)
    gone = os.path.join(PIDS_CGROUP, "cpr-qemu-test-%d-gone" % os.getpid())
    os.mkdir(gone)
    for cg in ident["cgroups"]:
        if cg["controllers"] == ["pids"]:
            cg["path"] = "/" + os.path.basename(gone)
    out = _run(["/bin/true"], ident, before=lambda: os.rmdir(gone))
    assert out.returncode == 126
    assert b"join cgroup %s/cgroup.procs" % gone.encode() in out.stderr


def test_launch_command_refuses_what_problems_refuses(tmp_path, no_systemd):
    proc, pid, _workdir = _fake_proc(tmp_path, attr=b"svirt_t\n")
    with pytest.raises(identity.IdentityError) as e:
        identity.launch_command(["/bin/true"], identity.capture(pid, proc=proc),
                                mountinfo=_mountinfo(tmp_path, []))
    assert "LSM label" in str(e.value)
