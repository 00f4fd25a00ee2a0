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
import vmlab  # noqa: E402

W, STAGE = sys.argv[1], sys.argv[2]
VMS = {"h1": ["vm-h1", "plain-h1"], "h2": ["vm-h2"], "h3": ["vm-h3"], "h4": ["vm-h4"]}
with open(os.path.join(vmlab.CACHE, "pkghost.json")) as f:
    PACKAGE = json.load(f)
# h4, the package host, runs its own root's QEMU (see fleet.py).
BEFORE = {"h1": "10.0.2", "h2": "10.0.2", "h3": "10.0.2",
          "h4": re.split(r"[-+~]", PACKAGE["installed"].split(":", 1)[-1])[0]}


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


def recap():
    with open(os.path.join(W, STAGE + ".log")) as f:
        text = f.read()
    return dict((m.group(1), dict((k, int(v)) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))))
                for m in re.finditer(r"^(h\d)\s+:\s+(.*)$", text, re.M)), text


def report():
    with open(os.path.join(W, "report-%s.json" % STAGE)) as f:
        return dict(((r["host"], r["vm"]), r) for r in json.load(f))


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
elif STAGE == "rollout":
    r = report()
    for host in VMS:
        e = r[(host, "vm-" + host)]
        if e["status"] != "upgraded" or not isinstance(e["pause_ms"], float) or e["pid_after"] == e["pid_before"]:
            fail("%s not upgraded: %s" % (host, e))
        if version(host, "vm-" + host) != ("11.1.3", "running"):
            fail("%s does not run 11.1.3" % host)
    if r[("h1", "plain-h1")]["status"] != "skipped" or version("h1", "plain-h1")[0] != "10.0.2":
        fail("plain-h1 should be skipped and untouched")
    if not package_installed():
        fail("the package host's QEMU package was not installed")
    if len(r) != 5:
        fail("one host's discovery saw another's VMs: %s" % sorted(r))
    # The pause was seen from outside: one STOP per upgraded guest, none for the skipped one.
    for host, vms in VMS.items():
        for vm in vms:
            if stops(host, vm) != (0 if vm == "plain-h1" else 1):
                fail("%s on %s: %d STOP events" % (vm, host, stops(host, vm)))
    summary = artifacts().get("qemu_upgrade", {})
    if sorted(summary) != sorted(VMS):
        fail("job artifacts should hold the summary of each host: %s" % sorted(summary))
    for host, results in summary.items():
        if sorted((e["vm"], e["status"]) for e in results) != \
                sorted((vm, e["status"]) for (h, vm), e in r.items() if h == host):
            fail("artifacts of %s differ from the report: %s" % (host, results))
    # Hosts went in batches: the canary h1, then 25% (h2), then the rest.
    if log.count("PLAY [Live-upgrade QEMU under the running VMs]") != 3:
        fail("not three batches")
elif STAGE == "again":
    r = report()
    if any(counts[h]["changed"] for h in counts):
        fail("second run changed something: %s" % counts)
    for host in VMS:
        if r[(host, "vm-" + host)]["status"] != "already-current":
            fail("%s: %s" % (host, r[(host, "vm-" + host)]))
print("fleet %s: ok" % STAGE)
