# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The session of one live upgrade, and the per-VM lock that is its on-disk copy.

qemu_cprsave creates the lock file ``<state dir>/session.json`` with O_EXCL:
while it exists, no other run can start an upgrade of that VM.  It holds the
full session (the new argv unmasked, mode 0600 in a 0700 directory); the
modules return a copy with secrets masked, and the next module checks that the
session it is given is the one the lock holds.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import time
import uuid

from ansible_collections.cpr.qemu.plugins.module_utils import process

LOCK_NAME = "session.json"


class LockError(Exception):
    pass


def new_token():
    return uuid.uuid4().hex


def lock_path(state_dir_host):
    return os.path.join(state_dir_host, LOCK_NAME)


def acquire(state_dir_host, session):
    """Take the VM's lock by writing the session; refuse if another run holds it."""
    path = lock_path(state_dir_host)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise LockError(held_message(path))
    with os.fdopen(fd, "w") as f:
        json.dump(session, f)


def held_message(path):
    try:
        held = read(path)
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(held.get("started", 0)))
        who = "session %s (%s, step %s) since %s" % (
            held.get("token"), held.get("dialect"), held.get("step"), since)
    except (OSError, ValueError) as e:
        who = "an unreadable session (%s)" % e
    return ("another live upgrade of this VM is in progress: %s. If no run is active any more, check "
            "the VM with cpr.qemu.qemu_cpr_info and remove %s" % (who, path))


def read(path):
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd) as f:
        return json.load(f)


def update(state_dir_host, session):
    """Rewrite the lock's session (atomically, no symlinks followed)."""
    path = lock_path(state_dir_host)
    tmp = path + ".new"
    fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(session, f)
    os.rename(tmp, path)


def release(state_dir_host):
    try:
        os.unlink(lock_path(state_dir_host))
    except FileNotFoundError:
        pass


def load(given):
    """The locked session that ``given`` (a session returned by an earlier module) refers to."""
    for key in ("token", "state_dir_host"):
        if not given.get(key):
            raise LockError("the session has no %s: pass the session a previous cpr.qemu module returned" % key)
    path = lock_path(given["state_dir_host"])
    try:
        held = read(path)
    except FileNotFoundError:
        raise LockError("no live upgrade of this VM is in progress (no %s): run qemu_cprsave first" % path)
    if held.get("token") != given["token"]:
        raise LockError("the session given (%s) is not the one in progress for this VM (%s)"
                        % (given["token"], held.get("token")))
    return held


def public(session):
    """The session as modules return it: argv values that carry secrets masked."""
    out = dict(session)
    for key in ("new_argv", "old_argv"):
        if out.get(key):
            out[key] = process.mask_argv(out[key])
    return out
