# -*- coding: utf-8 -*-
# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""binary_cache.py: a binary runs once per host; no one but root can make it look like another binary."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import pathlib
import shutil
import stat
import subprocess
import time

import pytest

from ansible_collections.cpr.qemu.plugins.module_utils import binary_cache, process, qemu_binary

MACHINE_HELP = "Supported machines are:\nq35                  Standard PC (alias of pc-q35-10.0)\npc-q35-10.0          PC\n"
HELP = "-machine [type=]name\n-name string\n-S              freeze CPU at startup\n"
ARGV = ["/usr/bin/qemu", "-name", "vm1", "-machine", "q35", "-S"]


@pytest.fixture(autouse=True)
def cache_base(tmp_path, monkeypatch):
    """The cache in a base of this test's own (as /run/cpr-qemu is: root's, 0700), nothing remembered in-process."""
    base = tmp_path / "cpr-qemu"
    monkeypatch.setattr(binary_cache, "BASE", str(base))
    monkeypatch.setattr(qemu_binary, "_KNOWN", {})
    return base


@pytest.fixture
def runs(monkeypatch):
    """Every run of a binary, as its argv (each probe and each option question is one)."""
    seen = []
    real = subprocess.run

    def counting(cmd, *args, **kwargs):
        seen.append(list(cmd))
        return real(cmd, *args, check=kwargs.pop("check"), **kwargs)
    monkeypatch.setattr(qemu_binary.subprocess, "run", counting)
    return seen


def fake_qemu(path, version="10.0.2"):
    """A script that answers -version, -machine help, -help and ``-version -NAME`` like QEMU."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("""#!/bin/sh
case "$1 $2" in
  "-version ") echo "QEMU emulator version %s";;
  "-version -name"|"-version -machine") echo "qemu: -$(echo $2 | tr -d -) requires an argument"; exit 1;;
  "-version -S") echo "QEMU emulator version %s";;
  "-version "*) echo "qemu: $2: invalid option"; exit 1;;
  "-machine help") printf -- '%s';;
  "-help ") printf -- '%s';;
