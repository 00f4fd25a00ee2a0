# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
"""SIMULATOR of a QEMU build carrying the live-update series (cprsave / cprexec / cprload).

No QEMU build with that series can be had here, so this program stands in for
one in tests.  It behaves as the series' posted patches do, version by
version, and never as the driver under test would find convenient.  Each
behaviour below names the version and patch it follows ("V5 12/25" is patch
12 of 25 of the series' fifth posting to qemu-devel); the facts were read from
the posted patches, and no code of the series is here.

Versions offered (``-simulate-series N``, default 5; the ELF that provision.sh
builds for version N gives it ahead of the command line, once and for all, as a
real build carries one version of the series):

- **5** (V5, 2021-07-07): ``cprinfo``, ``cprsave {file, mode}``, ``cprexec
  {argv}``, ``cprload {file}`` (V5 03/25 "cpr: QMP interfaces for reboot",
  V5 12/25 "cpr: QMP interfaces for restart"); ``-machine memfd-alloc=on``;
  fds recorded in the environment as ``QEMU_FD_<name>``; chardevs not capable
  of cpr refused by cprexec unless ``close-on-cpr=on``.
- **6** (V6, 2021-08-06): ``cprinfo`` deleted; ``cpr-save {filename, mode}``,
  ``cpr-exec {argv}``, ``cpr-load {filename}`` (V6 06/27 "cpr: reboot mode",
  V6 14/27 "cpr: restart mode"); fds in one memfd named by env
  ``QEMU_CPR_STATE`` (V6 13/27 "cpr: preserve extra state").
- **8** (V8, 2022-06-15): ``cpr-load {filename, mode}`` (V8 06/39); CprMode
  gains ``none`` (V8 20/39); ``-cpr-enable restart`` replaces memfd-alloc and
  checks become blockers reported by cpr-save (V8 22/39 "cpr: ram block
  blockers", the chardev blocker of the V8 "chardev: cpr framework" patch).

Every command's arguments are checked the way QEMU's QAPI input visitor does
(members in schema order: "Parameter 'X' is missing", "Invalid parameter type
for 'X', expected: T", "Parameter 'X' does not accept value 'V'", then
"Parameter 'X' is unexpected"); tests/dialects/test_contract.py holds these
messages to real QEMU 10.0 and 11.1 on a command they share.

What is simulated: QMP on a UNIX socket (one client at a time); guest RAM as
real memory (a memfd per RAM block where the series makes one, otherwise
anonymous memory that does not survive an exec); a "guest" thread that keeps
its counter and boot time inside RAM and prints CPRLAB lines to its serial
chardev, like the lab's Linux guest; a real exec of the argv given to cprexec,
after which the new process finds its fds again, starts paused (-S) and waits
for cprload.

It runs as the ELF built by tests/lab/provision.sh (which embeds Python), so
/proc/PID/exe is the simulated "QEMU binary" itself.  Its QEMU version is that
of a vendor build based on 6.2 for every series version, so that one binary
serves as the old and the new QEMU.
"""

import hashlib
import json
import mmap
import os
import socket
import struct
import sys
import threading
import time
import uuid

VERSION = (6, 2, 50)
PACKAGE = "live-update series SIMULATOR"
MAGIC = b"QEVM\x00\x00\x00\x03"  # QEMU_VM_FILE_MAGIC, QEMU_VM_FILE_VERSION
FD_PREFIX = "QEMU_FD_"  # include/qemu/env.h FD_PREFIX (V4/V5)
CPR_STATE_ENV = "QEMU_CPR_STATE"  # CPR_STATE_NAME (V6 13/27); also the state memfd's name
MACHINES = ["pc-q35-6.2", "pc-i440fx-6.2"]
ALIASES = {"q35": "pc-q35-6.2", "pc": "pc-i440fx-6.2"}
BIOS_SIZE = 256 * 1024
TICK = 0.25
PROG = "qemu-system-x86_64"

# RAM layout: [0:8] counter, [8:16] boot time (double), [16:48] boot id, [4096:] filled block
_COUNTER, _BOOT_TIME, _BOOT_ID, _FILL = 0, 8, 16, 4096
_FILL_SIZE = 64 * 1024

# Chardev backends the series marks capable of cpr (V5 21/25 "cpr for simple
# devices", then the pty and socket patches); ``file`` is not.
CPR_CAPABLE_BACKENDS = ("null", "socket", "pty", "stdio", "serial", "mux")


