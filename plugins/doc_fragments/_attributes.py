# -*- coding: utf-8 -*-
# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

# The attributes every module of this collection shares. Private to this collection: it may change with any
# release. Neither ansible-core's meta/runtime.yml nor antsibull-docs has a way to mark a doc fragment private,
# so the leading underscore of its name says it, as community.general names its own (_attributes).

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):
    # Every module: what check mode and diff mode mean. Each module adds its support and details.
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in C(check_mode) and return changed status prediction without modifying target.
  diff_mode:
    description: Returns details on what has changed (or would change in C(check_mode)), when in diff mode.
"""

    # Every module: QEMU hosts are Linux hosts (the modules read /proc and need Linux's UNIX socket credentials).
    PLATFORM = r"""
options: {}
attributes:
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: linux
    details:
      - The modules read C(/proc/PID) of the QEMU processes and ask each QMP socket's peer its PID
        (C(SO_PEERCRED)), so the QEMU host runs Linux.
"""

    # The modules of the action group cpr.qemu.qemu, whose options module_defaults can set once.
    ACTION_GROUP = r"""
options: {}
attributes:
  action_group:
    description: Use C(group/cpr.qemu.qemu) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - cpr.qemu.qemu
"""

    # Read-only modules; used together with DOCUMENTATION.
    INFO_MODULE = r"""
options: {}
attributes:
  check_mode:
    support: full
    details:
      - This action does not modify state; it behaves the same in check mode.
  diff_mode:
    support: N/A
    details:
      - This action does not modify state.
"""
