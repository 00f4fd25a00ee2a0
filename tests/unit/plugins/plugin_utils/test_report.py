# -*- coding: utf-8 -*-
# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import multiprocessing

import pytest

from ansible_collections.cpr.qemu.plugins.plugin_utils.report import ReportError, append


def _host(name, n=2):
    return [{"host": name, "vm": "vm%d" % i, "status": "upgraded", "pause_ms": 6.5, "reason": "<b>\"ok\"</b>"}
            for i in range(n)]


def test_appends_keep_a_json_list(tmp_path):
    path = tmp_path / "report.json"
    path.write_text("[]\n")
    assert append(str(path), _host("h1")) == 2
    assert append(str(path), []) == 0
    assert append(str(path), _host("h2", 1)) == 1
    assert json.loads(path.read_text()) == _host("h1") + _host("h2", 1)


def test_only_the_end_of_the_report_is_read(tmp_path):
    # What lies before the last entries is never parsed: an append costs the same on the 1000th host.
    path = tmp_path / "report.json"
    path.write_text("[" + "x" * 100000 + "\n]\n")
    append(str(path), _host("h1", 1))
    text = path.read_text()
    assert text.startswith("[" + "x" * 100000 + ",\n") and text.endswith("\n]\n")


@pytest.mark.parametrize("content", ["", "{}\n", "[1, 2", "not json at all"])
def test_refuses_a_file_that_is_no_report(tmp_path, content):
    path = tmp_path / "report.json"
    path.write_text(content)
    with pytest.raises(ReportError):
        append(str(path), _host("h1"))
    assert path.read_text() == content


def _append_host(args):
    append(*args)


def test_hosts_finishing_at_once_lose_nothing(tmp_path):
    path = tmp_path / "report.json"
    path.write_text("[]\n")
    hosts = ["h%d" % i for i in range(24)]
    with multiprocessing.Pool(6) as pool:
        pool.map(_append_host, [(str(path), _host(h, 3)) for h in hosts])
    report = json.loads(path.read_text())
    assert sorted((e["host"], e["vm"]) for e in report) == sorted((h, "vm%d" % i) for h in hosts for i in range(3))
