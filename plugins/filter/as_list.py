# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
name: as_list
short_description: A list input as a list, whether it came as a list, as survey text or as JSON
version_added: 0.1.0
description:
  - An AWX survey passes text, not lists; a multiple-choice survey question passes its answers one per line.
    Every list input of the P(cpr.qemu.live_upgrade#role) role and of the playbooks goes through this
    filter before use, so C(web1,web2), C("web1\nweb2"), C(["web1", "web2"]) (JSON text) and a YAML list
    all mean the same two VMs.
  - A list is returned as it is. Text that starts with C([) is read as JSON and must be a list. Other text is
    split at commas and line breaks, each item stripped of surrounding blanks; empty items are dropped, so an
    empty answer is an empty list. A number is a list of that one number. Null is an empty list.
author:
  - cpr.qemu contributors (@cpr-qemu)
options:
  _input:
    description: The input as given.
    type: raw
    required: true
"""

EXAMPLES = r"""
- name: Guest names from a survey's text answer
  ansible.builtin.debug:
    msg: "{{ 'web1, web2' | cpr.qemu.as_list }}"  # ['web1', 'web2']

- name: Targets given as JSON text
  ansible.builtin.debug:
    msg: "{{ '[{\"vm\": \"web1\", \"binary\": \"/usr/bin/qemu-system-x86_64\"}]' | cpr.qemu.as_list }}"
"""

RETURN = r"""
_value:
  description: The items, in their order.
  type: list
  elements: raw
"""

import json
import re

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_text
from ansible.module_utils.six import string_types


def as_list(value):
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, dict):
        raise AnsibleFilterError("cpr.qemu.as_list: expected a list, or text of items separated by commas or lines; got a mapping")
    if not isinstance(value, string_types):
        return [value]
    text = to_text(value).strip()
    if text.startswith("["):
        try:
            items = json.loads(text)
        except ValueError as exc:
            raise AnsibleFilterError("cpr.qemu.as_list: %r starts with '[' but is not a JSON list: %s" % (text, exc))
        return items
    return [item.strip() for item in re.split(r"[,\n]", text) if item.strip()]


class FilterModule(object):
    def filters(self):
        return {"as_list": as_list}
