# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
"""Records when each task starts and ends on each host, for the benchmarks under bench/.

Enabled by bench/scale.py with ANSIBLE_CALLBACK_PLUGINS=bench/callback_plugins and
ANSIBLE_CALLBACKS_ENABLED=bench_timer; writes one JSON object a line to the file named by
BENCH_TIMINGS: {"ev": "play"|"task"|"start"|"end"|"stats", "t": seconds since the epoch, ...}.
A task's "start" and "end" name its host; a looped task ends once, after its last item.
Not part of the collection (bench/ is not built into it).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
name: bench_timer
type: aggregate
short_description: Record each task's start and end per host as JSON lines
description:
  - For the benchmarks in bench/, which read the file named by the environment variable E(BENCH_TIMINGS).
requirements:
  - enabled in the configuration (ANSIBLE_CALLBACKS_ENABLED=bench_timer)
"""

import json
import os
import time

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_timer"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        path = os.environ.get("BENCH_TIMINGS")
        self._out = open(path, "a") if path else None

    def _write(self, ev, **fields):
        if self._out is None:
            return
        fields.update(ev=ev, t=time.time())
        self._out.write(json.dumps(fields) + "\n")
        self._out.flush()

    @staticmethod
    def _task(task):
        role = task._role.get_name() if getattr(task, "_role", None) else None
        return {"uuid": task._uuid, "name": task.get_name(), "action": task.action, "role": role}

    def v2_playbook_on_play_start(self, play):
        self._write("play", name=play.get_name())

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._write("task", **self._task(task))

    def v2_playbook_on_handler_task_start(self, task):
        self._write("task", **self._task(task))

    def v2_runner_on_start(self, host, task):
        self._write("start", host=host.get_name(), **self._task(task))

    def _end(self, result, status):
        self._write("end", host=result._host.get_name(), status=status, **self._task(result._task))

    def v2_runner_on_ok(self, result):
        self._end(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._end(result, "failed")

    def v2_runner_on_skipped(self, result):
        self._end(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._end(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        self._write("stats")
        if self._out is not None:
            self._out.close()
            self._out = None
