# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Work on several VMs side by side, in threads: a VM's checks mostly wait for its QEMU's answers."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from concurrent.futures import ThreadPoolExecutor


def side_by_side(work, items, at_most=None):
    """[work(item) for item in items], at most ``at_most`` (or all) at a time; results in the items' order."""
    items = list(items)
    if len(items) < 2:
        return [work(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(at_most or len(items), len(items))) as pool:
        return list(pool.map(work, items))
