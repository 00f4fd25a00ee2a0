# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Where a live upgrade keeps its state, so that nothing QEMU's user controls steers what root does.

Two directories per VM:

- the **lock directory**, ``/run/cpr-qemu/<name>-<key>``: root's alone (0700
  in a 0700 directory).  It holds the session (the lock) and the new QEMU's
  log.  Only root writes there, so what is read back from it can be trusted.
- the **work directory**, ``<QMP socket>.cpr`` beside the VM's QMP socket (or
  the operator's ``state_dir``): what QEMU itself must reach at the same path
  before and after the switch (the cpr-exec state file, the cpr-transfer
  sockets).  It belongs to QEMU's user, who may also write the directory it is
  in, so root never works there by path: it walks to it one component at a
  time from QEMU's root, following no symlink that anyone but root could have
  put in place, and creates, changes and removes entries only through the
  directory's file descriptor.

Each VM has its own of both, keyed by its QMP socket (stable across the new
PID and root of a cpr-transfer), so VMs whose sockets share one directory
upgrade side by side.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import hashlib
import os
import re
import stat

from ansible_collections.cpr.qemu.plugins.module_utils.privilege import trust

LOCK_BASE = "/run/cpr-qemu"
WORK_SUFFIX = ".cpr"
MIN_FREE_BYTES = 16 * 1024 * 1024
# Entries the switch creates in the work directory (as QEMU names them).
WORK_ENTRIES = ("state", "main.sock", "cpr.sock")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class StateError(Exception):
    pass


def vm_key(qmp_socket):
    """A name for one VM's state: its QMP socket's name in its directory, that directory known by (device,
    inode), which the old and the new QEMU share whatever root each runs in.  ``qmp_socket`` is a path that
    reaches the socket from here (through /proc/PID/root for a QEMU in another root)."""
    st = os.stat(os.path.dirname(qmp_socket) or ".")
    name = os.path.basename(qmp_socket)
    digest = hashlib.sha256(("%d:%d:%s" % (st.st_dev, st.st_ino, name)).encode("utf-8", "surrogateescape"))
    return "%s-%s" % (re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:40], digest.hexdigest()[:16])


def _root_only_dir(path):
    """Create (0700) or check a directory that root alone may use; never through a symlink."""
    try:
        os.mkdir(path, 0o700)
    except OSError as e:
        if e.errno != errno.EEXIST:
            raise StateError("cannot create %s: %s" % (path, e.strerror))
    _check_root_only(os.lstat(path), path)
    return path


def lock_dir(key, base=LOCK_BASE, create=False):
    """The VM's root-only lock directory (created when ``create``)."""
    if not re.match(r"^[A-Za-z0-9_.-]+-[0-9a-f]{16}$", key or ""):
        raise StateError("%r is not the key of a VM's state" % (key,))
    path = os.path.join(base, key)
    if create:
        _root_only_dir(base)
        _root_only_dir(path)
    return path


def _open_subdir(parent, name, create, where):
    """A descriptor of directory NAME in the directory PARENT (closed here), made first (0700) where CREATE;
    never through a symlink."""
    try:
        if create:
            try:
                os.mkdir(name, 0o700, dir_fd=parent)
            except FileExistsError:
                pass
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=parent)
        except OSError as e:
            raise StateError("cannot open %s: %s" % (where, e.strerror))
    finally:
        os.close(parent)


def open_root_only_dir(name, base=LOCK_BASE):
    """A descriptor of ``base/name``, a directory of root's alone (0700 in the 0700 ``base``), created if
    missing; ``name`` is never a VM's key.  Neither is reached through a symlink: each is opened with
    O_NOFOLLOW and judged by the descriptor, so nothing can be swapped in between the check and the use."""
    _root_only_dir(base)
    parent = os.open(base, _DIR_FLAGS)
    try:
        _check_root_only(os.fstat(parent), base)
    except BaseException:
        os.close(parent)
        raise
    fd = _open_subdir(parent, name, True, "%s/%s" % (base, name))
    try:
        _check_root_only(os.fstat(fd), os.path.join(base, name))
    except StateError:
        os.close(fd)
        raise
    return fd


def _check_root_only(st, path):
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o077:
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a directory"
        raise StateError("%s must be a directory of root's with mode 0700 (it is %s, uid %d, mode %04o): "
                         "remove it" % (path, kind, st.st_uid, stat.S_IMODE(st.st_mode)))


def qemu_base(pid, path):
    """Where root starts walking to a path as QEMU (PID) sees it: QEMU's root, or its cwd for a relative path."""
    return ("/proc/%d/root" if os.path.isabs(path) else "/proc/%d/cwd") % pid


