# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
"""Guest pause of a live upgrade: a bare qemu.qmp switch vs. the three cpr.qemu modules.

For cpr-exec and cpr-transfer (QEMU 11.1 to 11.1, alternating between two
binaries), at guest RAM sizes 256 MiB, 1 GiB and 4 GiB, three quarters of it
written by the guest before the switches.  Both ways start the new QEMU with -S
and resume it with cont, and both measure the pause between QEMU's own STOP
(old QEMU) and RESUME (new QEMU) events.  Prints one line per switch and a
summary: what we expect is the modules adding under 10% to the bare pause and
no growth with RAM size.

Run by scripts/bench.sh, which sets up the lab, the venv and the collection.
Usage: python bench/pause.py [--sizes 256,1024,4096] [--rounds 3]
"""

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

from qemu.qmp import EventListener, QMPClient

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "lab"))

import vmlab  # noqa: E402

COPY = "/usr/local/bin/qemu-system-x86_64-bench"
BINARIES = ("/usr/bin/qemu-system-x86_64", COPY)


def ts(event):
    return event["timestamp"]["seconds"] + event["timestamp"]["microseconds"] / 1e6


def _listening(path):
    """Whether a UNIX socket bound at path listens (/proc/net/unix flag __SO_ACCEPTCON)."""
    with open("/proc/net/unix") as f:
        next(f)
        for line in f:
            fields = line.split()
            if len(fields) >= 8 and fields[7] == path and int(fields[3], 16) & 0x10000:
                return True
    return False


def _listen(client, names):
    """Register a listener now, so no event sent after this call is missed."""
    listener = EventListener(names)
    client.register_listener(listener)
    return listener


async def _events_until(listener, stop_after):
    got = {}
    async for event in listener:
        got.setdefault(event["event"], event)
        if stop_after(event):
            break
    return got


