# -*- coding: utf-8 -*-
# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import os
import re
import shutil
import subprocess

import pytest

from ansible_collections.cpr.qemu.plugins.module_utils.privilege import trust


NOBODY = 65534


def _file(path, mode=0o755, uid=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("#!/bin/sh\n")
    os.chmod(path, mode)
    os.chown(path, uid, 0)
    return path


def _dir(path, mode=0o755, uid=0):
    os.makedirs(path, exist_ok=True)
    os.chmod(path, mode)
    os.chown(path, uid, 0)
    return path


def _symlink(target, path, uid=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.symlink(target, path)
    os.lchown(path, uid, 0)
    return path


@pytest.fixture
def root(trusted_dir):
    """A root directory holding a trusted /usr/bin/qemu."""
    path = _dir(os.path.join(trusted_dir, "root"))
    _file(os.path.join(path, "usr/bin/qemu"))
    return path


def test_a_root_owned_path_is_trusted(root):
    where, st = trust.check_path(root, "/usr/bin/qemu")
    assert where == os.path.join(root, "usr/bin/qemu")
    assert (st.st_dev, st.st_ino) == (os.stat(where).st_dev, os.stat(where).st_ino)


@pytest.mark.parametrize("spoil, message", [
    (lambda r: _dir(r + "/usr/bin", uid=NOBODY), "/usr/bin is owned by uid 65534, not root (mode 0755)"),
    (lambda r: _dir(r + "/usr", 0o775), "/usr is writable by group 0 (mode 0775)"),
    (lambda r: _dir(r + "/usr", 0o777), "/usr is writable by others (mode 0777)"),
    (lambda r: _dir(r + "/usr", 0o1777), "/usr is writable by others (mode 1777)"),
    (lambda r: _dir(r, 0o1777), "/root is writable by others (mode 1777)"),
    (lambda r: _file(r + "/usr/bin/qemu", uid=NOBODY), "/usr/bin/qemu is owned by uid 65534"),
    (lambda r: _file(r + "/usr/bin/qemu", 0o757), "/usr/bin/qemu is writable by others (mode 0757)"),
], ids=["dir-of-another-user", "group-writable-dir", "world-writable-dir", "sticky-dir", "root-dir",
        "file-of-another-user", "world-writable-file"])
def test_what_another_user_could_change_is_untrusted(root, spoil, message):
    spoil(root)
    with pytest.raises(trust.UntrustedError, match=re.escape(message)):
        trust.check_path(root, "/usr/bin/qemu")


def test_a_symlink_is_judged_by_its_owner_only(root):
    _file(root + "/opt/qemu")
    os.remove(root + "/usr/bin/qemu")
    _symlink("/opt/qemu", root + "/usr/bin/qemu")
    assert os.lstat(root + "/usr/bin/qemu").st_mode & 0o777 == 0o777
    assert trust.check_path(root, "/usr/bin/qemu")[0] == root + "/opt/qemu"
    os.lchown(root + "/usr/bin/qemu", NOBODY, 0)
    with pytest.raises(trust.UntrustedError, match="/usr/bin/qemu is owned by uid 65534"):
        trust.check_path(root, "/usr/bin/qemu")


def test_the_directories_above_a_root_are_judged_on_the_host(trusted_dir):
    _dir(trusted_dir + "/shared", 0o777)
    inner = _dir(trusted_dir + "/shared/root")
    _file(inner + "/usr/bin/qemu")
    with pytest.raises(trust.UntrustedError, match="/shared is writable by others"):
        trust.check_path(inner, "/usr/bin/qemu")


def test_a_process_root_is_judged_from_itself_down():
    # Nothing above /proc/PID/root can be seen; the process reaches nothing above it either.
    where, st = trust.check_path("/proc/%d/root" % os.getpid(), "/usr/bin/env")
    assert where == "/proc/%d/root%s" % (os.getpid(), os.path.realpath("/usr/bin/env"))
    assert st.st_ino == os.stat("/usr/bin/env").st_ino


@pytest.mark.parametrize("link, path", [
    ("/usr/bin/env", "/usr/bin/qemu"),                 # absolute: from the root, not the host's /
    ("../../../../../../usr/bin/env", "/usr/bin/qemu"),  # .. stops at the root
    (None, "/../../../usr/bin/env"),
])
def test_nothing_leads_out_of_the_root(root, link, path):
    if link:
        os.remove(root + "/usr/bin/qemu")
        _symlink(link, root + "/usr/bin/qemu")
    assert os.path.exists("/usr/bin/env")
    with pytest.raises(FileNotFoundError):
        trust.check_path(root, path)
    _file(root + "/usr/bin/env")
    assert trust.check_path(root, path)[0] == root + "/usr/bin/env"


def test_dotdot_leaves_the_directory_a_symlink_led_to(root):
    _dir(root + "/lib/real")
    _file(root + "/lib/x")
    _symlink("lib/real", root + "/link")
    # The kernel resolves "link/.." to /lib, not to / as a text substitution would.
    assert trust.check_path(root, "/link/../x")[0] == root + "/lib/x"


@pytest.mark.parametrize("make, path, code", [
    (lambda r: _symlink("/loop", r + "/loop"), "/loop", errno.ELOOP),
    (lambda r: None, "/usr/bin/qemu/x", errno.ENOTDIR),
    (lambda r: None, "/usr/bin/qemu/", errno.ENOTDIR),
    (lambda r: None, "/usr/nothing", errno.ENOENT),
])
def test_what_cannot_be_resolved_raises_os_errors(root, make, path, code):
    make(root)
    with pytest.raises(OSError) as e:
        trust.check_path(root, path)
    assert e.value.errno == code


def test_a_relative_path_is_refused(root):
    with pytest.raises(trust.UntrustedError, match="usr/bin/qemu is not an absolute path"):
        trust.check_path(root, "usr/bin/qemu")


def _fake_proc(tmp_path, exe, own_mnt="mnt:[1]", root="/", own_user="user:[1]"):
    """A /proc with process 42 running exe in namespaces own_mnt and own_user; ours are mnt:[1], user:[1]."""
    proc = tmp_path / "proc"
    for pid, mnt, user in (("self", "mnt:[1]", "user:[1]"), ("42", own_mnt, own_user)):
        (proc / pid / "ns").mkdir(parents=True)
        (proc / pid / "ns" / "mnt").symlink_to(mnt)
        (proc / pid / "ns" / "user").symlink_to(user)
    (proc / "42" / "exe").symlink_to(exe)
    (proc / "42" / "root").symlink_to(root)
    return str(proc)


def test_our_own_executable_is_judged_like_its_path():
    exe = os.readlink("/proc/self/exe")
    try:
        trust.check_path("/", exe)
    except trust.UntrustedError:
        with pytest.raises(trust.UntrustedError):
            trust.check_process_executable(os.getpid())
    else:
        path, st = trust.check_process_executable(os.getpid())
        assert path == exe
        assert st.st_ino == os.stat("/proc/self/exe").st_ino


def test_a_trusted_executable(tmp_path):
    path, st = trust.check_process_executable(42, _fake_proc(tmp_path, "/usr/bin/env"))
    assert path == "/usr/bin/env"
    assert st.st_ino == os.stat("/usr/bin/env").st_ino


def test_an_executable_of_another_user(tmp_path, trusted_dir):
    exe = _file(trusted_dir + "/qemu", uid=NOBODY)
    with pytest.raises(trust.UntrustedError, match=r"qemu \(the executable of process 42\) is owned by uid 65534"):
        trust.check_process_executable(42, _fake_proc(tmp_path, exe))


def test_an_executable_in_a_directory_of_another_user(tmp_path, trusted_dir):
    exe = _file(_dir(trusted_dir + "/bin", uid=NOBODY) + "/qemu")
    with pytest.raises(trust.UntrustedError, match="/bin is owned by uid 65534"):
        trust.check_process_executable(42, _fake_proc(tmp_path, exe))


def test_an_executable_in_another_mount_namespace_is_judged_where_its_path_leads(tmp_path):
    # Its path names the very inode here too (mount namespaces of our user namespace are root's): the
    # root-owned file's /tmp is sticky.
    exe = _file(str(tmp_path / "qemu"))
    with pytest.raises(trust.UntrustedError, match="^/tmp is writable by others"):
        trust.check_process_executable(42, _fake_proc(tmp_path, exe, own_mnt="mnt:[2]"))


def test_a_process_chrooted_in_a_mount_namespace_of_its_own_is_judged_where_its_path_leads(tmp_path):
    # The lab's QEMU 11.1: unshare --mount, then chroot; /proc/PID/exe reads as the path here.
    path, st = trust.check_process_executable(42, _fake_proc(tmp_path, "/usr/bin/env", "mnt:[2]", str(tmp_path)))
    assert path == "/usr/bin/env" and st.st_ino == os.stat("/usr/bin/env").st_ino


def test_a_process_in_a_user_namespace_of_its_own_is_untrusted(tmp_path):
    # There it may bind-mount any root-owned program over /usr/bin/qemu-system-x86_64.
    proc = _fake_proc(tmp_path, "/usr/bin/env", "mnt:[2]", own_user="user:[2]")
    with pytest.raises(trust.UntrustedError, match="process 42 runs in a user namespace of its own"):
        trust.check_process_executable(42, proc)


@pytest.fixture
def running():
    """Start a copy of sleep from a given directory; yield its Popen."""
    started = []

    def start(directory):
        assert not os.statvfs(directory).f_flag & os.ST_NOEXEC, "%s is mounted noexec" % directory
        exe = os.path.join(directory, "sleep")
        shutil.copy("/bin/sleep", exe)
        started.append(subprocess.Popen([exe, "60"]))
        return started[-1]
    yield start
    for p in started:
        p.kill()
        p.wait()


def test_a_deleted_executable_is_judged_by_its_inode_and_directories(trusted_dir, running):
    p = running(trusted_dir)
    os.remove(trusted_dir + "/sleep")
    path, st = trust.check_process_executable(p.pid)
    assert path == trusted_dir + "/sleep"
    assert st.st_nlink == 0


def test_an_executable_below_tmp_is_untrusted(tmp_path, running):
    # Root's file in root's directory, but anyone could have put that directory in /tmp.
    p = running(_dir(str(tmp_path / "bin")))
    with pytest.raises(trust.UntrustedError, match="^/tmp is writable by others"):
        trust.check_process_executable(p.pid)
