# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
"""The fleet report's cost per host: the collection's append vs. the rewrite it replaced.

Synthetic results (no VMs), HOSTS hosts of VMS results each, shaped like the role's results with the
playbook's batch marks, are added to a report host by host:
- now: plugins/plugin_utils/report.py append(), what the action cpr.qemu.upgrade_report runs: reads the
  report's last bytes, rewrites its closing bracket;
- before: what the playbook did until the action came (lookup the file, from_json, add the host's
  results, to_nice_json, copy): here its work in plain Python, read, parse, add, serialise as
  to_nice_json does, checksum old and new as copy does, write a temporary file and rename it; Ansible's
  templating and the copy module's start-up come on top of that and are not counted.
The rewrite is timed on a copy of the same report at hosts 1, 10, 100, 1000 and every --every-th
host; its total is the sum over every host, each host between two measured ones interpolated
linearly (its cost grows with the report's length). Part "report" of bench/scale.py.
Usage: python bench/report_cost.py [--hosts 1000] [--vms 20] [--every 50]
"""

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import time

from benchlib import REPO, say


def _load_report_module():
    spec = importlib.util.spec_from_file_location(
        "cpr_qemu_report", os.path.join(REPO, "plugins", "plugin_utils", "report.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def host_results(h, vms):
    name = "hv%04d.example.org" % h
    out = []
    for i in range(vms):
        out.append({
            "host": name, "vm": "vm-%04d-%02d" % (h, i), "qmp_socket": "/run/qemu-server/%d%02d.qmp" % (h, i),
            "pid_before": 100000 + i, "pid_after": 200000 + i, "version_before": "10.0.2",
            "version_after": "11.1.3", "binary_before": {"path": "/usr/bin/qemu-system-x86_64", "root": "/"},
            "target_binary": "/usr/bin/qemu-system-x86_64", "target_root": "/", "dialect": "cpr-transfer",
            "pause_ms": 41.7 + i, "paused_at": 1795000000.25 + h, "status": "upgraded", "reason": "",
            "started_at": 1795000000.0 + h, "finished_at": 1795000004.5 + h,
            "batch": 1 if h == 1 else 2 if h <= 250 else 3, "canary": h == 1})
    return out


def rewrite(path, results):
    """The replaced mechanism: the whole report re-read, parsed, extended, serialised and written again."""
    with open(path, "rb") as f:
        old = f.read()
    hashlib.sha1(old).hexdigest()
    text = json.dumps(json.loads(old) + results, indent=4, sort_keys=True) + "\n"
    data = text.encode("utf-8")
    hashlib.sha1(data).hexdigest()
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path))
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.rename(tmp, path)


def part(hosts, vms, workdir, every=50):
    say("\n== Part 4: the fleet report's cost, %d hosts x %d VMs of synthetic results (no VMs)" % (hosts, vms))
    report = _load_report_module()
    path = os.path.join(workdir, "report-cost.json")
    scratch = os.path.join(workdir, "report-cost-old.json")
    with open(path, "w") as f:
        f.write("[]\n")
    sample = sorted({1, 10, 100, hosts} | set(range(every, hosts + 1, every)))
    sample = [h for h in sample if h <= hosts]
    new, old = {}, {}
    for h in range(1, hosts + 1):
        results = host_results(h, vms)
        if h in sample:
            shutil.copyfile(path, scratch)
            t0 = time.perf_counter()
            rewrite(scratch, results)
            old[h] = time.perf_counter() - t0
        t0 = time.perf_counter()
        report.append(path, results)
        new[h] = time.perf_counter() - t0
    size = os.path.getsize(path)
    with open(path) as f:
        entries = len(json.load(f))
    with open(scratch) as f, open(path) as g:
        same = json.load(f) == json.load(g)  # the last rewrite and the appends agree
    os.unlink(scratch)

    def old_cost(h):
        lo = max(x for x in sample if x <= h)
        hi = min(x for x in sample if x >= h)
        return old[lo] if lo == hi else old[lo] + (old[hi] - old[lo]) * (h - lo) / (hi - lo)
    total_old = sum(old_cost(h) for h in range(1, hosts + 1))
    say("   host    | append now ms | rewrite before ms | report before this host")
    for h in sorted({1, 10, 100, hosts}):
        say("   %6d  | %13.2f | %17.2f | %d entries" % (h, new[h] * 1000, old[h] * 1000, (h - 1) * vms))
    say("   total   | %11.2f s | %15.2f s | (rewrite: measured at %d hosts, interpolated between them)"
        % (sum(new.values()), total_old, len(sample)))
    later = [new[h] for h in range(hosts - 99, hosts + 1)]
    first = [new[h] for h in range(1, min(hosts, 100) + 1)]
    say("   append now, median of the first 100 hosts %.2f ms, of the last 100 %.2f ms: %s"
        % (statistics_median(first) * 1000, statistics_median(later) * 1000,
           "flat" if statistics_median(later) <= 2 * statistics_median(first) else "NOT flat"))
    say("   the report at the end: %d entries, %.1f MB; the rewrite's result equals the appends': %s"
        % (entries, size / 1e6, same))
    return new, old


def statistics_median(values):
    values = sorted(values)
    return values[len(values) // 2]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    p.add_argument("--hosts", type=int, default=1000)
    p.add_argument("--vms", type=int, default=20)
    p.add_argument("--every", type=int, default=50, help="time the rewrite every this many hosts")
    a = p.parse_args()
    workdir = tempfile.mkdtemp(prefix="bench-report-")
    try:
        part(a.hosts, a.vms, workdir, a.every)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
