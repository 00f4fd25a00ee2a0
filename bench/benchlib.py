# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the benchmarks under bench/ share: waiting for a quiet machine, running a playbook with
the bench_timer callback (bench/callback_plugins), reading its timings, printing tables.

Benchmarks print figures and assert nothing; they are not run by CI.
"""

import json
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "lab"))

# The actions of the role's phases, as the role's tasks name them: the role either runs the three steps as
# tasks of their own per batch, or every batch's three steps in one qemu_cpr_upgrade task ("steps").
PHASES = (("settle", "qemu_cpr_recover"), ("discovery", "qemu_cpr_info"), ("save", "qemu_cprsave"),
          ("switch", "qemu_cprexec"), ("verify", "qemu_cprload"), ("steps", "qemu_cpr_upgrade"))
# What runs the project's tests: while one of these runs, timings are distorted.
OTHERS = ("ansible-test", "scripts/test.sh")
# How long wait_quiet waits at most, in seconds, over the whole run, and how long it has waited.
MAX_WAIT = 1200
WAITED = 0.0


def say(*args):
    print(*args, flush=True)


def terminate_on_sigterm():
    """SIGTERM and SIGHUP end the run like Ctrl-C, so every finally clause (the clean-up) runs."""
    def raise_interrupt(signum, _frame):
        raise KeyboardInterrupt("signal %d" % signum)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, raise_interrupt)


def others():
    """The project's test runs on this machine now: ["PID command", ...] (never this process)."""
    found = []
    for pattern in OTHERS:
        out = subprocess.run(["pgrep", "-af", pattern], stdout=subprocess.PIPE, text=True, check=False).stdout
        for line in out.splitlines():
            pid = int(line.split()[0])
            if pid not in (os.getpid(), os.getppid()) and "pgrep" not in line:
                found.append(line[:160])
    return sorted(set(found))


def wait_quiet(what, every=30):
    """Wait (polling every `every` s) until no test run of the project is on this machine, for at most MAX_WAIT s
    over the whole run (every call takes from the same budget); print what ran and how long it was waited for."""
    global WAITED
    start = time.monotonic()
    seen = others()
    while seen and WAITED + time.monotonic() - start < MAX_WAIT:
        say("   [%s: waiting for %d test process(es) to end, e.g. %s]" % (what, len(seen), seen[0][:90]))
        time.sleep(every)
        seen = others()
    waited = time.monotonic() - start
    WAITED += waited
    load = os.getloadavg()
    if seen:
        say("   [%s: %d test process(es) still running after %.0f s (the run's wait budget, %.0f s, is spent),"
            " measured anyway: %s]" % (what, len(seen), waited, MAX_WAIT, "; ".join(x[:90] for x in seen[:3])))
    else:
        say("   [%s: no test run of the project on this machine (waited %.0f s); load average %.2f %.2f %.2f]"
            % ((what, waited) + load))
    return seen


def run_playbook(playbook, inventory, extra_vars, workdir, tag, forks=5, env=None, args=()):
    """ansible-playbook (with ARGS) and the bench_timer callback; returns (rc, wall seconds, timings, log path)."""
    timings = os.path.join(workdir, "timings-%s.jsonl" % tag)
    log = os.path.join(workdir, "%s.log" % tag)
    extra = os.path.join(workdir, "extravars-%s.json" % tag)
    with open(extra, "w") as f:
        json.dump(extra_vars, f)
    e = dict(os.environ, ANSIBLE_CALLBACK_PLUGINS=os.path.join(HERE, "callback_plugins"),
             ANSIBLE_CALLBACKS_ENABLED="bench_timer", BENCH_TIMINGS=timings, ANSIBLE_FORKS=str(forks),
             ANSIBLE_HOST_KEY_CHECKING="False", ANSIBLE_RETRY_FILES_ENABLED="False",
             # As the README recommends for a fleet (docs/awx/ansible.cfg): one SSH round trip per module.
             ANSIBLE_PIPELINING="True")
    e.update(env or {})
    if os.path.exists(timings):
        os.unlink(timings)
    t0 = time.monotonic()
    with open(log, "w") as out:
        rc = subprocess.run(["ansible-playbook", "-i", inventory, playbook, "-e", "@" + extra] + list(args),
                            stdout=out, stderr=subprocess.STDOUT, cwd=workdir, env=e, check=False).returncode
    return rc, time.monotonic() - t0, Timings(timings), log


class Timings:
    """What bench_timer recorded: plays, and per host each task run (start, end, action, role, name)."""

    def __init__(self, path):
        self.events = []
        try:
            with open(path) as f:
                self.events = [json.loads(line) for line in f if line.strip()]
        except OSError:
            pass
        self.runs = {}  # host -> [(start, end, action, role, name)]
        open_runs = {}
        for ev in self.events:
            if ev["ev"] == "start":
                open_runs.setdefault((ev["uuid"], ev["host"]), []).append(ev["t"])
            elif ev["ev"] == "end":
                starts = open_runs.get((ev["uuid"], ev["host"]))
                start = starts.pop(0) if starts else ev["t"]
                self.runs.setdefault(ev["host"], []).append((start, ev["t"], ev["action"], ev["role"], ev["name"]))

    def play_span(self, name_part):
        """(start, end) of the play whose name contains name_part, all its batches (serial starts the play
        again for each): from its first start to the start of the next other play (or the end)."""
        plays = [ev for ev in self.events if ev["ev"] in ("play", "stats")]
        start = None
        for ev in plays:
            mine = ev["ev"] == "play" and name_part in ev["name"]
            if mine and start is None:
                start = ev["t"]
            elif start is not None and not mine:
                return start, ev["t"]
        return None

    @staticmethod
    def _of_role(run, role):
        """Whether a task run is of the role (named as given, or by its FQCN: cpr.qemu.ROLE)."""
        return role is None or (run[3] is not None and (run[3] == role or run[3].endswith("." + role)))

    def host_span(self, host, role=None, within=None):
        runs = [r for r in self.runs.get(host, []) if self._of_role(r, role)
                and (within is None or within[0] <= r[0] <= within[1])]
        if not runs:
            return None
        return min(r[0] for r in runs), max(r[1] for r in runs)

    def phases(self, host, role="live_upgrade"):
        """{phase: seconds} of one host's role: each module's tasks, and "ansible" for the rest of the role's span."""
        span = self.host_span(host, role)
        out = dict((p, 0.0) for p, _a in PHASES)
        for start, end, action, r_role, _name in self.runs.get(host, []):
            if not self._of_role((start, end, action, r_role), role):
                continue
            for phase, suffix in PHASES:
                if action.endswith(suffix):
                    out[phase] += end - start
        out["ansible"] = (span[1] - span[0]) - sum(out.values()) if span else None
        out["tasks"] = len([r for r in self.runs.get(host, []) if self._of_role(r, role)])
        return out


def stop_lab_vms(vms):
    for vm in vms:
        try:
            vm.stop()
        except Exception as e:  # pylint: disable=broad-except
            say("   (could not stop %s: %s)" % (vm.spec.name, e))


def table(header, rows, fmt):
    say(header)
    for row in rows:
        say(fmt % row)


def failures(log, limit=4):
    """The lines of a playbook's log that say what failed (shortened), for the printed output."""
    try:
        with open(log, errors="replace") as f:
            lines = [x.strip() for x in f if "fatal:" in x or "FAILED!" in x or "ERROR!" in x]
    except OSError:
        return []
    return [x[:400] for x in lines[:limit]]