def _series(number, save, exec_, load, info, modes, memory, chardev_option):
    return {"number": number, "save": save, "exec": exec_, "load": load, "info": info, "modes": modes,
            "memory": memory, "chardev_option": chardev_option}


# name -> (command, [(member, type), ...]); a member "*x" is optional, a type
# in brackets a list, "CprMode" the series' enum.
SERIES = {
    5: _series(5, ("cprsave", [("file", "str"), ("mode", "CprMode")]),
               ("cprexec", [("argv", ["str"])]),
               ("cprload", [("file", "str")]),
               "cprinfo", ["reboot", "restart"], "memfd-alloc", "close-on-cpr"),
    6: _series(6, ("cpr-save", [("filename", "str"), ("mode", "CprMode")]),
               ("cpr-exec", [("argv", ["str"])]),
               ("cpr-load", [("filename", "str")]),
               None, ["reboot", "restart"], "memfd-alloc", "reopen-on-cpr"),
    8: _series(8, ("cpr-save", [("filename", "str"), ("mode", "CprMode")]),
               ("cpr-exec", [("argv", ["str"])]),
               ("cpr-load", [("filename", "str"), ("mode", "CprMode")]),
               None, ["none", "reboot", "restart"], "cpr-enable", "reopen-on-cpr"),
}

# The commands every version has, with their QAPI members as in QEMU 6.2.
COMMON_ARGS = {
    "qmp_capabilities": [("*enable", ["str"])], "query-version": [], "query-status": [],
    "query-commands": [], "stop": [], "cont": [], "quit": [], "query-machines": [],
    "qom-get": [("path", "str"), ("property", "str")], "qom-list": [("path", "str")],
    "query-memdev": [], "query-qmp-schema": [], "query-kvm": [], "query-migrate": [],
    "query-chardev": [],
}


def _opts(text, implied):
    out = {}
    for n, part in enumerate(text.split(",")):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k] = v
        elif n == 0:
            out[implied] = part
        elif part:
            out[part] = "on"
    return out


def _size(text, default_unit="m"):
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    text = text.strip().lower().rstrip("b")
    if text and text[-1] in units:
        return int(text[:-1]) * units[text[-1]]
    return int(text) * units[default_unit]


def _fail(message):
    sys.exit("%s: %s" % (PROG, message))


# The options the simulator knows: without a value, and with one.
FLAGS = ("-S", "-no-shutdown", "-version", "-help")
VALUED = ("-machine", "-name", "-m", "-object", "-chardev", "-serial", "-qmp", "-accel", "-action",
          "-cpr-enable", "-device", "-simulate-series")


