# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The session of one live upgrade, and the per-VM lock that is its on-disk copy.

qemu_cprsave creates the lock file ``session.json`` in the VM's root-only lock
directory (state.py) with O_EXCL: while it exists, no other run can start an
upgrade of that VM.  It holds the full session (the new argv unmasked), its
``step`` as the switch advances, and who drives that step (``owner``: PID and
start time), so that a session whose owner died is found and settled.  Only
root writes there, so what is read back can be trusted; the modules return a
copy with secrets masked, and the next module checks that the session it is
given is the one the lock holds.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import fcntl
import json
import os
import time
import uuid

from ansible_collections.cpr.qemu.plugins.module_utils import process
from ansible_collections.cpr.qemu.plugins.module_utils.recovery import state
from ansible_collections.cpr.qemu.plugins.module_utils.dialects import switch

LOCK_NAME = "session.json"
# What the last finished upgrade of the VM did: outlives the lock.
LAST_UPGRADE = "last-upgrade.json"
# Steps recorded as marks (mark()): the new QEMU was told to run the guest.
CONT_SENT = "cont-sent"
MARKS = (CONT_SENT,)


class LockError(Exception):
    pass


class Held(LockError):
    """Another process holds the session right now (hold())."""


def new_token():
    return uuid.uuid4().hex


def lock_path(lock_dir):
    return os.path.join(lock_dir, LOCK_NAME)


def _write(path, session):
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(session, f)
        f.flush()
        os.fsync(f.fileno())


def acquire(lock_dir, session):
    """Take the VM's lock by writing the session, whole (a reader never finds it half written: it is written
    aside, then linked into place); refuse if another run holds it."""
    path = lock_path(lock_dir)
    aside = path + ".new-%d" % os.getpid()
    try:
        os.unlink(aside)
    except FileNotFoundError:
        pass
    _write(aside, session)
    try:
        os.link(aside, path)
    except FileExistsError:
        raise LockError(held_message(lock_dir))
    finally:
        os.unlink(aside)


def hold(lock_dir, wait=0.0):
    """Hold the VM's session while this process works on it: an flock on its lock directory, which the kernel
    lets go when the descriptor closes, so a holder that dies (SIGKILL, OOM) lets go too. The detached switch
    takes a hold of its own. Returns the descriptor, for the caller to close.

    Raises Held where another process still holds it after ``wait`` seconds: a recovery must not settle a
    session that a module is checking, switching or verifying, nor a module work on one that a recovery is
    settling. Every holder holds it before it reads the session, so whoever comes second sees what the first
    left. LockError where there is no lock directory.
    """
    try:
        fd = os.open(lock_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise LockError("no live upgrade of this VM is in progress (no %s)" % lock_dir)
    deadline = time.monotonic() + wait
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise Held("another process is working on this VM's live upgrade right now (it holds %s): try "
                               "again once it is done" % lock_dir)
                time.sleep(0.05)
    except BaseException:
        os.close(fd)
        raise


def held_message(lock_dir):
    path = lock_path(lock_dir)
    try:
        held = read(lock_dir)
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(held.get("started", 0)))
        who = "session %s (%s, step %s) since %s" % (
            held.get("token"), held.get("dialect"), held.get("step"), since)
    except (OSError, ValueError) as e:
        who = "an unreadable session (%s)" % e
    return ("another live upgrade of this VM is in progress: %s. If no run is active any more, settle it "
            "with cpr.qemu.qemu_cpr_recover (the lock is %s)" % (who, path))


def read(lock_dir, name=LOCK_NAME):
    """A JSON file of the lock directory (the session by default), never through a symlink."""
    fd = os.open(os.path.join(lock_dir, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd) as f:
        return json.load(f)


def update(lock_dir, session, name=LOCK_NAME):
    """Rewrite a JSON file of the lock directory (the session by default) atomically, and durably: a crash
    leaves the old or the new one."""
    path = os.path.join(lock_dir, name)
    tmp = path + ".new"
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    _write(tmp, session)
    os.rename(tmp, path)


def mark(lock_dir, name):
    """Record a step with an empty file: a few microseconds, for a step inside the guest's pause."""
    os.close(os.open(os.path.join(lock_dir, name), os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))


def marked(lock_dir, name):
    return os.path.lexists(os.path.join(lock_dir, name))


def release(lock_dir):
    for name in MARKS + (LOCK_NAME,):
        try:
            os.unlink(os.path.join(lock_dir, name))
        except FileNotFoundError:
            pass


def load(given, base=state.LOCK_BASE):
    """The locked session that ``given`` (a session returned by an earlier module) refers to."""
    for key in ("token", "key"):
        if not given.get(key):
            raise LockError("the session has no %s: pass the session a previous cpr.qemu module returned" % key)
    try:
        lock_dir = state.lock_dir(given["key"], base)
        held = read(lock_dir)
    except state.StateError as e:
        raise LockError(str(e))
    except FileNotFoundError:
        raise LockError("no live upgrade of this VM is in progress (no %s): run qemu_cprsave first"
                        % lock_path(state.lock_dir(given["key"], base)))
    if held.get("token") != given["token"]:
        raise LockError("the session given (%s) is not the one in progress for this VM (%s)"
                        % (given["token"], held.get("token")))
    return held


def record_upgrade(lock_dir, record):
    """Keep what the finished upgrade did (kept when the lock is released), so a later run reports the VM as
    upgraded before, with its pause."""
    update(lock_dir, record, LAST_UPGRADE)


def last_upgrade(lock_dir, pid):
    """The record of the VM's last finished upgrade, if the QEMU it left the guest on (by PID and start time)
    is PID still; else None (none, unreadable, or the VM was restarted or moved since)."""
    try:
        record = read(lock_dir, LAST_UPGRADE)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("pid") != pid or record.get("pid_starttime") != switch.starttime(pid):
        return None
    return record


def public(session):
    """The session as modules return it: argv values that carry secrets masked."""
    out = dict(session)
    for key in ("new_argv", "old_argv"):
        if out.get(key):
            out[key] = process.mask_argv(out[key])
    return out
