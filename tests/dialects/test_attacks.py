# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
"""Tests that attack (issue 11): a local user, or a VM's QEMU user, tries to make root run, write or remove
something through the modules.

Each test plays the attacker as an unprivileged user (nobody, through setpriv) and proves that root ran none
of the attacker's files (a marker the attacker's programs would leave, with a positive control that they do
leave it when run) and created, changed or removed nothing outside the VM's own state (every attacker-visible
and every victim directory is listed and hashed, with owners, modes and times, before and after).

- A fake QEMU: the live-update simulator's script, run by python under the name qemu-system-x86_64, as
  nobody, chrooted in a tree of its own inside an unprivileged user namespace, whose own
  /usr/bin/qemu-system-x86_64 is the attacker's script.  Discovery reports it untrusted, with no dialect
  ready; prepare refuses it, in check mode too.
- A real QEMU binary copied into a directory of nobody's and run as nobody (outside any namespace), the file
  then replaced by the attacker's script: untrusted, refused.
- A VM running as nobody whose QMP socket directory nobody writes: its work directory planted as a symlink
  to a directory of root's, the socket directory's path swapped for a symlink between prepare and switch,
  the entries root creates in the work directory (state, cpr.sock, main.sock, the socket's backup name)
  planted as symlinks to root's files and as FIFOs, for cpr-transfer and cpr-exec; and a VM whose QEMU
  started as root (-run-with user=) with a chardev file and a QMP socket in a directory only root may write:
  its cpr-transfer successor, running as nobody, must not create or change anything there.
- After a cpr-transfer upgrade, the root-only lock directory keeps its modes (where the new QEMU's log is).
- A local user's cgroup named like a systemctl option (``--host=USER@HOST:x.service``, in a cgroup delegated
  to that user as systemd delegates one to every user manager): discovery must not run anything on its say-so.
"""
import hashlib
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time

import pytest

import vmlab
from conftest import NO_STATE, switch_state
from ansible_collections.cpr.qemu.plugins.module_utils import process, qemu_binary, upgrade, vm_facts
from ansible_collections.cpr.qemu.plugins.module_utils.privilege import identity
from ansible_collections.cpr.qemu.plugins.module_utils.recovery import state

NOBODY, NOGROUP = 65534, 65534
AS_NOBODY = ["setpriv", "--reuid=%d" % NOBODY, "--regid=%d" % NOGROUP, "--clear-groups", "--"]
TARGET = "/usr/bin/qemu-system-x86_64"
SIM_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "simulator", "liveupdate_sim.py")
# Directories every lab QEMU sees at the same path, in the host's root and the trixie root (in-root.sh binds it).
LAB_SHARED = os.path.dirname(vmlab.RUN_BASE)
# The attacker's "QEMU": whoever runs it, as whoever, leaves a line in the marker file.
MARKER_SCRIPT = """#!/bin/sh
echo "ran: $*" >> "${MARK:-%s}"
echo "QEMU emulator version 11.1.0"
"""
VICTIM_TEXT = b"root's precious file\n"


# ---------------------------------------------------------------- what root must leave alone

def tree(top, skip=(), loose=()):
    """Everything below top as lstat sees it: type, mode, owner, inode, times, and each file's sha256 or
    link's target.  ``skip``: relative paths left out (what the VM itself writes); ``loose``: directories
    whose own times are left out (the VM's own state comes and goes in them)."""
    found = {}

    def visit(path):
        rel = os.path.relpath(path, top)
        if rel in skip:
            return
        st = os.lstat(path)
        entry = {"type": stat.S_IFMT(st.st_mode), "mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid,
                 "gid": st.st_gid, "ino": st.st_ino, "nlink": st.st_nlink, "ctime": st.st_ctime_ns}
        if stat.S_ISREG(st.st_mode):
            with open(path, "rb") as f:
                entry.update(size=st.st_size, mtime=st.st_mtime_ns, sha256=hashlib.sha256(f.read()).hexdigest())
        elif stat.S_ISLNK(st.st_mode):
            entry["target"] = os.readlink(path)
        elif stat.S_ISDIR(st.st_mode):
            entry["mtime"] = st.st_mtime_ns
            if rel in loose:
                del entry["mtime"], entry["ctime"], entry["nlink"]
            for name in sorted(os.listdir(path)):
                visit(os.path.join(path, name))
        found[rel] = entry
    visit(top)
    return found


