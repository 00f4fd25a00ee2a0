# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a QEMU binary answered when it was run (qemu_binary.py), kept so that it runs once per host.

A binary's answers (version, machine types, the options its ``-help`` lists and
whether each takes a value) are kept in ``/run/cpr-qemu/binaries``, a directory
of root's alone beside the VMs' lock directories (state.py), one file per binary,
root's and 0600.  An entry is found by the binary's identity as its open file
shows it, never by its path:

- the file: device, inode, size, modification and change time (to the
  nanosecond).  A binary replaced by rename (a package upgrade) is another inode;
  one rewritten in place has another change time, which no one can set back;
- the directories from the root it runs in down to it (mode, owner, group): who
  may reach it;
- that root (its inode, and the user namespace that owns the mount namespace
  it is seen in) and who it runs as (uid, gid, groups): a binary may run as
  root and fail as QEMU's user.  Mount namespaces that root made (a chroot'ed
  VM's, a systemd unit's private one, one per VM) share answers: only root
  could mount anything in them.  One that a VM's user made (in a user namespace
  of their own) is theirs alone, and so are its answers.

The answers are only ever looked up after trust.py has judged the binary (which
it is, every time): an entry never makes an untrusted binary look like a
QEMU.  What is read back is used only when the file is root's, 0600, a regular
file reached without following a symlink, parses, and names exactly the key
looked up; anything else is ignored and written anew.  Writes go to a temporary
file renamed over the entry within the directory's descriptor.  Nothing here ever
fails a module: without the directory the binary is simply run again.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import json
import os
import re
import stat
import time

from ansible_collections.cpr.qemu.plugins.module_utils import process
from ansible_collections.cpr.qemu.plugins.module_utils.recovery import state

BASE = state.LOCK_BASE
# Never a VM's key (those end in -<16 hex digits>): recover.py finds no session in it.
NAME = "binaries"
FORMAT = 1
MAX_ENTRIES = 256
MAX_BYTES = 1 << 20
# A temporary file older than this was left by a writer that died.
STALE_TEMP_S = 60
_TEMP = ".tmp-"
_ENTRY = re.compile(r"^[0-9a-f]{40}\.json$")
_PROC_ROOT = re.compile(r"^/proc/([0-9]+)/root/?$")
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


class Pinned(object):
    """A binary held open while it is asked: its key, and whether it is still what the key says."""

    def __init__(self, fd, host_path, key):
        self.fd, self.host_path, self.key = fd, host_path, key
        self.name = hashlib.sha256(_canonical(key).encode("utf-8")).hexdigest()[:40] + ".json"

    def unchanged(self):
        """Whether the path still names the very file pinned, unmodified: only then are answers kept."""
        try:
            return _file_id(os.fstat(self.fd)) == self.key["file"] == _file_id(os.stat(self.host_path))
        except OSError:
            return False

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _canonical(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _file_id(st):
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, stat.S_IMODE(st.st_mode),
            st.st_uid, st.st_gid]


