# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
"""Scale benchmarks of a live upgrade: figures printed, nothing asserted, not run by CI.

Five parts, one table each (--parts, default all, in this order):

report  the fleet report's cost: synthetic results of 1000 hosts x 20 VMs appended host by host with the
        collection's mechanism (plugins/plugin_utils/report.py append, used by cpr.qemu.upgrade_report)
        and the one it replaced (re-read the whole JSON, add, rewrite); see bench/report_cost.py.
kvm     the pause of bench/pause.py under KVM, bare and through the modules, per dialect; see bench/kvm.py.
host    one host (this machine, playbooks/upgrade-qemu.yml against localhost) with N lab VMs (Linux
        guests under TCG, --mem-mb each), QEMU 10.0 -> 11.1 by cpr-transfer with live_upgrade_parallel P;
        the same switches by a bare qemu.qmp script (bench/pause.py's) in batches of P. Per-VM QMP round
        trips before the pause are counted once, on one VM, by running the modules' code in this process.
changed the work scales with what changed: the role over 2 VMs that are both outdated, over the largest N
        (--vms) of which 2 are outdated (the rest already run the target), and in check mode over N outdated.
fleet   H namespace hosts over SSH (tests/fleet/fleet.py), --vms-per-host VMs each, the playbook with its
        default batches and with one batch (qemu_upgrade_serial=100%, forks >= H).

Every VM, host and namespace started here is stopped at the end, on failure and on Ctrl-C too.
Run by scripts/bench.sh scale (which sets up the lab, the venv and the collection).
Usage: python bench/scale.py [--parts report,kvm,host,changed,fleet] [--vms 1,8,32] [--parallel 1,4,8]
                             [--hosts 1,4,8] [--vms-per-host 3] [--mem-mb 96] [--no-wait]
"""

import argparse
import asyncio
import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

import benchlib
from benchlib import say
import vmlab  # noqa: E402  (on the path benchlib sets)

sys.path.insert(0, os.path.join(benchlib.REPO, "tests", "fleet"))
import fleet  # noqa: E402
import pause  # noqa: E402

# The playbook of the collection under test (scripts/lib.sh's copy of the checkout), else the checkout's.
COLLECTION = os.path.join(os.environ.get("ANSIBLE_COLLECTIONS_PATH", "").split(":")[0], "ansible_collections", "cpr",
                          "qemu")
PLAYBOOK = os.path.join(COLLECTION if os.path.isdir(COLLECTION) else benchlib.REPO, "playbooks", "upgrade-qemu.yml")
TARGET = vmlab.QEMU_BIN  # the 11.1 binary, inside the trixie root
# The fleet's own addresses: fleet.py's default subnet is the fleet test's, which may run at the same time.
FLEET_NET = "10.217.%d.%d"
ROLE = "live_upgrade"


# The lab's kernel command line (vmlab's) with no_timer_check: under TCG on a loaded machine (32 guests
# booting at once on 2 cores, and other runs) the kernel's IO-APIC timer check fails, seen here as
# "Kernel panic - not syncing: IO-APIC + timer doesn't work!". QEMU takes the last -append.
CMDLINE = "console=ttyS0 quiet cprlab.fill_mb=%d cprlab.sum_every=0 no_timer_check"
FILL_MB = 4


def guest_spec(name, mem_mb, qemu="10.0"):
    """A small Linux guest on QEMU 10.0 (or QEMU) with the versioned machine type both QEMUs have, no disk, no NIC."""
    return vmlab.VMSpec(name, qemu=qemu, mem_mb=mem_mb, fill_mb=FILL_MB, sum_every=0, machine=vmlab.VERSIONED_Q35,
                        extra_args=("-append", CMDLINE % FILL_MB))


def start_vms(names, mem_mb, started, timeout=600, current=0):
    """Start the VMs (the first CURRENT of them on the target QEMU 11.1), then wait until every guest has printed
    its first tick (booted and idle)."""
    vms = []
    for i, name in enumerate(names):
        vm = vmlab.LabVM(guest_spec(name, mem_mb, "11.1" if i < current else "10.0"))
        started.append(vm)
        vms.append(vm.start())
    t0 = time.monotonic()
    waiting = list(vms)
    while waiting:
        waiting = [vm for vm in waiting if vm.evidence().last_tick < 1]
        if waiting and time.monotonic() - t0 > timeout:
            raise vmlab.LabError("%d guests did not boot in %d s" % (len(waiting), timeout))
        if waiting:
            if not all(vm.running() for vm in waiting):
                raise vmlab.LabError("a guest's QEMU exited: %s" % [vm.stderr() for vm in waiting if not vm.running()])
            time.sleep(0.5)
    return vms, time.monotonic() - t0