def as_nobody(*cmd, env=None):
    """Run a command as the attacker (nobody, no groups)."""
    subprocess.run(AS_NOBODY + list(cmd), check=True, cwd="/", env=env, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL)


def root_dir(prefix, base="/var/lib", mode=0o755):
    """A fresh directory of root's (root's alone all the way up), removed by the caller's cleanup."""
    os.makedirs(base, exist_ok=True)
    path = tempfile.mkdtemp(prefix=prefix, dir=base)
    os.chmod(path, mode)
    return path


def chown_tree(top, uid=NOBODY, gid=NOGROUP):
    for dirpath, dirnames, filenames in os.walk(top):
        os.lchown(dirpath, uid, gid)
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), uid, gid)


def write(path, data, mode=0o644):
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def marker_script(path, marker):
    write(path, (MARKER_SCRIPT % marker).encode(), 0o755)


def assert_refused(call, *words):
    with pytest.raises(upgrade.UpgradeError) as e:
        call()
    for word in words:
        assert word in e.value.message, e.value.message
    return e.value.message


def lock_dirs_of(sockets):
    """The root-only lock directories (state.vm_key) of these QMP sockets that exist; found while the
    sockets' directories exist."""
    found = []
    for sock in sockets:
        try:
            path = os.path.join(state.LOCK_BASE, state.vm_key(sock))
        except OSError:
            continue
        if os.path.isdir(path):
            found.append(path)
    return found


def _locks_of(qmp_socket):
    """Session locks held for this QMP socket (as QEMU was given it)."""
    return [d for d in lock_dirs_of([qmp_socket]) if os.path.exists(os.path.join(d, "session.json"))]


def stops(vm):
    return [e for e in vm.events() if e["event"] == "STOP"]


# ---------------------------------------------------------------- fixtures

@pytest.fixture
def cleanup():
    """Undo actions, run last-in first-out at the end, pass or fail."""
    actions = []
    yield actions.append
    errors = []
    for action in reversed(actions):
        try:
            action()
        except Exception as e:  # pylint: disable=broad-except
            errors.append(repr(e))
    assert not errors, errors


@pytest.fixture
def lab(cleanup):
    """lab_vm with the lock directories of every QMP socket a test names: they are found while the VM's
    directories still exist, then the VM is stopped and they are removed."""
    def start(name, sockets=(), **spec):
        vm = vmlab.LabVM(vmlab.VMSpec(name, **spec))

        def stop():
            dirs = lock_dirs_of([vm.qmp_socket] + list(sockets))
            vm.stop()
            for path in dirs:
                shutil.rmtree(path, ignore_errors=True)
        cleanup(stop)
        vm.start()
        vm.wait_ticks(2, timeout=120)
        return vm
    return start


def _kill_group(proc):
    """Kill the process group of a process this test started (its own session), and reap it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def _wait_for(path, proc, log, timeout=60):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if proc.poll() is not None or time.monotonic() > deadline:
            with open(log, errors="replace") as f:
                raise AssertionError("the attacker's QEMU did not come up (status %s): %s" % (proc.poll(), f.read()))
        time.sleep(0.05)


def _discovered(pid):
    """What qemu_cpr_info finds for this process: process.discover() entries."""
    return [e for e in process.discover() if e["pid"] == pid]


def _assert_untrusted_everywhere(found, why):
    """qemu_cpr_info's report (with a target binary, as the role runs it): untrusted, no dialect ready."""
    target = qemu_binary.probe(TARGET)
    reports = vm_facts.inspect_discovered(found, 10.0, target)
    assert len(reports) == 1 and "error" not in reports[0], reports
    report = reports[0]
    assert report["untrusted"] and why in report["untrusted"], report["untrusted"]
    assert report["preferred_dialect"] is None
    offered = [d for d, verdict in report["dialects"].items() if verdict["via"]]
    assert offered
    for dialect, verdict in report["dialects"].items():
        assert not verdict["ready"], (dialect, verdict)
        if dialect in offered:
            assert any(r.startswith("untrusted: ") for r in verdict["reasons"]), (dialect, verdict)
    return report


# ---------------------------------------------------------------- 1. fake QEMUs

