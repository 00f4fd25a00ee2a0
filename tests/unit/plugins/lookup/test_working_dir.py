# -*- coding: utf-8 -*-
# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.cpr.qemu.plugins.lookup.working_dir import LookupModule


def test_the_process_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert LookupModule().run([]) == [str(tmp_path)]