def _namespace_owner(ns_path):
    """The user namespace that owns the namespace at ``ns_path``."""
    fd = os.open(ns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return process.namespace_owner(fd)
    finally:
        os.close(fd)


def _host_root(root):
    """The root as a host path, and who owns the mount namespace the binary is run in."""
    m = _PROC_ROOT.match(root)
    if m:
        return root.rstrip("/"), _namespace_owner("/proc/%s/ns/mnt" % m.group(1))
    return os.path.realpath(root), _namespace_owner("/proc/self/ns/mnt")


def _directories(host_root, host_path):
    """(mode, uid, gid) of every directory from the binary's up to the root: who may reach it."""
    out, here, top = [], os.path.dirname(host_path), host_root.rstrip("/")
    while here not in (top, "/") and here.startswith(top + "/"):
        st = os.lstat(here)
        out.append([stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid])
        here = os.path.dirname(here)
    st = os.stat(host_root)
    out.append([stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid])
    return out


def pin(host_path, st, root, run_as):
    """Open the binary that trust.py judged (``host_path`` and its stat ``st``) and make its key.

    Returns None where it cannot be opened, or is no longer the file judged:
    then nothing is looked up or kept.
    """
    try:
        fd = os.open(host_path, _READ_FLAGS)
    except OSError:
        return None
    try:
        here = os.fstat(fd)
        if not stat.S_ISREG(here.st_mode) or (here.st_dev, here.st_ino) != (st.st_dev, st.st_ino):
            os.close(fd)
            return None
        host_root, mnt_ns = _host_root(root)
        root_st = os.stat(host_root)
        key = {"format": FORMAT, "file": _file_id(here), "directories": _directories(host_root, host_path),
               "root": [mnt_ns, root_st.st_dev, root_st.st_ino],
               "run_as": None if run_as is None else [run_as[0], run_as[1], sorted(set(run_as[2]))]}
    except OSError:
        os.close(fd)
        return None
    return Pinned(fd, host_path, key)


def _open_dir(base):
    try:
        return state.open_root_only_dir(NAME, base or BASE)
    except (state.StateError, OSError):
        return None


def _valid(answers):
    """Whether what was read back has the shapes qemu_binary.py stores (anything else is ignored)."""
    def strings(v):
        return isinstance(v, list) and all(isinstance(x, str) for x in v)
    checks = {
        "version": lambda v: isinstance(v, str) and re.match(r"^\d+\.\d+\.\d+$", v),
        "package": lambda v: isinstance(v, str),
        "machine_types": strings,
        "machine_aliases": lambda v: isinstance(v, dict) and all(
            isinstance(k, str) and isinstance(x, str) for k, x in v.items()),
        "options": strings,
        "arity": lambda v: isinstance(v, dict) and all(
            isinstance(k, str) and x in (True, False, None) for k, x in v.items()),
    }
    return isinstance(answers, dict) and all(k in checks and checks[k](v) for k, v in answers.items())


def load(pinned, base=None):
    """The answers kept for this binary, or {} (none kept, or an entry that is not to be trusted)."""
    fd = _open_dir(base)
    if fd is None:
        return {}
    try:
        try:
            entry = os.open(pinned.name, _READ_FLAGS, dir_fd=fd)
        except OSError:
            return {}
        try:
            st = os.fstat(entry)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o077 or st.st_size > MAX_BYTES:
                return {}
            with os.fdopen(os.dup(entry), "rb") as f:
                data = json.loads(f.read(MAX_BYTES + 1).decode("utf-8"))
        except (OSError, ValueError):
            return {}
        finally:
            os.close(entry)
    finally:
        os.close(fd)
    if not isinstance(data, dict) or data.get("key") != pinned.key or not _valid(data.get("answers")):
        return {}
    return data["answers"]


def store(pinned, answers, base=None):
    """Keep this binary's answers (all of them: the entry is replaced whole).  Returns whether it was kept."""
    if not _valid(answers) or not pinned.unchanged():
        return False
    fd = _open_dir(base)
    if fd is None:
        return False
    tmp = "%s%d-%s" % (_TEMP, os.getpid(), os.urandom(6).hex())
    try:
        try:
            out = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=fd)
            try:
                os.fchmod(out, 0o600)
                os.write(out, _canonical({"key": pinned.key, "answers": answers}).encode("utf-8"))
            finally:
                os.close(out)
            os.rename(tmp, pinned.name, src_dir_fd=fd, dst_dir_fd=fd)
        except OSError:
            try:
                os.unlink(tmp, dir_fd=fd)
            except OSError:
                pass
            return False
        _prune(fd)
        return True
    finally:
        os.close(fd)


def _prune(fd, now=None):
    """Keep the directory small: temporary files of dead writers, anything not an entry, and the oldest
    entries beyond MAX_ENTRIES go (binaries come and go with package upgrades)."""
    now = time.time() if now is None else now
    entries = []
    try:
        names = os.listdir(fd)
    except OSError:
        return
    for name in names:
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except OSError:
            continue
        if name.startswith(_TEMP) and stat.S_ISREG(st.st_mode) and now - st.st_mtime < STALE_TEMP_S:
            continue
        if _ENTRY.match(name) and stat.S_ISREG(st.st_mode):
            entries.append((st.st_mtime, name))
            continue
        _remove(fd, name, st)
    entries.sort()
    for _mtime, name in entries[:max(0, len(entries) - MAX_ENTRIES)]:
        _remove(fd, name, None)


def _remove(fd, name, st):
    if st is not None and stat.S_ISDIR(st.st_mode):
        return  # not ours: nothing here makes directories
    try:
        os.unlink(name, dir_fd=fd)
    except OSError:
        pass