esac
""" % (version, version, MACHINE_HELP.replace("\n", "\\n"), HELP.replace("\n", "\\n")))
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def qemu(trusted_dir):
    return pathlib.Path(fake_qemu(pathlib.Path(trusted_dir) / "bin" / "qemu"))


def entries(base):
    d = base / binary_cache.NAME
    return sorted(d.iterdir()) if d.exists() else []


def forget_in_process():
    """What a new module run starts with: nothing but the cache on disk."""
    qemu_binary._KNOWN.clear()


def test_a_second_probe_of_the_same_binary_in_a_new_run_does_not_run_it(qemu, runs, cache_base):
    first = qemu_binary.probe(str(qemu))
    assert len(runs) == 2  # -version, -machine help
    [entry] = entries(cache_base)
    st = entry.lstat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o600)
    assert stat.S_IMODE((cache_base / binary_cache.NAME).lstat().st_mode) == 0o700
    forget_in_process()
    assert qemu_binary.probe(str(qemu)) == first
    assert len(runs) == 2


def test_options_are_asked_once_per_binary_and_taught_from_the_cache(qemu, runs, monkeypatch):
    monkeypatch.setattr(process, "_TAKES_VALUE", {})
    assert qemu_binary.learn_options(str(qemu), "/", ARGV) == []
    asked = len(runs)
    assert asked == 1 + 3  # -help, then -machine, -name and -S
    assert process._TAKES_VALUE == {"name": True, "machine": True, "S": False}
    monkeypatch.setattr(process, "_TAKES_VALUE", {})
    forget_in_process()
    assert qemu_binary.learn_options(str(qemu), "/", ARGV) == []
    assert len(runs) == asked, "a new run learns from the cache without running the binary"
    assert process._TAKES_VALUE == {"name": True, "machine": True, "S": False}
    qemu_binary.probe(str(qemu))
    assert len(runs) == asked + 2, "probe's answers are added to the binary's entry"
    forget_in_process()
    qemu_binary.probe(str(qemu))
    qemu_binary.learn_options(str(qemu), "/", ARGV)
    assert len(runs) == asked + 2 and len(entries(pathlib.Path(binary_cache.BASE))) == 1


def test_threads_asking_about_one_binary_run_it_once(qemu, runs):
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=8) as pool:
        versions = list(pool.map(lambda _i: qemu_binary.probe(str(qemu))["version"], range(16)))
    assert versions == ["10.0.2"] * 16 and len(runs) == 2


def _rewrite_in_place(path):
    """Same inode, new content (a new mtime and ctime)."""
    with open(str(path), "r+") as f:
        text = f.read().replace("10.0.2", "10.0.3")
        f.seek(0)
        f.write(text)
    os.utime(str(path), ns=(0, 0))  # even an mtime set back: the ctime moved on


def _rename_over(path):
    """A package upgrade: a new file renamed over the old path (a new inode)."""
    new = pathlib.Path(str(path) + ".new")
    fake_qemu(new, version="10.0.3")
    os.rename(str(new), str(path))


def _chmod(path):
    os.chmod(str(path), 0o700)


def _dir_closed(path):
    os.chmod(str(path.parent), 0o700)


@pytest.mark.parametrize("change, version", [
    (_rewrite_in_place, "10.0.3"),
    (_rename_over, "10.0.3"),
    (_chmod, "10.0.2"),
    (_dir_closed, "10.0.2"),
], ids=["replaced-in-place", "renamed-over", "mode-changed", "its-directory-closed"])
def test_a_changed_binary_is_run_again(qemu, runs, change, version):
    qemu_binary.probe(str(qemu))
    change(qemu)
    forget_in_process()
    assert qemu_binary.probe(str(qemu))["version"] == version
    assert len(runs) == 4


def test_a_binary_run_as_another_user_or_in_another_root_is_run_again(qemu, runs, trusted_dir):
    qemu_binary.probe(str(qemu))
    qemu_binary.probe(str(qemu), run_as=(65534, 65534, [65534]))
    assert len(runs) == 4
    qemu_binary.probe(str(qemu), run_as=(65534, 65534, [65534]))
    assert len(runs) == 4


def _plant(entry, how):
    """Change what the cache holds for a binary, as someone might."""
    data = json.loads(entry.read_text())
    if how == "corrupt":
        entry.write_text(entry.read_text()[:-7])
    elif how == "another-binarys-key":
        data["key"]["file"][1] += 1
        entry.write_text(json.dumps(data))
    elif how == "wrong-shape":
        data["answers"]["machine_types"] = "pc-q35-10.0"
        entry.write_text(json.dumps(data))
    elif how == "owned-by-another-user":
        os.chown(str(entry), 1000, 1000)
    elif how == "group-writable":
        os.chmod(str(entry), 0o620)
    elif how == "world-readable-and-writable":
        os.chmod(str(entry), 0o666)
    elif how == "a-symlink":
        elsewhere = entry.parent.parent / "elsewhere.json"
        entry.rename(elsewhere)
        entry.symlink_to(elsewhere)
    elif how == "a-fifo":
        entry.unlink()
        os.mkfifo(str(entry), 0o600)
    return data


@pytest.mark.parametrize("how", ["corrupt", "another-binarys-key", "wrong-shape", "owned-by-another-user",
                                 "group-writable", "world-readable-and-writable", "a-symlink", "a-fifo"])
def test_an_entry_not_to_be_trusted_is_ignored_and_written_anew(qemu, runs, cache_base, how):
    qemu_binary.probe(str(qemu))
    [entry] = entries(cache_base)
    good = json.loads(entry.read_text())
    # What someone would have the next run believe: another version.
    text = entry.read_text().replace("10.0.2", "99.0.0")
    entry.write_text(text)
    _plant(entry, how)
    forget_in_process()
    assert qemu_binary.probe(str(qemu))["version"] == "10.0.2"
    assert len(runs) == 4
    st = entry.lstat()
    assert stat.S_ISREG(st.st_mode) and (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o600)
    assert json.loads(entry.read_text()) == good


def test_an_untrusted_binary_is_refused_whatever_the_cache_holds(qemu, runs):
    qemu_binary.probe(str(qemu))
    os.chown(str(qemu.parent), 1000, 1000)
    forget_in_process()
    with pytest.raises(qemu_binary.BinaryError, match="not trusted: .* is owned by uid 1000"):
        qemu_binary.probe(str(qemu))
    with pytest.raises(qemu_binary.BinaryError, match="not trusted"):
        qemu_binary.learn_options(str(qemu), "/", ARGV)


@pytest.mark.parametrize("plant", ["symlink", "other-users-dir", "open-dir"])
def test_a_cache_directory_not_roots_alone_is_never_used(qemu, runs, cache_base, tmp_path, plant):
    cache_base.mkdir(mode=0o700)
    where = cache_base / binary_cache.NAME
    if plant == "symlink":
        (tmp_path / "planted").mkdir(mode=0o700)
        where.symlink_to(tmp_path / "planted")
    else:
        where.mkdir(mode=0o700)
        if plant == "other-users-dir":
            os.chown(str(where), 1000, 1000)
        else:
            os.chmod(str(where), 0o733)
    for _i in range(2):
        forget_in_process()
        assert qemu_binary.probe(str(qemu))["version"] == "10.0.2"
    assert len(runs) == 4, "each run asks the binary"
    if plant == "symlink":
        assert list((tmp_path / "planted").iterdir()) == []
    else:
        assert list(where.iterdir()) == []


def test_a_binary_that_does_not_work_is_not_kept(trusted_dir, runs, cache_base):
    path = pathlib.Path(trusted_dir) / "q"
    path.write_text("#!/bin/sh\nexit 3\n")
    path.chmod(0o755)
    for _i in range(2):
        with pytest.raises(qemu_binary.BinaryError, match="exited with status 3"):
            qemu_binary.probe(str(path))
    assert len(runs) == 2 and entries(cache_base) == []


def test_the_cache_keeps_a_bounded_number_of_entries(qemu, trusted_dir, cache_base, monkeypatch):
    monkeypatch.setattr(binary_cache, "MAX_ENTRIES", 3)
    (cache_base / binary_cache.NAME).mkdir(parents=True, mode=0o700)
    os.chmod(str(cache_base), 0o700)
    (cache_base / binary_cache.NAME / ".tmp-1-dead").write_text("{")
    os.utime(str(cache_base / binary_cache.NAME / ".tmp-1-dead"), (0, 0))
    for n in range(5):
        copy = pathlib.Path(trusted_dir) / ("q%d" % n)
        shutil.copy(str(qemu), str(copy))
        qemu_binary.probe(str(copy))
    names = [p.name for p in entries(cache_base)]
    assert len(names) == 3 and all(n.endswith(".json") for n in names)


def test_the_key_is_the_file_its_directories_its_root_and_who_runs_it(qemu):
    st = os.stat(str(qemu))
    with binary_cache.pin(str(qemu), st, "/", (64055, 64055, [64055, 5])) as pinned:
        key = pinned.key
        assert pinned.unchanged()
    assert key["file"][:5] == [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
    assert key["run_as"] == [64055, 64055, [5, 64055]]
    # Who owns the mount namespace it is seen in (here, this process's own user namespace).
    assert key["root"][0] == os.readlink("/proc/self/ns/user")
    assert len(key["directories"]) == len(pathlib.Path(str(qemu)).parents)
    # A process in this root shows the same binary through /proc/PID/root: the same key.
    with binary_cache.pin("/proc/%d/root%s" % (os.getpid(), qemu), st, "/proc/%d/root" % os.getpid(),
                          (64055, 64055, [5, 64055])) as pinned:
        assert pinned.key == key
    assert binary_cache.pin(str(qemu) + ".gone", st, "/", None) is None


@pytest.mark.parametrize("unshare, shared", [(["--mount"], True), (["--user", "--map-root-user", "--mount"], False)],
                         ids=["root-made-namespace-shares", "a-user-namespaces-own-does-not"])
def test_a_binary_seen_from_another_mount_namespace_is_keyed_by_who_owns_that_namespace(qemu, unshare, shared):
    """A VM in a private mount namespace root made (a chroot'ed VM's, a systemd unit's) sees the binary as the host
    does: one entry serves both. One made in a user namespace of its own (whoever made it could mount anything
    there) gets entries of its own."""
    proc = subprocess.Popen(["unshare"] + unshare + ["sleep", "30"])
    try:
        deadline = time.monotonic() + 10
        while os.readlink("/proc/%d/ns/mnt" % proc.pid) == os.readlink("/proc/self/ns/mnt"):
            assert time.monotonic() < deadline, "unshare made no mount namespace"
            time.sleep(0.01)
        st = os.stat(str(qemu))
        with binary_cache.pin(str(qemu), st, "/", None) as here:
            with binary_cache.pin("/proc/%d/root%s" % (proc.pid, qemu), st, "/proc/%d/root" % proc.pid, None) as there:
                assert (here.key == there.key) is shared
    finally:
        proc.kill()
        proc.wait()
