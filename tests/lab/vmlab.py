# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
"""Start, inspect and stop real QEMU test VMs for the cpr.qemu lab.

Two QEMUs are provisioned by ``provision.sh``: 10.0 on the host and 11.1 in a
trixie root.  A VM on the root's QEMU runs through ``in-root.sh``: under
``chroot`` in a private mount namespace, with the lab's run directory and the
guest files bind-mounted at the same paths as on the host.  So every path in a
VM's argv means the same file for both QEMUs, its mounts die with the QEMU
process, and the PID we record is QEMU's own (every step execs).

Every VM has a run directory ``$CPR_LAB_RUN/NAME`` (QMP socket, serial log,
QEMU's stderr, disk images, ``vm.json``).  ``vm.json`` records the PID and its
start time so that ``stop`` only ever kills the process the lab started.

A VM's command line has one of several shapes (``VMSpec.shape``): the lab's
own, or that of a VM run by libvirt, by Proxmox VE, or by hand ("plain");
see ``LabVM.qemu_args``.  A VM may have a disk (a qcow2 image on a backing
image) to which the guest writes one sector per tick before it prints the
tick: once the VM is halted, ``LabVM.disk_problems`` proves that every write
the guest acknowledged is on the image.  A VM may have a virtio-net NIC on a
tap in a network namespace of its own, which the guest pings.  A VM may have a
guest agent channel (a virtio-serial port named org.qemu.guest_agent.0 on a
UNIX socket QEMU listens on), served in the guest by a STAND-IN for the QEMU
guest agent (guest/init: a shell loop answering guest-sync-delimited,
guest-sync and guest-ping only); ``LabVM.agent`` talks to it.

Used as a library by tests and benchmarks, and as a command by Ansible
integration targets: ``vmlab.py start NAME [options]``, ``vmlab.py stop NAME``,
``vmlab.py stop-all``, ``vmlab.py evidence NAME``, ``vmlab.py replace-binary NAME``,
``vmlab.py launcher``, ``vmlab.py halt NAME``, ``vmlab.py disk-proof NAME``,
``vmlab.py agent NAME COMMAND``.
"""

import argparse
import dataclasses
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

CACHE = os.environ.get("CPR_LAB_CACHE", "/var/cache/cpr-qemu-lab")
RUN_BASE = os.environ.get("CPR_LAB_RUN", "/run/cpr-qemu-lab")
LOCK_BASE = "/run/cpr-qemu"
ROOT = os.path.join(CACHE, "trixie")
GUEST = os.path.join(CACHE, "guest")
QEMU_BIN = "/usr/bin/qemu-system-x86_64"

IN_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "in-root.sh")


def sim_binary(series):
    """The live-update SIMULATOR's build for one version of the series (provision.sh, tests/simulator/)."""
    return os.path.join(CACHE, "sim", "v%d" % series, "qemu-system-x86_64")


QEMUS = {"10.0": None, "11.1": ROOT, "sim": None}  # version series -> root (None: host)

# The cgroup v1 pids hierarchy, where a VM with a cgroup of its own gets one.
PIDS_CGROUP = "/sys/fs/cgroup/pids"

# The host's qemu-img (qemu-utils, same series as the host's QEMU).
QEMU_IMG = "/usr/bin/qemu-img"

SHAPES = ("lab", "libvirt", "proxmox", "plain")
DISKS = ("virtio-blk", "virtio-scsi", "drive")
# The disk each shape has unless its spec says otherwise ("native").
NATIVE_DISK = {"lab": None, "libvirt": "virtio-blk", "proxmox": "virtio-scsi", "plain": "drive"}
# The directory of $CPR_LAB_RUN that Proxmox-shaped VMs share (as /var/run/qemu-server).
PROXMOX_DIR = "qemu-server"
# The machine type libvirt and Proxmox would write for "q35": versioned, and the newest that both
# lab QEMUs have, so that a VM can move from 10.0 to 11.1.
VERSIONED_Q35 = "pc-q35-10.0"
# The name of the virtio-serial port a QEMU guest agent serves (the lab guest's stand-in does).
AGENT_PORT = "org.qemu.guest_agent.0"
# The first 512 bytes of a tick's sector on the guest's disk.
SECTOR = 512
_SECTOR_RECORD = re.compile(rb"CPRLAB SECTOR (\d+) (\S+)\n")


def launcher():
    """The argv prefix that runs a command in the trixie root with the lab's paths.

    It binds the parent of the run directory, so the root gains one mount
    point for all lab runs rather than one per run.
    """
    os.makedirs(RUN_BASE, exist_ok=True)
    return ["/bin/sh", IN_ROOT, ROOT, os.path.dirname(RUN_BASE), GUEST, "--"]


class LabError(Exception):
    pass


@dataclasses.dataclass
class VMSpec:
    """How to start a lab VM.  Defaults give a VM ready for every CPR mode."""

    name: str
    qemu: str = "11.1"
    mem_mb: int = 256
    # memfd: memory-backend-memfd share=on; memfd-private: share=off;
    # plain: -m only, QEMU's anonymous RAM.
    ram: str = "memfd"
    aux_ram_share: bool = True
    machine: str = "q35"
    sandbox_spawn_deny: bool = False
    paused: bool = False
    # Run a private copy of the binary from the run directory, so a test can
    # replace it on disk while the VM runs.
    binary_copy: bool = False
    fill_mb: int = 8
    # Every how many ticks the guest prints its RAM checksum (0: never; large
    # fills take too long to checksum under TCG).
    sum_every: int = 5
    # A second QMP monitor whose events a detached recorder writes to
    # events.jsonl, so a test sees every STOP and RESUME independently of the
    # client under test.
    event_monitor: bool = False
    # Simulator only: the version of the live-update series its binary follows (5:
    # cprsave..., 6: cpr-save..., 8: cpr-load with a mode, -cpr-enable), RAM
    # that survives the exec (5 and 6: -machine memfd-alloc=on; 8:
    # -cpr-enable restart and a shared memfd backend), a serial chardev that
    # is reopened across the exec (close-on-cpr / reopen-on-cpr), a Xen
    # accelerator, and QEMU's shutdown action pause (-no-shutdown).
    series: int = 5
    memfd_alloc: bool = True
    serial_reopen: bool = True
    xen: bool = False
    no_shutdown: bool = False
    extra_args: tuple = ()
    # Under KVM: the guest is the firmware alone (a Linux guest hangs under this machine's nested
    # KVM), so there are no ticks to wait for, only QMP.
    kvm: bool = False
    # Run QEMU as this uid/gid (no supplementary groups): the run directory and
    # the serial log are then theirs.  drop_by "launch": the lab starts QEMU as
    # that user (setpriv); "qemu": QEMU starts as root and drops privileges itself
    # (-run-with user=UID:GID, which also sets the groups to [gid]).
    uid: int = None
    gid: int = None
    drop_by: str = "launch"
    # Start QEMU in a pids cgroup of its own (removed by stop()).
    own_cgroup: bool = False
    # A command prefix that runs as root just before QEMU (or its setpriv), as a service manager's settings
    # would: how QEMU is scheduled and limited (prlimit, chrt, nice, taskset).  Each must exec its arguments.
    launch_prefix: tuple = ()
    # The shape of QEMU's command line: "lab" (the lab's own), "libvirt", "proxmox" or "plain"
    # (see LabVM.qemu_args).  Every shape has memfd RAM (per `ram`) and aux-ram-share (per
    # `aux_ram_share`), so every one can be CPR'd.
    shape: str = "lab"
    # The guest's disk: "native" (the shape's own: none for "lab", "virtio-blk" for "libvirt",
    # "virtio-scsi" for "proxmox", "drive" for "plain"), None (no disk), "virtio-blk" (-blockdev
    # nodes, a virtio-blk-pci device), "virtio-scsi" (virtio-scsi-pci, -drive if=none, scsi-hd) or
    # "drive" (-drive file=...,if=virtio,format=qcow2).  The image is a qcow2 overlay (disk.qcow2)
    # on a qcow2 backing image (base.qcow2) in the run directory, disk_mb MiB.
    disk: str = "native"
    disk_mb: int = 64
    # A virtio-net NIC on a tap in a network namespace of the VM's own (QEMU runs in it); the
    # guest pings the tap's address every 0.1 s.  nic_queues > 1: a multi-queue tap and device.
    nic: bool = False
    nic_queues: int = 1
    # libvirt shape: the monitor as -object monitor-qmp (QEMU 11.1) instead of -mon.
    monitor_object: bool = False
    # A guest agent channel: a -chardev socket QEMU listens on (LabVM.agent_socket), a virtio-serial
    # controller and a virtserialport named org.qemu.guest_agent.0, written in the VM's shape; the
    # guest's /init serves it with its guest agent stand-in (cprlab.agent=1).
    guest_agent: bool = False

    def __post_init__(self):
        if self.qemu not in QEMUS:
            raise LabError("unknown QEMU %r, the lab has %s" % (self.qemu, ", ".join(QEMUS)))
        if self.ram not in ("memfd", "memfd-private", "plain"):
            raise LabError("unknown RAM kind %r" % self.ram)
        if not re.match(r"^[A-Za-z0-9_.-]+$", self.name):
            raise LabError("VM name %r must be letters, digits, '.', '_' or '-'" % self.name)
        if (self.uid is None) != (self.gid is None):
            raise LabError("give both uid and gid, or neither")
        if self.drop_by not in ("launch", "qemu"):
            raise LabError("drop_by is 'launch' or 'qemu', not %r" % self.drop_by)
        if self.shape not in SHAPES:
            raise LabError("unknown shape %r, the lab has %s" % (self.shape, ", ".join(SHAPES)))
        if self.disk not in ("native", None) + DISKS:
            raise LabError("unknown disk %r: 'native', None or one of %s" % (self.disk, ", ".join(DISKS)))
        if self.shape != "lab" and self.qemu == "sim":
            raise LabError("the simulator has the lab's shape only")
        if (self.disk_kind or self.nic) and self.qemu == "sim":
            raise LabError("the simulator has no disk or NIC")
        if self.shape == "proxmox" and self.name == PROXMOX_DIR:
            raise LabError("a Proxmox-shaped VM cannot be named %s" % PROXMOX_DIR)
        if self.shape == "proxmox" and self.uid is not None and self.drop_by == "launch":
            raise LabError("Proxmox runs QEMU as root: a Proxmox-shaped VM drops privileges with drop_by 'qemu'")
        if self.shape == "libvirt" and self.uid is not None and self.drop_by == "qemu":
            # Seen on 10.0 and 11.1: killed by SIGSYS in setgid (libvirt starts QEMU as its user).
            raise LabError("libvirt's -sandbox elevateprivileges=deny kills a QEMU that drops privileges "
                           "itself: a libvirt-shaped VM drops them with drop_by 'launch'")
        if self.monitor_object and (self.shape != "libvirt" or self.qemu != "11.1"):
            raise LabError("monitor_object is for the libvirt shape on QEMU 11.1 (10.0 has no monitor-qmp object)")
        if self.nic_queues < 1:
            raise LabError("nic_queues must be at least 1")
        if self.guest_agent and (self.qemu == "sim" or self.kvm):
            raise LabError("the guest agent stand-in runs in the lab's Linux guest: not with the simulator or KVM")

    @property
    def disk_kind(self):
        """The disk the VM has: one of DISKS, or None."""
        return NATIVE_DISK[self.shape] if self.disk == "native" else self.disk


