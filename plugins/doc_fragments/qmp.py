# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):
    # QMP connection options and requirements shared by every module.
    DOCUMENTATION = r"""
options:
  timeout:
    description:
      - Seconds to wait for the QMP greeting and for each QMP command's answer.
      - QEMU's monitor serves one client at a time; if another client holds it, the
        module reports the socket as in use instead of waiting longer.
      - More than 0. To set it once for every module of this collection, use
        C(module_defaults) with the action group C(group/cpr.qemu.qemu).
    type: float
    default: 5.0
requirements:
  - python >= 3.9
  - qemu.qmp >= 0.0.5 (Python library, on the QEMU host)
notes:
  - Run as root on the QEMU host (C(become=true)). The modules read C(/proc/PID) of the
    QEMU processes and connect to their QMP sockets.
  - A QEMU that runs in a chroot or another mount namespace is reached through
    C(/proc/PID/root), so socket and binary paths are reported as QEMU sees them.
"""