class Config:
    """The command line, as far as the simulator understands it; anything else is refused."""

    def __init__(self, argv):
        self.argv = argv
        self.name = None
        self.machine = {"type": "q35"}
        self.ram = 128 << 20
        self.objects = {}
        self.chardevs = {}
        self.serial = None
        self.qmp = None
        self.paused = False
        self.accel = "tcg"
        self.no_shutdown = False
        self.cpr_enable = []
        self.vfio = []
        self.series = SERIES[5]
        self._series_given = False
        self._parse(argv)
        self._check()

    def _parse(self, argv):
        self._first_pass(argv)
        i = 1
        while i < len(argv):
            opt = argv[i]
            if opt in ("-S", "-no-shutdown"):
                self.paused = self.paused or opt == "-S"
                self.no_shutdown = self.no_shutdown or opt == "-no-shutdown"
                i += 1
                continue
            if opt == "-version":
                print("QEMU emulator version %d.%d.%d (%s)" % (VERSION + (PACKAGE,)))
                sys.exit(0)
            if opt == "-help":
                # QEMU's -help lists each option at the start of a line, its value's form after it.
                print("usage: %s [options]\n" % PROG)
                for name in FLAGS + VALUED:
                    print(name if name in FLAGS else "%s value" % name)
                sys.exit(0)
            val = argv[i + 1]
            i += 2
            self._option(opt, val)

    @staticmethod
    def _first_pass(argv):
        """QEMU reads its whole command line once before acting on any option (vl.c qemu_init, "first
        pass of option parsing", in every QEMU the series was posted against): an unknown option or one
        missing its value ends it there, ahead of -version."""
        i = 1
        while i < len(argv):
            opt = argv[i]
            if opt in FLAGS:
                i += 1
                continue
            if opt not in VALUED:
                _fail("%s: invalid option" % opt)
            if i + 1 >= len(argv):
                _fail("%s: requires an argument" % opt)
            i += 2

    def _option(self, opt, val):
        if opt == "-machine" and val == "help":
            print("Supported machines are:")
            for alias, name in ALIASES.items():
                print("%-20s Simulated PC (alias of %s)" % (alias, name))
            for name in MACHINES:
                print("%-20s Simulated PC" % name)
            sys.exit(0)
        handlers = {
            "-machine": lambda v: self.machine.update(_opts(v, "type")),
            "-name": lambda v: setattr(self, "name", _opts(v, "guest")["guest"]),
            "-m": lambda v: setattr(self, "ram", _size(_opts(v, "size")["size"])),
            "-object": self._object, "-chardev": self._chardev, "-serial": self._serial,
            "-qmp": self._qmp, "-accel": lambda v: setattr(self, "accel", _opts(v, "accel")["accel"]),
            "-action": lambda v: setattr(self, "no_shutdown",
                                         self.no_shutdown or _opts(v, "x").get("shutdown") == "pause"),
            "-cpr-enable": self.cpr_enable.append,
            "-device": self._device,
            "-simulate-series": self._simulate_series,
        }
        if opt not in handlers:
            _fail("%s: invalid option" % opt)
        handlers[opt](val)

    def _simulate_series(self, val):
        # A binary shows one QMP schema whatever its command line (the modules share what one process of a
        # binary says of it with the binary's other processes): the series, given by the build, stays.
        if self._series_given:
            _fail("-simulate-series: this build simulates version %d of the series" % self.series["number"])
        self._series_given = True
        if int(val) not in SERIES:
            _fail("-simulate-series: the simulator offers series versions %s" % sorted(SERIES))
        self.series = SERIES[int(val)]

    def _object(self, val):
        o = _opts(val, "qom-type")
        if o["qom-type"] not in ("memory-backend-memfd", "memory-backend-ram"):
            _fail("-object %s: not simulated" % o["qom-type"])
        self.objects[o["id"]] = o

    def _chardev(self, val):
        o = _opts(val, "backend")
        if o["backend"] not in ("file", "socket", "null"):
            _fail("-chardev %s: not simulated" % o["backend"])
        self.chardevs[o["id"]] = o

    def _serial(self, val):
        if val.startswith("chardev:"):
            self.serial = val[len("chardev:"):]
        elif val.startswith("file:"):
            # An implicit chardev, named as QEMU names the first serial port's.
            self.chardevs["serial0"] = {"backend": "file", "id": "serial0", "path": val[5:]}
            self.serial = "serial0"
        else:
            _fail("-serial %s: not simulated" % val)

    def _qmp(self, val):
        if not val.startswith("unix:"):
            _fail("-qmp %s: not simulated" % val)
        self.qmp = val[5:].split(",")[0]
        self.chardevs["compat_monitor0"] = {"backend": "socket", "id": "compat_monitor0", "path": self.qmp,
                                            "server": "on", "monitor": "on"}

    def _device(self, val):
        o = _opts(val, "driver")
        if not o["driver"].startswith("vfio-"):
            _fail("-device %s: not simulated" % o["driver"])
        self.vfio.append(o.get("id") or o.get("host"))

    def _check(self):
        s = self.series
        self.machine["type"] = ALIASES.get(self.machine["type"], self.machine["type"])
        if self.machine["type"] not in MACHINES:
            _fail("unsupported machine type '%s'" % self.machine["type"])
        if "memfd-alloc" in self.machine and s["memory"] != "memfd-alloc":
            # V8 replaced the machine option with -cpr-enable.
            _fail("Property '%s-machine.memfd-alloc' not found" % self.machine["type"])
        if self.cpr_enable and s["memory"] != "cpr-enable":
            _fail("-cpr-enable: invalid option")
        if self.accel == "xen" and s["number"] == 8:
            _fail("xen is not simulated for series V8 (the text of its xen blocker was not confirmed)")
        for c in self.chardevs.values():
            if "close-on-cpr" in c and s["chardev_option"] != "close-on-cpr" or \
                    "reopen-on-cpr" in c and s["chardev_option"] != "reopen-on-cpr":
                _fail("-chardev %s: Invalid parameter for this series version" % c["id"])
        if self.qmp is None or self.serial not in self.chardevs:
            _fail("the simulator needs -qmp unix:PATH and a serial port on a file chardev")
        self.memfd_alloc = self.machine.get("memfd-alloc") == "on"
        backend = self.machine.get("memory-backend")
        if backend and backend not in self.objects:
            _fail("Memory backend '%s' not found" % backend)


