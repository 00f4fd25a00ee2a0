"""SIMULATOR of a QEMU build carrying the live-update series (cprsave / cprexec / cprload).

No QEMU build with that series can be had here, so this program stands in for
one in tests, behaving as the series does (the seed patch, and
shared/docs/cpr-reference.md section 1), not as is convenient:

- QMP on a UNIX socket, one client at a time: greeting, qmp_capabilities,
  query-version, query-status, query-commands, stop, cont, quit, the facts
  queries cpr.qemu reads, and the three cpr commands, spelled cprsave/cprexec/
  cprload or (``-simulate-spelling late``, the series from V6 on) cpr-save/
  cpr-exec/cpr-load.
- Guest RAM is real memory: with ``-machine memfd-alloc=on`` one memfd per RAM
  block, named after the block, recorded in the environment as the series did
  (``QEMU_FD_<block>=<fd>`` for the early spelling; one "cpr-state" memfd named
  by ``QEMU_CPR_STATE`` for the late one); without it anonymous (volatile) memory.
- The "guest" is a thread that keeps a counter and its boot time inside RAM
  and prints CPRLAB lines to the serial log, like the lab's Linux guest.
- cprsave refuses volatile RAM, stops the guest into runstate save-vm and writes
  a device-state file with a magic header, mode 0600; cprexec refuses Xen and a
  runstate other than save-vm, clears CLOEXEC on the recorded fds and really
  exec's the given argv (replying first, as the series' exec request does); the
  new process finds its memfds from the environment and maps them at new
  addresses, starts paused (-S) and waits; cprload refuses a running VM,
  checks the header, loads, and resumes only if the guest ran before cprsave.
- A failed exec ends the process, as in the series: the guest is lost.

It runs as the ELF built by tests/lab/provision.sh (which embeds Python), so
/proc/PID/exe is the simulated "QEMU binary" itself.
"""

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
FD_PREFIX = "QEMU_FD_"
CPR_STATE_ENV = "QEMU_CPR_STATE"
MACHINES = ["pc-q35-6.2", "pc-i440fx-6.2"]
ALIASES = {"q35": "pc-q35-6.2", "pc": "pc-i440fx-6.2"}
BIOS_SIZE = 256 * 1024
TICK = 0.25

# RAM layout: [0:8] counter, [8:16] boot time (double), [16:52] boot id, [4096:] filled block
_COUNTER, _BOOT_TIME, _BOOT_ID, _FILL = 0, 8, 16, 4096
_FILL_SIZE = 64 * 1024


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


def _size(text):
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    text = text.strip().lower().rstrip("b")
    if text and text[-1] in units:
        return int(text[:-1]) * units[text[-1]]
    return int(text) << 20  # QEMU's -m defaults to MiB


class Config:
    def __init__(self, argv):
        self.argv = argv
        self.name = None
        self.machine = {"type": "q35"}
        self.ram = 128 << 20
        self.qmp = None
        self.serial = None
        self.paused = False
        self.accel = "tcg"
        self.spelling = "early"
        i = 1
        while i < len(argv):
            opt, val = argv[i], argv[i + 1] if i + 1 < len(argv) else None
            i += 2
            if opt == "-S":
                self.paused = True
                i -= 1
            elif opt == "-version":
                print("QEMU emulator version %d.%d.%d (%s)" % (VERSION + (PACKAGE,)))
                sys.exit(0)
            elif opt == "-machine" and val == "help":
                print("Supported machines are:")
                for alias, name in ALIASES.items():
                    print("%-20s Simulated PC (alias of %s)" % (alias, name))
                for name in MACHINES:
                    print("%-20s Simulated PC" % name)
                sys.exit(0)
            elif opt == "-machine":
                self.machine.update(_opts(val, "type"))
            elif opt == "-name":
                self.name = _opts(val, "guest")["guest"]
            elif opt == "-m":
                self.ram = _size(_opts(val, "size")["size"])
            elif opt == "-qmp":
                self.qmp = val[5:].split(",")[0] if val.startswith("unix:") else None
            elif opt == "-serial":
                self.serial = val[5:] if val.startswith("file:") else None
            elif opt == "-accel":
                self.accel = _opts(val, "accel")["accel"]
            elif opt == "-simulate-spelling":
                self.spelling = val
            else:
                sys.exit("qemu-system-x86_64: %s: invalid option" % opt)
        self.machine["type"] = ALIASES.get(self.machine["type"], self.machine["type"])
        if self.machine["type"] not in MACHINES:
            sys.exit("qemu-system-x86_64: unsupported machine type '%s'" % self.machine["type"])
        if self.qmp is None or self.serial is None:
            sys.exit("qemu-system-x86_64: the simulator needs -qmp unix:PATH and -serial file:PATH")
        self.memfd_alloc = self.machine.get("memfd-alloc") == "on"
        names = {"early": ("cprsave", "cprexec", "cprload"), "late": ("cpr-save", "cpr-exec", "cpr-load")}
        self.save_cmd, self.exec_cmd, self.load_cmd = names[self.spelling]