async def bare_switch(vm, dialect, new_binary):
    """The switch as a bare qemu.qmp script does it: no checks, no lock, no rollback."""
    run = vm.run_dir
    old = QMPClient("old")
    await old.connect(vm.qmp_socket)
    argv = open("/proc/%d/cmdline" % vm.pid, "rb").read().split(b"\0")[:-1]
    argv = [a.decode() for a in argv]
    skip = {"-S"}
    new = [new_binary]
    i = 1
    while i < len(argv):
        if argv[i] in skip:
            i += 1
        elif argv[i] == "-incoming":
            i += 2
        else:
            new.append(argv[i])
            i += 1
    await old.execute("migrate-set-capabilities", {"capabilities": [{"capability": "events", "state": True}]})
    proc = None
    if dialect == "cpr-exec":
        state = os.path.join(run, "bench.state")
        await old.execute("migrate-set-parameters",
                          {"mode": "cpr-exec", "cpr-exec-command": new + ["-S", "-incoming", "file:" + state]})
        listener = _listen(old, ["STOP", "MIGRATION"])
        await old.execute("migrate", {"uri": "file:" + state})
    else:
        chans = [{"channel-type": t,
                  "addr": {"transport": "socket", "type": "unix", "path": os.path.join(run, "bench-%s.sock" % t)}}
                 for t in ("main", "cpr")]
        for c in chans:
            if os.path.exists(c["addr"]["path"]):
                os.unlink(c["addr"]["path"])
        os.link(vm.qmp_socket, vm.qmp_socket + ".bench-old")
        proc = subprocess.Popen(vmlab.launcher() + new + ["-S"] + sum(
            [["-incoming", json.dumps(c)] for c in chans], []), start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Bound is not yet listening: under load the new QEMU's listen() comes measurably later.
        while not _listening(chans[1]["addr"]["path"]):
            if proc.poll() is not None:
                raise RuntimeError("the new QEMU exited with status %d before listening" % proc.returncode)
            await asyncio.sleep(0.001)
        await old.execute("migrate-set-parameters", {"mode": "cpr-transfer"})
        listener = _listen(old, ["STOP", "MIGRATION"])
        await old.execute("migrate", {"channels": chans})
    got = await asyncio.wait_for(_events_until(
        listener, lambda e: e["event"] == "MIGRATION" and e["data"]["status"] == "completed"), 60)
    old_ino = os.stat(vm.qmp_socket + ".bench-old").st_ino if proc else None
    deadline = time.monotonic() + 60
    while True:
        try:
            st = os.stat(vm.qmp_socket)
            fresh = (proc is None) or st.st_ino != old_ino
        except OSError:
            fresh = False
        if fresh:
            client = QMPClient("new")
            try:
                await asyncio.wait_for(client.connect(vm.qmp_socket), 0.5)
                break
            except Exception:  # pylint: disable=broad-except
                pass
        if time.monotonic() > deadline:
            raise RuntimeError("new QEMU did not come up")
        await asyncio.sleep(0.002)
    while (await client.execute("query-status"))["status"] != "paused":
        await asyncio.sleep(0.002)
    listener = _listen(client, ["RESUME"])
    await client.execute("cont")
    got.update(await asyncio.wait_for(_events_until(listener, lambda e: True), 10))
    await client.disconnect()
    if proc is not None:
        os.kill(vm.pid, 9)  # see cpr_transfer.py: a clean quit would unlink the new QMP socket
        os.unlink(vm.qmp_socket + ".bench-old")
        vm.adopt(proc.pid)
    try:
        await old.disconnect()
    except Exception:  # pylint: disable=broad-except
        pass
    return (ts(got["RESUME"]) - ts(got["STOP"])) * 1000.0


def module_switch(vm, dialect, new_binary):
    extra = {"bench_qmp_socket": vm.qmp_socket, "bench_binary": new_binary, "bench_dialect": dialect}
    if dialect == "cpr-transfer":
        extra.update(bench_root=vmlab.ROOT, bench_launcher=vmlab.launcher())
    out = subprocess.run(["ansible-playbook", "-i", "localhost,", os.path.join(HERE, "switch.yml"),
                          "-e", json.dumps(extra)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         check=False).stdout.decode()
    for line in out.splitlines():
        if "BENCH pause_ms=" in line:
            vm_pid = [p for p, _s in vm.successors()] if dialect == "cpr-transfer" else []
            if vm_pid:
                vm.adopt(vm_pid[0])
            return float(line.split("BENCH pause_ms=")[1].strip('"'))
    raise RuntimeError("the modules' switch failed:\n" + out[-3000:])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    p.add_argument("--sizes", default="256,1024,4096", help="guest RAM sizes in MiB")
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    shutil.copy2(vmlab.ROOT + BINARIES[0], vmlab.ROOT + COPY)
    rows = []
    try:
        for size in [int(x) for x in a.sizes.split(",")]:
            for dialect in ("cpr-exec", "cpr-transfer"):
                name = "bench-%s-%d" % (dialect, size)
                # The guest writes most of its RAM: half of a small guest (its kernel
                # needs the rest), three quarters of a larger one.
                fill = size // 2 if size <= 512 else size * 3 // 4
                vm = vmlab.LabVM(vmlab.VMSpec(name, mem_mb=size, fill_mb=fill, sum_every=0)).start()
                try:
                    vm.wait_filled()
                    k = 0
                    for r in range(a.rounds):
                        for way in ("bare", "modules"):
                            k += 1
                            new_binary = BINARIES[k % 2]
                            if way == "bare":
                                ms = asyncio.run(bare_switch(vm, dialect, new_binary))
                            else:
                                ms = module_switch(vm, dialect, new_binary)
                            rows.append((dialect, size, way, ms))
                            print("%-12s %5d MiB  %-7s round %d  pause %7.1f ms" % (dialect, size, way, r + 1, ms),
                                  flush=True)
                    problems = vm.evidence().problems()
                    print("%-12s %5d MiB  guest: %s" % (dialect, size, "; ".join(problems) or "one continuous life"))
                finally:
                    vm.stop()
    finally:
        os.unlink(vmlab.ROOT + COPY)
    print("\nmedian pause (ms)        bare   modules   modules/bare")
    for dialect in ("cpr-exec", "cpr-transfer"):
        for size in sorted({r[1] for r in rows}):
            bare = statistics.median(r[3] for r in rows if r[:3] == (dialect, size, "bare"))
            mods = statistics.median(r[3] for r in rows if r[:3] == (dialect, size, "modules"))
            print("%-12s %5d MiB  %7.1f  %8.1f   %6.2f" % (dialect, size, bare, mods, mods / bare))


if __name__ == "__main__":
    main()