class RAMBlock:
    """One RAM block: a memfd where the series makes one, else anonymous memory (volatile)."""

    def __init__(self, name, size, backend, memfd, shared, inherited_fd=None):
        self.name, self.size, self.backend, self.fd, self.shared = name, size, backend, None, shared
        if inherited_fd is not None:
            self.fd = inherited_fd
            os.set_inheritable(self.fd, False)
        elif memfd:
            self.fd = os.memfd_create(name, os.MFD_CLOEXEC)
            os.ftruncate(self.fd, size)
        if self.fd is not None:
            flags = mmap.MAP_SHARED if shared else mmap.MAP_PRIVATE
            self.map = mmap.mmap(self.fd, size, flags)
        else:
            self.map = mmap.mmap(-1, size, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)

    @property
    def volatile(self):
        """Its contents would not survive an exec (qemu_ram_volatile)."""
        return self.fd is None or not self.shared


def _ram_blocks(cfg):
    """(name, size, backend qom-type or None, memfd, shared) for each RAM block."""
    s = cfg.series
    backend = cfg.machine.get("memory-backend")
    if backend:
        o = cfg.objects[backend]
        kind, size, share = o["qom-type"], _size(o["size"]), o.get("share") == "on"
        main = (backend, size, kind)
    else:
        # QEMU 5.0+ creates main RAM as an implicit memory-backend-ram "pc.ram".
        main, share, kind = ("pc.ram", cfg.ram, "memory-backend-ram"), False, "memory-backend-ram"
    if s["memory"] == "memfd-alloc":
        # memfd-alloc: ram_block_add() makes a memfd for every block QEMU
        # allocates itself, shared (V5 11/25 "cpr: restart mode").
        main_memfd = kind == "memory-backend-memfd" or cfg.memfd_alloc
        main_shared = main_memfd and (share or kind == "memory-backend-ram")
        bios = (cfg.memfd_alloc, cfg.memfd_alloc)
    else:
        # V8: -cpr-enable restart gives memfds to blocks that are not backends;
        # main RAM must be a shared memfd (or file) backend.
        main_memfd, main_shared = kind == "memory-backend-memfd", kind == "memory-backend-memfd" and share
        restart = "restart" in cfg.cpr_enable
        bios = (restart, restart)
    return [main + (main_memfd, main_shared), ("pc.bios", BIOS_SIZE, None) + bios]


