# -*- coding: utf-8 -*-
# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.cpr.qemu.plugins.filter.as_list import as_list

# What an AWX survey, the command line or a playbook may pass, and the list the role uses.
CASES = [
    (["web1", "web2"], ["web1", "web2"]),
    ("web1,web2", ["web1", "web2"]),
    (" web1 , web2 ,", ["web1", "web2"]),
    ("web1\nweb2\n", ["web1", "web2"]),  # a multiple-choice survey question's answers
    ("web1,web2\r\nweb3", ["web1", "web2", "web3"]),
    ('["web1", "web2"]', ["web1", "web2"]),
    ('[{"vm": "web1", "binary": "/usr/bin/qemu-system-x86_64"}]', [{"vm": "web1", "binary": "/usr/bin/qemu-system-x86_64"}]),
    ("1,25%,100%", ["1", "25%", "100%"]),
    (1, [1]),
    ("", []),
    ("  \n ", []),
    (None, []),
    ([], []),
]


@pytest.mark.parametrize("value, expected", CASES)
def test_as_list(value, expected):
    assert as_list(value) == expected


@pytest.mark.parametrize("value, message", [
    ("[web1, web2]", "not a JSON list"),
    ({"vm": "web1"}, "got a mapping"),
])
def test_as_list_refuses(value, message):
    with pytest.raises(AnsibleFilterError, match=message):
        as_list(value)
