# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
"""Guest pause under KVM: a bare qemu.qmp switch vs. the three cpr.qemu modules, per dialect.

bench/pause.py's two ways (its bare_switch and module_switch), on VMs under KVM where /dev/kvm works:
cpr-transfer from QEMU 10.0 to 11.1 (a new VM for every switch, as each one leaves QEMU 10.0) and
cpr-exec from 11.1 to 11.1 (one VM, alternating between two binaries). A Linux guest hangs under this
machine's nested KVM, so the guest is the firmware alone (as in tests/dialects/test_shapes.py): the
pause is QEMU's, with guest RAM the guest never wrote.  Figures only; part "kvm" of bench/scale.py.
Usage: python bench/kvm.py [--sizes 256,1024] [--rounds 3]
"""

import argparse
import asyncio
import fcntl
import os
import shutil
import statistics

import benchlib
from benchlib import say
import vmlab  # noqa: E402  (on the path benchlib sets)
import pause

KVM_GET_API_VERSION = 0xAE00


def kvm_works():
    """Whether /dev/kvm opens and answers KVM_GET_API_VERSION (12); (bool, why not)."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError as e:
        return False, "cannot open /dev/kvm: %s" % e
    try:
        version = fcntl.ioctl(fd, KVM_GET_API_VERSION)
    except OSError as e:
        return False, "/dev/kvm does not answer: %s" % e
    finally:
        os.close(fd)
    return version == 12, "KVM API version %d" % version


def _switch(vm, way, dialect, binary):
    if way == "bare":
        return asyncio.run(pause.bare_switch(vm, dialect, binary))
    return pause.module_switch(vm, dialect, binary)


def part(sizes, rounds, started):
    say("\n== Part 3: the guest's pause under KVM, bare qemu.qmp vs. the cpr.qemu modules (bench/pause.py's ways)")
    ok, why = kvm_works()
    if not ok:
        say("   skipped: %s" % why)
        return []
    say("   KVM: %s. The guest is the firmware alone, no kernel: a Linux guest hangs under this machine's nested"
        " KVM. cpr-transfer: QEMU 10.0 -> 11.1, a fresh VM per switch; cpr-exec: QEMU 11.1 -> 11.1, one VM,"
        " alternating binaries." % why)
    copy = "/usr/local/bin/qemu-system-x86_64-bench-kvm-%d" % os.getpid()
    shutil.copy2(vmlab.ROOT + vmlab.QEMU_BIN, vmlab.ROOT + copy)
    rows = []
    try:
        for size in sizes:
            # cpr-transfer: each switch leaves QEMU 10.0 behind, so each one has a VM of its own.
            for r in range(rounds):
                for way in ("bare", "modules"):
                    vm = vmlab.LabVM(vmlab.VMSpec("bench-kvm-xfer-%d-%s-%d" % (size, way, r), qemu="10.0",
                                                  mem_mb=size, kvm=True, machine=vmlab.VERSIONED_Q35))
                    started.append(vm)
                    vm.start()
                    try:
                        ms = _switch(vm, way, "cpr-transfer", vmlab.QEMU_BIN)
                    finally:
                        vm.stop()
                        started.remove(vm)
                    rows.append(("cpr-transfer", size, way, ms))
                    say("   %-12s %5d MiB  %-7s round %d  pause %7.1f ms" % ("cpr-transfer", size, way, r + 1, ms))
            vm = vmlab.LabVM(vmlab.VMSpec("bench-kvm-exec-%d" % size, qemu="11.1", mem_mb=size, kvm=True))
            started.append(vm)
            vm.start()
            try:
                k = 0
                for r in range(rounds):
                    for way in ("bare", "modules"):
                        k += 1
                        ms = _switch(vm, way, "cpr-exec", (vmlab.QEMU_BIN, copy)[k % 2])
                        rows.append(("cpr-exec", size, way, ms))
                        say("   %-12s %5d MiB  %-7s round %d  pause %7.1f ms" % ("cpr-exec", size, way, r + 1, ms))
                facts = vm.qmp("query-status")
                say("   %-12s %5d MiB  the VM after %d switches: %s" % ("cpr-exec", size, k, facts["status"]))
            finally:
                vm.stop()
                started.remove(vm)
    finally:
        os.unlink(vmlab.ROOT + copy)
    say("\n   median pause (ms), KVM       bare   modules   modules/bare")
    for dialect in ("cpr-transfer", "cpr-exec"):
        for size in sizes:
            bare = statistics.median(r[3] for r in rows if r[:3] == (dialect, size, "bare"))
            mods = statistics.median(r[3] for r in rows if r[:3] == (dialect, size, "modules"))
            say("   %-12s %5d MiB  %9.1f  %8.1f   %6.2f" % (dialect, size, bare, mods, mods / bare))
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    p.add_argument("--sizes", default="256,1024", help="guest RAM sizes in MiB")
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    benchlib.terminate_on_sigterm()
    started = []
    try:
        part([int(x) for x in a.sizes.split(",")], a.rounds, started)
    finally:
        benchlib.stop_lab_vms(started)


if __name__ == "__main__":
    main()