def lock_dirs(base=LOCK_BASE):
    """Every VM's lock directory that exists here."""
    try:
        names = sorted(os.listdir(base))
    except FileNotFoundError:
        return []
    return [os.path.join(base, n) for n in names if os.path.isdir(os.path.join(base, n))]


def work_dir_for(qmp_socket_as_given):
    """The default work directory, as QEMU sees it: beside the QMP socket, which old and new QEMU share."""
    return qmp_socket_as_given + WORK_SUFFIX


def _follow(fd, name, st, where):
    """A symlink is followed only where root alone could have put it: root's, in a directory only root writes."""
    try:
        trust.judge(st, where)
        trust.judge(os.fstat(fd), os.path.dirname(where) or "/")
    except trust.UntrustedError as e:
        raise StateError("%s is a symlink that root does not follow: %s" % (where, e))
    return os.readlink(name, dir_fd=fd)


def _check_dir(st, where, owners):
    if st.st_uid not in owners:
        raise StateError("%s belongs to uid %d, not to root or QEMU's user" % (where, st.st_uid))
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
        raise StateError("%s is writable by group or others (mode %04o): anyone there could move what root "
                         "works on" % (where, stat.S_IMODE(st.st_mode)))


def open_dir(root, path, owners):
    """A file descriptor of directory ``path`` inside ``root``, walked one component at a time.

    Each directory passed must belong to root or one of ``owners`` and be
    writable by no one else (unless sticky); ``..`` never climbs above root.
    """
    base = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # /proc/PID/root is a link to follow
    chain, pending, hops, where = [base], [c for c in path.split("/") if c not in ("", ".")], 0, ""
    try:
        while pending:
            name = pending.pop(0)
            if name == "..":
                if len(chain) > 1:
                    os.close(chain.pop())
                where = os.path.dirname(where)
                continue
            here = "%s/%s" % (where, name)
            st = os.stat(name, dir_fd=chain[-1], follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > trust.MAX_SYMLINKS:
                    raise StateError("%s: too many levels of symbolic links" % here)
                target = _follow(chain[-1], name, st, here)
                if target.startswith("/"):
                    while len(chain) > 1:
                        os.close(chain.pop())
                    where = ""
                pending = [c for c in target.split("/") if c not in ("", ".")] + pending
                continue
            fd = os.open(name, _DIR_FLAGS, dir_fd=chain[-1])
            chain.append(fd)
            _check_dir(os.fstat(fd), here, set(owners) | {0})
            where = here
        return chain.pop()
    except OSError as e:
        raise StateError("cannot reach directory %s in %s: %s" % (path, root, e.strerror))
    finally:
        for fd in chain:
            os.close(fd)


def open_work_dir(root, work_dir, uid, gid, create=False):
    """The work directory's fd (created 0700, owned by QEMU's uid and gid, when ``create``)."""
    parent = open_dir(root, os.path.dirname(work_dir), (uid,))
    fd = _open_subdir(parent, os.path.basename(work_dir), create, "work directory %s" % work_dir)
    st = os.fstat(fd)
    if st.st_uid not in (0, uid):
        os.close(fd)
        raise StateError("work directory %s belongs to uid %d, not to QEMU's user %d" % (work_dir, st.st_uid, uid))
    if create:
        os.fchown(fd, uid, gid)
        os.fchmod(fd, 0o700)
        vfs = os.fstatvfs(fd)
        if vfs.f_bavail * vfs.f_frsize < MIN_FREE_BYTES:
            os.close(fd)
            raise StateError("work directory %s has less than %d MiB free" % (work_dir, MIN_FREE_BYTES >> 20))
    return fd


def remove_entry(dir_fd, name):
    """Remove a file, socket or symlink from the directory (never what a symlink points to, never a directory)."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        raise StateError("%s in the work directory is a directory" % name)
    os.unlink(name, dir_fd=dir_fd)


def create_file(dir_fd, name, uid, gid):
    """An empty file of QEMU's (0600) in the work directory; an old entry of that name is removed first."""
    remove_entry(dir_fd, name)
    fd = os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    try:
        os.fchown(fd, uid, gid)
    finally:
        os.close(fd)


def remove_work_dir(root, work_dir, uid):
    """Remove what the switch left in the work directory, and the directory once it is empty."""
    try:
        parent = open_dir(root, os.path.dirname(work_dir), (uid,))
    except StateError:
        return
    name = os.path.basename(work_dir)
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
    except OSError:
        os.close(parent)
        return
    try:
        for entry in WORK_ENTRIES:
            remove_entry(fd, entry)
        try:
            os.rmdir(name, dir_fd=parent)
        except OSError:
            pass  # something else is in there: not ours to remove
    finally:
        os.close(fd)
        os.close(parent)