class RAMBlock:
    """Guest RAM: a memfd named after the block (memfd-alloc=on), else anonymous memory."""

    def __init__(self, name, size, memfd_alloc, inherited_fd=None):
        self.name, self.size, self.fd = name, size, None
        if inherited_fd is not None:
            self.fd = inherited_fd
            os.set_inheritable(self.fd, False)
        elif memfd_alloc:
            self.fd = os.memfd_create(name, os.MFD_CLOEXEC)
            os.ftruncate(self.fd, size)
        if self.fd is not None:
            self.map = mmap.mmap(self.fd, size, mmap.MAP_SHARED)
        else:
            self.map = mmap.mmap(-1, size, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)


def _blocks(cfg):
    return [("pc.ram", cfg.ram), ("pc.bios", BIOS_SIZE)]


def _inherited_fds(cfg):
    """The memfds a previous process recorded in the environment, as the series finds them."""
    if cfg.spelling == "early":
        return dict((k[len(FD_PREFIX):], int(v)) for k, v in os.environ.items() if k.startswith(FD_PREFIX))
    if CPR_STATE_ENV not in os.environ:
        return {}
    fd = int(os.environ[CPR_STATE_ENV])
    with os.fdopen(os.dup(fd), "rb") as f:
        f.seek(0)
        state = json.loads(f.read().rstrip(b"\0").decode() or "{}")
    os.close(fd)
    del os.environ[CPR_STATE_ENV]
    return state.get("fds", {})


def _record_fds(cfg, blocks):
    """setenv_fd(name, fd), or (late spelling) one cpr-state memfd listing them."""
    if not cfg.memfd_alloc:
        return
    if cfg.spelling == "early":
        for b in blocks:
            os.environ[FD_PREFIX + b.name] = str(b.fd)
        return
    state = os.memfd_create("cpr-state", os.MFD_CLOEXEC)
    os.write(state, json.dumps({"fds": dict((b.name, b.fd) for b in blocks)}).encode())
    os.environ[CPR_STATE_ENV] = str(state)


class VM:
    def __init__(self, cfg):
        self.cfg = cfg
        inherited = _inherited_fds(cfg)
        self.blocks = [RAMBlock(n, s, cfg.memfd_alloc, inherited.get(n)) for n, s in _blocks(cfg)]
        self.ram = self.blocks[0].map
        self.restored = bool(inherited)
        _record_fds(cfg, self.blocks)
        self.runstate = "prelaunch" if cfg.paused else "running"
        self.was_running_at_save = None
        self.saved_restart = False
        self.lock = threading.Lock()
        self.events = []
        self.serial = open(cfg.serial, "a", buffering=1)
        if not self.restored:
            self._boot()
        threading.Thread(target=self._guest, daemon=True).start()

    def _boot(self):
        boot_id = uuid.uuid4().hex[:32].encode()
        struct.pack_into("<Qd", self.ram, _COUNTER, 0, time.time())
        self.ram[_BOOT_ID:_BOOT_ID + 32] = boot_id
        self.ram[_FILL:_FILL + _FILL_SIZE] = os.urandom(_FILL_SIZE)
        self.serial.write("CPRLAB BOOT %s\n" % boot_id.decode())
        self.serial.write("CPRLAB FILLED 0 md5 %s\n" % self._sum())

    def _sum(self):
        import hashlib
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

    def set_runstate(self, state, event=None):
        self.runstate = state
        if event:
            self.events.append(event)


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
                after = getattr(self, "_after", None)
                if after:
                    self._after = None
                    after()

    def _reply(self, mid, result=None, error=None):
        msg = {"return": result if result is not None else {}} if error is None else \
            {"error": {"class": error[0], "desc": error[1]}}
        if mid is not None:
            msg["id"] = mid
        self.send(msg)

    def dispatch(self, cmd, args):
        vm, cfg = self.vm, self.vm.cfg
        handler = COMMANDS.get(cmd) or {cfg.save_cmd: cmd_save, cfg.exec_cmd: cmd_exec,
                                        cfg.load_cmd: cmd_load}.get(cmd)
        if handler is None:
            raise QMPFail("CommandNotFound", "The command %s has not been found" % cmd)
        with vm.lock:
            return handler(self, vm, args)


class QMPFail(Exception):
    def __init__(self, cls, desc):
        super().__init__(desc)
        self.cls, self.desc = cls, desc


def cmd_capabilities(mon, vm, args):
    return {}


def cmd_version(mon, vm, args):
    return {"qemu": dict(zip(("major", "minor", "micro"), VERSION)), "package": PACKAGE}


def cmd_status(mon, vm, args):
    return {"status": vm.runstate, "running": vm.runstate == "running", "singlestep": False}


def cmd_commands(mon, vm, args):
    cfg = vm.cfg
    return [{"name": n} for n in sorted(list(COMMANDS) + [cfg.save_cmd, cfg.exec_cmd, cfg.load_cmd])]


def cmd_stop(mon, vm, args):
    if vm.runstate == "running":
        vm.set_runstate("paused")
        mon.event("STOP")
    return {}