# Run by the attacker in its user namespace: bind what python and sh need (read-only) into its own root,
# check that its "QEMU" leaves the marker when run (the positive control), then serve QMP as
# /usr/bin/qemu-system-x86_64.
_ATTACKER_SETUP = r"""
set -e
r=$1; shift
for d in /usr/lib /usr/lib64; do mount --bind "$d" "$r$d"; mount -o remount,bind,ro "$r$d"; done
for f in "$(readlink -f /usr/bin/python3):/usr/bin/python3" "$(readlink -f /bin/sh):/usr/bin/sh"; do
    mount --bind "${f%%:*}" "$r${f#*:}"; mount -o remount,bind,ro "$r${f#*:}"
done
exec chroot "$r" /bin/sh -c 'MARK=/control-ran /usr/bin/qemu-system-x86_64 -version &&
    exec /usr/bin/python3 -I -c "import os, sys; os.execv(\"/usr/bin/python3\",
        [\"/usr/bin/qemu-system-x86_64\", \"-I\", \"/sim.py\"] + sys.argv[1:])" "$@"' sh "$@"
"""


def test_a_fake_qemu_in_a_user_namespace_of_its_own_is_untrusted(cleanup, tmp_path):
    base = root_dir("cpr-attack-fake-")
    cleanup(lambda: shutil.rmtree(base))
    root = os.path.join(base, "root")
    for d in ("usr/bin", "usr/lib", "usr/lib64", "run"):
        os.makedirs(os.path.join(root, d))
    for link, target in (("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")):
        os.symlink(target, os.path.join(root, link))
    for mount_point in ("usr/bin/python3", "usr/bin/sh"):
        write(os.path.join(root, mount_point), b"")
    marker_script(os.path.join(root, "usr/bin/qemu-system-x86_64"), "/ATTACKER-RAN")
    shutil.copy(SIM_SCRIPT, os.path.join(root, "sim.py"))
    chown_tree(root)
    log = str(tmp_path / "fake.log")
    sim_args = ["-name", "fake", "-m", "64M", "-machine", "q35,memfd-alloc=on",
                "-qmp", "unix:/run/qmp.sock,server=on,wait=off",
                "-chardev", "file,id=ser0,path=/run/serial.log,close-on-cpr=on", "-serial", "chardev:ser0",
                "-simulate-series", "5"]
    with open(log, "wb") as out:
        fake = subprocess.Popen(
            AS_NOBODY + ["unshare", "--user", "--map-root-user", "--mount", "--fork", "--",
                         "/bin/sh", "-c", _ATTACKER_SETUP, "sh", root] + sim_args,
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd="/", start_new_session=True)
    cleanup(lambda: _kill_group(fake))
    _wait_for(os.path.join(root, "run/qmp.sock"), fake, log)
    # The positive control: the attacker's script leaves its mark when run (here by the attacker itself).
    assert os.path.exists(os.path.join(root, "control-ran"))
    before = tree(base, skip=("root/run/serial.log",))

    pids = [int(p) for p in os.listdir("/proc") if p.isdigit() and _session(int(p)) == fake.pid]
    # unshare's argv names the socket too: discovery lists it, and only the process that answers is a VM.
    found = [e for pid in pids for e in _discovered(pid)]
    assert "/run/qmp.sock" in [e["qmp_socket_as_given"] for e in found], found
    report = _assert_untrusted_everywhere(found, "user namespace of its own")
    sock, pid = report["qmp_socket"], report["pid"]
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        assert f.read().split(b"\0")[0] == b"/usr/bin/qemu-system-x86_64"
    assert report["dialects"]["live-update"]["via"], "the fake speaks the live-update series"
    assert report["runs_as"] is None  # nothing is asked of the system about an untrusted process

    # Every way the modules could be pointed at it: the exec dialects would look the new binary up in the
    # fake's own root (its /usr/bin/qemu-system-x86_64 is the attacker's script).
    assert_refused(lambda: upgrade.prepare(sock, TARGET, check_mode=True), "untrusted")
    assert_refused(lambda: upgrade.prepare(sock, TARGET), "untrusted")
    assert_refused(lambda: upgrade.prepare(sock, TARGET, dialect="live-update"), "untrusted")
    # Dialects the fake does not offer are refused for that (it could offer them as well).
    assert_refused(lambda: upgrade.prepare(sock, TARGET, dialect="cpr-exec", check_mode=True))
    assert_refused(lambda: upgrade.prepare(sock, TARGET, dialect="cpr-transfer", new_root=vmlab.ROOT,
                                           launcher=vmlab.launcher()))

    assert not os.path.exists(os.path.join(root, "ATTACKER-RAN"))
    assert fake.poll() is None, "the fake QEMU still runs: nothing killed it"
    assert tree(base, skip=("root/run/serial.log",)) == before
    assert lock_dirs_of([sock]) == []


