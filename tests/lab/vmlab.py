"""Start, inspect and stop real QEMU test VMs for the cpr.qemu lab.

Two QEMUs are provisioned by ``provision.sh``: 10.0 on the host and 11.1 in a
trixie root.  A VM on the root's QEMU runs through ``in-root.sh``: under
``chroot`` in a private mount namespace, with the lab's run directory and the
guest files bind-mounted at the same paths as on the host.  So every path in a
VM's argv means the same file for both QEMUs, its mounts die with the QEMU
process, and the PID we record is QEMU's own (every step execs).

Every VM has a run directory ``$CPR_LAB_RUN/NAME`` (QMP socket, serial log,
QEMU's stderr, ``vm.json``).  ``vm.json`` records the PID and its start time so
that ``stop`` only ever kills the process the lab started.

Used as a library by tests and benchmarks, and as a command by Ansible
integration targets: ``vmlab.py start NAME [options]``, ``vmlab.py stop NAME``,
``vmlab.py stop-all``, ``vmlab.py evidence NAME``, ``vmlab.py replace-binary NAME``,
``vmlab.py launcher``.
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
import time

CACHE = os.environ.get("CPR_LAB_CACHE", "/var/cache/cpr-qemu-lab")
RUN_BASE = os.environ.get("CPR_LAB_RUN", "/run/cpr-qemu-lab")
LOCK_BASE = "/run/cpr-qemu"
ROOT = os.path.join(CACHE, "trixie")
GUEST = os.path.join(CACHE, "guest")
QEMU_BIN = "/usr/bin/qemu-system-x86_64"

IN_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "in-root.sh")

# The live-update SIMULATOR built by provision.sh (tests/simulator/).
SIM_BIN = os.path.join(CACHE, "sim", "qemu-system-x86_64")

QEMUS = {"10.0": None, "11.1": ROOT, "sim": None}  # version series -> root (None: host)

# The cgroup v1 pids hierarchy, where a VM with a cgroup of its own gets one.
PIDS_CGROUP = "/sys/fs/cgroup/pids"


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
    # Simulator only: the version of the live-update series it follows (5:
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
    # Run QEMU as this uid/gid (no supplementary groups): the run directory and
    # the serial log are then theirs.  drop_by "launch": the lab starts QEMU as
    # that user (setpriv); "qemu": QEMU starts as root and drops privileges itself
    # (-run-with user=UID:GID, which also sets the groups to [gid]).
    uid: int = None
    gid: int = None
    drop_by: str = "launch"
    # Start QEMU in a pids cgroup of its own (removed by stop()).
    own_cgroup: bool = False

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


def _starttime(pid):
    """The process start time in clock ticks, or None if there is no such PID."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _alive(pid, starttime):
    """Whether the process that started at ``starttime`` still runs (a zombie does not)."""
    if starttime is None or _starttime(pid) != starttime:
        return False
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class LabVM:
    """One lab VM, started from a spec or found again from its run directory."""

    def __init__(self, spec, record=None):
        self.spec = spec
        self.run_dir = os.path.join(RUN_BASE, spec.name)
        self.qmp_socket = os.path.join(self.run_dir, "qmp.sock")
        self.serial_log = os.path.join(self.run_dir, "serial.log")
        self.stderr_log = os.path.join(self.run_dir, "qemu.log")
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
        return SIM_BIN if self.spec.qemu == "sim" else QEMU_BIN

    def _source_binary(self):
        if self.spec.qemu == "sim":
            return SIM_BIN
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
                 "-serial", "chardev:ser0", "-simulate-series", str(s.series)]
        if s.xen:
            args += ["-accel", "xen"]
        if s.no_shutdown:
            args.append("-no-shutdown")
        if s.paused:
            args.append("-S")
        return args + list(s.extra_args)

    def qemu_args(self):
        s = self.spec
        if s.qemu == "sim":
            return self.sim_args()
        machine = [s.machine]
        if s.ram != "plain":
            machine.append("memory-backend=ram0")
        if s.aux_ram_share:
            machine.append("aux-ram-share=on")
        args = [
            "-name", s.name,
            "-nodefaults", "-display", "none", "-accel", "tcg",
            "-m", "%dM" % s.mem_mb,
            "-machine", ",".join(machine),
        ]
        if s.ram != "plain":
            args += ["-object", "memory-backend-memfd,id=ram0,size=%dM,share=%s"
                     % (s.mem_mb, "on" if s.ram == "memfd" else "off")]
        args += [
            "-kernel", os.path.join(GUEST, "vmlinuz"),
            "-initrd", os.path.join(GUEST, "initramfs.gz"),
            "-append", "console=ttyS0 quiet cprlab.fill_mb=%d cprlab.sum_every=%d" % (s.fill_mb, s.sum_every),
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
        return args + list(s.extra_args)

    def _command(self):
        """The command that starts QEMU: in its cgroup, in its root, as its user; every step execs."""
        s, cmd = self.spec, list(self.argv)
        if s.uid is not None and s.drop_by == "launch":
            cmd = ["setpriv", "--reuid=%d" % s.uid, "--regid=%d" % s.gid, "--clear-groups", "--"] + cmd
        if self.root is not None:
            cmd = launcher() + cmd
        if self.cgroup:
            cmd = ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', os.path.join(self.cgroup, "cgroup.procs")] + cmd
        return cmd

    def _prepare_run_dir(self):
        """Make the run directory (and the cgroup) QEMU needs, owned by QEMU's user."""
        os.makedirs(self.run_dir, mode=0o700)
        s = self.spec
        if s.uid is not None:
            # QEMU (or its successor) creates sockets here as that user, and the
            # successor reopens the serial log as that user.
            os.chown(self.run_dir, s.uid, s.gid)
            with open(self.serial_log, "a"):
                pass
            os.chown(self.serial_log, s.uid, s.gid)
        if self.cgroup:
            os.makedirs(self.cgroup, exist_ok=True)

    def start(self, timeout=30):
        """Start QEMU detached (it outlives this process) and wait for its QMP socket."""
        if os.path.exists(os.path.join(self.run_dir, "vm.json")):
            old = load(self.spec.name)
            if old.running():
                raise LabError("lab VM %s already runs as PID %d" % (self.spec.name, old.pid))
            shutil.rmtree(self.run_dir)
        self._prepare_run_dir()
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
        while not os.path.exists(self.qmp_socket):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                why = self.stderr()
                self.stop()
                raise LabError("QEMU for %s did not come up: %s" % (self.spec.name, why.strip()))
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
        return self.pid is not None and _alive(self.pid, self.starttime)

    def stderr(self):
        try:
            with open(self.stderr_log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def successors(self):
        """QEMUs that took this VM over from the one the lab started (cpr-transfer starts a new
        process): processes of QEMU whose argv names this VM's run directory."""
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == self.pid:
                continue
            try:
                with open("/proc/%s/cmdline" % entry, "rb") as f:
                    argv = f.read().decode(errors="replace").split("\0")
            except OSError:
                continue
            if "qemu-system" in os.path.basename(argv[0]) and any(self.run_dir + "/" in a for a in argv):
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
        still the ones seen), and clean up: run directory and cgroup."""
        victims = self.successors() + self.cgroup_members()
        if self.running():
            victims.append((self.pid, self.starttime))
        victims = list(set(victims))
        for pid, start in victims:
            if _alive(pid, start):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while any(_alive(p, s) for p, s in victims) and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.05)
        for pid, start in victims:
            if _alive(pid, start):
                os.kill(pid, signal.SIGKILL)
        while any(_alive(p, s) for p, s in victims):
            self._reap()
            time.sleep(0.02)
        self._reap()
        lock_dir = self.lock_dir()
        shutil.rmtree(self.run_dir, ignore_errors=True)
        if lock_dir:
            shutil.rmtree(lock_dir, ignore_errors=True)
        self._remove_cgroup()

    def lock_dir(self):
        """The cpr.qemu modules' root-only state directory of this VM (as plugins/module_utils/state.py
        names it: the QMP socket's name in its directory, known by device and inode), if there is one."""
        try:
            st = os.stat(self.run_dir)
        except OSError:
            return None
        name = os.path.basename(self.qmp_socket)
        digest = hashlib.sha256(("%d:%d:%s" % (st.st_dev, st.st_ino, name)).encode()).hexdigest()[:16]
        path = os.path.join(LOCK_BASE, "%s-%s" % (name, digest))
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
                "argv": self.argv, "cgroup": self.cgroup}


