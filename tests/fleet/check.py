# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
"""Checks of one stage of tests/fleet/run.sh, from outside the namespace hosts.

The guests' consoles and the reports are on the shared filesystem; the QEMU
processes are asked over QMP through the hosts' /run paths (the sockets are
in the shared run directories).
"""
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lab"))
sys.path.insert(0, HERE)
import fleet  # noqa: E402
import vmlab  # noqa: E402

W, STAGE = sys.argv[1], sys.argv[2]
VMS = {"h1": ["vm-h1", "plain-h1"], "h2": ["vm-h2"], "h3": ["vm-h3"], "h4": ["vm-h4"]}
with open(os.path.join(vmlab.CACHE, "pkghost.json")) as f:
    PACKAGE = json.load(f)
# h4, the package host, runs its own root's QEMU (see fleet.py).
BEFORE = {"h1": "10.0.2", "h2": "10.0.2", "h3": "10.0.2",
          "h4": re.split(r"[-+~]", PACKAGE["installed"].split(":", 1)[-1])[0]}
# h3 upgrades to the host's QEMU 10.0 (its own copy was replaced on disk), the others to 11.1.
AFTER = {"h1": "11.1.3", "h2": "11.1.3", "h3": "10.0.2", "h4": "11.1.3"}


def package_installed():
    """Whether apt replaced the package host's QEMU (its overlay's upper layer has the binary)."""
    return os.path.exists(os.path.join(W, "h4", "upper", "usr", "bin", "qemu-system-x86_64"))


def fail(msg):
    sys.exit("fleet %s: %s" % (STAGE, msg))


def version(host, vm):
    path = os.path.join(W, "vms-" + host, vm, "qmp.sock")
    with vmlab.qmp_session(path) as q:
        v = q.execute("query-version")["qemu"]
        status = q.execute("query-status")["status"]
    return "%d.%d.%d" % (v["major"], v["minor"], v["micro"]), status


def evidence(host, vm):
    with open(os.path.join(W, "vms-" + host, vm, "serial.log"), errors="replace") as f:
        return vmlab.GuestEvidence.parse(f.read())


def stops(host, vm):
    """How many STOP events the VM's recorder saw (its second monitor, see run.sh)."""
    with open(os.path.join(W, "vms-" + host, vm, "events.jsonl")) as f:
        return sum(1 for line in f if json.loads(line)["event"] == "STOP")


def artifacts():
    """The set_stats data of the ansible-runner run, as AWX shows it as job artifacts."""
    events = os.path.join(W, "runner", "artifacts", STAGE, "job_events")
    for name in os.listdir(events):
        with open(os.path.join(events, name)) as f:
            event = json.load(f)
        if event.get("event") == "playbook_on_stats":
            return event["event_data"].get("artifact_data", {})
    fail("no playbook_on_stats event in %s" % events)


def recap(stage=None):
    with open(os.path.join(W, (stage or STAGE) + ".log")) as f:
        text = f.read()
    return dict((m.group(1), dict((k, int(v)) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))))
                for m in re.finditer(r"^(h\d)\s+:\s+(.*)$", text, re.M)), text


def entries(stage=None):
    """Every result of a stage's report, in order (a VM may have two: its settled session, then its upgrade)."""
    with open(os.path.join(W, "report-%s.json" % (stage or STAGE))) as f:
        return json.load(f)


def report(stage=None):
    """The report's last result per (host, VM)."""
    return dict(((r["host"], r["vm"]), r) for r in entries(stage))


def sessions():
    """Every host's VMs as qemu_cpr_info reported them after the stage (tests/fleet/sessions.yml)."""
    with open(os.path.join(W, "sessions-%s.json" % STAGE)) as f:
        return json.load(f)


def settled_once():
    """No VM keeps a session, and each runs on exactly one QEMU process."""
    for host, vms in sessions().items():
        if sorted(v.get("name") for v in vms) != sorted(VMS[host]):
            fail("%s reports the VMs %s" % (host, [v.get("name") for v in vms]))
        for v in vms:
            if v.get("session") is not None:
                fail("%s on %s keeps a session: %s" % (v.get("name"), host, v["session"]))
    for host, vms in VMS.items():
        for vm in vms:
            pids = fleet.qemus(W, host, vm)
            if len(pids) != 1:
                fail("%s on %s runs on %d QEMU processes: %s" % (vm, host, len(pids), pids))


