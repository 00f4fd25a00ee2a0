# -*- coding: utf-8 -*-
# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""state.py: root's lock directory, and QEMU's work directory reached without following anyone's symlinks."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import socket
import stat

import pytest

from ansible_collections.cpr.qemu.plugins.module_utils.recovery import state

QEMU_UID, QEMU_GID, OTHER_UID = 64055, 64055, 1000


def test_keys_are_per_socket_and_stable_across_the_ways_to_reach_it(tmp_path):
    (tmp_path / "vms").mkdir()
    (tmp_path / "other").mkdir()
    os.symlink(str(tmp_path / "vms"), str(tmp_path / "link"))
    a = state.vm_key(str(tmp_path / "vms" / "100.qmp"))
    assert a.startswith("100.qmp-") and a == state.vm_key(str(tmp_path / "vms" / "100.qmp"))
    assert a != state.vm_key(str(tmp_path / "vms" / "101.qmp"))  # one directory, two VMs
    assert a != state.vm_key(str(tmp_path / "other" / "100.qmp"))
    # The new QEMU of a cpr-transfer may reach the same directory through another root.
    assert a == state.vm_key(str(tmp_path / "link" / "100.qmp"))
    assert a == state.vm_key("/proc/%d/root%s" % (os.getpid(), tmp_path / "vms" / "100.qmp"))


def test_lock_dirs_are_root_only(tmp_path):
    base = str(tmp_path / "base")
    path = state.lock_dir(state.vm_key(str(tmp_path / "qmp.sock")), base, create=True)
    for p in (base, path):
        st = os.lstat(p)
        assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o700
    assert state.lock_dirs(base) == [path]
    os.chmod(path, 0o755)
    with pytest.raises(state.StateError, match="mode 0700"):
        state.lock_dir(os.path.basename(path), base, create=True)


def test_a_symlinked_lock_base_is_refused(tmp_path):
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    os.symlink(str(tmp_path / "elsewhere"), str(tmp_path / "base"))
    with pytest.raises(state.StateError, match="remove it"):
        state.lock_dir(state.vm_key(str(tmp_path / "x")), str(tmp_path / "base"), create=True)


@pytest.fixture
def vm_dir(trusted_dir):
    """A VM's socket directory as management stacks make it: owned by QEMU's user."""
    path = os.path.join(trusted_dir, "vm")
    os.mkdir(path, 0o750)
    os.chown(path, QEMU_UID, QEMU_GID)
    return path


def test_the_work_dir_is_made_for_qemus_user_and_cleaned(vm_dir):
    work = vm_dir + "/qmp.sock" + state.WORK_SUFFIX
    fd = state.open_work_dir("/", work, QEMU_UID, QEMU_GID, create=True)
    st = os.fstat(fd)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (QEMU_UID, QEMU_GID, 0o700)
    state.create_file(fd, "state", QEMU_UID, QEMU_GID)
    st = os.stat("state", dir_fd=fd)
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (QEMU_UID, 0o600)
    s = socket.socket(socket.AF_UNIX)
    s.bind(work + "/cpr.sock")
    s.close()
    os.close(fd)
    assert sorted(os.listdir(work)) == ["cpr.sock", "state"]
    state.remove_work_dir("/", work, QEMU_UID)
    assert not os.path.exists(work)


def test_a_planted_state_file_or_fifo_is_replaced_not_used(vm_dir):
    work = vm_dir + "/w"
    fd = state.open_work_dir("/", work, QEMU_UID, QEMU_GID, create=True)
    victim = os.path.join(os.path.dirname(vm_dir), "victim")
    with open(victim, "w") as f:
        f.write("root's")
    os.symlink(victim, work + "/state")
    state.create_file(fd, "state", QEMU_UID, QEMU_GID)
    assert open(victim).read() == "root's" and not os.path.islink(work + "/state")
    os.unlink(work + "/state")
    os.mkfifo(work + "/state")
    state.create_file(fd, "state", QEMU_UID, QEMU_GID)
    assert stat.S_ISREG(os.lstat(work + "/state").st_mode)
    os.close(fd)


def test_a_symlink_planted_by_qemus_user_is_not_followed(vm_dir, trusted_dir):
    """QEMU's user points the work directory's parent elsewhere: root creates nothing there."""
    target = os.path.join(trusted_dir, "etc")
    os.mkdir(target, 0o755)
    link = vm_dir + "/sockets"
    os.symlink(target, link)
    os.lchown(link, QEMU_UID, QEMU_GID)
    with pytest.raises(state.StateError, match="symlink that root does not follow"):
        state.open_work_dir("/", link + "/qmp.sock.cpr", QEMU_UID, QEMU_GID, create=True)
    assert os.listdir(target) == []


def test_a_symlinked_work_dir_is_refused(vm_dir, trusted_dir):
    target = os.path.join(trusted_dir, "etc")
    os.mkdir(target, 0o755)
    os.symlink(target, vm_dir + "/qmp.sock.cpr")
    with pytest.raises(state.StateError, match="cannot open work directory"):
        state.open_work_dir("/", vm_dir + "/qmp.sock.cpr", QEMU_UID, QEMU_GID, create=True)
    assert os.stat(target).st_uid == 0


def test_a_directory_of_another_user_on_the_way_is_refused(trusted_dir):
    other = os.path.join(trusted_dir, "other")
    os.mkdir(other, 0o755)
    os.chown(other, OTHER_UID, OTHER_UID)
    with pytest.raises(state.StateError, match="belongs to uid 1000"):
        state.open_work_dir("/", other + "/qmp.sock.cpr", QEMU_UID, QEMU_GID, create=True)


def test_root_owned_symlinks_in_root_only_directories_are_followed(trusted_dir, vm_dir):
    """Debian's /var/run -> /run is such a link."""
    os.symlink(vm_dir, os.path.join(trusted_dir, "run"))
    fd = state.open_work_dir("/", os.path.join(trusted_dir, "run", "w"), QEMU_UID, QEMU_GID, create=True)
    os.close(fd)
    assert os.path.isdir(os.path.join(vm_dir, "w"))
