# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run the switch where nothing that happens to the module can interrupt it.

The guest's pause must end, on the new QEMU or rolled back, whatever happens
to the module: Ctrl-C (SIGINT), a dropped SSH connection (SIGHUP: become runs
over a tty), SIGTERM, or the module being killed.  So the switch runs in a
child process of its own session, with no terminal, its standard streams on
/dev/null and those signals ignored; the module waits for it and reports what
it returns.  If the module dies, the child goes on to the end.  The durable
record of how far it got is the session in the VM's root-only lock directory,
which the child updates at every step (with its own PID as the owner): a
child that is itself killed (SIGKILL, OOM) leaves a session whose owner is
dead, which qemu_cpr_info reports as stuck and qemu_cpr_recover settles.

The child is forked, not started anew: the module's code (Ansible ships it in
a temporary zip the module removes when it exits) is already in memory.  It is
forked before any thread or QMP connection exists in the module.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import signal
import traceback

SHIELDED = (signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE)


class ChildDied(Exception):
    """The detached child ended without a result (it was killed)."""


def _detach():
    os.setsid()
    for sig in SHIELDED:
        signal.signal(sig, signal.SIG_IGN)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)


def _child(work, write_fd):
    try:
        _detach()
        try:
            result = {"value": work()}
        except Exception as e:  # pylint: disable=broad-except
            # Whatever went wrong must reach the module, not vanish with the child.
            result = {"error": repr(e), "trace": traceback.format_exc()}
        data = json.dumps(result).encode()
        try:
            while data:
                data = data[os.write(write_fd, data):]
        except OSError:
            pass  # the module is gone; the session holds the outcome
    finally:
        os._exit(0)


def run(work):
    """work() in a detached child; returns its (JSON-able) value, re-raises its failure as RuntimeError.

    Raises ChildDied when the child ended without a result.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _child(work, write_fd)
    os.close(write_fd)
    chunks = []
    with os.fdopen(read_fd, "rb") as f:
        for chunk in iter(lambda: f.read(65536), b""):
            chunks.append(chunk)
    _pid, status = os.waitpid(pid, 0)
    if not chunks:
        raise ChildDied("the process that ran the switch (PID %d) ended without a result (%s)"
                        % (pid, _describe(status)))
    result = json.loads(b"".join(chunks).decode())
    if "error" in result:
        raise RuntimeError("%s\n%s" % (result["error"], result["trace"]))
    return result["value"]


def _describe(status):
    if os.WIFSIGNALED(status):
        return "killed by signal %d" % os.WTERMSIG(status)
    return "exit status %d" % os.WEXITSTATUS(status)