if STAGE == "prepare":
    # Only the package host lacked qemu.qmp: it got the distribution's package, and a second run changes nothing.
    first, second = recap()[0], recap("prepare-again")[0]
    if sorted(first) != sorted(VMS) or any(c.get("failed") or c.get("unreachable") for c in first.values()):
        fail("preparing the hosts failed: %s" % first)
    if [h for h in sorted(first) if first[h]["changed"]] != ["h4"] or any(c["changed"] for c in second.values()):
        fail("only h4 should have changed, and only the first time: %s, then %s" % (first, second))
    if not os.path.isdir(os.path.join(W, "h4", "upper", "usr", "lib", "python3", "dist-packages", "qemu", "qmp")):
        fail("h4 did not get python3-qemu-qmp from its repository")
    print("fleet prepare: ok")
    sys.exit(0)


def value_of(host, metric, vm=None, **labels):
    """A sample's value in HOST's node-exporter textfile, read with Prometheus' own parser."""
    from prometheus_client.parser import text_string_to_metric_families
    with open(os.path.join(W, "textfile", host, "cpr_qemu.prom")) as f:
        for m in text_string_to_metric_families(f.read()):
            for s in m.samples:
                if s.name == metric and s.labels.get("vm") == vm and all(s.labels.get(k) == v for k, v in labels.items()):
                    return s.value
    return None


def cached_facts(host):
    """HOST's facts in the jsonfile fact cache ansible-runner keeps in the stage's artifacts (ansible-core 2.19
    names each file with a prefix, s1_HOST, and wraps the facts as a JSON payload)."""
    cache = os.path.join(W, "runner", "artifacts", STAGE, "fact_cache")
    name = next((n for n in os.listdir(cache) if n == host or n.endswith("_" + host)), None)
    if name is None:
        fail("no facts of %s in the fact cache: %s" % (host, os.listdir(cache)))
    with open(os.path.join(cache, name)) as f:
        data = json.load(f)
    return json.loads(data["__payload__"]) if "__payload__" in data else data


def drift():
    """The drift inventory of the check run: each host's node-exporter textfile, read by Prometheus' own parser,
    and the hosts' cpr_qemu_* facts in the job's fact cache (as AWX keeps them)."""
    for host, vms in VMS.items():
        if value_of(host, "cpr_qemu_vms") != len(vms):
            fail("%s's textfile counts %s VMs" % (host, value_of(host, "cpr_qemu_vms")))
        for vm in vms:
            capable = value_of(host, "cpr_qemu_vm_cpr_capable", vm)
            if capable != (0 if vm == "plain-h1" else 1):
                fail("%s's textfile on %s: CPR-capable %s" % (vm, host, capable))
            # h1 and h2 run 10.0 against 11.1 (h3's target is its own version, h4's package is not installed).
            if host in ("h1", "h2") and value_of(host, "cpr_qemu_vm_outdated", vm) != 1:
                fail("%s's textfile on %s: not outdated" % (vm, host))
        facts = cached_facts(host)
        if sorted(v["name"] for v in facts.get("cpr_qemu_vms", [])) != sorted(vms):
            fail("%s's fact cache lacks its cpr_qemu_vms: %s" % (host, sorted(facts)))
    if not value_of("h1", "cpr_qemu_vm_next_restart_changes", "plain-h1"):
        fail("plain-h1 should be told what to change at its next restart")
    if value_of("h3", "cpr_qemu_vms_binary", None, binary_state="replaced") != 1:
        fail("h3's textfile should count its VM's binary as replaced on disk")


counts, log = recap()
for host, vms in VMS.items():
    for vm in vms:
        ev = evidence(host, vm)
        if ev.problems() or len(ev.boots) != 1:
            fail("guest %s on %s: %s" % (vm, host, ev.problems() or "%d boots" % len(ev.boots)))