def guest_problems(vms):
    found = []
    for vm in vms:
        found += ["%s: %s" % (vm.spec.name, p) for p in vm.evidence().problems()]
    return found


def _children_cpu():
    """CPU seconds (user and system) of this process's ended children."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def busy_seconds():
    """The machine's CPU time so far, in seconds summed over all cores (idle and iowait not counted)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def idle_load(seconds=10):
    """The machine's CPU use (in cores) over a few seconds: what the idle guests cost."""
    b0, t0 = busy_seconds(), time.monotonic()
    time.sleep(seconds)
    return (busy_seconds() - b0) / (time.monotonic() - t0)


# ------------------------------------------------------------------------------------------- host


async def _bare_batches(vms, parallel):
    pauses = {}
    for i in range(0, len(vms), parallel):
        batch = vms[i:i + parallel]
        got = await asyncio.gather(*[asyncio.wait_for(pause.bare_switch(vm, "cpr-transfer", TARGET), 120)
                                     for vm in batch])
        pauses.update(zip([vm.spec.name for vm in batch], got))
    return pauses


def bare_run(vms, parallel):
    """(wall s, pauses, the machine's CPU s meanwhile)."""
    t0, busy0 = time.monotonic(), busy_seconds()
    pauses = asyncio.run(_bare_batches(vms, parallel))
    return time.monotonic() - t0, pauses, busy_seconds() - busy0


def target_vars(sockets, via_targets):
    """The role's target: live_upgrade_target_* and live_upgrade_launcher, or (via_targets) the same
    binary, root and launcher per VM in live_upgrade_targets (the path a rollback takes)."""
    if via_targets:
        return {"live_upgrade_targets": [{"vm": s, "binary": TARGET, "root": vmlab.ROOT, "launcher": vmlab.launcher()}
                                         for s in sockets]}
    return {"live_upgrade_target_binary": TARGET, "live_upgrade_target_root": vmlab.ROOT,
            "live_upgrade_launcher": vmlab.launcher(), "live_upgrade_vms": sockets}


