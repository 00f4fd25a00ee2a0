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
VMS = {"h1": ["vm-h1", "plain-h1"], "h2": ["vm-h2"], "h3": ["vm-h3"]}


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

if STAGE == "canary":
    if counts.get("h1", {}).get("failed") != 1:
        fail("h1 should have failed: %s" % counts)
    if "h2" in counts or "h3" in counts:
        fail("the roll-out went on after the failed canary: %s" % counts)
    for host in ("h2", "h3"):
        if version(host, "vm-" + host)[0] != "10.0.2":
            fail("%s was touched" % host)
elif STAGE == "check":
    r = report()
    for host in ("h1", "h2", "h3"):
        if r[(host, "vm-" + host)]["status"] != "planned" or r[(host, "vm-" + host)]["dialect"] != "cpr-transfer":
            fail("plan for %s: %s" % (host, r[(host, "vm-" + host)]))
        if version(host, "vm-" + host) != ("10.0.2", "running"):
            fail("check mode changed %s" % host)
    if r[("h1", "plain-h1")]["status"] != "skipped" or "'pc.ram'" not in r[("h1", "plain-h1")]["reason"]:
        fail("plain-h1 should be skipped for its RAM: %s" % r[("h1", "plain-h1")])
elif STAGE == "rollout":
    r = report()
    for host in ("h1", "h2", "h3"):
        e = r[(host, "vm-" + host)]
        if e["status"] != "upgraded" or not isinstance(e["pause_ms"], float) or e["pid_after"] == e["pid_before"]:
            fail("%s not upgraded: %s" % (host, e))
        if version(host, "vm-" + host) != ("11.1.3", "running"):
            fail("%s does not run 11.1.3" % host)
    if r[("h1", "plain-h1")]["status"] != "skipped" or version("h1", "plain-h1")[0] != "10.0.2":
        fail("plain-h1 should be skipped and untouched")
    if len(r) != 4:
        fail("one host's discovery saw another's VMs: %s" % sorted(r))
    # Hosts went in batches: the canary h1 alone first.
    if log.index("PLAY [Live-upgrade QEMU under the running VMs]") > log.index("h1 vm-h1: upgraded"):
        fail("no batches")
elif STAGE == "again":
    r = report()
    if any(counts[h]["changed"] for h in counts):
        fail("second run changed something: %s" % counts)
    for host in ("h1", "h2", "h3"):
        if r[(host, "vm-" + host)]["status"] != "already-current":
            fail("%s: %s" % (host, r[(host, "vm-" + host)]))
print("fleet %s: ok" % STAGE)