if STAGE in ("canary", "check"):
    for host, vms in VMS.items():
        for vm in vms:
            if stops(host, vm):
                fail("%s on %s was paused" % (vm, host))

if STAGE == "canary":
    if counts.get("h1", {}).get("failed") != 1:
        fail("h1 should have failed: %s" % counts)
    if set(counts) != {"h1"}:
        fail("the roll-out went on after the failed canary: %s" % counts)
    for host in ("h2", "h3", "h4"):
        if version(host, "vm-" + host)[0] != BEFORE[host]:
            fail("%s was touched" % host)
    if package_installed():
        fail("the package host's QEMU package was installed")
    # The report has the canary's results although the playbook stopped there.
    r = report()
    if sorted(r) != [("h1", "plain-h1"), ("h1", "vm-h1")] or r[("h1", "plain-h1")]["status"] != "failed" \
            or not r[("h1", "vm-h1")]["reason"].startswith("not started: plain-h1 failed pre-checks"):
        fail("report of the stopped roll-out: %s" % r)
elif STAGE == "check":
    r = report()
    for host in VMS:
        if r[(host, "vm-" + host)]["status"] != "planned" or r[(host, "vm-" + host)]["dialect"] != "cpr-transfer":
            fail("plan for %s: %s" % (host, r[(host, "vm-" + host)]))
        if version(host, "vm-" + host) != (BEFORE[host], "running"):
            fail("check mode changed %s" % host)
    if package_installed():
        fail("check mode installed the package")
    if not r[("h4", "vm-h4")]["reason"].startswith("would switch after installing qemu-system-x86 " + PACKAGE["target"]) \
            or r[("h4", "vm-h4")]["version_after"] != "11.1.3":
        fail("plan for the package host: %s" % r[("h4", "vm-h4")])
    if r[("h1", "plain-h1")]["status"] != "skipped" or "'pc.ram'" not in r[("h1", "plain-h1")]["reason"]:
        fail("plain-h1 should be skipped for its RAM: %s" % r[("h1", "plain-h1")])
    drift()
elif STAGE == "interrupted":
    # Ctrl-C came while the canary host h1 switched its guest; nothing else was touched.
    with open(os.path.join(W, "interrupted-switch.json")) as f:
        switching = json.load(f)
    if not any("/vms-h1/vm-h1/" in a for a in switching):
        fail("the switch interrupted was not vm-h1's: %s" % switching)
    if "User interrupted execution" not in log:
        fail("ansible-playbook was not interrupted")
    for host in ("h2", "h3", "h4"):
        if stops(host, "vm-" + host) or version(host, "vm-" + host)[0] != BEFORE[host]:
            fail("%s was touched" % host)
    print("fleet interrupted: vm-h1 on QEMU %s (%s), %d STOP events" % (version("h1", "vm-h1") + (stops("h1", "vm-h1"),)))
elif STAGE == "wf-canary":
    r = report()
    # The workflow's canary node (limit qemu_hosts[0]) settled what the interrupted run left on h1, first.
    settled = [e for e in entries() if e.get("step")]
    if any((e["host"], e["vm"], e["status"]) != ("h1", "vm-h1", "recovered") for e in settled) or len(settled) != 1:
        fail("settled sessions: %s" % settled)
    e = r[("h1", "vm-h1")]
    finished = settled[0]["action"] == "finished"
    if e["status"] != ("already-current" if finished else "upgraded"):
        fail("vm-h1 on the canary: %s" % e)
    if not finished and (not (e.get("health") or {}).get("healthy") or e["health"]["how"] != "runstate"):
        fail("vm-h1's health gate on the canary: %s" % e.get("health"))
    if version("h1", "vm-h1") != (AFTER["h1"], "running"):
        fail("vm-h1 does not run %s" % AFTER["h1"])
    if sorted(set(h for h, _vm in r)) != ["h1"]:
        fail("the canary node touched other hosts: %s" % sorted(r))
    # The node told the role so (qemu_upgrade_canary), although its limit makes it a batch of its own.
    if not all(e["canary"] for e in entries()):
        fail("the canary node's results are not marked canary: %s" % entries())
    for host in ("h2", "h3", "h4"):
        if stops(host, "vm-" + host) or version(host, "vm-" + host)[0] != BEFORE[host]:
            fail("%s was touched by the canary node" % host)