def role_run(vms, parallel, workdir, tag, via_targets, check=False):
    inventory = os.path.join(workdir, "localhost.json")
    with open(inventory, "w") as f:
        json.dump({"qemu_hosts": {"hosts": {"localhost": {
            "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}, f)
    sockets = [vm.qmp_socket for vm in vms]
    report = os.path.join(workdir, "report-%s.json" % tag)
    extra = {"qemu_upgrade_become": False, "qemu_upgrade_report": report, "live_upgrade_parallel": parallel,
             # Only this run's VMs and sessions: other runs' VMs may be on this machine.
             "live_upgrade_recover_sockets": sockets,
             # Measure every switch: no stop after a long pause.
             "live_upgrade_pause_budget_ms": 600000}
    extra.update(target_vars(sockets, via_targets))
    if "live_upgrade_vms" in extra:
        # By name: a VM in a root of its own is discovered through /proc/PID/root, not the path it was given.
        extra["live_upgrade_vms"] = [vm.spec.name for vm in vms]
    busy0 = busy_seconds()
    rc, wall, timings, log = benchlib.run_playbook(PLAYBOOK, inventory, extra, workdir, tag,
                                                   args=["--check"] if check else [])
    busy = busy_seconds() - busy0
    try:
        with open(report) as f:
            results = [r for r in json.load(f) if r.get("vm") in [vm.spec.name for vm in vms]]
    except (OSError, ValueError):
        results = []
    for vm in vms:  # the lab stops the new QEMUs too, but records them
        succ = vm.successors()
        if succ:
            vm.adopt(succ[0][0])
    span = timings.host_span("localhost", ROLE)
    return {"rc": rc, "wall": wall, "role": span[1] - span[0] if span else None, "log": log,
            "pauses": dict((r["vm"], r["pause_ms"]) for r in results if r.get("pause_ms") is not None),
            "upgraded": len([r for r in results if r.get("status") == "upgraded"]),
            "statuses": sorted(set(r.get("status") for r in results)), "busy": busy,
            "phases": timings.phases("localhost", ROLE)}


def qmp_round_trips(workdir, mem_mb, started):
    """Discovery, save, switch and verify of one VM by the modules' own code in this process, every QMP
    command and every probe of the target binary logged (the switch runs in a forked child: the log is
    a file opened for appending). Returns {phase: (commands, connections, probe s, wall s)} and the number of
    round trips before the pause (commands and connections up to the switch's first migrate)."""
    sys.path.insert(0, os.environ["ANSIBLE_COLLECTIONS_PATH"].split(":")[0])
    from ansible_collections.cpr.qemu.plugins.module_utils import qemu_binary, qmp, upgrade, vm_facts
    log_path = os.path.join(workdir, "qmp-log.jsonl")
    phase = {"now": None}
    orig = {"execute": qmp.QMPConnection.execute, "connect": qmp.QMPConnection.connect,
            "probe": qemu_binary.probe, "learn_options": qemu_binary.learn_options}

    def log(kind, name, t0):
        line = json.dumps({"phase": phase["now"], "kind": kind, "name": name, "t0": t0, "t1": time.time()})
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)

    def wrap(key, kind, name_of):
        def wrapped(*args, **kwargs):
            t0 = time.time()
            try:
                return orig[key](*args, **kwargs)
            finally:
                log(kind, name_of(args), t0)
        return wrapped

    qmp.QMPConnection.execute = wrap("execute", "qmp", lambda a: a[1])
    qmp.QMPConnection.connect = wrap("connect", "connect", lambda a: "qmp_capabilities")
    qemu_binary.probe = wrap("probe", "probe", lambda a: "probe")
    qemu_binary.learn_options = wrap("learn_options", "probe", lambda a: "learn_options")
    walls = {}
    try:
        vm, _boot = start_vms(["bench-qmp-count"], mem_mb, started)
        vm = vm[0]

        def timed(name, fn):
            phase["now"] = name
            t0 = time.monotonic()
            out = fn()
            walls[name] = time.monotonic() - t0
            return out

        timed("discovery", lambda: vm_facts.inspect(
            vm.qmp_socket, 5.0, qemu_binary.probe(TARGET, vmlab.ROOT)))
        # qemu_cpr_info and qemu_cpr_upgrade are two processes: the second asks again what the first learnt.
        vm_facts._PER_IMAGE.clear()  # pylint: disable=protected-access
        vm_facts._PER_BINARY.clear()  # pylint: disable=protected-access
        _c, s, _m = timed("save", lambda: upgrade.prepare(vm.qmp_socket, TARGET, dialect="cpr-transfer",
                                                          new_root=vmlab.ROOT, launcher=vmlab.launcher()))
        _c, s, _m = timed("switch", lambda: upgrade.switch(s))
        timed("verify", lambda: upgrade.verify(s))
        succ = vm.successors()
        if succ:
            vm.adopt(succ[0][0])
    finally:
        qmp.QMPConnection.execute, qmp.QMPConnection.connect = orig["execute"], orig["connect"]
        qemu_binary.probe, qemu_binary.learn_options = orig["probe"], orig["learn_options"]
    with open(log_path) as f:
        lines = [json.loads(x) for x in f if x.strip()]
    out, before, paused = {}, 0, False
    for name in ("discovery", "save", "switch", "verify"):
        mine = [x for x in lines if x["phase"] == name]
        out[name] = (len([x for x in mine if x["kind"] == "qmp"]), len([x for x in mine if x["kind"] == "connect"]),
                     sum(x["t1"] - x["t0"] for x in mine if x["kind"] == "probe"), walls.get(name, 0.0),
                     [x["name"] for x in sorted(mine, key=lambda x: x["t0"]) if x["kind"] != "probe"])
    for x in sorted([x for x in lines if x["kind"] != "probe"], key=lambda x: x["t0"]):
        if x["phase"] == "switch" and x["name"] == "migrate":
            paused = True
        if not paused and x["phase"] in ("discovery", "save", "switch"):
            before += 1
    return out, before


def host_config(a, n, p, workdir, started):
    """One configuration of part 1: N VMs through the role, then N fresh VMs through the bare script."""
    names = ["bench-s%d-p%d-%02d" % (n, p, i) for i in range(n)]
    vms, boot = start_vms(names, a.mem_mb, started)
    load = idle_load(5)
    role = role_run(vms, p, workdir, "host-n%d-p%d" % (n, p), a.via_targets)
    problems = guest_problems(vms)
    benchlib.stop_lab_vms(vms)
    del started[:]
    vms, _boot = start_vms(names, a.mem_mb, started)
    try:
        bare_wall, bare_pauses, bare_busy = bare_run(vms, p)
    except Exception as e:  # pylint: disable=broad-except
        bare_wall, bare_pauses, bare_busy = None, {}, None
        say("   bare run N=%d P=%d failed: %r" % (n, p, e))
    problems += guest_problems(vms)
    benchlib.stop_lab_vms(vms)
    del started[:]
    # The machine's CPU for the playbook and for the bare script, the idle guests' share taken out.
    row = {"n": n, "p": p, "boot": boot, "load": load, "role": role, "bare_wall": bare_wall,
           "bare_pauses": bare_pauses, "problems": problems, "role_cpu": role["busy"] - load * role["wall"],
           "bare_cpu": bare_busy - load * bare_wall if bare_busy is not None else None}
    rp, bp = list(role["pauses"].values()), list(bare_pauses.values())
    say("   N=%-2d P=%d: boot %.0f s, idle guests use %.2f cores; role rc %d, %d/%d upgraded, role %.1f s "
        "(playbook %.1f s), sum/max pause %.0f/%.0f ms; bare %s s, sum/max pause %.0f/%.0f ms; guests: %s"
        % (n, p, boot, load, role["rc"], role["upgraded"], n, role["role"] or -1, role["wall"],
           sum(rp), max(rp or [0]), "%.1f" % bare_wall if bare_wall is not None else "-", sum(bp),
           max(bp or [0]), "; ".join(problems[:3]) or "one continuous life each"))
    if role["rc"] or role["upgraded"] != n:
        for line in benchlib.failures(role["log"]):
            say("     " + line)
    return row


def part_host(a, workdir, started):
    say("\n== Part 1: one host, N VMs, QEMU 10.0 -> 11.1 by cpr-transfer: the role "
        "(playbooks/upgrade-qemu.yml on localhost) vs. a bare qemu.qmp script, same batches")
    say("   guests: the lab's Linux guest (busybox, one tick a second) under TCG, %d MiB each, no disk, no NIC,"
        " machine %s, kernel option no_timer_check" % (a.mem_mb, vmlab.VERSIONED_Q35))
    benchlib.wait_quiet("host part")
    counts, before = qmp_round_trips(workdir, a.mem_mb, started)
    benchlib.stop_lab_vms(started)
    del started[:]
    say("\n   QMP round trips of one VM through the modules' code (counted in-process, one VM, no Ansible):")
    say("   %-10s %8s %11s %9s %8s   commands" % ("phase", "commands", "connections", "probe s", "wall s"))
    for name, (cmds, conns, probe, wall, seq) in counts.items():
        say("   %-10s %8d %11d %9.2f %8.2f   %s" % (name, cmds, conns, probe, wall, " ".join(seq)))
    per_binary = sum(1 for name in ("discovery", "save") for c in counts[name][4]
                     if c in ("query-qmp-schema", "query-version", "query-machines"))
    say("   round trips before the pause (discovery + save + switch up to migrate; a connection counts as one): %d;"
        " %d for each further VM on the same binary, -compat and user (a binary's version, machines and schema are"
        " asked once per module run)" % (before, before - per_binary))
    rows = []
    for n in a.vms:
        for p in a.parallel:
            if p > n and p != min(x for x in a.parallel):
                continue  # the same as a lower parallelism
            try:
                rows.append(host_config(a, n, p, workdir, started))
            except vmlab.LabError as e:  # one configuration's failure (a guest that did not boot) ends no other
                say("   N=%-2d P=%d: not measured: %s" % (n, p, e))
            finally:
                benchlib.stop_lab_vms(started)
                del started[:]
    single = [r for r in rows if r["n"] == 1]
    single_role = max(single[0]["role"]["pauses"].values()) if single and single[0]["role"]["pauses"] else None
    single_bare = max(single[0]["bare_pauses"].values()) if single and single[0]["bare_pauses"] else None
    say("\n   N  par | role wall s | bare wall s | 1.5*bare+3 s | wall met | sum pause ms role / bare"
        " | max pause ms role / bare | max vs 2x 1-VM (role / bare) | role max vs 2x P=1's, same N")
    missed = []
    for r in rows:
        rp, bp = list(r["role"]["pauses"].values()), list(r["bare_pauses"].values())
        limit = 1.5 * r["bare_wall"] + 3 if r["bare_wall"] is not None else None
        met = r["role"]["role"] is not None and limit is not None and r["role"]["role"] <= limit
        if not met:
            missed.append(r)
        pause_cmp = ""
        if r["p"] == max(a.parallel) and r["n"] > 1 and single_role and rp:
            pause_cmp = "%.2f / %s (%s)" % (
                max(rp) / (2 * single_role), "%.2f" % (max(bp) / (2 * single_bare)) if bp and single_bare else "-",
                "met" if max(rp) <= 2 * single_role else "MISSED")
            # The other guests of a full host load it: its pauses one at a time are the fairer yardstick.
            one_at_a_time = [x for x in rows if x["n"] == r["n"] and x["p"] == 1 and x["role"]["pauses"]]
            if one_at_a_time:
                base = max(one_at_a_time[0]["role"]["pauses"].values())
                pause_cmp += " | %.2f (%s; P=1 max %.0f ms)" % (max(rp) / (2 * base),
                                                                "met" if max(rp) <= 2 * base else "MISSED", base)
        say("  %3d %4d | %11.1f | %11s | %12s | %8s | %11.0f / %-9.0f | %11.0f / %-10.0f | %s"
            % (r["n"], r["p"], r["role"]["role"] or -1,
               "%.1f" % r["bare_wall"] if r["bare_wall"] is not None else "-",
               "%.1f" % limit if limit is not None else "-", "met" if met else "MISSED",
               sum(rp), sum(bp), max(rp or [0]), max(bp or [0]), pause_cmp))
    say("   (role wall: the role's first task start to its last task end; 1-VM pause: role %s ms, bare %s ms)"
        % ("%.0f" % single_role if single_role else "-", "%.0f" % single_bare if single_bare else "-"))
    if missed:
        say("\n   where the role's time went, where the wall-time ratio was missed (s; a module's phase is its tasks'"
            " whole time, Ansible's start-up of each included; ansible: the rest of the role's span)")
        say("   N  par | tasks | settle | discovery | save   | switch | verify | steps  | ansible | role  |"
            " CPU s playbook / bare | on %d cores s" % os.cpu_count())
        for r in missed:
            ph = r["role"]["phases"]
            say("  %3d %4d | %5d | %6.1f | %9.1f | %6.1f | %6.1f | %6.1f | %6.1f | %7.1f | %5.1f | %10.1f / %-8s |"
                " %5.1f / %s"
                % (r["n"], r["p"], ph["tasks"], ph["settle"], ph["discovery"], ph["save"], ph["switch"],
                   ph["verify"], ph["steps"], ph["ansible"] if ph["ansible"] is not None else -1,
                   r["role"]["role"] or -1, r["role_cpu"],
                   "%.1f" % r["bare_cpu"] if r["bare_cpu"] is not None else "-", r["role_cpu"] / os.cpu_count(),
                   "%.1f" % (r["bare_cpu"] / os.cpu_count()) if r["bare_cpu"] is not None else "-"))
        say("   (steps: qemu_cpr_upgrade, which runs save, switch and verify of every batch in one task where the"
            " role has it; save/switch/verify: the tasks of a role that runs them one by one. CPU: what the whole"
            " machine spent during the playbook (the role and Ansible around it: controller, modules, new QEMUs)"
            " and during the bare script, the idle guests' share taken out; on N cores: the least wall time that"
            " work can take here)")
        probe = counts["save"][2] + counts["switch"][2]
        say("   probe (target binary run to read its version, machine types and options): %.2f s per VM in save and"
            " switch, %.2f s per host in discovery, in the one-VM in-process run above; included in those phases"
            % (probe, counts["discovery"][2]))
    return rows


# ---------------------------------------------------------------------------------------- changed


def changed_config(a, n, outdated, workdir, started, check=False):
    """The role over N VMs of which OUTDATED run QEMU 10.0 (the rest already the target 11.1)."""
    names = ["bench-c%d-o%d%s-%02d" % (n, outdated, "-check" if check else "", i) for i in range(n)]
    vms, _boot = start_vms(names, a.mem_mb, started, current=n - outdated)
    tag = "changed-n%d-o%d%s" % (n, outdated, "-check" if check else "")
    try:
        role = role_run(vms, 1, workdir, tag, a.via_targets, check=check)
    finally:
        benchlib.stop_lab_vms(started)
        del started[:]
    ph = role["phases"]
    say("   %-34s: role rc %d, %s, role %.1f s (settle %.1f, discovery %.1f, steps %.1f, the rest %.1f)"
        % ("%d VMs, %d outdated%s" % (n, outdated, ", check mode" if check else ""), role["rc"],
           "/".join(role["statuses"]), role["role"] or -1, ph["settle"], ph["discovery"], ph["steps"],
           (role["role"] or 0) - ph["settle"] - ph["discovery"] - ph["steps"]))
    if role["rc"]:
        for line in benchlib.failures(role["log"]):
            say("     " + line)
    return role


def part_changed(a, workdir, started):
    many = max(a.vms)
    say("\n== Part 1b: the work scales with what changed: one host (localhost), live_upgrade_parallel 1,"
        " every VM of the host named in live_upgrade_vms")
    benchlib.wait_quiet("changed part")
    few = changed_config(a, 2, 2, workdir, started)
    mixed = changed_config(a, many, 2, workdir, started)
    check = changed_config(a, many, many, workdir, started, check=True)
    if few["role"] and mixed["role"]:
        say("   %d VMs of which 2 outdated cost %.1f s more than 2 VMs (%.0f ms per current VM);"
            " check mode over %d outdated VMs: %.1f s"
            % (many, mixed["role"] - few["role"], 1000 * (mixed["role"] - few["role"]) / (many - 2), many,
               check["role"] or -1))


# ------------------------------------------------------------------------------------------ fleet


def _lab_on(workdir, host, python, *args):
    return fleet.ssh(workdir, host, "env", "CPR_LAB_RUN=%s/vms-%s" % (workdir, host["name"]),
                     "CPR_LAB_CACHE=%s" % vmlab.CACHE, python, os.path.join(benchlib.REPO, "tests", "lab", "vmlab.py"),
                     *args)


def fleet_vms(workdir, hosts, per_host, mem_mb, python, action):
    """Start (each guest booted) or stop the VMs of every host, over SSH, the hosts at once."""
    procs = []
    for h in hosts:
        if action == "start":
            cmd = " && ".join(" ".join(_lab_on(workdir, h, python, "start", "vm%d" % i, "--qemu", "10.0",
                                               "--mem-mb", str(mem_mb), "--fill-mb", str(FILL_MB),
                                               "--machine", vmlab.VERSIONED_Q35, "--wait-ticks", "1",
                                               "--arg=-append",
                                               # quoted for this shell and for the host's, over SSH
                                               shlex.quote(shlex.quote("--arg=" + CMDLINE % FILL_MB))))
                              + " >/dev/null" for i in range(per_host))
        else:
            cmd = " ".join(_lab_on(workdir, h, python, "stop-all")) + " >/dev/null"
        procs.append((h["name"], subprocess.Popen(["sh", "-c", cmd], stderr=subprocess.PIPE, text=True)))
    failed = []
    for name, p in procs:
        _out, err = p.communicate()
        if p.returncode:
            failed.append("%s: %s" % (name, err.strip()[-500:]))
    if failed:
        raise RuntimeError("%s of the fleet's VMs failed: %s" % (action, "; ".join(failed)))


def fleet_run(workdir, count, per_host, mode, mem_mb, via_targets):
    python = sys.executable
    with open(os.path.join(workdir, "fleet.json")) as f:
        state = json.load(f)
    hosts = state["hosts"]
    fleet_vms(workdir, hosts, per_host, mem_mb, python, "start")
    try:
        extra = {"qemu_upgrade_become": False, "qemu_upgrade_report": os.path.join(workdir, "report-%s.json" % mode),
                 "live_upgrade_pause_budget_ms": 600000}
        inventory = os.path.join(workdir, "inventory.json")
        if via_targets:  # each host's own VMs, in its host variables
            with open(inventory) as f:
                inv = json.load(f)
            for h in hosts:
                inv["qemu_hosts"]["hosts"][h["name"]].update(target_vars(
                    ["%s/vms-%s/vm%d/qmp.sock" % (workdir, h["name"], i) for i in range(per_host)], True))
            inventory = os.path.join(workdir, "inventory-targets.json")
            with open(inventory, "w") as f:
                json.dump(inv, f)
        else:
            extra.update(target_vars([], False))
            del extra["live_upgrade_vms"]
        if mode == "one-batch":
            extra["qemu_upgrade_serial"] = "100%"
        guests = idle_load(3)
        busy0, controller0 = busy_seconds(), _children_cpu()
        rc, wall, timings, log = benchlib.run_playbook(
            PLAYBOOK, inventory, extra, workdir, "fleet-h%d-%s" % (count, mode),
            forks=max(5, count), env={"ANSIBLE_SSH_CONTROL_PATH_DIR": os.path.join(workdir, "cp")})
        # What the playbook made the machine do (controller, SSH, modules, new QEMUs), the idle guests' share
        # taken out; the controller's part is ansible-playbook with its workers and SSH clients.
        cpu = busy_seconds() - busy0 - guests * wall
        controller = _children_cpu() - controller0
    finally:
        fleet_vms(workdir, hosts, per_host, mem_mb, python, "stop")
    play = timings.play_span("Live-upgrade QEMU under the running VMs")
    per_host_spans = [timings.host_span(h["name"], within=play) for h in hosts]
    host_times = [s[1] - s[0] for s in per_host_spans if s]
    try:
        with open(extra["qemu_upgrade_report"]) as f:
            results = json.load(f)
    except (OSError, ValueError):
        results = []
    return {"rc": rc, "wall": wall, "makespan": play[1] - play[0] if play else None, "log": log,
            "host_times": host_times, "upgraded": len([r for r in results if r.get("status") == "upgraded"]),
            "cpu": cpu, "controller_cpu": controller, "guests_load": guests,
            "batches": len({r.get("batch") for r in results}), "vms": count * per_host,
            "pauses": [r["pause_ms"] for r in results if r.get("pause_ms") is not None]}


def part_fleet(a, run_base):
    say("\n== Part 2: a fleet of H namespace hosts over SSH (tests/fleet/fleet.py), %d VMs each (Linux guests"
        " under TCG, %d MiB), QEMU 10.0 -> 11.1, live_upgrade_parallel 1" % (a.vms_per_host, a.mem_mb))
    benchlib.wait_quiet("fleet part")
    fleet.NET = FLEET_NET
    rows = []
    for count in a.hosts:
        workdir = tempfile.mkdtemp(prefix="bench-fleet-", dir=run_base)
        try:
            fleet.up(workdir, count, sys.executable)
            for mode in (("default",) if count == 1 else ("default", "one-batch")):
                r = fleet_run(workdir, count, a.vms_per_host, mode, a.mem_mb, a.via_targets)
                r.update(h=count, mode=mode)
                rows.append(r)
                say("   H=%d %-9s: rc %d, %d/%d upgraded in %d batch(es), makespan %.1f s (playbook %.1f s),"
                    " per-host %.1f-%.1f s, max pause %.0f ms; CPU %.1f s, %.1f s of it the controller's (%.1f s"
                    " per host; idle guests %.2f cores besides)"
                    % (count, mode, r["rc"], r["upgraded"], r["vms"], r["batches"], r["makespan"] or -1, r["wall"],
                       min(r["host_times"] or [0]), max(r["host_times"] or [0]), max(r["pauses"] or [0]), r["cpu"],
                       r["controller_cpu"], r["cpu"] / count, r["guests_load"]))
                if r["rc"] or r["upgraded"] != r["vms"]:
                    for line in benchlib.failures(r["log"]):
                        say("     " + line)
        finally:
            fleet.down(workdir)
            if a.keep:
                say("   kept: %s" % workdir)
            else:
                shutil.rmtree(workdir, ignore_errors=True)
    one = [r for r in rows if r["h"] == 1]
    base = one[0]["makespan"] if one else None
    cores = os.cpu_count()
    say("\n    H  batches    | makespan s | playbook s | one host's time s | makespan / one host | vs 1.3 |"
        " CPU s | CPU / %d cores s" % cores)
    for r in rows:
        ratio = r["makespan"] / base if base and r["makespan"] else None
        verdict = "" if r["mode"] != "one-batch" and r["h"] != 1 else (
            "-" if ratio is None else "met" if ratio <= 1.3 else "MISSED")
        say("  %3d  %-10s | %10.1f | %10.1f | %17.1f | %19s | %6s | %5.1f | %16.1f"
            % (r["h"], r["mode"], r["makespan"] or -1, r["wall"], base or -1,
               "%.2f" % ratio if ratio else "-", verdict, r["cpu"], r["cpu"] / cores))
    say("   (makespan: the upgrade play's start to its end, the report's appends included; one host's time: the"
        " same play with H=1; the ratio is asked of the one-batch roll-out. CPU: what the whole machine spent"
        " during the playbook (controller, SSH, every host's modules and new QEMUs), the idle guests' share"
        " taken out; the namespace hosts share this machine's %d cores, so a roll-out cannot end before"
        " CPU / %d cores)" % (cores, cores))
    for r in rows:
        ratio = r["makespan"] / base if base and r["makespan"] else None
        if r["mode"] == "one-batch" and ratio and ratio > 1.3:
            floor = r["cpu"] / cores
            say("   H=%d one-batch missed 1.3: the machine had %.1f CPU-s of work, %.1f s on %d cores, and the"
                " makespan was %.1f s (%.0f%% above that floor): the hosts wait for cores, not for each other."
                " Per host: %.1f CPU-s (its modules, SSH and new QEMUs %.1f, the controller's share %.1f); the"
                " controller: %.1f CPU-s in all." % (
                    r["h"], r["cpu"], floor, cores, r["makespan"], 100 * (r["makespan"] / floor - 1),
                    r["cpu"] / r["h"], (r["cpu"] - r["controller_cpu"]) / r["h"], r["controller_cpu"] / r["h"],
                    r["controller_cpu"]))
    return rows


# ------------------------------------------------------------------------------------------- main


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    p.add_argument("--parts", default="report,kvm,host,changed,fleet")
    p.add_argument("--vms", default="1,8,32", help="VMs on the one host")
    p.add_argument("--parallel", default="1,4,8", help="live_upgrade_parallel values")
    p.add_argument("--hosts", default="1,4,8", help="fleet sizes")
    p.add_argument("--vms-per-host", type=int, default=3)
    p.add_argument("--mem-mb", type=int, default=96)
    p.add_argument("--report-hosts", type=int, default=1000)
    p.add_argument("--report-vms", type=int, default=20)
    p.add_argument("--kvm-sizes", default="256,1024")
    p.add_argument("--kvm-rounds", type=int, default=3)
    p.add_argument("--no-wait", action="store_true", help="do not wait for the project's test runs to end")
    p.add_argument("--max-wait", type=int, default=1200,
                   help="seconds to wait at most, over the whole run, for the project's test runs to end")
    p.add_argument("--keep", action="store_true", help="keep the playbooks' logs, timings and reports")
    p.add_argument("--via-targets", action="store_true",
                   help="give the role its target per VM (live_upgrade_targets, as a rollback does) rather than "
                        "live_upgrade_target_binary/_root and live_upgrade_launcher")
    a = p.parse_args()
    a.vms = [int(x) for x in a.vms.split(",")]
    a.parallel = [int(x) for x in a.parallel.split(",")]
    a.hosts = [int(x) for x in a.hosts.split(",")]
    benchlib.MAX_WAIT = 0 if a.no_wait else a.max_wait
    benchlib.terminate_on_sigterm()
    parts = a.parts.split(",")
    say("cpr.qemu scale benchmarks (%s), %d cores, %.1f GiB RAM; figures only, nothing asserted"
        % (time.strftime("%Y-%m-%d %H:%M:%S"), os.cpu_count(),
           os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30))
    workdir = tempfile.mkdtemp(prefix="bench-scale-", dir=os.path.dirname(vmlab.RUN_BASE))
    started = []
    try:
        if "report" in parts:
            import report_cost
            benchlib.wait_quiet("report part")
            report_cost.part(a.report_hosts, a.report_vms, workdir)
        if "kvm" in parts:
            import kvm
            benchlib.wait_quiet("kvm part")
            kvm.part([int(x) for x in a.kvm_sizes.split(",")], a.kvm_rounds, started)
        if "host" in parts:
            part_host(a, workdir, started)
        if "changed" in parts:
            part_changed(a, workdir, started)
        if "fleet" in parts:
            part_fleet(a, os.path.dirname(vmlab.RUN_BASE))
        seen = benchlib.others()
        say("\n   [at the end: %s; the run waited %.0f s in all for test runs to end]"
            % ("test processes running: " + "; ".join(x[:90] for x in seen[:3]) if seen else "no test run of the project",
               benchlib.WAITED))
    finally:
        benchlib.stop_lab_vms(started)
        vmlab.stop_all()
        if a.keep:
            say("kept: %s" % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