def cmd_cont(mon, vm, args):
    if vm.runstate == "inmigrate":
        raise QMPFail("GenericError", "Migration is not finalized yet")
    if vm.runstate != "running":
        vm.set_runstate("running")
        mon.event("RESUME")
    return {}


def cmd_quit(mon, vm, args):
    mon._after = lambda: os._exit(0)
    return {}


def cmd_qom_get(mon, vm, args):
    path, prop = args.get("path"), args.get("property")
    if path == "/machine":
        values = {"type": vm.cfg.machine["type"] + "-machine", "memfd-alloc": vm.cfg.memfd_alloc}
        if prop in values:
            return values[prop]
        raise QMPFail("GenericError", "Property '%s-machine.%s' not found" % (vm.cfg.machine["type"], prop))
    raise QMPFail("DeviceNotFound", "Device '%s' not found" % path)


def cmd_qom_list(mon, vm, args):
    return [{"name": "type", "type": "string"}]


def cmd_machines(mon, vm, args):
    rev = dict((v, k) for k, v in ALIASES.items())
    return [dict({"name": m, "cpu-max": 255, "hotpluggable-cpus": True}, **({"alias": rev[m]} if m in rev else {}))
            for m in MACHINES]


def cmd_memdev(mon, vm, args):
    return []  # -m RAM: no memory-backend objects, as in QEMU 6.2 without -object


def cmd_schema(mon, vm, args):
    return [{"name": "MigrationCapability", "meta-type": "enum", "values": ["xbzrle", "events"]}]


def cmd_kvm(mon, vm, args):
    return {"enabled": False, "present": False}


def cmd_migrate_query(mon, vm, args):
    return {}


def cmd_save(mon, vm, args):
    name = vm.cfg.save_cmd
    if args.get("mode") != "restart":
        raise QMPFail("GenericError", "%s: only mode restart is simulated" % name)
    for b in vm.blocks:
        if b.fd is None:
            raise QMPFail("GenericError", "Memory region %s is volatile" % b.name)
    was_running = vm.runstate == "running"
    if was_running:
        mon.event("STOP")
    vm.set_runstate("save-vm")
    path = args["file"]
    try:
        fd = os.open(path, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC + json.dumps({"was_running": was_running, "machine": vm.cfg.machine["type"]}).encode())
    except OSError as e:
        if was_running:
            vm.set_runstate("running")
            mon.event("RESUME")
        raise QMPFail("GenericError", "Could not open '%s': %s" % (path, e.strerror))
    vm.saved_restart = True
    return {}


def cmd_exec(mon, vm, args):
    name = vm.cfg.exec_cmd
    if vm.cfg.accel == "xen":
        raise QMPFail("GenericError", "xen does not support %s" % name)
    if vm.runstate != "save-vm":
        raise QMPFail("GenericError", "runstate is not save-vm")
    if vm.cfg.spelling == "late" and not vm.saved_restart:
        raise QMPFail("GenericError", "cpr-exec requires cpr-save with restart mode")
    argv = args["args"]
    keep = [b.fd for b in vm.blocks]
    if CPR_STATE_ENV in os.environ:
        keep.append(int(os.environ[CPR_STATE_ENV]))

    def exec_now():
        for fd in keep:
            os.set_inheritable(fd, True)  # qemu_clr_cloexec
        vm.serial.flush()
        try:
            os.execv(argv[0], argv)
        except OSError as e:
            # The series falls into QEMU's shutdown path here: the guest is lost.
            sys.stderr.write("qemu-system-x86_64: %s: execvp %s failed: %s\n" % (name, argv[0], e.strerror))
            os._exit(1)
    mon._after = exec_now
    return {}


def cmd_load(mon, vm, args):
    name = vm.cfg.load_cmd
    if vm.runstate == "running":
        raise QMPFail("GenericError", "%s called for a running VM" % name.replace("cprload", "cpr-load"))
    path = args["file"]
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise QMPFail("GenericError", "Could not open '%s': %s" % (path, e.strerror))
    if not data.startswith(MAGIC):
        raise QMPFail("GenericError", "%s is not a vmstate file" % path)
    state = json.loads(data[len(MAGIC):].decode())
    if state["was_running"]:
        vm.set_runstate("running")
        mon.event("RESUME")
    else:
        vm.set_runstate("paused")
    return {}


COMMANDS = {
    "qmp_capabilities": cmd_capabilities, "query-version": cmd_version, "query-status": cmd_status,
    "query-commands": cmd_commands, "stop": cmd_stop, "cont": cmd_cont, "quit": cmd_quit,
    "qom-get": cmd_qom_get, "qom-list": cmd_qom_list, "query-machines": cmd_machines,
    "query-memdev": cmd_memdev, "query-qmp-schema": cmd_schema, "query-kvm": cmd_kvm,
    "query-migrate": cmd_migrate_query,
}


def main():
    cfg = Config(sys.argv)
    vm = VM(cfg)
    Monitor(vm, cfg.qmp).serve()


if __name__ == "__main__":
    main()