def _session(pid):
    try:
        return os.getsid(pid)
    except OSError:
        return None


def test_a_qemu_binary_of_nobodys_is_untrusted(cleanup, tmp_path):
    """A real QEMU (10.0) copied into a directory of nobody's and run as nobody, outside any namespace; then
    the attacker renames its script over the file (the running inode stays: it is judged, not the path)."""
    base = root_dir("cpr-attack-copy-")
    cleanup(lambda: shutil.rmtree(base))
    home = os.path.join(base, "home")
    os.makedirs(home)
    binary = os.path.join(home, "qemu-system-x86_64")
    shutil.copy2(TARGET, binary)
    chown_tree(home)
    sock = os.path.join(home, "qmp.sock")
    log = str(tmp_path / "copy.log")
    with open(log, "wb") as out:
        fake = subprocess.Popen(
            AS_NOBODY + [binary, "-name", "copy", "-nodefaults", "-display", "none", "-accel", "tcg", "-m", "64M",
                         "-machine", "q35,memory-backend=ram0,aux-ram-share=on",
                         "-object", "memory-backend-memfd,id=ram0,size=64M,share=on", "-S",
                         "-qmp", "unix:%s,server=on,wait=off" % sock],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd="/", start_new_session=True)
    cleanup(lambda: _kill_group(fake))
    _wait_for(sock, fake, log)
    marker_script(binary + ".new", os.path.join(home, "ATTACKER-RAN"))
    os.lchown(binary + ".new", NOBODY, NOGROUP)
    as_nobody("mv", binary + ".new", binary)
    as_nobody(binary, "-version", env={"MARK": os.path.join(home, "control-ran")})
    assert os.path.exists(os.path.join(home, "control-ran"))  # the positive control
    before = tree(base)

    found = _discovered(fake.pid)
    assert [e["qmp_socket"] for e in found] == [sock]
    report = _assert_untrusted_everywhere(found, "owned by uid %d" % NOBODY)
    assert report["binary"]["replaced_on_disk"]
    assert report["dialects"]["cpr-transfer"]["via"], "QEMU 10.0 offers cpr-transfer"

    assert_refused(lambda: upgrade.prepare(sock, TARGET, check_mode=True), "untrusted")
    assert_refused(lambda: upgrade.prepare(sock, TARGET, dialect="cpr-transfer", new_root=vmlab.ROOT,
                                           launcher=vmlab.launcher()), "untrusted")
    assert_refused(lambda: upgrade.prepare(sock, binary, dialect="cpr-transfer"), "untrusted")
    assert_refused(lambda: upgrade.prepare(sock, binary, dialect="cpr-transfer", check_mode=True), "untrusted")

    assert not os.path.exists(os.path.join(home, "ATTACKER-RAN"))
    assert fake.poll() is None
    assert tree(base) == before
    assert lock_dirs_of([sock]) == []


# ---------------------------------------------------------------- 2. a VM's user plants things

@pytest.fixture
def victims(cleanup):
    """Directories of root's with a file each: one in /var/lib, one where every lab QEMU sees it (the trixie
    root binds LAB_SHARED)."""
    made = {}
    for name, base in (("var_lib", "/var/lib"), ("shared", LAB_SHARED)):
        path = root_dir("cpr-victim-", base)
        cleanup(lambda p=path: shutil.rmtree(p))
        write(os.path.join(path, "precious"), VICTIM_TEXT, 0o600)
        made[name] = path
    return made


def _attacker_dir(cleanup):
    """A directory of nobody's where every lab QEMU sees it."""
    path = root_dir("cpr-attacker-", LAB_SHARED)
    cleanup(lambda: shutil.rmtree(path))
    os.chown(path, NOBODY, NOGROUP)
    return path


def _transfer():
    return dict(dialect="cpr-transfer", new_root=vmlab.ROOT, launcher=vmlab.launcher())