class CprState:
    """The fds one process hands to the next: the environment (V5) or the cpr-state memfd (V6+)."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.inherited = self._read()
        self.outgoing = {}

    def _read(self):
        if self.cfg.series["number"] == 5:
            # getenv_fd(): found by name in the environment (V5 11/25).
            return dict((k[len(FD_PREFIX):], int(v)) for k, v in os.environ.items() if k.startswith(FD_PREFIX))
        if CPR_STATE_ENV not in os.environ:
            return {}
        fd = int(os.environ.pop(CPR_STATE_ENV))
        with os.fdopen(fd, "rb") as f:
            return json.loads(f.read().rstrip(b"\0").decode() or "{}")

    def record(self, name, fd):
        """setenv_fd() in V5 (the variable is set now); V6+ collects them for save()."""
        if self.cfg.series["number"] == 5:
            os.environ[FD_PREFIX + name] = str(fd)
        else:
            self.outgoing[name] = fd

    def save(self):
        """Before exec: V6+ serialise the fds into one memfd named by env QEMU_CPR_STATE.  Returns fds to keep."""
        if self.cfg.series["number"] == 5:
            return []
        fd = os.memfd_create(CPR_STATE_ENV, 0)
        os.write(fd, json.dumps(self.outgoing).encode())
        os.lseek(fd, 0, os.SEEK_SET)
        os.environ[CPR_STATE_ENV] = str(fd)
        return [fd]


def _chardev_socket(c, inherited_fd):
    """A listening socket chardev; the series hands its fd to the next process under the chardev's
    label (the socket patch of "chardev: cpr framework"), where it is found again."""
    if inherited_fd is not None:
        sock = socket.socket(fileno=inherited_fd)
        sock.set_inheritable(False)
        return sock
    if os.path.exists(c["path"]):
        os.unlink(c["path"])
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(c["path"])
    sock.listen(1)
    return sock


class VM:
    def __init__(self, cfg):
        self.cfg = cfg
        self.state = CprState(cfg)
        inherited = self.state.inherited
        self.blocks = [RAMBlock(n, size, kind, memfd, shared, inherited.get(n) if memfd else None)
                       for n, size, kind, memfd, shared in _ram_blocks(cfg)]
        for b in self.blocks:
            if b.fd is not None:
                self.state.record(b.name, b.fd)
        self.sockets = dict((label, _chardev_socket(c, inherited.get(label))) for label, c in cfg.chardevs.items()
                            if c["backend"] == "socket" and not c.get("monitor"))
        for label, sock in self.sockets.items():
            self.state.record(label, sock.fileno())
        self.ram = self.blocks[0].map
        self.restored = self.blocks[0].fd is not None and self.blocks[0].name in inherited
        self.runstate = "prelaunch" if cfg.paused else "running"
        self.saved_mode = None
        self.lock = threading.Lock()
        self.serial = self._open_serial()
        if not self.restored:
            self._boot()
        threading.Thread(target=self._guest, daemon=True).start()

    def _open_serial(self):
        c = self.cfg.chardevs[self.cfg.serial]
        return open(c["path"], "a", buffering=1)

    def _boot(self):
        boot_id = uuid.uuid4().hex[:32].encode()
        struct.pack_into("<Qd", self.ram, _COUNTER, 0, time.time())
        self.ram[_BOOT_ID:_BOOT_ID + 32] = boot_id
        self.ram[_FILL:_FILL + _FILL_SIZE] = os.urandom(_FILL_SIZE)
        self.serial.write("CPRLAB BOOT %s\n" % boot_id.decode())
        self.serial.write("CPRLAB FILLED 0 md5 %s\n" % self._sum())

    def _sum(self):
        return hashlib.md5(self.ram[_FILL:_FILL + _FILL_SIZE]).hexdigest()

    def _guest(self):
        while True:
            time.sleep(TICK)
            with self.lock:
                if self.runstate != "running":
                    continue
                n, boot = struct.unpack_from("<Qd", self.ram, _COUNTER)
                n += 1
                struct.pack_into("<Q", self.ram, _COUNTER, n)
                line = "CPRLAB TICK %d uptime %.2f" % (n, time.time() - boot)
                if n % 5 == 0:
                    line += " md5 %s" % self._sum()
                self.serial.write(line + "\n")


class QMPFail(Exception):
    def __init__(self, desc, cls="GenericError"):
        super().__init__(desc)
        self.cls, self.desc = cls, desc


_TYPE_NAMES = {"str": "string", "bool": "boolean", "int": "integer"}
_PY_TYPES = {"str": str, "bool": bool, "int": int}


def _check_value(name, kind, value, enums):
    if isinstance(kind, list):
        if not isinstance(value, list):
            raise QMPFail("Invalid parameter type for '%s', expected: array" % name)
        for n, item in enumerate(value):
            _check_value("%s[%d]" % (name, n), kind[0], item, enums)
    elif kind in enums:
        if not isinstance(value, str):
            raise QMPFail("Invalid parameter type for '%s', expected: string" % name)
        if value not in enums[kind]:
            raise QMPFail("Parameter '%s' does not accept value '%s'" % (name, value))
    elif not isinstance(value, _PY_TYPES[kind]) or (kind == "int" and isinstance(value, bool)):
        raise QMPFail("Invalid parameter type for '%s', expected: %s" % (name, _TYPE_NAMES[kind]))


def check_arguments(members, args, enums):
    """QEMU's QAPI input visitor: members in schema order, then anything left over."""
    for member, kind in members:
        name = member.lstrip("*")
        if name not in args:
            if member.startswith("*"):
                continue
            raise QMPFail("Parameter '%s' is missing" % name)
        _check_value(name, kind, args[name], enums)
    known = set(m.lstrip("*") for m, _k in members)
    for name in args:
        if name not in known:
            raise QMPFail("Parameter '%s' is unexpected" % name)