elif STAGE == "rollout":
    r, canary = report(), report("wf-canary")
    # Nothing was left to settle: the canary node did it.
    if [e for e in entries() if e.get("step")]:
        fail("sessions settled again: %s" % [e for e in entries() if e.get("step")])
    for host in VMS:
        e = r[(host, "vm-" + host)]
        if host == "h1":
            # Upgraded by the canary node (or finished by its recovery): current now, with that node's pause.
            before = canary[("h1", "vm-h1")]
            if e["status"] != "already-current" or (before["status"] == "upgraded") != bool(e.get("done_before")) \
                    or e.get("done_before") and e["pause_ms"] != before["pause_ms"]:
                fail("vm-h1 after the canary node: %s (canary: %s)" % (e, before))
        elif e["status"] != "upgraded" or not isinstance(e["pause_ms"], float) or e["pid_after"] == e["pid_before"]:
            fail("%s not upgraded: %s" % (host, e))
        # The health gate (these guests have no agent: their runstate) passed each switched guest.
        elif not (e.get("health") or {}).get("healthy") or e["health"]["how"] != "runstate":
            fail("%s's health gate: %s" % (host, e.get("health")))
        if version(host, "vm-" + host) != (AFTER[host], "running"):
            fail("%s does not run %s" % (host, AFTER[host]))
    if r[("h3", "vm-h3")]["binary_before"]["path"] != os.path.join(W, "vms-h3", "vm-h3", "qemu-system-x86_64"):
        fail("the report lacks the binary vm-h3 ran before: %s" % r[("h3", "vm-h3")])
    if r[("h1", "plain-h1")]["status"] != "skipped" or version("h1", "plain-h1")[0] != "10.0.2":
        fail("plain-h1 should be skipped and untouched")
    if not package_installed():
        fail("the package host's QEMU package was not installed")
    if len(r) != 5:
        fail("one host's discovery saw another's VMs: %s" % sorted(r))
    # The pause was seen from outside: one STOP per upgraded guest (two for the interrupted one if its first
    # switch was rolled back), none for the skipped one.
    for host, vms in VMS.items():
        for vm in vms:
            want = (0,) if vm == "plain-h1" else (1, 2) if vm == "vm-h1" else (1,)
            if stops(host, vm) not in want:
                fail("%s on %s: %d STOP events" % (vm, host, stops(host, vm)))
    settled_once()
    # The hooks ran once each where VMs switched, outside the pauses, with the VMs' facts.
    markers = sorted(os.listdir(os.path.join(W, "markers")))
    # (h1's VM switched in the canary node, if its recovery did not finish the interrupted switch.)
    switched = dict((h, ["vm-" + h] if "upgraded" in (r[(h, "vm-" + h)]["status"], canary.get((h, "vm-" + h), {}).get("status"))
                     else []) for h in VMS)
    want = sorted(["%s-%s-host.json" % (h, hook) for h, vms in switched.items() if vms for hook in ("before_host", "after_host")]
                  + ["%s-%s-%s.json" % (h, hook, vm) for h, vms in switched.items() for vm in vms
                     for hook in ("before_vm", "after_vm")])
    if markers != want:
        fail("hook markers: %s, not %s" % (markers, want))
    for h, vms in switched.items():
        for vm in vms:
            with open(os.path.join(W, "markers", "%s-after_vm-%s.json" % (h, vm))) as f:
                if json.load(f)["vm"].get("status") != "upgraded":
                    fail("the after_vm hook of %s did not get its result" % vm)
    summary = artifacts().get("qemu_upgrade", {})
    if sorted(summary) != sorted(VMS):
        fail("job artifacts should hold the summary of each host: %s" % sorted(summary))
    for host, results in summary.items():
        if sorted((e["vm"], e["status"]) for e in results) != \
                sorted((e["vm"], e["status"]) for e in entries() if e["host"] == host):
            fail("artifacts of %s differ from the report: %s" % (host, results))
    # Hosts went in batches: the canary h1, then 25% (h2), then the rest.
    if log.count("PLAY [Live-upgrade QEMU under the running VMs]") != 3:
        fail("not three batches")
