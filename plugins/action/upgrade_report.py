# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# The controller side of cpr.qemu.upgrade_report: it runs here, never on a host.

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.action import ActionBase

from ansible_collections.cpr.qemu.plugins.plugin_utils.report import ReportError, append


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        args = self.validate_argument_spec(argument_spec={
            "path": {"type": "path", "required": True},
            "results": {"type": "list", "elements": "dict", "required": True},
        })[1]
        try:
            added = append(args["path"], args["results"])
        except (OSError, ReportError) as e:
            result.update(failed=True, msg="could not add %d results to the report %s: %s"
                          % (len(args["results"]), args["path"], to_native(e)))
            return result
        # The report is the run's output, not state the run manages: never "changed", written in check mode too.
        result.update(changed=False, path=args["path"], added=added)
        return result