class Monitor:
    """QMP on a UNIX socket, one client at a time, like QEMU's."""

    def __init__(self, vm, path):
        self.vm = vm
        if os.path.exists(path):
            os.unlink(path)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(1)
        self.conn = None
        self._after = None

    def send(self, obj):
        try:
            self.conn.sendall(json.dumps(obj).encode() + b"\r\n")
        except OSError:
            pass

    def event(self, name, data=None):
        now = time.time()
        msg = {"event": name, "timestamp": {"seconds": int(now), "microseconds": int((now % 1) * 1e6)}}
        if data is not None:
            msg["data"] = data
        self.send(msg)

    def serve(self):
        while True:
            self.conn = self.listener.accept()[0]
            self.send({"QMP": {"version": {"qemu": dict(zip(("major", "minor", "micro"), VERSION)),
                                           "package": PACKAGE}, "capabilities": []}})
            self._session()
            self.conn.close()

    def _session(self):
        buf = ""
        decoder = json.JSONDecoder()
        negotiated = False
        while True:
            try:
                data = self.conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            buf = (buf + data.decode()).lstrip()
            while buf:
                try:
                    msg, end = decoder.raw_decode(buf)
                except ValueError:
                    break
                buf = buf[end:].lstrip()
                cmd, args, mid = msg.get("execute"), msg.get("arguments") or {}, msg.get("id")
                if not negotiated and cmd != "qmp_capabilities":
                    self._reply(mid, error=("CommandNotFound",
                                            "Expecting capabilities negotiation with 'qmp_capabilities'"))
                    continue
                negotiated = True
                try:
                    result = self.dispatch(cmd, args)
                except QMPFail as e:
                    self._reply(mid, error=(e.cls, e.desc))
                    continue
                self._reply(mid, result=result)
                if self._after:
                    after, self._after = self._after, None
                    after()

    def _reply(self, mid, result=None, error=None):
        msg = {"return": result if result is not None else {}} if error is None else \
            {"error": {"class": error[0], "desc": error[1]}}
        if mid is not None:
            msg["id"] = mid
        self.send(msg)

    def dispatch(self, cmd, args):
        vm = self.vm
        handler, members = commands(vm.cfg.series).get(cmd, (None, None))
        if handler is None:
            raise QMPFail("The command %s has not been found" % cmd, "CommandNotFound")
        check_arguments(members, args, {"CprMode": vm.cfg.series["modes"]})
        with vm.lock:
            return handler(self, vm, args)


def cmd_capabilities(mon, vm, args):
    return {}


def cmd_version(mon, vm, args):
    return {"qemu": dict(zip(("major", "minor", "micro"), VERSION)), "package": PACKAGE}


def cmd_status(mon, vm, args):
    return {"status": vm.runstate, "running": vm.runstate == "running", "singlestep": False}


def cmd_commands(mon, vm, args):
    return [{"name": n} for n in sorted(commands(vm.cfg.series))]


def set_runstate(mon, vm, state):
    """runstate_set(), with the STOP and RESUME events of vm_stop() and vm_start()."""
    before, vm.runstate = vm.runstate, state
    if before == "running" and state != "running":
        mon.event("STOP")
    elif state == "running" and before != "running":
        mon.event("RESUME")


def cmd_stop(mon, vm, args):
    if vm.runstate == "running":
        set_runstate(mon, vm, "paused")
    return {}


def cmd_cont(mon, vm, args):
    if vm.runstate in ("shutdown", "internal-error", "guest-panicked"):
        raise QMPFail("Resetting the Virtual Machine is required")
    set_runstate(mon, vm, "running")
    return {}


def cmd_quit(mon, vm, args):
    mon._after = lambda: os._exit(0)
    return {}


def cmd_qom_get(mon, vm, args):
    path, prop = args["path"], args["property"]
    cfg = vm.cfg
    if path == "/machine":
        values = {"type": cfg.machine["type"] + "-machine"}
        if cfg.series["memory"] == "memfd-alloc":
            values["memfd-alloc"] = cfg.memfd_alloc
        if prop in values:
            return values[prop]
        raise QMPFail("Property '%s-machine.%s' not found" % (cfg.machine["type"], prop))
    raise QMPFail("Device '%s' not found" % path, "DeviceNotFound")


def _backends(vm):
    """The memory backends as query-memdev lists them (main RAM as QEMU 5.0+'s implicit pc.ram)."""
    main = vm.blocks[0]
    obj = vm.cfg.objects.get(main.name, {})
    return [(main.name, main.size, main.backend, obj.get("share") == "on")]


def cmd_qom_list(mon, vm, args):
    if args["path"] == "/objects":
        return [{"name": "type", "type": "string"}] + [
            {"name": n, "type": "child<%s>" % kind} for n, _s, kind, _sh in _backends(vm)]
    return [{"name": "type", "type": "string"}]


def cmd_machines(mon, vm, args):
    rev = dict((v, k) for k, v in ALIASES.items())
    return [dict({"name": m, "cpu-max": 255, "hotpluggable-cpus": True}, **({"alias": rev[m]} if m in rev else {}))
            for m in MACHINES]


def cmd_memdev(mon, vm, args):
    return [{"id": n, "size": size, "merge": True, "dump": True, "prealloc": False, "share": share,
             "host-nodes": [], "policy": "default"} for n, size, _kind, share in _backends(vm)]


