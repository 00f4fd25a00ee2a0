# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A TEST-ONLY hook that stops or kills a switch at a named point, so tests can prove what is left and how it
is settled.  Inert unless the environment variable CPR_QEMU_TEST_FAULT is set (operators never set it).

CPR_QEMU_TEST_FAULT=POINT:ACTION[,POINT:ACTION...] where ACTION is ``kill`` (SIGKILL the process that runs
the switch there, as the OOM killer would) or ``sleep=SECONDS`` (hold it there, so a test can signal the module
meanwhile).  The points, in the order a switch passes them (each dialect passes those that apply to it):
``after-launch`` (cpr-transfer: the new QEMU's launch stage runs, its PID not yet recorded), ``before-migrate``
(the guest still runs; cprsave for the live-update series), ``after-stop`` (QEMU's STOP seen: the guest is
paused), ``after-completed`` (the old QEMU's migration completed; live-update: cprsave returned), ``after-exec``
(the new QEMU answers, guest loaded and paused), ``after-cont`` (the new QEMU was told to run the guest;
live-update: cprload), ``before-kill-old`` (cpr-transfer: the new QEMU runs the guest, the old one lives).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import signal
import time

ENV = "CPR_QEMU_TEST_FAULT"
POINTS = ("after-launch", "before-migrate", "after-stop", "after-completed", "after-exec", "after-cont", "before-kill-old")


def point(name):
    """Act on the fault the test set for this point, if any."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    for item in spec.split(","):
        where, _sep, action = item.partition(":")
        if where != name:
            continue
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif action.startswith("sleep="):
            time.sleep(float(action[len("sleep="):]))