def _firmware_under_kvm(args):
    """A shape's arguments under KVM, with no kernel: the guest is the firmware alone."""
    out, i = [], 0
    while i < len(args):
        if args[i] in ("-kernel", "-initrd", "-append"):
            i += 2
        elif args[i:i + 2] == ["-accel", "tcg"]:
            out += ["-accel", "kvm"]
            i += 2
        else:
            out.append(args[i])
            i += 1
    return out


def _json(obj):
    """JSON as libvirt writes it on a command line."""
    return json.dumps(obj, separators=(",", ":"))


def _starttime(pid):
    """The process start time in clock ticks, or None if there is no such PID."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _same_file(st, path):
    """Whether ``path`` is the file of stat result ``st`` (False if it cannot be reached)."""
    try:
        other = os.stat(path)
    except OSError:
        return False
    return (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino)


def _run(cmd):
    done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    if done.returncode:
        raise LabError("%s: %s" % (" ".join(cmd), done.stderr.strip()))
    return done.stdout


def _alive(pid, starttime):
    """Whether the process that started at ``starttime`` still runs (a zombie does not)."""
    if starttime is None or _starttime(pid) != starttime:
        return False
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _exiting(pid, starttime):
    """Whether threads of the process that started at ``starttime`` still exit: its main thread is
    a zombie first, and its files (the disk image's lock among them) are closed only when its last
    thread is gone."""
    if starttime is None or _starttime(pid) != starttime:
        return False
    try:
        return len(os.listdir("/proc/%d/task" % pid)) > 1
    except OSError:
        return False


class LabVM:
    """One lab VM, started from a spec or found again from its run directory."""

    def __init__(self, spec, record=None):
        self.spec = spec
        self.run_dir = os.path.join(RUN_BASE, spec.name)
        # Proxmox-shaped VMs keep their QMP socket, pidfile and serial log in one directory they
        # share, named after the VM ("ID.qmp", ...); libvirt keeps pidfiles in a directory of all
        # its VMs ($CPR_LAB_RUN, as /run/libvirt/qemu) and the monitor in the VM's own.
        self.shared_dir = os.path.join(RUN_BASE, PROXMOX_DIR) if spec.shape == "proxmox" else None
        self.pidfile = None
        if self.shared_dir:
            self.qmp_socket = os.path.join(self.shared_dir, spec.name + ".qmp")
            self.pidfile = os.path.join(self.shared_dir, spec.name + ".pid")
            self.serial_log = os.path.join(self.shared_dir, spec.name + ".serial0.log")
        else:
            self.qmp_socket = os.path.join(self.run_dir, "monitor.sock" if spec.shape == "libvirt" else "qmp.sock")
            self.serial_log = os.path.join(self.run_dir, "serial.log")
            if spec.shape == "libvirt":
                self.pidfile = os.path.join(RUN_BASE, spec.name + ".pid")
        disk = spec.disk_kind
        self.disk_image = os.path.join(self.run_dir, "disk.qcow2") if disk else None
        self.disk_base = os.path.join(self.run_dir, "base.qcow2") if disk else None
        self.stderr_log = os.path.join(self.run_dir, "qemu.log")
        # The guest agent channel's socket, where the shape's manager would put it.
        self.agent_socket = None
        if spec.guest_agent:
            self.agent_socket = (os.path.join(self.shared_dir, spec.name + ".qga") if self.shared_dir else
                                 os.path.join(self.run_dir, AGENT_PORT if spec.shape == "libvirt" else "qga.sock"))
        self.event_socket = os.path.join(self.run_dir, "events.sock")
        self.event_log = os.path.join(self.run_dir, "events.jsonl")
        self.root = QEMUS[spec.qemu]
        self.pid = record["pid"] if record else None
        self.starttime = record["starttime"] if record else None
        self.argv = record["argv"] if record else None
        self._proc = None

    @property
    def cgroup(self):
        """The VM's own pids cgroup directory (named after the run and the VM), or None."""
        if not self.spec.own_cgroup:
            return None
        run = re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.basename(RUN_BASE))
        return os.path.join(PIDS_CGROUP, "cpr-qemu-lab.%s.%s" % (run, self.spec.name))

    @property
    def binary(self):
        """The binary QEMU runs, as seen from inside its root."""
        if self.spec.binary_copy:
            return os.path.join(self.run_dir, "qemu-system-x86_64")
        return sim_binary(self.spec.series) if self.spec.qemu == "sim" else QEMU_BIN

    def _source_binary(self):
        if self.spec.qemu == "sim":
            return sim_binary(self.spec.series)
        return QEMU_BIN if self.root is None else self.root + QEMU_BIN

    def sim_args(self):
        s = self.spec
        machine, args = s.machine, ["-name", s.name, "-m", "%dM" % s.mem_mb]
        if s.series == 8:
            machine += ",memory-backend=ram0"
            args += ["-object", "memory-backend-memfd,id=ram0,size=%dM,share=on" % s.mem_mb]
            args += ["-cpr-enable", "restart"] if s.memfd_alloc else []
        elif s.memfd_alloc:
            machine += ",memfd-alloc=on"
        reopen = ("close-on-cpr" if s.series == 5 else "reopen-on-cpr") + "=on" if s.serial_reopen else None
        args += ["-machine", machine, "-qmp", "unix:%s,server=on,wait=off" % self.qmp_socket,
                 "-chardev", ",".join(filter(None, ["file", "id=ser0", "path=" + self.serial_log, reopen])),
                 "-serial", "chardev:ser0"]
        if s.xen:
            args += ["-accel", "xen"]
        if s.no_shutdown:
            args.append("-no-shutdown")
        if s.paused:
            args.append("-S")
        return args + list(s.extra_args)

    def qemu_args(self):
        """QEMU's arguments, in the VM's shape:

        - "lab": the lab's own (-name, -qmp, a file chardev for the serial port, key=value options);
        - "libvirt": as libvirt writes them: -name guest=NAME,debug-threads=on, JSON -object, -device
          and -blockdev, a versioned machine type, the monitor on -chardev socket + -mon (or
          -object monitor-qmp), pcie-root-ports, -sandbox with everything denied, -pidfile
          $CPR_LAB_RUN/NAME.pid;
        - "proxmox": as Proxmox VE writes them: QMP socket, pidfile and serial log in the directory
          all such VMs share, -daemonize, -name NAME,debug-threads=on, a virtio-scsi disk;
        - "plain": as by hand: paths relative to QEMU's working directory (the run directory), the
          disk as -drive if=virtio, QEMU's default devices, no -name.
        """
        s = self.spec
        if s.qemu == "sim":
            return self.sim_args()
        if s.shape != "lab":
            args = getattr(self, "_%s_args" % s.shape)()
            return (_firmware_under_kvm(args) if s.kvm else args) + list(s.extra_args)
        machine = [s.machine]
        if s.ram != "plain":
            machine.append("memory-backend=ram0")
        if s.aux_ram_share:
            machine.append("aux-ram-share=on")
        args = [
            "-name", s.name,
            "-nodefaults", "-display", "none", "-accel", "kvm" if s.kvm else "tcg",
            "-m", "%dM" % s.mem_mb,
            "-machine", ",".join(machine),
        ]
        if s.ram != "plain":
            args += ["-object", "memory-backend-memfd,id=ram0,size=%dM,share=%s"
                     % (s.mem_mb, "on" if s.ram == "memfd" else "off")]
        if not s.kvm:
            args += ["-kernel", os.path.join(GUEST, "vmlinuz"), "-initrd", os.path.join(GUEST, "initramfs.gz"),
                     "-append", self._kernel_cmdline()]
        args += [
            "-chardev", "file,id=ser0,path=%s,append=on" % self.serial_log,
            "-serial", "chardev:ser0",
            "-qmp", "unix:%s,server=on,wait=off" % self.qmp_socket,
        ]
        if s.event_monitor:
            args += ["-qmp", "unix:%s,server=on,wait=off" % self.event_socket]
        if s.sandbox_spawn_deny:
            args += ["-sandbox", "on,spawn=deny"]
        if s.paused:
            args.append("-S")
        if s.uid is not None and s.drop_by == "qemu":
            args += ["-run-with", "user=%d:%d" % (s.uid, s.gid)]
        return args + self._disk_args() + self._nic_args() + self._agent_args() + list(s.extra_args)

    def _agent_args(self):
        """The guest agent channel's arguments, in the VM's shape (libvirt's JSON devices on its pci.2 port,
        Proxmox's virtio-serial named like its chardev), or none."""
        if not self.spec.guest_agent:
            return []
        shape = self.spec.shape
        chardev = {"libvirt": "charchannel0", "proxmox": "qga0"}.get(shape, "qga0")
        args = ["-chardev", "socket,id=%s,path=%s,server=on,wait=off" % (chardev, self._path(self.agent_socket))]
        if shape == "libvirt":
            return args + [
                "-device", _json({"driver": "virtio-serial-pci", "id": "virtio-serial0", "bus": "pci.2",
                                  "addr": "0x0"}),
                "-device", _json({"driver": "virtserialport", "bus": "virtio-serial0.0", "nr": 1,
                                  "chardev": chardev, "id": "channel0", "name": AGENT_PORT})]
        if shape == "proxmox":
            return args + ["-device", "virtio-serial,id=qga0",
                           "-device", "virtserialport,chardev=qga0,name=%s" % AGENT_PORT]
        return args + ["-device", "virtio-serial-pci,id=vser0",
                       "-device", "virtserialport,bus=vser0.0,chardev=%s,name=%s" % (chardev, AGENT_PORT)]

    def agent(self, command, arguments=None, timeout=10):
        """Send one command to the guest agent channel (the guest's stand-in) and return its reply, or None
        for a command that gets none (cprlab-agent-stop).  A 0xFF byte first, as qemu-ga's clients do."""
        if not self.agent_socket:
            raise LabError("lab VM %s has no guest agent channel" % self.spec.name)
        msg = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(self.agent_socket)
            sock.sendall(b"\xff" + json.dumps(msg).encode() + b"\n")
            if command == "cprlab-agent-stop":
                return None
            buf = b""
            while b"\n" not in buf.lstrip(b"\xff"):
                data = sock.recv(4096)
                if not data:
                    raise LabError("the guest agent channel of %s closed without a reply" % self.spec.name)
                buf += data
            return json.loads(buf.lstrip(b"\xff").split(b"\n", 1)[0])

    def stop_agent(self, timeout=30):
        """Have the guest's agent stand-in stop answering for good (its lab-only command), and wait until
        the guest says so on its console."""
        self.agent("cprlab-agent-stop")
        deadline = time.monotonic() + timeout
        while "CPRLAB AGENT STOPPED" not in self._serial_text():
            if time.monotonic() > deadline:
                raise LabError("the guest agent stand-in of %s did not stop in %ds" % (self.spec.name, timeout))
            time.sleep(0.2)

    def wait_agent(self, timeout=60):
        """Wait until the guest's agent stand-in serves its port (it says so on the console); its port's name."""
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(r"^CPRLAB AGENT (\S+)", self._serial_text(), re.M)
            if m and m.group(1) != "STOPPED":
                if m.group(1) == "none":
                    raise LabError("the guest of %s found no port named %s" % (self.spec.name, AGENT_PORT))
                return m.group(1)
            if time.monotonic() > deadline or not self.running():
                raise LabError("the guest agent stand-in of %s did not start in %ds" % (self.spec.name, timeout))
            time.sleep(0.2)

    def _serial_text(self):
        try:
            with open(self.serial_log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def _kernel_cmdline(self):
        s = self.spec
        words = ["console=ttyS0 quiet cprlab.fill_mb=%d cprlab.sum_every=%d" % (s.fill_mb, s.sum_every)]
        if s.disk_kind:
            words.append("cprlab.disk=%s" % self.guest_disk)
        if s.nic:
            words.append("cprlab.net=%s/30,%s" % (self.nic_addresses[1], self.nic_addresses[0]))
        if s.guest_agent:
            words.append("cprlab.agent=1")
        return " ".join(words)

    def _path(self, path):
        """A path as the VM's argv names it: relative to the run directory in the plain shape."""
        if self.spec.shape == "plain" and path.startswith(self.run_dir + "/"):
            return os.path.relpath(path, self.run_dir)
        return path

    @property
    def machine_type(self):
        """The machine type: the spec's; libvirt and Proxmox write a versioned one for "q35"."""
        m = self.spec.machine
        return VERSIONED_Q35 if m == "q35" and self.spec.shape in ("libvirt", "proxmox") else m

    @property
    def guest_disk(self):
        """The guest's name for its disk (cprlab.disk), or None."""
        kind = self.spec.disk_kind
        return None if not kind else "sda" if kind == "virtio-scsi" else "vda"

    def _ram(self, backend_id, json_form=False):
        """(-machine options, -object arguments) of the VM's RAM, as its spec asks."""
        s, machine, args = self.spec, [], []
        if s.ram != "plain":
            machine.append("memory-backend=" + backend_id)
            share = s.ram == "memfd"
            if json_form:
                args = ["-object", _json({"qom-type": "memory-backend-memfd", "id": backend_id, "share": share,
                                          "x-use-canonical-path-for-ramblock-id": False,
                                          "size": s.mem_mb << 20})]
            else:
                args = ["-object", "memory-backend-memfd,id=%s,size=%dM,share=%s"
                        % (backend_id, s.mem_mb, "on" if share else "off")]
        if s.aux_ram_share:
            machine.append("aux-ram-share=on")
        return machine, args

    def _common_tail(self):
        s, args = self.spec, []
        if s.event_monitor:
            args += ["-qmp", "unix:%s,server=on,wait=off" % self._path(self.event_socket)]
        if s.paused:
            args.append("-S")
        if s.uid is not None and s.drop_by == "qemu":
            args += ["-run-with", "user=%d:%d" % (s.uid, s.gid)]
        return args

    def _libvirt_args(self):
        s = self.spec
        machine, ram = self._ram("pc.ram", json_form=True)
        args = [
            "-name", "guest=%s,debug-threads=on" % s.name,
            "-object", _json({"qom-type": "secret", "id": "masterKey0", "format": "raw",
                              "file": os.path.join(self.run_dir, "master-key.aes")}),
            "-machine", ",".join([self.machine_type, "usb=off", "dump-guest-core=off"] + machine[:1]
                                 + ["hpet=off", "acpi=on"] + machine[1:]),
            "-accel", "tcg",
            "-m", "size=%dk" % (s.mem_mb * 1024),
        ] + ram + [
            "-overcommit", "mem-lock=off",
            "-smp", "1,sockets=1,cores=1,threads=1",
            "-uuid", self.uuid,
            "-no-user-config", "-nodefaults",
            "-chardev", "socket,id=charmonitor,path=%s,server=on,wait=off" % self.qmp_socket,
        ]
        if s.monitor_object:
            args += ["-object", _json({"qom-type": "monitor-qmp", "id": "monitor", "chardev": "charmonitor"})]
        else:
            args += ["-mon", "chardev=charmonitor,id=monitor,mode=control"]
        args += ["-rtc", "base=utc", "-no-shutdown", "-boot", "strict=on",
                 "-kernel", os.path.join(GUEST, "vmlinuz"),
                 "-initrd", os.path.join(GUEST, "initramfs.gz"),
                 "-append", self._kernel_cmdline()]
        for n in (1, 2, 3):
            port = {"driver": "pcie-root-port", "port": 15 + n, "chassis": n, "id": "pci.%d" % n,
                    "bus": "pcie.0", "addr": "0x2" if n == 1 else "0x2.0x%d" % (n - 1)}
            if n == 1:
                port = dict(port, multifunction=True)
            args += ["-device", _json(port)]
        args += self._disk_args() + self._nic_args() + self._agent_args() + [
            "-chardev", "file,id=charserial0,path=%s,append=on" % self.serial_log,
            "-device", _json({"driver": "isa-serial", "chardev": "charserial0", "id": "serial0", "index": 0}),
            "-display", "none",
            "-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
            "-pidfile", self.pidfile,
            "-msg", "timestamp=on",
        ]
        return args + self._common_tail()

    def _proxmox_args(self):
        s = self.spec
        machine, ram = self._ram("ram0")
        return [
            "-chardev", "socket,id=qmp,path=%s,server=on,wait=off" % self.qmp_socket,
            "-mon", "chardev=qmp,mode=control",
            "-pidfile", self.pidfile,
            "-daemonize",
            "-smbios", "type=1,uuid=%s" % self.uuid,
            "-name", "%s,debug-threads=on" % s.name,
            "-smp", "1,sockets=1,cores=1,maxcpus=1",
            "-nodefaults",
            "-boot", "menu=on,strict=on,reboot-timeout=1000",
            "-display", "none",
            "-accel", "tcg",
            "-m", str(s.mem_mb),
        ] + ram + [
            "-kernel", os.path.join(GUEST, "vmlinuz"),
            "-initrd", os.path.join(GUEST, "initramfs.gz"),
            "-append", self._kernel_cmdline(),
            "-chardev", "file,id=serial0,path=%s,append=on" % self.serial_log,
            "-device", "isa-serial,chardev=serial0",
        ] + self._disk_args() + self._nic_args() + self._agent_args() + [
            "-machine", ",".join(["type=" + self.machine_type] + machine),
        ] + self._common_tail()

    def _plain_args(self):
        s = self.spec
        machine, ram = self._ram("ram0")
        return [
            "-machine", ",".join([self.machine_type] + machine),
        ] + ram + [
            "-m", "%dM" % s.mem_mb,
            "-accel", "tcg",
            "-display", "none",
            "-kernel", "vmlinuz",
            "-initrd", "initramfs.gz",
            "-append", self._kernel_cmdline(),
        ] + self._disk_args() + self._nic_args() + self._agent_args() + [
            "-chardev", "file,id=ser0,path=%s,append=on" % self._path(self.serial_log),
            "-serial", "chardev:ser0",
            "-qmp", "unix:%s,server=on,wait=off" % self._path(self.qmp_socket),
        ] + ([] if s.nic else ["-nic", "none"]) + self._common_tail()

    def _disk_args(self):
        """The disk's arguments, in the VM's shape."""
        kind, shape = self.spec.disk_kind, self.spec.shape
        if not kind:
            return []
        image = self._path(self.disk_image)
        if kind == "drive":
            return ["-drive", "file=%s,if=virtio,format=qcow2" % image]
        if shape == "libvirt":
            args = []
            for node in (
                    {"driver": "file", "filename": self.disk_base, "node-name": "libvirt-2-storage",
                     "auto-read-only": True, "discard": "unmap"},
                    {"node-name": "libvirt-2-format", "read-only": True, "driver": "qcow2",
                     "file": "libvirt-2-storage", "backing": None},
                    {"driver": "file", "filename": image, "node-name": "libvirt-1-storage",
                     "auto-read-only": True, "discard": "unmap"},
                    {"node-name": "libvirt-1-format", "read-only": False, "driver": "qcow2",
                     "file": "libvirt-1-storage", "backing": "libvirt-2-format"}):
                args += ["-blockdev", _json(node)]
            if kind == "virtio-blk":
                return args + ["-device", _json({"driver": "virtio-blk-pci", "bus": "pci.3", "addr": "0x0",
                                                 "drive": "libvirt-1-format", "id": "virtio-disk0",
                                                 "bootindex": 1})]
            return args + [
                "-device", _json({"driver": "virtio-scsi-pci", "id": "scsi0", "bus": "pci.3", "addr": "0x0"}),
                "-device", _json({"driver": "scsi-hd", "bus": "scsi0.0", "channel": 0, "scsi-id": 0, "lun": 0,
                                  "device_id": "drive-scsi0-0-0-0", "drive": "libvirt-1-format",
                                  "id": "scsi0-0-0-0", "bootindex": 1})]
        if kind == "virtio-scsi":
            extra = ",cache=none,aio=io_uring,detect-zeroes=on" if shape == "proxmox" else ""
            return ["-device", "virtio-scsi-pci,id=scsihw0",
                    "-drive", "file=%s,if=none,id=drive-scsi0,format=qcow2%s" % (image, extra),
                    "-device", "scsi-hd,bus=scsihw0.0,channel=0,scsi-id=0,lun=0,drive=drive-scsi0,id=scsi0"]
        if shape == "proxmox":
            return ["-drive", "file=%s,if=none,id=drive-virtio0,format=qcow2,cache=none,aio=io_uring,"
                              "detect-zeroes=on" % image,
                    "-device", "virtio-blk-pci,drive=drive-virtio0,id=virtio0"]
        return ["-blockdev", "driver=file,node-name=disk0-file,filename=%s" % image,
                "-blockdev", "driver=qcow2,node-name=disk0,file=disk0-file",
                "-device", "virtio-blk-pci,drive=disk0,id=virtio-disk0"]

    def _nic_args(self):
        """The NIC's arguments, in the VM's shape: a tap (in the VM's namespace) and virtio-net-pci."""
        s = self.spec
        if not s.nic:
            return []
        q = s.nic_queues
        mq = ",queues=%d" % q if q > 1 else ""
        dev_mq = ",mq=on,vectors=%d" % (2 * q + 2) if q > 1 else ""
        if s.shape == "libvirt":
            netdev = {"type": "tap", "ifname": self.tap, "script": "no", "downscript": "no", "id": "hostnet0"}
            device = {"driver": "virtio-net-pci", "netdev": "hostnet0", "id": "net0", "mac": self.mac,
                      "bus": "pci.1", "addr": "0x0"}
            if q > 1:
                netdev["queues"] = q
                device.update(mq=True, vectors=2 * q + 2)
            return ["-netdev", _json(netdev), "-device", _json(device)]
        if s.shape == "plain":
            return ["-nic", "tap,ifname=%s,script=no,downscript=no,model=virtio-net-pci,mac=%s%s"
                    % (self.tap, self.mac, mq)]
        net_id = "net0"
        return ["-netdev", "type=tap,id=%s,ifname=%s,script=no,downscript=no%s" % (net_id, self.tap, mq),
                "-device", "virtio-net-pci,mac=%s,netdev=%s,id=%s%s" % (self.mac, net_id, net_id, dev_mq)]

    @property
    def uuid(self):
        return str(uuid.uuid5(uuid.NAMESPACE_URL, "cprlab:" + self.run_dir))

    def _tag(self):
        return hashlib.sha256(self.run_dir.encode()).hexdigest()

    @property
    def netns(self):
        """The VM's own network namespace (QEMU runs in it), or None without a NIC."""
        return "cprlab-" + self._tag()[:10] if self.spec.nic else None

    @property
    def tap(self):
        """The tap device's name (in the VM's namespace): as its shape's manager would name it."""
        return {"lab": "cprtap0", "libvirt": "vnet0", "plain": "tap0",
                "proxmox": ("tap%si0" % self.spec.name)[:15]}[self.spec.shape]

    @property
    def nic_addresses(self):
        """(the tap's address in the namespace, the guest's): the two hosts of a 10.239.X.0/30."""
        x = int(self._tag()[10:12], 16)
        return "10.239.%d.1" % x, "10.239.%d.2" % x

    @property
    def mac(self):
        return "52:54:00:%s:%s:%s" % tuple(self._tag()[i:i + 2] for i in (12, 14, 16))

    def _command(self):
        """The command that starts QEMU: in its cgroup, in its network namespace, in its root, as its
        user; every step execs."""
        s, cmd = self.spec, list(self.argv)
        if s.uid is not None and s.drop_by == "launch":
            cmd = ["setpriv", "--reuid=%d" % s.uid, "--regid=%d" % s.gid, "--clear-groups", "--"] + cmd
        cmd = list(s.launch_prefix) + cmd
        if self.root is not None and s.shape == "plain":
            # chroot starts in the root's /: QEMU's relative paths mean the run directory.
            cmd = ["/bin/sh", "-c", 'cd "$0" && exec "$@"', self.run_dir] + cmd
        if self.root is not None:
            cmd = launcher() + cmd
        if self.netns:
            cmd = ["nsenter", "--net=/run/netns/" + self.netns, "--"] + cmd
        if self.cgroup:
            cmd = ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', os.path.join(self.cgroup, "cgroup.procs")] + cmd
        return cmd

    def _prepare_run_dir(self):
        """Make the run directory (and the cgroup, the disk images, the network namespace, the
        files of the VM's shape) QEMU needs, owned by QEMU's user."""
        os.makedirs(self.run_dir, mode=0o700)
        s = self.spec
        mine = []  # files QEMU (or its successor) opens as its user
        if self.shared_dir:
            os.makedirs(self.shared_dir, mode=0o755, exist_ok=True)
        if s.uid is not None:
            # QEMU (or its successor) creates sockets here as that user, and the
            # successor reopens the serial log as that user.
            os.chown(self.run_dir, s.uid, s.gid)
            with open(self.serial_log, "a"):
                pass
            mine.append(self.serial_log)
            if self.pidfile and s.drop_by == "launch":
                # libvirt writes its VMs' pidfiles as root; a QEMU running as the user can
                # write (not create) one in a directory of root's.
                with open(self.pidfile, "a"):
                    pass
                mine.append(self.pidfile)
        if s.shape == "libvirt":
            with open(os.open(os.path.join(self.run_dir, "master-key.aes"), os.O_WRONLY | os.O_CREAT, 0o600),
                      "wb") as f:
                f.write(os.urandom(32))
            mine.append(os.path.join(self.run_dir, "master-key.aes"))
        if s.shape == "plain":
            for name in ("vmlinuz", "initramfs.gz"):
                os.symlink(os.path.join(GUEST, name), os.path.join(self.run_dir, name))
        if self.disk_image:
            self._make_disk()
            mine += [self.disk_base, self.disk_image]
        if s.uid is not None:
            for path in mine:
                os.chown(path, s.uid, s.gid)
        if self.cgroup:
            os.makedirs(self.cgroup, exist_ok=True)
        if self.netns:
            self._make_netns()

    def _make_disk(self):
        """The disk: a qcow2 overlay on a qcow2 backing image whose sector 0 names it (the guest
        prints that as its base marker), both disk_mb MiB."""
        raw = os.path.join(self.run_dir, "base.raw")
        with open(raw, "wb") as f:
            f.truncate(self.spec.disk_mb << 20)
            f.write(("CPRLAB-BASE-%s\n" % self.spec.name).encode().ljust(SECTOR, b"\0"))
        _run([QEMU_IMG, "convert", "-q", "-f", "raw", "-O", "qcow2", raw, self.disk_base])
        _run([QEMU_IMG, "create", "-q", "-f", "qcow2", "-b", self.disk_base, "-F", "qcow2", self.disk_image])
        os.unlink(raw)

    def _make_netns(self):
        """The VM's network namespace (a leftover of a VM of this name goes first) with the tap
        QEMU attaches to and the tap's address."""
        self._remove_netns()
        ns, tap, s = self.netns, self.tap, self.spec
        tuntap = ["tuntap", "add", "dev", tap, "mode", "tap"]
        if s.nic_queues > 1:
            tuntap.append("multi_queue")
        if s.uid is not None:
            tuntap += ["user", str(s.uid), "group", str(s.gid)]
        _run(["ip", "netns", "add", ns])
        for cmd in (["link", "set", "lo", "up"], tuntap,
                    ["addr", "add", self.nic_addresses[0] + "/30", "dev", tap],
                    ["link", "set", tap, "up"]):
            _run(["ip", "-n", ns] + cmd)

    def _remove_netns(self):
        if self.netns and os.path.exists("/run/netns/" + self.netns):
            _run(["ip", "netns", "del", self.netns])

    def start(self, timeout=30):
        """Start QEMU detached (it outlives this process) and wait for its QMP socket."""
        if os.path.exists(os.path.join(self.run_dir, "vm.json")):
            old = load(self.spec.name)
            if old.running():
                raise LabError("lab VM %s already runs as PID %d" % (self.spec.name, old.pid))
            shutil.rmtree(self.run_dir)
        self._remove_outside()  # a leftover serial log there would be appended to
        try:
            self._prepare_run_dir()
        except (OSError, LabError):
            self.stop()
            raise
        if self.spec.binary_copy:
            shutil.copy2(self._source_binary(), os.path.join(self.run_dir, "qemu-system-x86_64"))
        self.argv = [self.binary] + self.qemu_args()
        # QEMU works in its run directory: a cpr-transfer successor is started in the
        # old QEMU's working directory, which must exist in the 11.1 root too.
        with open(self.stderr_log, "ab") as err:
            self._proc = subprocess.Popen(
                self._command(), stdin=subprocess.DEVNULL, stdout=err, stderr=err, cwd=self.run_dir,
                start_new_session=True, close_fds=True)
        self.pid = self._proc.pid
        self.starttime = _starttime(self.pid)
        self._save()
        deadline = time.monotonic() + timeout
        if "-daemonize" in self.argv:
            # QEMU's first process exits once the daemon serves; the daemon's PID is in the pidfile.
            while self._proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            pid = self._read_pidfile() if self._proc.returncode == 0 else None
            if pid is None:
                why = self.stderr()
                self.stop()
                raise LabError("QEMU for %s did not daemonize: %s" % (self.spec.name, why.strip()))
            self.adopt(pid)
        while not os.path.exists(self.qmp_socket):
            if not self.running() or time.monotonic() > deadline:
                why = self.stderr()
                self.stop()
                raise LabError("QEMU for %s did not come up: %s" % (self.spec.name, why.strip()))
            self._reap()
            time.sleep(0.02)
        if self.spec.event_monitor:
            subprocess.Popen([sys.executable, os.path.abspath(__file__), "record-events", self.spec.name],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True, close_fds=True)
            deadline = time.monotonic() + timeout
            while not os.path.exists(self.event_log) and time.monotonic() < deadline:
                time.sleep(0.02)
        return self

    def record_events(self):
        """Append every event of the second monitor to events.jsonl until QEMU closes it."""
        with qmp_session(self.event_socket) as chat, open(self.event_log, "a") as out:
            out.flush()
            for msg in chat.messages():
                if "event" in msg:
                    out.write(json.dumps(msg) + "\n")
                    out.flush()

    def events(self):
        try:
            with open(self.event_log) as f:
                return [json.loads(line) for line in f if line.strip()]
        except OSError:
            return []

    def qmp(self, command, arguments=None):
        """Run one QMP command on the VM's main monitor (nothing else may hold it)."""
        with qmp_session(self.qmp_socket) as chat:
            return chat.execute(command, arguments)

    def _save(self):
        record = {"spec": dataclasses.asdict(self.spec), "pid": self.pid,
                  "starttime": self.starttime, "argv": self.argv}
        record["spec"]["extra_args"] = list(self.spec.extra_args)
        with open(os.path.join(self.run_dir, "vm.json"), "w") as f:
            json.dump(record, f)

    def adopt(self, pid):
        """Record that this VM now runs as another process (after cpr-transfer)."""
        self.pid = pid
        self.starttime = _starttime(pid)
        self._proc = None
        self._save()

    def running(self):
        self._reap()
        return self.pid is not None and _alive(self.pid, self.starttime)

    def _read_pidfile(self):
        """The PID QEMU wrote into its pidfile, or None."""
        try:
            with open(self.pidfile) as f:
                return int(f.read().strip())
        except (OSError, ValueError, TypeError):
            return None

    def stderr(self):
        try:
            with open(self.stderr_log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def successors(self):
        """QEMUs that took this VM over from the one the lab started (cpr-transfer starts a new
        process, daemonized or not): processes of QEMU whose argv names this VM's run directory,
        its QMP socket or its pidfile, or (relative paths) whose working directory is the run
        directory."""
        found = []
        try:
            run_dir = os.stat(self.run_dir)
        except OSError:
            run_dir = None
        own = [re.compile(r"(^|[=:,])%s(,|$)" % re.escape(p)) for p in (self.qmp_socket, self.pidfile) if p]
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == self.pid:
                continue
            try:
                with open("/proc/%s/cmdline" % entry, "rb") as f:
                    argv = f.read().decode(errors="replace").split("\0")
            except OSError:
                continue
            if "qemu-system" not in os.path.basename(argv[0]):
                continue
            if (any(self.run_dir + "/" in a for a in argv) or any(r.search(a) for r in own for a in argv)
                    or (run_dir and _same_file(run_dir, "/proc/%s/cwd" % entry))):
                found.append((int(entry), _starttime(int(entry))))
        return found

    def cgroup_members(self):
        """Processes in the VM's own cgroup: only the lab put any there (QEMU and its successors)."""
        if not self.cgroup:
            return []
        try:
            with open(os.path.join(self.cgroup, "cgroup.procs")) as f:
                pids = [int(line) for line in f if line.strip()]
        except OSError:
            return []
        return [(pid, _starttime(pid)) for pid in pids]

    def stop(self, timeout=10):
        """Kill the recorded QEMU, its successors and whatever is in its cgroup (only processes
        still the ones seen), and clean up: run directory, the VM's files outside it (pidfile,
        entries of the shared directory), the modules' lock directory, network namespace and
        cgroup."""
        self.halt(timeout)
        lock_dir = self.lock_dir()
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self._remove_outside()
        if lock_dir:
            shutil.rmtree(lock_dir, ignore_errors=True)
        self._remove_netns()
        self._remove_cgroup()

    def _remove_outside(self):
        """Remove the VM's files outside its run directory: in a shared directory the entries named
        after the VM ("NAME.", as "NAME.qmp", "NAME.qmp.cpr"), beside a pidfile of libvirt's
        shape the pidfile and entries named after it ("NAME.pid."); an empty shared directory."""
        if self.shared_dir:
            prefix, where = self.spec.name + ".", self.shared_dir
        elif self.pidfile:
            prefix, where = os.path.basename(self.pidfile), os.path.dirname(self.pidfile)
        else:
            return
        try:
            names = os.listdir(where)
        except OSError:
            return
        for name in names:
            if name == prefix or (name.startswith(prefix) and (self.shared_dir or name[len(prefix)] == ".")):
                path = os.path.join(where, name)
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    try:
                        os.unlink(path)
                    except OSError:
                        pass
        if self.shared_dir:
            try:
                os.rmdir(self.shared_dir)
            except OSError:
                pass

    def halt(self, timeout=10, sig=signal.SIGTERM):
        """Kill (``sig``, then SIGKILL after ``timeout`` s) the recorded QEMU, its successors and
        whatever is in its cgroup (only processes still the ones seen); leave every file as it is,
        the disk image for disk_problems() and the serial log.  stop() cleans up."""
        victims = self.successors() + self.cgroup_members()
        if self.running():
            victims.append((self.pid, self.starttime))
        victims = list(set(victims))
        for pid, start in victims:
            if _alive(pid, start):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while any(_alive(p, s) for p, s in victims) and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.05)
        for pid, start in victims:
            if _alive(pid, start):
                os.kill(pid, signal.SIGKILL)
        while any(_alive(p, s) or _exiting(p, s) for p, s in victims):
            self._reap()
            time.sleep(0.02)
        self._reap()

    def lock_dir(self):
        """The cpr.qemu modules' root-only state directory of this VM (as plugins/module_utils/recovery/state.py
        names it: the QMP socket's name in its directory, known by device and inode), if there is one."""
        try:
            st = os.stat(os.path.dirname(self.qmp_socket))
        except OSError:
            return None
        name = os.path.basename(self.qmp_socket)
        digest = hashlib.sha256(("%d:%d:%s" % (st.st_dev, st.st_ino, name)).encode()).hexdigest()[:16]
        path = os.path.join(LOCK_BASE, "%s-%s" % (re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:40], digest))
        return path if os.path.isdir(path) else None

    def _remove_cgroup(self, timeout=10):
        """Remove the VM's cgroup once the kernel has let go of its last process."""
        if not self.cgroup or not os.path.isdir(self.cgroup):
            return
        deadline = time.monotonic() + timeout
        while True:
            try:
                os.rmdir(self.cgroup)
                return
            except OSError as e:
                for pid, start in self.cgroup_members():
                    if _alive(pid, start):
                        os.kill(pid, signal.SIGKILL)
                if time.monotonic() > deadline:
                    raise LabError("cannot remove cgroup %s: %s" % (self.cgroup, e))
                time.sleep(0.05)

    def _reap(self):
        if self._proc is not None:
            self._proc.poll()

    def replace_binary(self):
        """Replace the VM's private binary on disk, as a package upgrade does (rename over)."""
        if not self.spec.binary_copy:
            raise LabError("VM %s was not started with a private binary copy" % self.spec.name)
        path = os.path.join(self.run_dir, "qemu-system-x86_64")
        shutil.copy2(path, path + ".new")
        os.rename(path + ".new", path)

    def evidence(self):
        with open(self.serial_log, errors="replace") as f:
            return GuestEvidence.parse(f.read())

    def disk_records(self):
        """What the guest's tick writes left on the disk image: {sector: (tick, boot_id)}.  Only once
        the VM is halted (no QEMU of it runs: halt() or a switch that ended it), so that every write
        QEMU acknowledged is in the image file; reads the whole chain (overlay and backing image)
        converted to a raw temporary file."""
        if not self.disk_image:
            raise LabError("lab VM %s has no disk" % self.spec.name)
        live = [pid for pid, start in self.successors() + [(self.pid, self.starttime)]
                if _alive(pid, start) or _exiting(pid, start)]
        if live:
            raise LabError("lab VM %s still runs (PID %s): halt it before reading its disk"
                           % (self.spec.name, ", ".join(map(str, live))))
        records = {}
        with tempfile.TemporaryDirectory(prefix="cprlab-disk-") as tmp:
            raw = os.path.join(tmp, "disk.raw")
            _run([QEMU_IMG, "convert", "-f", "qcow2", "-O", "raw", self.disk_image, raw])
            with open(raw, "rb") as f:
                sector = 0
                while True:
                    chunk = f.read(1 << 20)
                    if not chunk:
                        break
                    at = chunk.find(b"CPRLAB SECTOR ")
                    while at >= 0:
                        if at % SECTOR == 0:
                            m = _SECTOR_RECORD.match(chunk, at)
                            if m:
                                records[sector + at // SECTOR] = (int(m.group(1)), m.group(2).decode())
                        at = chunk.find(b"CPRLAB SECTOR ", at + 1)
                    sector += len(chunk) // SECTOR
        return records

    def disk_ticks(self, boot_id=None):
        """The tick numbers whose sector is on the halted VM's disk image, of boot ``boot_id`` (by
        default the last boot the serial log shows), sorted."""
        if boot_id is None:
            boots = self.evidence().boots
            boot_id = boots[-1] if boots else None
        return sorted(tick for tick, boot in self.disk_records().values() if boot == boot_id)

    def disk_problems(self):
        """Reasons the halted VM's disk image does not hold every write the guest acknowledged (every
        tick the serial log shows with "disk ok"); empty if it holds them all.  Call after halt()
        (or once the VM's QEMUs are gone otherwise), before stop(), which removes the image."""
        return self.evidence().disk_problems(self.disk_records())

    def wait_filled(self, timeout=600):
        """Wait until the guest has written its block of RAM."""
        deadline = time.monotonic() + timeout
        while self.evidence().fill_sum is None:
            if time.monotonic() > deadline or not self.running():
                raise LabError("guest %s did not fill its RAM in %ds" % (self.spec.name, timeout))
            time.sleep(0.5)
        return self.evidence()

    def wait_ticks(self, count, timeout=60):
        """Wait until the guest has printed `count` more ticks than now."""
        start = self.evidence().last_tick
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.evidence().last_tick >= start + count:
                return self.evidence()
            time.sleep(0.2)
        raise LabError("guest %s printed no %d ticks in %ds (last tick %s); QEMU stderr: %s"
                       % (self.spec.name, count, timeout, self.evidence().last_tick,
                          self.stderr().strip()))

    def info(self):
        return {"name": self.spec.name, "pid": self.pid, "qemu": self.spec.qemu,
                "qmp_socket": self.qmp_socket, "serial_log": self.serial_log,
                "run_dir": self.run_dir, "binary": self.binary, "root": self.root or "/",
                "argv": self.argv, "cgroup": self.cgroup, "shape": self.spec.shape,
                "pidfile": self.pidfile, "disk": self.spec.disk_kind, "disk_image": self.disk_image,
                "netns": self.netns, "nic_addresses": list(self.nic_addresses) if self.spec.nic else None,
                "agent_socket": self.agent_socket}


@dataclasses.dataclass
class GuestEvidence:
    """What the guest's console says about its life: boots, ticks, RAM checksums, and (with a
    disk or NIC) its disk writes and pings."""

    boots: list
    ticks: list  # (counter, uptime)
    fill_sum: str
    sums: list  # checksums printed with ticks
    disks: list = dataclasses.field(default_factory=list)  # (boot_id, device, sectors, base marker)
    disk_writes: list = dataclasses.field(default_factory=list)  # (boot_id, tick, "ok" or "err")
    net: list = dataclasses.field(default_factory=list)  # (tick, replies so far, last reply's seq)

    _BOOT = re.compile(r"^CPRLAB BOOT (\S+)")
    _FILLED = re.compile(r"^CPRLAB FILLED \d+ md5 ([0-9a-f]+)")
    _TICK = re.compile(r"^CPRLAB TICK (\d+) uptime ([0-9.]+)(?: md5 ([0-9a-f]+))?"
                       r"(?: disk (ok|err))?(?: net rx (\d+) seq (-?\d+))?")
    _DISK = re.compile(r"^CPRLAB DISK (\S+) sectors (\d+) base (\S+)")

    @classmethod
    def parse(cls, text):
        boots, ticks, sums, fill_sum = [], [], [], None
        disks, disk_writes, net = [], [], []
        for line in text.splitlines():
            line = line.strip()
            m = cls._BOOT.match(line)
            if m:
                boots.append(m.group(1))
                continue
            m = cls._FILLED.match(line)
            if m:
                fill_sum = m.group(1)
                continue
            m = cls._DISK.match(line)
            if m:
                disks.append((boots[-1] if boots else None, m.group(1), int(m.group(2)), m.group(3)))
                continue
            m = cls._TICK.match(line)
            if m:
                ticks.append((int(m.group(1)), float(m.group(2))))
                if m.group(3):
                    sums.append(m.group(3))
                if m.group(4):
                    disk_writes.append((boots[-1] if boots else None, int(m.group(1)), m.group(4)))
                if m.group(5):
                    net.append((int(m.group(1)), int(m.group(5)), int(m.group(6))))
        return cls(boots, ticks, fill_sum, sums, disks, disk_writes, net)

    def disk_problems(self, records):
        """Reasons the disk ``records`` ({sector: (tick, boot_id)}, LabVM.disk_records) lack a write the
        guest acknowledged; empty if they hold every one.  The guest writes tick N's record to sector
        1 + (N - 1) mod (sectors - 1) and prints the tick only after that write returned from fsync,
        so each sector must hold the record of the last tick printed for it, or of a later write
        (one done but not printed yet)."""
        found = []
        order = {boot: i for i, boot in enumerate(self.boots)}
        sectors = {boot: n for boot, _dev, n, _base in self.disks}
        expected = {}  # sector -> (boot index, tick, boot_id)
        for boot, tick, status in self.disk_writes:
            if status != "ok":
                found.append("the guest's write of tick %d failed" % tick)
                continue
            if sectors.get(boot, 0) < 2:
                found.append("tick %d printed a disk write, but the guest named no disk size" % tick)
                continue
            expected[1 + (tick - 1) % (sectors[boot] - 1)] = (order[boot], tick, boot)
        if not self.disk_writes:
            found.append("the guest printed no tick with a disk write")
        for sector, (index, tick, boot) in sorted(expected.items()):
            if sector not in records:
                found.append("tick %d (sector %d) is not on the disk" % (tick, sector))
                continue
            on_disk, on_boot = records[sector]
            if (order.get(on_boot, -1), on_disk) < (index, tick):
                found.append("sector %d holds tick %d of boot %s, not tick %d of boot %s"
                             % (sector, on_disk, on_boot, tick, boot))
        return found

    def net_losses(self):
        """Pings the guest saw no reply to up to its last reply (last seq + 1 - replies), or None without a NIC."""
        if not self.net:
            return None
        _tick, replies, seq = self.net[-1]
        return seq + 1 - replies

    @property
    def last_tick(self):
        return self.ticks[-1][0] if self.ticks else 0

    def problems(self):
        """Reasons this console does not show one continuous life; empty if it does."""
        found = []
        if len(self.boots) != 1:
            found.append("%d boot markers" % len(self.boots))
        for (n1, u1), (n2, u2) in zip(self.ticks, self.ticks[1:]):
            if n2 != n1 + 1:
                found.append("counter jumps from %d to %d" % (n1, n2))
            if u2 < u1:
                found.append("uptime goes back from %s to %s at tick %d" % (u1, u2, n2))
        if self.fill_sum is None:
            found.append("no RAM checksum")
        bad = [s for s in self.sums if s != self.fill_sum]
        if bad:
            found.append("RAM checksum changed: %s then %s" % (self.fill_sum, bad[0]))
        return found

    def summary(self):
        out = {"boots": len(self.boots), "ticks": len(self.ticks), "last_tick": self.last_tick,
               "last_uptime": self.ticks[-1][1] if self.ticks else None,
               "ram_checksum": self.fill_sum, "checksums_seen": len(self.sums),
               "problems": self.problems()}
        if self.disks:
            out["disk_writes"] = len(self.disk_writes)
        if self.net:
            out["net"] = {"replies": self.net[-1][1], "last_seq": self.net[-1][2], "lost": self.net_losses()}
        return out


class qmp_session:
    """A minimal QMP client on the standard library, for the lab's own needs.

    With ``negotiate=False`` nothing is read or sent yet: the caller sees the
    wire as it is (the contract tests compare the greeting and raw replies).
    Events that arrive while waiting for a reply are kept in ``events``.
    """

    def __init__(self, path, timeout=10, negotiate=True):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.events = []
        if negotiate:
            self.read()  # greeting
            self.execute("qmp_capabilities")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sock.close()

    def read(self):
        """The next message from QEMU."""
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def exchange(self, command, arguments=None):
        """Send one command; return QEMU's reply as it is ({"return": ...} or {"error": ...})."""
        msg = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        self.sock.sendall(json.dumps(msg).encode())
        while True:
            reply = self.read()
            if "event" in reply:
                self.events.append(reply)
            else:
                return reply

    def execute(self, command, arguments=None):
        reply = self.exchange(command, arguments)
        if "error" in reply:
            raise LabError("QMP %s: %s" % (command, reply["error"]["desc"]))
        return reply["return"]

    def messages(self):
        self.sock.settimeout(None)
        while True:
            try:
                yield self.read()
            except (EOFError, OSError):
                return


def load(name):
    path = os.path.join(RUN_BASE, name, "vm.json")
    try:
        with open(path) as f:
            record = json.load(f)
    except OSError:
        raise LabError("no lab VM named %s (no %s)" % (name, path))
    spec = dict(record["spec"])
    spec["extra_args"] = tuple(spec["extra_args"])
    return LabVM(VMSpec(**spec), record)


def all_vms():
    if not os.path.isdir(RUN_BASE):
        return []
    return [load(n) for n in sorted(os.listdir(RUN_BASE))
            if os.path.exists(os.path.join(RUN_BASE, n, "vm.json"))]


def stop_all():
    stopped = []
    for vm in all_vms():
        stopped.append(vm.spec.name)
        vm.stop()
    return stopped


def _main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start", help="start a VM and print its facts as JSON")
    s.add_argument("name")
    s.add_argument("--qemu", default="11.1", choices=sorted(QEMUS))
    s.add_argument("--series", type=int, default=5, choices=[5, 6, 8], help="simulator only")
    s.add_argument("--no-memfd-alloc", dest="memfd_alloc", action="store_false", help="simulator only")
    s.add_argument("--xen", action="store_true", help="simulator only")
    s.add_argument("--mem-mb", type=int, default=256)
    s.add_argument("--ram", default="memfd", choices=["memfd", "memfd-private", "plain"])
    s.add_argument("--no-aux-ram-share", dest="aux_ram_share", action="store_false")
    s.add_argument("--machine", default="q35")
    s.add_argument("--sandbox-spawn-deny", action="store_true")
    s.add_argument("--paused", action="store_true")
    s.add_argument("--binary-copy", action="store_true")
    s.add_argument("--fill-mb", type=int, default=8)
    s.add_argument("--uid", type=int, help="run QEMU as this uid (with --gid)")
    s.add_argument("--gid", type=int)
    s.add_argument("--drop-by", default="launch", choices=["launch", "qemu"],
                   help="who drops to --uid/--gid: the lab (setpriv) or QEMU (-run-with user=)")
    s.add_argument("--own-cgroup", action="store_true", help="start QEMU in a pids cgroup of its own")
    s.add_argument("--arg", dest="extra_args", action="append", default=[],
                   help="one more QEMU argument (repeat for several)")
    s.add_argument("--event-monitor", action="store_true",
                   help="record the events of a second QMP monitor (see 'evidence')")
    s.add_argument("--wait-ticks", type=int, default=0,
                   help="wait until the guest has printed this many ticks")
    s.add_argument("--shape", default="lab", choices=SHAPES, help="the shape of QEMU's command line")
    s.add_argument("--disk", default="native", choices=("native", "none") + DISKS,
                   help="the guest's disk (native: the shape's own)")
    s.add_argument("--disk-mb", type=int, default=64)
    s.add_argument("--nic", action="store_true", help="a virtio-net NIC on a tap in a namespace of the VM's own")
    s.add_argument("--nic-queues", type=int, default=1)
    s.add_argument("--monitor-object", action="store_true", help="libvirt shape: -object monitor-qmp")
    s.add_argument("--guest-agent", action="store_true",
                   help="a guest agent channel (virtserialport %s on a UNIX socket), served by the guest's "
                        "stand-in for the QEMU guest agent" % AGENT_PORT)
    for cmd in ("stop", "evidence", "replace-binary", "record-events"):
        sub.add_parser(cmd).add_argument("name")
    h = sub.add_parser("halt", help="kill a VM's QEMUs, keep its files (the disk image) until stop")
    h.add_argument("name")
    h.add_argument("--kill", action="store_true", help="SIGKILL rather than SIGTERM")
    sub.add_parser("disk-proof", help="after halt: whether every tick the guest printed is on its disk").add_argument(
        "name")
    w = sub.add_parser("wait-ticks", help="wait for COUNT more guest ticks, then print the evidence")
    w.add_argument("name")
    w.add_argument("count", type=int)
    q = sub.add_parser("qmp", help="run one QMP command on a VM and print its result")
    q.add_argument("name")
    q.add_argument("command")
    q.add_argument("arguments", nargs="?", help="JSON object")
    g = sub.add_parser("agent", help="send one command to a VM's guest agent channel and print the reply "
                                     "(cprlab-agent-stop: the guest's stand-in stops answering)")
    g.add_argument("name")
    g.add_argument("command")
    g.add_argument("arguments", nargs="?", help="JSON object")
    sub.add_parser("stop-all")
    sub.add_parser("launcher", help="print the argv prefix that runs a command in the trixie root")
    a = p.parse_args(argv)

    if a.cmd == "start":
        vm = LabVM(VMSpec(a.name, qemu=a.qemu, mem_mb=a.mem_mb, ram=a.ram,
                          aux_ram_share=a.aux_ram_share, machine=a.machine,
                          sandbox_spawn_deny=a.sandbox_spawn_deny, paused=a.paused,
                          binary_copy=a.binary_copy, fill_mb=a.fill_mb,
                          event_monitor=a.event_monitor, series=a.series, memfd_alloc=a.memfd_alloc,
                          xen=a.xen, extra_args=tuple(a.extra_args), uid=a.uid, gid=a.gid,
                          drop_by=a.drop_by, own_cgroup=a.own_cgroup, shape=a.shape,
                          disk=None if a.disk == "none" else a.disk, disk_mb=a.disk_mb, nic=a.nic,
                          nic_queues=a.nic_queues, monitor_object=a.monitor_object,
                          guest_agent=a.guest_agent)).start()
        if a.wait_ticks:
            vm.wait_ticks(a.wait_ticks)
        out = vm.info()
    elif a.cmd == "stop":
        load(a.name).stop()
        out = {"stopped": [a.name]}
    elif a.cmd == "stop-all":
        out = {"stopped": stop_all()}
    elif a.cmd == "halt":
        load(a.name).halt(sig=signal.SIGKILL if a.kill else signal.SIGTERM)
        out = {"halted": [a.name]}
    elif a.cmd == "disk-proof":
        vm = load(a.name)
        out = {"ticks_printed": len(vm.evidence().disk_writes), "ticks_on_disk": len(vm.disk_ticks()),
               "problems": vm.disk_problems()}
    elif a.cmd == "launcher":
        out = launcher()
    elif a.cmd in ("evidence", "wait-ticks"):
        vm = load(a.name)
        out = (vm.wait_ticks(a.count) if a.cmd == "wait-ticks" else vm.evidence()).summary()
        out["events"] = [e["event"] for e in vm.events()]
    elif a.cmd == "record-events":
        load(a.name).record_events()
        return
    elif a.cmd == "qmp":
        out = load(a.name).qmp(a.command, json.loads(a.arguments) if a.arguments else None)
    elif a.cmd == "agent":
        vm = load(a.name)
        if a.command == "cprlab-agent-stop":
            vm.stop_agent()
            out = {"stopped": a.name}
        else:
            out = vm.agent(a.command, json.loads(a.arguments) if a.arguments else None)
    else:
        vm = load(a.name)
        vm.replace_binary()
        out = vm.info()
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    try:
        _main()
    except LabError as e:
        sys.exit("vmlab: %s" % e)