@dataclasses.dataclass
class GuestEvidence:
    """What the guest's console says about its life: boots, ticks, RAM checksums."""

    boots: list
    ticks: list  # (counter, uptime)
    fill_sum: str
    sums: list  # checksums printed with ticks

    _BOOT = re.compile(r"^CPRLAB BOOT (\S+)")
    _FILLED = re.compile(r"^CPRLAB FILLED \d+ md5 ([0-9a-f]+)")
    _TICK = re.compile(r"^CPRLAB TICK (\d+) uptime ([0-9.]+)(?: md5 ([0-9a-f]+))?")

    @classmethod
    def parse(cls, text):
        boots, ticks, sums, fill_sum = [], [], [], None
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
            m = cls._TICK.match(line)
            if m:
                ticks.append((int(m.group(1)), float(m.group(2))))
                if m.group(3):
                    sums.append(m.group(3))
        return cls(boots, ticks, fill_sum, sums)

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
        return {"boots": len(self.boots), "ticks": len(self.ticks), "last_tick": self.last_tick,
                "last_uptime": self.ticks[-1][1] if self.ticks else None,
                "ram_checksum": self.fill_sum, "checksums_seen": len(self.sums),
                "problems": self.problems()}


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
    for cmd in ("stop", "evidence", "replace-binary", "record-events"):
        sub.add_parser(cmd).add_argument("name")
    w = sub.add_parser("wait-ticks", help="wait for COUNT more guest ticks, then print the evidence")
    w.add_argument("name")
    w.add_argument("count", type=int)
    q = sub.add_parser("qmp", help="run one QMP command on a VM and print its result")
    q.add_argument("name")
    q.add_argument("command")
    q.add_argument("arguments", nargs="?", help="JSON object")
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
                          drop_by=a.drop_by, own_cgroup=a.own_cgroup)).start()
        if a.wait_ticks:
            vm.wait_ticks(a.wait_ticks)
        out = vm.info()
    elif a.cmd == "stop":
        load(a.name).stop()
        out = {"stopped": [a.name]}
    elif a.cmd == "stop-all":
        out = {"stopped": stop_all()}
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