def _chardev_filename(c):
    """query-chardev's filename, in the forms real QEMU gives (see the contract test)."""
    if c["backend"] == "socket":
        # A server socket no client has connected to is "disconnected:" (QEMU 10.0, seen here).
        return "%sunix:%s,server=on" % ("" if c.get("monitor") else "disconnected:", c["path"])
    return c["backend"]


def cmd_chardev(mon, vm, args):
    return [{"label": label, "filename": _chardev_filename(c), "frontend-open": True}
            for label, c in sorted(vm.cfg.chardevs.items())]


def cmd_schema(mon, vm, args):
    """query-qmp-schema: every command with its argument members, and the CprMode enum."""
    out = [{"name": "MigrationCapability", "meta-type": "enum", "values": ["xbzrle", "events"]},
           {"name": "CprMode", "meta-type": "enum", "values": vm.cfg.series["modes"]},
           {"name": "str", "meta-type": "builtin", "json-type": "string"},
           {"name": "[str]", "meta-type": "array", "element-type": "str"}]
    for n, (name, (_handler, members)) in enumerate(sorted(commands(vm.cfg.series).items())):
        arg_type = "a%d" % n
        out.append({"name": name, "meta-type": "command", "arg-type": arg_type, "ret-type": "any"})
        out.append({"name": arg_type, "meta-type": "object", "members": [
            dict({"name": m.lstrip("*"), "type": "[%s]" % k[0] if isinstance(k, list) else k},
                 **({"default": None} if m.startswith("*") else {})) for m, k in members]})
    return out


def cmd_kvm(mon, vm, args):
    return {"enabled": False, "present": False}


def cmd_migrate_query(mon, vm, args):
    return {}


def cmd_info(mon, vm, args):
    """cprinfo (V2-V5): the modes this build supports (V5 03/25, 12/25)."""
    return {"modes": vm.cfg.series["modes"]}


def _volatile_blocks(vm):
    return [b for b in vm.blocks if b.volatile]


def _not_capable_chardevs(vm):
    option = vm.cfg.series["chardev_option"]
    return [(label, _chardev_filename(c)) for label, c in sorted(vm.cfg.chardevs.items())
            if c["backend"] not in CPR_CAPABLE_BACKENDS and c.get(option) != "on"]


def _v8_blockers(vm):
    """V8 reports the first registered blocker of restart mode at cpr-save."""
    if "restart" not in vm.cfg.cpr_enable:
        return "cpr mode is not enabled.  Use -cpr-enable."
    for b in _volatile_blocks(vm):
        if b.backend:
            return ("Memory region %s is volatile. A memory-backend-memfd or memory-backend-file with share=on "
                    "is required." % b.name)
        return "Memory region %s is volatile. -cpr-enable restart is required." % b.name
    for label, filename in _not_capable_chardevs(vm):
        return "chardev %s -> %s does not allow cpr. See reopen-on-cpr." % (label, filename)
    if vm.cfg.vfio:
        # V8: a blocker for a container without VFIO_UPDATE_VADDR; this machine has none.
        return "VFIO container does not support VFIO_UPDATE_VADDR or VFIO_UNMAP_ALL"
    return None


