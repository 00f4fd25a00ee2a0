# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Whether root alone could have put a file where it is.

The modules run as root.  A file is trusted when it, and every directory on the
way to it, is owned by root and writable by neither group nor others: the rule
sshd's StrictModes applies to a path.  A sticky world-writable directory such as
/tmp fails it too: anyone may create a name there.  A symlink's own mode means
nothing (only its owner can change it), so a symlink is judged by its owner only.

A path is judged inside a root (a chroot, a container image, /proc/PID/root):
it is resolved one component at a time, the way the kernel resolves it for a
process whose root that is, so no symlink can lead outside the root and ``..``
never climbs above it.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import os
import re
import stat

from ansible_collections.cpr.qemu.plugins.module_utils import process

# The kernel's limit on symlinks followed in one lookup (MAXSYMLINKS).
MAX_SYMLINKS = 40
_PROC_ROOT = re.compile(r"^/proc/[0-9]+/root/?$")


class UntrustedError(Exception):
    """Someone other than root could have changed the file or a directory above it."""


def judge(st, where):
    """Raise UntrustedError unless the stat result st is root's and only root may write it."""
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid != 0:
        raise UntrustedError("%s is owned by uid %d, not root (mode %04o)" % (where, st.st_uid, mode))
    if stat.S_ISLNK(st.st_mode):
        return
    if mode & stat.S_IWOTH:
        raise UntrustedError("%s is writable by others (mode %04o)" % (where, mode))
    if mode & stat.S_IWGRP:
        raise UntrustedError("%s is writable by group %d (mode %04o)" % (where, st.st_gid, mode))


def _os_error(code, where):
    return OSError(code, os.strerror(code), where)


def _resolve(root, root_st, path):
    """Resolve path below the directory root, judging root, each directory passed and each symlink.

    Returns (host path, stat of what path names).  ``components`` holds the
    (name, stat) of each directory entered below root: symlinks are expanded
    into it, so ``..`` leaves the directory physically entered, as the kernel does.
    """
    judge(root_st, root)
    if not stat.S_ISDIR(root_st.st_mode):
        raise _os_error(errno.ENOTDIR, root)
    components, pending, links = [], path.split("/"), 0
    while pending:
        name = pending.pop(0)
        if name in ("", "."):
            continue
        if name == "..":
            components = components[:-1]
            continue
        here = os.path.join(root, *[n for n, _st in components], name)
        st = os.lstat(here)
        judge(st, here)
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > MAX_SYMLINKS:
                raise _os_error(errno.ELOOP, here)
            target = os.readlink(here)
            if target.startswith("/"):
                components = []
            pending = target.split("/") + pending
            continue
        if pending and not stat.S_ISDIR(st.st_mode):
            raise _os_error(errno.ENOTDIR, here)
        components.append((name, st))
    names = [n for n, _st in components]
    return os.path.join(root, *names), (components[-1][1] if components else root_st)


def _judged_root(root):
    """The root as a host path and its stat, with the directories above it judged where they can be seen.

    Above a process's root (/proc/PID/root) nothing can be seen, nor does it
    matter: what happens above that root changes nothing the process reaches below it.
    """
    if root == "/" or _PROC_ROOT.match(root):
        return root, os.stat(root)
    return check_path("/", root)


def check_path(root, path):
    """Judge the file at the absolute path as seen inside root (a host directory).

    Returns (host path, stat) of the file.  Raises UntrustedError naming the
    first component that is not root's alone, or OSError (ENOENT, ENOTDIR,
    ELOOP) when the path cannot be resolved.
    """
    if not os.path.isabs(path):
        raise UntrustedError("%s is not an absolute path" % path)
    host_root, root_st = _judged_root(root)
    return _resolve(host_root, root_st, path)


def _same_namespace(kind, base, proc):
    return os.readlink("%s/ns/%s" % (base, kind)) == os.readlink("%s/self/ns/%s" % (proc, kind))


def _same_file(path, st):
    try:
        here = os.stat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (st.st_dev, st.st_ino)


def _executable_root(base, pid, proc, path, st, deleted):
    """Where, and as which path, the path /proc/PID/exe reads as is to be judged from here.

    The kernel writes that path from the reader's root when the file is
    reachable there (a process in our mount namespace, also one that chrooted
    itself, as QEMU's -chroot does), else from the root of the process's own
    mount namespace, which can only be reached while it is the process's root;
    a file reachable only through a mount of a chrooted process's namespace
    reads as the process's root followed by the path inside it.  Mount
    namespaces of our user namespace were made by root; one made in a user
    namespace of its own may mount anything anywhere.
    """
    if not _same_namespace("user", base, proc):
        raise UntrustedError("process %d runs in a user namespace of its own: its mounts are not root's alone"
                             % pid)
    if _same_namespace("mnt", base, proc) or _same_file(path, st):
        return "/", os.stat("/"), path
    root = base + "/root"
    own_root = os.readlink(root).rstrip("/")
    inside = path[len(own_root):] if own_root and path.startswith(own_root + "/") else path
    for candidate in (path, inside):
        # A binary replaced on disk since is judged by its directory, which must be there.
        if not own_root or _same_file(root + candidate, st) or deleted and os.path.isdir(
                root + os.path.dirname(candidate)):
            return root, os.stat(root), candidate
    raise UntrustedError("process %d is chrooted in a mount namespace of its own and its executable %s is "
                         "not found at that path: its directories cannot be seen" % (pid, path))


def check_process_executable(pid, proc="/proc"):
    """Judge the executable process pid runs: the very inode running, and the directories it came from.

    Returns (path, stat): the path /proc/PID/exe names (" (deleted)" removed)
    and the stat of the running inode.  The path's directories are judged
    rather than the file now at that path: a package upgrade replaces the file,
    and then the running inode is judged by its own owner and mode.
    Raises UntrustedError, or OSError when the process is gone.
    """
    base = "%s/%d" % (proc, pid)
    st = os.stat(base + "/exe")
    path, deleted = process.executable(pid, proc)
    judge(st, "%s (the executable of process %d)" % (path, pid))
    root, root_st, judged = _executable_root(base, pid, proc, path, st, deleted)
    try:
        # The trailing "." makes resolving fail unless the last component is a directory.
        _resolve(root, root_st, os.path.dirname(judged) + "/.")
    except OSError as e:
        raise UntrustedError("the directory of %s (the executable of process %d) cannot be judged: %s"
                             % (path, pid, e.strerror))
    return path, st
