# -*- coding: utf-8 -*-
# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import socket

from ansible_collections.cpr.qemu.plugins.module_utils import switch


def test_a_bound_socket_is_not_listening_until_listen(tmp_path):
    path = str(tmp_path / "cpr.sock")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(path)
        assert not switch.listening(path)
        sock.listen(1)
        assert switch.listening(path)
    finally:
        sock.close()
    assert not switch.listening(path)


def test_socket_identity_tells_a_rebound_socket_apart(tmp_path):
    path = str(tmp_path / "qmp.sock")
    first = socket.socket(socket.AF_UNIX)
    first.bind(path)
    before = switch.socket_identity(path)
    first.close()
    (tmp_path / "qmp.sock").unlink()
    second = socket.socket(socket.AF_UNIX)
    second.bind(path)
    try:
        assert switch.socket_identity(path) != before
    finally:
        second.close()
    assert switch.socket_identity(str(tmp_path / "absent")) is None


def test_pause_is_measured_between_qemu_timestamps():
    stop = {"timestamp": {"seconds": 100, "microseconds": 990000}}
    resume = {"timestamp": {"seconds": 101, "microseconds": 2500}}
    assert switch.pause_ms(stop, resume) == 12.5
    assert switch.pause_ms(stop, None) is None