def test_planted_state_and_swapped_paths_for_cpr_transfer(lab, cleanup, victims):
    """A VM running as nobody, its QMP socket in a directory of nobody's, a second QMP socket one directory
    further down in a directory of nobody's (so that the attacker can swap that directory's path)."""
    attacker = _attacker_dir(cleanup)
    os.mkdir(os.path.join(attacker, "d"))
    os.chown(os.path.join(attacker, "d"), NOBODY, NOGROUP)
    qmp2 = os.path.join(attacker, "d", "qmp2.sock")
    vm = lab("atk-xfer", qemu="10.0", uid=NOBODY, gid=NOGROUP, own_cgroup=True, event_monitor=True,
             extra_args=("-qmp", "unix:%s,server=on,wait=off" % qmp2), sockets=[qmp2])
    old_pid = vm.pid
    work = vm.qmp_socket + ".cpr"
    victim_dirs = sorted(victims.values())
    before = dict((d, tree(d)) for d in victim_dirs)
    # The attacker's own directories: the VM's sockets and work directory come and go there, nothing else may.
    vm_own = ("d/qmp2.sock", "d/qmp2.sock.cpr")
    attacker_before = tree(attacker, skip=vm_own, loose=(".", "d"))
    run_dir_before = sorted(os.listdir(vm.run_dir))

    # (a) The work directory planted as a symlink to a directory of root's.
    as_nobody("ln", "-s", victims["var_lib"], work)
    why = assert_refused(lambda: upgrade.prepare(vm.qmp_socket, TARGET, **_transfer()), "work directory")
    assert switch_state(vm)["locks"] == []
    assert os.readlink(work) == victims["var_lib"] and os.lstat(work).st_uid == NOBODY
    as_nobody("rm", work)
    print("(a) refused: %s" % why)

    # (c) The socket directory's path swapped for a symlink between prepare and switch: to the directory
    # itself, moved (the QMP socket still answers there), and to a directory of root's.
    real = os.path.join(attacker, "d.real")
    for target in (real, victims["shared"]):
        changed, s, _msg = upgrade.prepare(qmp2, TARGET, **_transfer())
        assert changed
        as_nobody("mv", "-T", os.path.join(attacker, "d"), real)
        as_nobody("ln", "-s", target, os.path.join(attacker, "d"))
        try:
            why = assert_refused(lambda: upgrade.switch(s, switch_timeout=60))
        finally:
            as_nobody("rm", os.path.join(attacker, "d"))
            as_nobody("mv", "-T", real, os.path.join(attacker, "d"))
        print("(c) symlink to %s: %s" % (target, why))
        assert stops(vm) == [], "the guest was paused"
        assert vm.running() and vm.qmp("query-status")["status"] == "running"
        assert "the guest was not touched" in why, why
        assert _locks_of(qmp2) == []
        assert stops(vm) == [], "the guest was paused"
    assert vm.pid == old_pid

    # (b) Every entry root creates in the work directory, and the socket's backup name, planted as symlinks to
    # root's file or as FIFOs; then a real upgrade.
    as_nobody("mkdir", work)
    as_nobody("ln", "-s", os.path.join(victims["shared"], "precious"), os.path.join(work, "cpr.sock"))
    as_nobody("ln", "-s", os.path.join(victims["shared"], "precious"), os.path.join(work, "state"))
    as_nobody("mkfifo", os.path.join(work, "main.sock"))
    as_nobody("ln", "-s", os.path.join(victims["var_lib"], "precious"), vm.qmp_socket + ".cpr-old")
    ident = identity.capture(old_pid)
    changed, s, _msg = upgrade.prepare(vm.qmp_socket, TARGET, **_transfer())
    _changed, s, _msg = upgrade.switch(s, switch_timeout=120)
    _changed, result, _msg = upgrade.verify(s)
    vm.adopt(result["new_pid"])
    assert result["new_pid"] != old_pid and result["new_version"].startswith("11.1")
    after = identity.capture(result["new_pid"])
    assert (after["uid"], after["gid"], after["groups"]) == (ident["uid"], ident["gid"], ident["groups"])
    assert switch_state(vm) == NO_STATE
    evidence = vm.wait_ticks(3, timeout=120)
    assert evidence.problems() == [] and len(evidence.boots) == 1

    # 3. The new QEMU's log is in the lock directory, which only root may use: nobody cannot plant a
    # symlink there.
    held = [d for d in lock_dirs_of([vm.qmp_socket]) if os.path.exists(os.path.join(d, "new-qemu.log"))]
    assert held, "no lock directory with the new QEMU's log"
    for path in (state.LOCK_BASE, held[0]):
        st = os.lstat(path)
        assert stat.S_ISDIR(st.st_mode) and (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o700), path
    st = os.lstat(os.path.join(held[0], "new-qemu.log"))
    assert stat.S_ISREG(st.st_mode) and st.st_uid == 0 and not st.st_mode & 0o077, oct(st.st_mode)

    for d in victim_dirs:
        assert tree(d) == before[d], d
    assert tree(attacker, skip=vm_own, loose=(".", "d")) == attacker_before
    assert sorted(os.listdir(vm.run_dir)) == run_dir_before