elif STAGE == "again":
    r = report()
    if any(counts[h]["changed"] for h in counts):
        fail("second run changed something: %s" % counts)
    # Resumed, not repeated: each VM an earlier run upgraded is current with that run's pause, and was not paused
    # again; the summary counts them.
    earlier = report("wf-canary")
    earlier.update((k, e) for k, e in report("rollout").items() if e["status"] == "upgraded")
    done = 0
    for host in VMS:
        e, before = r[(host, "vm-" + host)], earlier.get((host, "vm-" + host), {})
        if e["status"] != "already-current":
            fail("%s: %s" % (host, e))
        if before.get("status") == "upgraded":
            done += 1
            if not e.get("done_before") or e["pause_ms"] != before["pause_ms"] or e["paused_at"] != before["paused_at"]:
                fail("%s should be reported done before, with its pause %s: %s" % (host, before["pause_ms"], e))
    if "%d done before" % done not in log:
        fail("the summary should count the %d VMs done before" % done)
    for host, vms in VMS.items():
        for vm in vms:
            want = (0,) if vm == "plain-h1" else (1, 2) if vm == "vm-h1" else (1,)
            if stops(host, vm) not in want:
                fail("%s on %s was paused again: %d STOP events" % (vm, host, stops(host, vm)))
    # What the rollback's pauses are counted from.
    with open(os.path.join(W, "stops-again.json"), "w") as f:
        json.dump(dict(("%s/%s" % (h, vm), stops(h, vm)) for h, vms in VMS.items() for vm in vms), f)
elif STAGE == "rollback":
    r, before = report(), report("rollout")
    if any(c.get("failed") for c in counts.values()):
        fail("the rollback failed a host: %s" % counts)
    # h3 went back to the binary it ran before, live; QEMU cannot take a guest back from 11.1 to 10.0 (h2),
    # and h4's old binary is gone (the package replaced it): both refused before the pause.
    e = r[("h3", "vm-h3")]
    if e["status"] != "upgraded" or e["target_binary"] != before[("h3", "vm-h3")]["binary_before"]["path"] \
            or e["pid_after"] == e["pid_before"] or e["version_after"] != BEFORE["h3"]:
        fail("vm-h3 not rolled back: %s" % e)
    with open(os.path.join(W, "stops-again.json")) as f:
        before_stops = json.load(f)
    paused = dict(((h, vm), stops(h, vm) - before_stops["%s/%s" % (h, vm)]) for h, vms in VMS.items() for vm in vms)
    if version("h3", "vm-h3") != (BEFORE["h3"], "running") or paused[("h3", "vm-h3")] != 1:
        fail("vm-h3 after the rollback: %s, %d STOP events" % (version("h3", "vm-h3"), paused[("h3", "vm-h3")]))
    e = r[("h2", "vm-h2")]
    # Refused by the collection's version-pair data (roles/live_upgrade/vars/qemu_version_pairs.yml).
    if e["status"] != "skipped" or "QEMU 11.1.3 -> 10.0.2 is known bad" not in e["reason"] \
            or e["version_pair"]["status"] != "bad":
        fail("vm-h2's rollback should be refused: %s" % e)
    e = r[("h4", "vm-h4")]
    if e["status"] != "skipped" or "is now QEMU 11.1.3, not %s as recorded" % BEFORE["h4"] not in e["reason"]:
        fail("vm-h4's rollback should be refused: %s" % e)
    for host in ("h1", "h2", "h4"):
        if version(host, "vm-" + host) != ("11.1.3", "running"):
            fail("%s moved: %s" % (host, version(host, "vm-" + host)))
    # The refused moves were refused before the pause.
    if any(n for (h, vm), n in paused.items() if vm != "vm-h3"):
        fail("the rollback paused guests it did not move: %s" % paused)
    settled_once()
print("fleet %s: ok" % STAGE)
