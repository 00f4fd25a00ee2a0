# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
name: working_dir
short_description: The controller's working directory
version_added: 0.1.0
description:
  - The directory C(ansible-playbook) was started in on the controller; in AWX and ansible-runner, the job's
    project directory. The playbooks of this collection write their report there by default.
  - Ansible itself offers no variable for it - C(playbook_dir) is the directory of the playbook being run, which
    for a playbook of an installed collection is inside the collection, and the C(pipe) lookup and the modules
    run in that directory, not in the working directory.
author:
  - cpr.qemu contributors (@cpr-qemu)
"""

EXAMPLES = r"""
- name: Where a report would go
  ansible.builtin.debug:
    msg: "{{ lookup('cpr.qemu.working_dir') }}/qemu-upgrade-report.json"
"""

RETURN = r"""
_raw:
  description: The working directory, an absolute path.
  type: list
  elements: path
"""

import os

from ansible.plugins.lookup import LookupBase


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        return [os.getcwd()]