def test_planted_state_file_for_cpr_exec(lab, cleanup, victims):
    """The exec dialect's state file planted as a symlink to root's file, then as a FIFO."""
    vm = lab("atk-exec", qemu="11.1", uid=NOBODY, gid=NOGROUP)
    copy = "/usr/local/bin/qemu-system-x86_64-" + os.path.basename(vmlab.RUN_BASE) + "-atk"
    shutil.copy2(vmlab.ROOT + TARGET, vmlab.ROOT + copy)
    cleanup(lambda: os.unlink(vmlab.ROOT + copy))
    victim_dirs = sorted(victims.values())
    before = dict((d, tree(d)) for d in victim_dirs)
    work = vm.qmp_socket + ".cpr"
    for plant, binary in ((["ln", "-s", os.path.join(victims["shared"], "precious")], copy),
                          (["mkfifo"], TARGET)):
        as_nobody("mkdir", work)
        as_nobody(*(plant + [os.path.join(work, "state")]))
        changed, s, _msg = upgrade.prepare(vm.qmp_socket, binary, dialect="cpr-exec")
        assert changed
        _changed, s, _msg = upgrade.switch(s, switch_timeout=120)
        _changed, result, _msg = upgrade.verify(s)
        assert result["new_pid"] == vm.pid
        assert switch_state(vm) == NO_STATE
    evidence = vm.wait_ticks(3, timeout=120)
    assert evidence.problems() == [] and len(evidence.boots) == 1
    for d in victim_dirs:
        assert tree(d) == before[d], d


def test_extra_options_pointing_where_only_root_may_write(lab, victims):
    """QEMU started as root and dropped to nobody itself (-run-with user=), after opening a chardev file and a
    second QMP socket in a directory of root's.  Its cpr-transfer successor runs as nobody: it must create or
    change nothing there (a successor run as root would truncate the file and rebind the socket)."""
    shared = victims["shared"]
    vm = lab("atk-opts", qemu="10.0", uid=NOBODY, gid=NOGROUP, drop_by="qemu", event_monitor=True,
             extra_args=("-chardev", "file,id=atk0,path=%s/chardev.log" % shared,
                         "-qmp", "unix:%s/evil.sock,server=on,wait=off" % shared))
    assert os.lstat(os.path.join(shared, "evil.sock")).st_uid == 0  # the old QEMU made it as root
    before = tree(shared)
    old_pid = vm.pid
    changed, s, _msg = upgrade.prepare(vm.qmp_socket, TARGET, **_transfer())
    assert changed
    refused = None
    try:
        _changed, s, _msg = upgrade.switch(s, switch_timeout=120)
    except upgrade.UpgradeError as e:
        # Seen: rolled back, the successor (as nobody) could not open root's file.  It received the cpr state,
        # then died opening its chardevs, so its main channel never listened: the old QEMU's migration failed
        # at its set-up, before it stopped the guest.
        refused = e
        print("switch refused: %s %s" % (e.message, e.details))
        assert e.details.get("recovered") is True, e.message
        assert "Permission denied" in e.message
        assert vm.running() and vm.pid == old_pid
    else:
        _changed, result, _msg = upgrade.verify(s)
        vm.adopt(result["new_pid"])
        print("upgraded: %s" % result)
    assert vm.qmp("query-status")["status"] == "running"
    evidence = vm.wait_ticks(3, timeout=120)
    if refused is not None:
        assert stops(vm) == [], "refused, but after the pause: %s" % refused.message
    assert evidence.problems() == [] and len(evidence.boots) == 1
    assert switch_state(vm) == NO_STATE
    assert tree(shared) == before


