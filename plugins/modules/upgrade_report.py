#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Documentation only: the action plugin of the same name does the work, on the controller.

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
module: upgrade_report
short_description: Add a host's live-upgrade results to the fleet's JSON report on the controller
version_added: 0.1.0
description:
  - Appends the results of one host (the P(cpr.qemu.live_upgrade#role) role's C(live_upgrade_results)) to the
    fleet's report, a JSON list in a file on the controller, as the playbook C(cpr.qemu.upgrade_qemu) does when
    each host is done.
  - The cost of an append is that of the host's own results however long the report is - the file is never read
    whole - and the file is a valid JSON list after every append, so a roll-out that stops leaves a complete report
    up to that point. Hosts that finish at the same time are ordered by a file lock; no C(throttle) is needed.
  - The file must exist and hold a JSON list (V([]) to start with).
author:
  - cpr.qemu contributors (@cpr-qemu)
extends_documentation_fragment:
  - cpr.qemu._attributes
attributes:
  action:
    description: Indicates this has a corresponding action plugin so some parts of the options can be executed on the
      controller.
    support: full
    details:
      - Runs on the controller only; the host it runs for is not contacted.
  check_mode:
    support: full
    details:
      - The report is the run's output, not state it manages, so it is written in check mode too (the plan).
  diff_mode:
    support: none
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
    details:
      - Runs on the controller (a POSIX system, for its file lock), whatever the host.
options:
  path:
    description: The report on the controller.
    type: path
    required: true
  results:
    description: The entries to add, in order.
    type: list
    elements: dict
    required: true
seealso:
  - module: cpr.qemu.qemu_cprload
"""

EXAMPLES = r"""
- name: Add this host's results to the fleet's report
  cpr.qemu.upgrade_report:
    path: /srv/reports/qemu-upgrade-report.json
    results: "{{ live_upgrade_results }}"
"""

RETURN = r"""
path:
  description: The report.
  returned: always
  type: str
  sample: /srv/reports/qemu-upgrade-report.json
added:
  description: How many entries were added.
  returned: success
  type: int
  sample: 3
"""
