# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The fleet's JSON report on the controller: a JSON list that each host's results are appended to.

An append costs what the host's results cost, however long the report already is: the file is never read
whole, only its last bytes, and the closing bracket is rewritten after the new entries. The file stays a
valid JSON list between appends, so a roll-out that stops leaves a complete report up to that point. An
exclusive lock orders the hosts that finish at the same time.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import fcntl
import json
import os

# How far from the end the closing bracket may be: only blanks follow it.
TAIL = 64


class ReportError(Exception):
    """The file is not a report this collection wrote."""


def _entries_text(results):
    # Each entry as to_nice_json would indent it inside the list.
    return ",\n".join("    " + json.dumps(r, indent=4, sort_keys=True).replace("\n", "\n    ") for r in results)


def append(path, results):
    """Appends RESULTS (a list of dicts) to the JSON list in PATH; returns how many entries were added."""
    if not results:
        return 0
    with open(path, "r+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        size = f.seek(0, os.SEEK_END)
        start = max(0, size - TAIL)
        f.seek(start)
        tail = f.read().rstrip()
        if not tail.endswith(b"]"):
            raise ReportError("%s does not end with a JSON list's closing bracket" % path)
        before = tail[:-1].rstrip()
        if not before or (start == 0 and not before.startswith(b"[")):
            raise ReportError("%s is not a JSON list" % path)
        # The list is empty when its opening bracket is all there is before the closing one.
        empty = start == 0 and before == b"["
        f.seek(start + len(before))
        f.truncate()
        f.write((("\n" if empty else ",\n") + _entries_text(results) + "\n]\n").encode("utf-8"))
    return len(results)
