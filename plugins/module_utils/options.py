# -*- coding: utf-8 -*-
# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checks of the options every module shares (the doc fragment cpr.qemu.qmp documents them).

They are often set once for all modules, with ``module_defaults`` for the action group ``cpr.qemu.qemu``,
so each module checks them before it touches anything.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import math


def timeout_problem(timeout):
    """Why ``timeout`` (seconds for each QMP answer) cannot be used, or None.  A timeout of 0 or less would
    fail every QMP command, and so report every VM as not answering; one that is not finite never ends."""
    if timeout is None or not timeout > 0 or math.isinf(timeout):
        return ("timeout must be a number of seconds more than 0 (it is %s, set on the task or by module_defaults); "
                "nothing was checked or changed" % timeout)
    return None