# ---------------------------------------------------------------- a cgroup's name

# Where systemd would delegate a cgroup to a user (user@UID.service, Delegate=yes): the name=systemd hierarchy
# of this machine kind's cgroup v1 (identity.service_of reads it).
SYSTEMD_CGROUP = "/sys/fs/cgroup/systemd"


def test_a_cgroup_named_like_an_option_makes_root_run_nothing(cleanup, tmp_path, monkeypatch):
    """A local user with a delegated cgroup (every systemd user manager has one) runs an ordinary QEMU of
    root's (any user may) in a cgroup it names ``--host=USER@HOST:x.service``.  Discovery must run nothing
    on that name's say-so: identity.unit_main_pid asks ``systemctl show -p MainPID --value UNIT``, and a unit
    that systemctl reads as ``-H USER@HOST`` makes it run ``ssh USER@HOST`` as root.  Every systemctl
    command discovery would run is recorded instead of run (no ssh ever starts, whatever the code does), with
    systemctl taken to exist, so the test does not depend on this machine having it."""
    assert os.path.isdir(SYSTEMD_CGROUP), "this machine kind mounts the name=systemd cgroup hierarchy"

    delegated = os.path.join(SYSTEMD_CGROUP, "cpr-attack-%s-user@%d.service" % (os.path.basename(vmlab.RUN_BASE),
                                                                                NOBODY))
    os.mkdir(delegated)
    cleanup(lambda: os.rmdir(delegated))
    for name in ("", "cgroup.procs", "tasks"):
        os.chown(os.path.join(delegated, name), NOBODY, NOGROUP)
    evil = os.path.join(delegated, "--host=cpr-attack@192.0.2.1:x.service")  # 192.0.2.0/24: TEST-NET-1

    home = root_dir("cpr-attack-cgroup-")
    cleanup(lambda: shutil.rmtree(home))
    os.chown(home, NOBODY, NOGROUP)
    sock = os.path.join(home, "qmp.sock")
    log = str(tmp_path / "qemu.log")
    with open(log, "wb") as out:
        qemu = subprocess.Popen(
            AS_NOBODY + [TARGET, "-name", "cgroup", "-nodefaults", "-display", "none", "-accel", "tcg", "-m", "64M",
                         "-S", "-qmp", "unix:%s,server=on,wait=off" % sock],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd="/", start_new_session=True)
    cleanup(lambda: _remove_cgroup(evil))
    cleanup(lambda: _kill_group(qemu))
    _wait_for(sock, qemu, log)
    as_nobody("sh", "-c", 'mkdir -- "$0" && echo "$1" > "$0/cgroup.procs"', evil, str(qemu.pid))
    with open("/proc/%d/cgroup" % qemu.pid) as f:
        assert ":name=systemd:/%s/%s\n" % (os.path.basename(delegated), os.path.basename(evil)) in f.read()

    asked = []
    real_run, real_which = subprocess.run, shutil.which

    def record(argv, *args, **kwargs):
        if os.path.basename(argv[0]) != "systemctl":
            # The caller's own call, check= and all.
            return real_run(argv, *args, **kwargs)  # pylint: disable=subprocess-run-check
        asked.append(list(argv))
        return subprocess.CompletedProcess(argv, 1, b"", b"")
    with monkeypatch.context() as patched:
        patched.setattr(identity.subprocess, "run", record)
        patched.setattr(identity.shutil, "which", lambda name, path=None: "/usr/bin/systemctl"
                        if name == "systemctl" else real_which(name, path=path))
        reports = vm_facts.inspect_discovered(_discovered(qemu.pid), 10.0)
    assert len(reports) == 1 and "error" not in reports[0], reports
    for argv in asked:
        options = argv[:argv.index("--")] if "--" in argv else argv
        assert not [a for a in options if a.startswith("--host") or a.startswith("-H")], "root would run %s" % argv
    assert reports[0]["runs_as"]["systemd_unit"] == "--host=cpr-attack@192.0.2.1:x.service"
    assert reports[0]["runs_as"]["systemd_main_pid"] is None


def _remove_cgroup(path):
    deadline = time.monotonic() + 10
    while os.path.isdir(path):
        try:
            os.rmdir(path)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
