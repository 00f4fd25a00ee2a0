# -*- coding: utf-8 -*-
# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The QMP side of the unit tests' fake QEMUs: a greeting, then an answer to each command as it comes."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json

GREETING = {"QMP": {"version": {"qemu": {"major": 11, "minor": 1, "micro": 3}, "package": ""},
                    "capabilities": ["oob"]}}


def send(conn, obj):
    conn.sendall(json.dumps(obj).encode() + b"\r\n")


def serve(conn, reply_to):
    """Greet, then answer each command on ``conn`` with ``reply_to(command)``: a list of messages to send (the
    reply's ``id`` is added to the last), ``"hang"`` (no answer) or ``"close"`` (hang up).  Returns at EOF."""
    send(conn, GREETING)
    decoder, buf = json.JSONDecoder(), ""
    while True:
        data = conn.recv(4096)
        if not data:
            return
        buf = (buf + data.decode()).lstrip()
        # QMP is a stream of JSON objects; clients need not end them with newlines.
        while buf:
            try:
                msg, end = decoder.raw_decode(buf)
            except ValueError:
                break
            buf = buf[end:].lstrip()
            messages = reply_to(msg.get("execute"))
            if messages == "hang":
                continue
            if messages == "close":
                conn.close()
                return
            for reply in messages[:-1]:
                send(conn, reply)
            send(conn, dict(messages[-1], id=msg.get("id")))