def cmd_save(mon, vm, args):
    """cprsave (V5 02/25, 12/25), cpr-save (V6 06/27, 14/27; V8 06/39, 22/39)."""
    series, mode = vm.cfg.series, args["mode"]
    path = args.get("file", args.get("filename"))
    number = series["number"]
    if number == 8 and mode == "restart":
        blocker = _v8_blockers(vm)
        if blocker:
            raise QMPFail(blocker)
    elif number == 6 or mode == "reboot":
        # V1-V5 check volatile RAM in reboot mode only; V6/V7 in every mode.
        for b in _volatile_blocks(vm):
            raise QMPFail("Memory region %s is volatile" % b.name)
    try:
        fd = os.open(path, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    except OSError as e:
        # The series' text for this failure was not confirmed; QEMU's usual form.
        raise QMPFail("Could not open '%s': %s" % (path, e.strerror))
    saved = vm.runstate
    # vm_stop(RUN_STATE_SAVE_VM) changes the runstate only of a running VM.
    if vm.runstate == "running":
        set_runstate(mon, vm, "save-vm")
    with os.fdopen(fd, "wb") as f:
        f.write(MAGIC + json.dumps({"runstate": saved, "machine": vm.cfg.machine["type"]}).encode())
    vm.saved_mode = mode
    return {}


def cmd_exec(mon, vm, args):
    """cprexec (V5 11/25, 20/25), cpr-exec (V6 14/27, V8 20/39)."""
    series = vm.cfg.series
    number, name, argv = series["number"], series["exec"][0], args["argv"]
    save_name = series["save"][0]
    if vm.cfg.accel == "xen" and number != 8:
        raise QMPFail("xen does not support %s" % name)
    if vm.runstate != "save-vm":
        raise QMPFail("runstate is not save-vm")
    if vm.saved_mode != "restart":
        raise QMPFail("%s requires %s with restart mode" % (name, save_name))
    if number == 5:
        for label, filename in _not_capable_chardevs(vm):
            raise QMPFail("error: chardev %s -> %s is not capable of cpr" % (label, filename))
    if vm.cfg.vfio and number != 8:
        raise QMPFail("VFIO container does not support VFIO_UPDATE_VADDR or VFIO_UNMAP_ALL")
    if not argv:
        raise QMPFail("qemu_system_exec_request: argv[0] is NULL")
    keep = [b.fd for b in vm.blocks if b.fd is not None] + [s.fileno() for s in vm.sockets.values()]
    # The main loop exec's after the command has returned (V5 08/25, V6 12/27).
    mon._after = lambda: _exec(mon, vm, argv, keep)
    return {}


def _exec(mon, vm, argv, keep):
    keep = keep + vm.state.save()
    for fd in keep:
        os.set_inheritable(fd, True)  # qemu_clr_cloexec() on each preserved fd
    vm.serial.flush()
    try:
        os.execv(argv[0], argv)
    except OSError as e:
        if vm.cfg.series["number"] == 5:
            # error_setg_errno(&error_fatal, errno, "execvp failed") (V5 08/25): no path, exit(1).
            sys.stderr.write("%s: execvp failed: %s\n" % (PROG, e.strerror))
            sys.stderr.flush()
            os._exit(1)
        # V6 12/27: error_report, then the shutdown path: QEMU exits unless its
        # shutdown action is pause, where vm_stop(RUN_STATE_SHUTDOWN) leaves a
        # VM that is not running in its runstate (here save-vm).
        sys.stderr.write("%s: execvp %s failed: %s\n" % (PROG, argv[0], e.strerror))
        sys.stderr.flush()
        mon.event("SHUTDOWN", {"guest": False, "reason": "host-error"})
        if not vm.cfg.no_shutdown:
            os._exit(0)


def cmd_load(mon, vm, args):
    """cprload (V5 02/25), cpr-load (V6 06/27, V8 06/39)."""
    series = vm.cfg.series
    number, name, path = series["number"], series["load"][0], args.get("file", args.get("filename"))
    if number == 8 and args["mode"] not in vm.cfg.cpr_enable:
        raise QMPFail("cpr mode is not enabled.  Use -cpr-enable.")
    if vm.runstate == "running":
        raise QMPFail("%s called for a running VM" % name)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise QMPFail("Could not open '%s': %s" % (path, e.strerror))
    if not data.startswith(MAGIC):
        raise QMPFail(("error: %s is not a vmstate file" if number == 5 else "%s is not a vmstate file") % path)
    saved = json.loads(data[len(MAGIC):].decode())["runstate"]
    # vm_start() if it ran at cprsave, else runstate_set(the saved runstate).
    set_runstate(mon, vm, saved)
    return {}


def commands(series):
    """{name: (handler, QAPI members)} for this series version."""
    table = dict((name, (globals()[_HANDLERS[name]], members)) for name, members in COMMON_ARGS.items())
    for key, handler in (("save", cmd_save), ("exec", cmd_exec), ("load", cmd_load)):
        name, members = series[key]
        table[name] = (handler, members)
    if series["info"]:
        table[series["info"]] = (cmd_info, [])
    return table


_HANDLERS = {
    "qmp_capabilities": "cmd_capabilities", "query-version": "cmd_version", "query-status": "cmd_status",
    "query-commands": "cmd_commands", "stop": "cmd_stop", "cont": "cmd_cont", "quit": "cmd_quit",
    "qom-get": "cmd_qom_get", "qom-list": "cmd_qom_list", "query-machines": "cmd_machines",
    "query-memdev": "cmd_memdev", "query-qmp-schema": "cmd_schema", "query-kvm": "cmd_kvm",
    "query-migrate": "cmd_migrate_query", "query-chardev": "cmd_chardev",
}


def main():
    cfg = Config(sys.argv)
    vm = VM(cfg)
    Monitor(vm, cfg.qmp).serve()


if __name__ == "__main__":
    main()
