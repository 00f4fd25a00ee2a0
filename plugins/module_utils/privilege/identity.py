# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Who a QEMU process runs as, and how to start its cpr-transfer successor as the same.

The modules run as root; a VM's QEMU often does not.  The new QEMU of
cpr-transfer must get exactly what the old one has: effective uid, gid and
supplementary groups, working directory, environment, umask, every cgroup (v1
and v2), no-new-privs, and how the kernel schedules and limits it
(scheduling.py: policy, nice, CPUs, OOM score adjustment, resource limits).
What cannot be reproduced (an LSM label, capabilities other than a plain setuid
gives, a systemd service whose main process QEMU is, a PID or time namespace of
its own) is reported by
``problems`` so that the caller refuses before the pause.

The new QEMU must be the PID the caller starts, and the modules start VMs from
threads, so no ``preexec_fn``: the caller runs a small stage of its own Python
(``sys.executable -I -c STAGE``) that joins the cgroups and the old QEMU's
network, IPC, UTS and cgroup namespaces as root (a tap, a listening socket
is found in its network namespace), sets umask, no-new-privs and the
scheduling, gives QEMU a session keyring of its own (not the module's, to
which an SSH login links root's keys), and then:
- without a launcher: chdir, setgroups, setresgid, the resource limits,
  setresuid, execve QEMU with the VM's environment;
- with a launcher (a command prefix that needs root: ``chroot``, ``unshare``,
  ``nsenter``): exec the launcher with the module's environment (the VM's
  ``LD_PRELOAD`` must never reach a root process) followed by coreutils
  ``env -C CWD prlimit --LIMIT=S:H... -- chroot --userspec=U:G --groups=...
  --skip-chdir / env -i -- K=V... QEMU ARGV``, so the identity is dropped and
  the VM's limits set inside the launcher's root, just before QEMU (coreutils
  and util-linux are in every Debian root; ``env -C`` needs coreutils 8.28+).
  That tail shows the VM's environment in ``env``'s command line (readable by
  every local user) for the moment between ``chroot`` and QEMU's exec.
Every step that fails ends the stage with status 126 and its reason on stderr:
QEMU never runs with part of the identity.

Paths: the working directory is kept as the old QEMU sees it (relative to its
own root), like every path of its argv: a launcher must give QEMU the same view
of it.  A cwd that cannot be named that way (deleted, or outside the process's
root) is a problem, not a guess.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import contextlib
import errno
import json
import os
import re
import shutil
import subprocess
import sys

from ansible_collections.cpr.qemu.plugins.module_utils import process
from ansible_collections.cpr.qemu.plugins.module_utils.privilege import scheduling, syscalls

# The environment variable that carries the stage's spec (environ is readable
# by root and the process's owner only; a command line by everyone).
SPEC_VAR = "CPR_QEMU_IDENTITY"
# execve's limit on one environment string (MAX_ARG_STRLEN), with headroom.
SPEC_MAX = 120000
# QEMU options that drop privileges or chroot after start-up.  Tried on QEMU 10.0
# and 11.1: a QEMU that already runs unprivileged dies on them ("Failed to
# initgroups", "Failed to setgroups(1, ...)", "chroot failed").  -runas and
# -chroot are gone since 10.0 ("invalid option"), but older QEMUs have them.
PRIVILEGE_OPTIONS = ("runas", "chroot")
PRIVILEGE_KEYS = ("user", "chroot")
# The namespaces the new QEMU joins where the old one's differ from the module's, with setns(2)'s flag for each;
# root joins only namespaces its own user namespace owns. The mount namespace is the launcher's to give
# (new_root); a PID or time namespace cannot be entered by the process itself (setns makes its children join),
# and in a user namespace of its own the VM's user may hold every capability: a QEMU in one is refused.
JOINED_NAMESPACES = {"net": 0x40000000, "ipc": 0x08000000, "uts": 0x04000000, "cgroup": 0x02000000}
REFUSED_NAMESPACES = {"pid": "its PID namespace (the new QEMU's PID, and the pidfile it writes, would be "
                             "another namespace's)",
                      "time": "its time namespace (the new QEMU's clocks would read differently)",
                      "user": "its user namespace (where its user may hold every capability)"}
CAP_SYS_ADMIN = 21

STAGE = r"""
import ctypes, errno, json, os, resource, signal, sys

libc = ctypes.CDLL(None, use_errno=True)

def fail(step, err):
    sys.stderr.write("cpr.qemu identity launcher: %s: %s\n" % (step, err))
    sys.stderr.flush()
    os._exit(126)

def step(name, fn, *args):
    try:
        return fn(*args)
    except Exception as e:
        fail(name, e)

def checked(result, tolerated=()):
    if result < 0 and ctypes.get_errno() not in tolerated:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))

def write(path, text):
    with open(path, "w") as f:
        f.write(text)

def join(path):
    write(path, "%d\n" % os.getpid())

def oom_score_adj(value):
    # Written even where it is the value already: a write with CAP_SYS_RESOURCE also sets the floor below
    # which the process cannot go, as the old QEMU's was set. Without that capability a write below the
    # inherited floor is refused, which is fine where the value is already the one wanted.
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("%d\n" % value)
    except PermissionError:
        with open("/proc/self/oom_score_adj") as f:
            if int(f.read()) != value:
                raise

def affinity(cpus):
    # Only where it differs: an explicit mask would stop following the cpuset's later changes.
    if os.sched_getaffinity(0) != set(cpus):
        os.sched_setaffinity(0, cpus)

def rlimit(name, soft, hard):
    which = getattr(resource, "RLIMIT_" + name)
    # /proc shows limits unsigned; setrlimit takes them signed (RLIM_INFINITY is -1).
    wanted = tuple(resource.RLIM_INFINITY if v is None else v - (1 << 64) if v >= 1 << 63 else v
                   for v in (soft, hard))
    if resource.getrlimit(which) != wanted:
        resource.setrlimit(which, wanted)

# Python ignores both; an ignored signal stays ignored across exec, and QEMU must get them as its
# predecessor did.
signal.signal(signal.SIGPIPE, signal.SIG_DFL)
signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
spec = json.loads(os.environ.pop(sys.argv[1]))
if spec["gate"] is not None:
    # The module records this PID before it opens the gate: if it dies first, nothing starts unrecorded.
    if step("wait for the module", os.read, spec["gate"], 1) != b"1":
        fail("wait for the module", "it is gone")
    os.close(spec["gate"])
for path in spec["cgroup_procs"]:
    step("join cgroup %s" % path, join, path)
for kind, fd, flag in spec["namespaces"]:
    step("join the old QEMU's %s namespace" % kind, lambda: checked(libc.setns(fd, flag)))
    os.close(fd)
step("umask", os.umask, spec["umask"])
if spec["no_new_privs"]:
    step("no_new_privs", lambda: checked(libc.prctl(38, 1, 0, 0, 0)))
# The scheduling below passes through a launcher to QEMU, and binds the launcher too: nothing in it is more than
# the VM's user could give its own process (the limits, which are, come after the launcher).
sched = spec["scheduling"]
policy = sched["policy"] | (os.SCHED_RESET_ON_FORK if sched["reset_on_fork"] else 0)
step("scheduling policy %d, priority %d" % (policy, sched["rt_priority"]), os.sched_setscheduler, 0, policy,
     os.sched_param(sched["rt_priority"]))
step("nice %d" % sched["nice"], os.setpriority, os.PRIO_PROCESS, 0, sched["nice"])
if sched["cpus"] is not None:
    step("CPU affinity %s" % sched["cpus"], affinity, sched["cpus"])
# The I/O priority and the no-THP flag are set either way: the module's own would otherwise pass on.
step("I/O priority %#x" % spec["io_priority"],
     lambda: checked(libc.syscall(spec["syscalls"]["ioprio_set"], 1, 0, spec["io_priority"])))
step("oom_score_adj %d" % sched["oom_score_adj"], oom_score_adj, sched["oom_score_adj"])
step("coredump_filter %#x" % sched["coredump_filter"], write, "/proc/self/coredump_filter",
     "%#x\n" % sched["coredump_filter"])
step("THP off" if sched["thp_disabled"] else "THP on",  # prctl(PR_SET_THP_DISABLE), kept over exec
     lambda: checked(libc.prctl(41, int(sched["thp_disabled"]), 0, 0, 0)))
# keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL): a session keyring of its own, empty. The module's own (an SSH
# login's links root's user keyring) would let QEMU read root's keys. ENOSYS: a kernel without keyrings.
step("own session keyring", lambda: checked(libc.syscall(spec["syscalls"]["keyctl"], 1, None), (errno.ENOSYS,)))
if spec["launcher"]:
    # The limits are set in the tail, after the launcher: they are the VM user's to choose, and must not
    # bind a root launcher (a file size limit would cut what it writes).
    step("exec %s" % spec["argv"][0], os.execvp, spec["argv"][0], spec["argv"])
step("chdir %s" % spec["cwd"], os.chdir, spec["cwd"])
step("setgroups", os.setgroups, spec["groups"])
step("setresgid", os.setresgid, spec["gid"], spec["gid"], spec["gid"])
for name, (soft, hard) in sorted(sched["limits"].items()):
    step("limit %s to %s:%s" % (name, soft, hard), rlimit, name, soft, hard)
step("setresuid", os.setresuid, spec["uid"], spec["uid"], spec["uid"])
step("exec %s" % spec["argv"][0], os.execve, spec["argv"][0], spec["argv"], spec["env"])
"""


class IdentityError(Exception):
    """The identity cannot be captured or a launch command cannot be built for it."""


# ---------------------------------------------------------------- capture

def _read(path, mode="r"):
    with open(path, mode) as f:
        return f.read()


def _environ(pid, proc):
    raw = _read("%s/%d/environ" % (proc, pid), "rb")
    return [os.fsdecode(e) for e in raw.split(b"\0") if e]


def _cgroups(pid, proc):
    """Each hierarchy the process is in: 'ID:controllers:path' (v2 is '0::path')."""
    found = []
    for line in _read("%s/%d/cgroup" % (proc, pid)).splitlines():
        hid, controllers, path = line.split(":", 2)
        found.append({"hierarchy": int(hid), "controllers": [c for c in controllers.split(",") if c],
                      "path": path})
    return found


def _lsm_label(pid, proc):
    """The LSM's label of the process, None without one (no LSM: EINVAL) or when unconfined."""
    try:
        label = _read("%s/%d/attr/current" % (proc, pid), "rb")
    except OSError as e:
        if e.errno in (errno.EINVAL, errno.ENOENT, errno.EACCES, errno.EPERM, errno.EOPNOTSUPP):
            return None
        raise
    label = os.fsdecode(label).strip("\0\n ")
    return None if label in ("", "unconfined") else label


def _cwd(pid, proc, root):
    """The working directory as the process names it (relative to its own root), or None
    when that name does not lead to the same directory (deleted, outside its root)."""
    seen = os.readlink("%s/%d/cwd" % (proc, pid))
    if root != "/":
        if seen != root and not seen.startswith(root.rstrip("/") + "/"):
            return None
        seen = seen[len(root.rstrip("/")):] or "/"
    try:
        here = os.stat("%s/%d/cwd" % (proc, pid))
        named = os.stat("%s/%d/root%s" % (proc, pid, seen))
    except OSError:
        return None
    return seen if (here.st_dev, here.st_ino) == (named.st_dev, named.st_ino) else None


# A systemd unit name (systemd.unit(5)): whoever may name a cgroup (a delegated user manager) could
# otherwise hand systemctl an option, such as --host=USER@HOST, that makes root run ssh.
_UNIT_NAME = re.compile(r"^[A-Za-z0-9:_.\\@][A-Za-z0-9:_.\\@-]{0,250}\.service$")


def service_of(cgroups):
    """The systemd service whose cgroup (or a cgroup below it) holds the process, or None."""
    for cg in cgroups:
        if cg["controllers"] == ["name=systemd"] or (cg["hierarchy"] == 0 and not cg["controllers"]):
            units = [part for part in cg["path"].split("/") if part.endswith(".service")]
            if units:
                return units[-1]
    return None


def unit_main_pid(unit):
    """The unit's MainPID as systemd says, or None when systemd cannot be asked (or the name is no unit's)."""
    systemctl = shutil.which("systemctl", path="/usr/sbin:/usr/bin:/sbin:/bin")
    if not systemctl or not _UNIT_NAME.match(unit):
        return None
    try:
        out = subprocess.run([systemctl, "show", "-p", "MainPID", "--value", "--", unit], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=10, check=False,
                             env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}, cwd="/")
    except (OSError, subprocess.SubprocessError):
        return None
    value = out.stdout.decode(errors="replace").strip()
    return int(value) if out.returncode == 0 and value.isdigit() else None


def capture(pid, proc="/proc"):
    """Everything the new QEMU must share with process pid, as a JSON-able dict."""
    status = process.status(pid, proc)
    root = os.readlink("%s/%d/root" % (proc, pid))
    cgroups = _cgroups(pid, proc)
    unit = service_of(cgroups)
    return {
        "pid": pid,
        "uid": int(status["Uid"][1]),
        "gid": int(status["Gid"][1]),
        "groups": [int(g) for g in status.get("Groups", [])],
        "umask": int(status["Umask"][0], 8),
        "no_new_privs": status.get("NoNewPrivs", ["0"])[0] == "1",
        # Capability sets as hex strings, the way /proc shows them.
        "caps": {k: status.get(k, ["0"])[0] for k in ("CapPrm", "CapEff", "CapAmb")},
        "root": root,
        "cwd": _cwd(pid, proc, root),
        "cwd_seen": os.readlink("%s/%d/cwd" % (proc, pid)),
        "environ": _environ(pid, proc),
        "cgroups": cgroups,
        "lsm_label": _lsm_label(pid, proc),
        "systemd_unit": unit,
        "systemd_main_pid": unit_main_pid(unit) if unit else None,
        "scheduling": scheduling.capture(pid, status, proc),
        "namespaces": _namespaces(pid, proc),
    }


def _namespaces(pid, proc):
    """The namespaces the new QEMU joins or that refuse it, as /proc names them ('net:[4026531840]'); a kind
    the kernel does not have is left out."""
    found = {}
    for kind in sorted(JOINED_NAMESPACES) + sorted(REFUSED_NAMESPACES):
        try:
            found[kind] = os.readlink("%s/%d/ns/%s" % (proc, pid, kind))
        except FileNotFoundError:
            pass
    return found


def namespace(pid, kind):
    """Process PID's (or "self"'s) namespace of KIND as /proc names it ('net:[4026531840]'), or None where it
    is gone or the kernel has no such kind."""
    try:
        return os.readlink("/proc/%s/ns/%s" % (pid, kind))
    except (FileNotFoundError, ProcessLookupError):
        return None


def namespaces_to_join(ident):
    """The kinds of namespace in which the old QEMU is not where this process is, and that the new one joins."""
    return [k for k in sorted(JOINED_NAMESPACES) if k in ident["namespaces"] and
            ident["namespaces"][k] != namespace("self", k)]


def _open_namespace(ident, kind):
    """An fd of the old QEMU's namespace of KIND, the one captured, that root may enter: one owned by a user
    namespace other than this process's is the VM's user's (who may hold every capability, and listen on
    anything, there). Raises IdentityError, or OSError where it cannot be opened."""
    fd = os.open("/proc/%d/ns/%s" % (ident["pid"], kind), os.O_RDONLY | os.O_CLOEXEC)
    try:
        if "%s:[%d]" % (kind, os.fstat(fd).st_ino) != ident["namespaces"][kind]:
            raise IdentityError("it is no longer in the %s namespace %s" % (kind, ident["namespaces"][kind]))
        owner = process.namespace_owner(fd)
        if owner != namespace("self", "user"):
            raise IdentityError("its %s namespace is owned by %s, not by %s" % (kind, owner, namespace("self", "user")))
    except BaseException:
        os.close(fd)
        raise
    return fd


def _namespace_problems(ident, own_caps):
    found = []
    for kind, why in sorted(REFUSED_NAMESPACES.items()):
        if kind in ident["namespaces"] and ident["namespaces"][kind] != namespace("self", kind):
            found.append("it runs in %s of its own, which the new QEMU would not share: %s"
                         % (ident["namespaces"][kind], why))
    joined = namespaces_to_join(ident)
    if joined and not own_caps & (1 << CAP_SYS_ADMIN):
        found.append("it runs in %s namespaces other than this module's, which cannot join them without "
                     "CAP_SYS_ADMIN" % ", ".join(joined))
    for kind in joined:
        try:
            os.close(_open_namespace(ident, kind))
        except IdentityError as e:
            found.append(str(e))
        except OSError as e:
            found.append("its %s namespace cannot be opened: %s" % (kind, e.strerror))
    return found


@contextlib.contextmanager
def namespace_fds(ident):
    """{kind: fd} of the old QEMU's namespaces to join (namespaces_to_join), open while in the ``with``.

    Opened through /proc/PID/ns: the caller checks after this that PID is still the old QEMU. Raises
    IdentityError for a namespace root must not enter (_open_namespace).
    """
    fds = {}
    try:
        for kind in namespaces_to_join(ident):
            try:
                fds[kind] = _open_namespace(ident, kind)
            except IdentityError as e:
                raise IdentityError("PID %d: %s" % (ident["pid"], e))
        yield fds
    finally:
        for fd in fds.values():
            os.close(fd)


# ---------------------------------------------------------------- what cannot be reproduced

def _mounts(mountinfo="/proc/self/mountinfo"):
    """Every cgroup mount here: (fstype, super options, mount root, mount point)."""
    found = []
    for line in _read(mountinfo).splitlines():
        fields = line.split()
        sep = fields.index("-")
        fstype, options = fields[sep + 1], fields[sep + 3].split(",")
        if fstype in ("cgroup", "cgroup2"):
            unescape = _unescape_mountinfo
            found.append((fstype, options, unescape(fields[3]), unescape(fields[4])))
    return found


def _unescape_mountinfo(text):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def cgroup_dir(cg, mounts):
    """The directory of one cgroup of /proc/PID/cgroup in this mount namespace, or None."""
    v2 = cg["hierarchy"] == 0 and not cg["controllers"]
    for fstype, options, mount_root, mount_point in mounts:
        if fstype != ("cgroup2" if v2 else "cgroup"):
            continue
        if not v2 and not set(cg["controllers"]) <= set(options):
            continue
        base = mount_root.rstrip("/")
        if cg["path"] != mount_root and not cg["path"].startswith(base + "/"):
            continue  # this mount shows another part of the hierarchy
        return os.path.normpath(mount_point + cg["path"][len(base):])
    return None


def cgroups_to_join(ident, proc="/proc"):
    """The old QEMU's cgroups that differ from this process's: the new QEMU inherits the others from its launcher."""
    own = dict((cg["hierarchy"], cg["path"]) for cg in _cgroups(os.getpid(), proc))
    return [cg for cg in ident["cgroups"] if own.get(cg["hierarchy"]) != cg["path"]]


def _env_problems(environ):
    names, found = set(), []
    for position, entry in enumerate(environ, 1):
        name = entry.partition("=")[0]
        if "=" not in entry or not name:
            # Not quoted: the environment stays private, and such an entry may be a value.
            found.append("entry %d of its environment (%d bytes) is no NAME=VALUE" % (position, len(entry)))
        elif name in names:
            found.append("its environment sets %s twice" % name)
        names.add(name)
    return found


def _own_caps():
    return {k: v[0] for k, v in process.status(os.getpid()).items() if k in ("CapPrm", "CapEff", "CapAmb")}


def _cap_problems(ident):
    caps = ident["caps"]
    if ident["uid"] == 0:
        own = _own_caps()
        if caps["CapEff"] != own.get("CapEff"):
            return ["it runs as root with capabilities %s, not root's %s; the new QEMU would get all of them"
                    % (caps["CapEff"], own.get("CapEff"))]
        return []
    held = ["%s=%s" % (k, v) for k, v in sorted(caps.items()) if int(v, 16)]
    if held:
        return ["it runs as uid %d with capabilities (%s) that a plain setuid drops"
                % (ident["uid"], ", ".join(held))]
    return []


def argv_chroots(argv):
    """The directory QEMU's own options tell it to chroot into after start-up, or None."""
    for _i, name, value in process.iter_options(argv or []):
        if name == "chroot" and value is not None:
            return value
        if name == "run-with" and value:
            for key, val in process.split_options(value):
                if key == "chroot":
                    return val
    return None


def problems(ident, argv=None, mountinfo="/proc/self/mountinfo"):
    """Why a cpr-transfer successor of this process could not run as it does; empty if it can.

    ``argv`` is the old QEMU's command line (its own -run-with chroot= matters).
    Call it before the pause: each reason is a refusal.
    """
    found = []
    pid = ident["pid"]
    if ident["lsm_label"]:
        found.append("it runs under the LSM label %r, which the new QEMU would not get" % ident["lsm_label"])
    if ident["systemd_unit"]:
        main = ident["systemd_main_pid"]
        if main is None or main == pid:
            found.append("it is %s of systemd service %s: when it exits, systemd stops the service and kills "
                         "what is left in its cgroup, the new QEMU included (use a dialect that keeps the PID)"
                         % ("the main process" if main == pid else "maybe the main process (systemd could not "
                            "be asked)", ident["systemd_unit"]))
    if ident["cwd"] is None:
        found.append("its working directory %s cannot be named as QEMU sees it (deleted, or outside its root %s)"
                     % (ident["cwd_seen"], ident["root"]))
    found += _env_problems(ident["environ"])
    found += _cap_problems(ident)
    own_caps = int(_own_caps()["CapEff"], 16)
    found += _namespace_problems(ident, own_caps)
    found += scheduling.problems(ident["scheduling"], ident["uid"], pid, scheduling.limits(_read("/proc/self/limits")),
                                 own_caps)
    if syscalls.numbers() is None:
        found.append("the collection does not know the system calls of %s: the new QEMU could be given neither a "
                     "session keyring of its own (it would share this module's, with root's keys) nor the old "
                     "one's I/O priority" % os.uname().machine)
    chroot = argv_chroots(argv)
    if chroot is not None and ident["uid"] != 0:
        found.append("it chroots itself into %s after start-up as uid %d; a new QEMU started as that uid cannot"
                     % (chroot, ident["uid"]))
    mounts = _mounts(mountinfo)
    for cg in cgroups_to_join(ident):
        where = cgroup_dir(cg, mounts)
        if where is None or not os.path.isdir(where):
            found.append("its cgroup %s of hierarchy %s is not reachable here%s"
                         % (cg["path"], ",".join(cg["controllers"]) or "v2", " (%s)" % where if where else ""))
    return ["PID %d: %s" % (pid, reason) for reason in found]


# ---------------------------------------------------------------- launching

def _without_privilege_keys(value):
    pairs = [(k, v) for k, v in process.split_options(value) if k not in PRIVILEGE_KEYS]
    return process.join_options(pairs) if pairs else None


def argv_for(argv, ident):
    """The QEMU argv to start with this identity: QEMU's own privilege drop removed when the
    identity is not root's (QEMU would try setgroups/chroot again and die, seen on 10.0 and 11.1).

    -run-with keeps its other keys (async-teardown=, exit-with-parent=).  Dropping chroot=
    would lose confinement: ``problems(ident, argv)`` refuses such a VM for cpr-transfer.
    """
    if ident["uid"] == 0:
        return list(argv)
    out = [argv[0]]
    for i, name, value in process.iter_options(argv):
        if name in PRIVILEGE_OPTIONS and value is not None:
            continue
        if name == "run-with" and value is not None:
            value = _without_privilege_keys(value)
            if value is not None:
                out += [argv[i], value]
            continue
        out += argv[i:i + (1 if value is None or name == "" else 2)]
    return out


def _env_dict(environ):
    """The environment as execve gets it (the first of a repeated name is the one getenv sees)."""
    env = {}
    for entry in environ:
        name, sep, value = entry.partition("=")
        if sep and name and name not in env:
            env[name] = value
    return env


def _drop_tail(argv, ident):
    """What follows a launcher: drop to the identity inside its root with coreutils, then exec QEMU."""
    if "=" in argv[0]:
        raise IdentityError("the QEMU binary %s has '=' in its path, which env(1) would take for a variable"
                            % argv[0])
    env = ["%s=%s" % kv for kv in _env_dict(ident["environ"]).items()]
    # The VM's limits bind only what follows the launcher: util-linux prlimit, then chroot and env, which
    # write nothing.
    limits = ["--%s=%s:%s" % (name.lower(), scheduling.shown(soft), scheduling.shown(hard))
              for name, (soft, hard) in sorted(ident["scheduling"]["limits"].items())]
    # chdir while still root, as without a launcher: the old QEMU may sit in a directory
    # its user cannot enter (QEMU's own -run-with user= keeps the cwd root started it in).
    return (["env", "-C", ident["cwd"]] + (["prlimit"] + limits + ["--"] if limits else []) +
            ["chroot", "--userspec=+%d:+%d" % (ident["uid"], ident["gid"]),
             "--groups=" + ",".join("+%d" % g for g in ident["groups"]), "--skip-chdir", "/",
             "env", "-i", "--"] + env + list(argv))


def launch_command(argv, ident, launcher=(), namespaces=None, old_argv=None, mountinfo="/proc/self/mountinfo",
                   gate=None):
    """(command, Popen keyword arguments) that start QEMU argv as the process of ``ident`` ran.

    The Popen'd PID becomes QEMU (every step execs).  ``launcher`` is a command prefix run
    as root (chroot, a namespace) that must exec its argument vector.  ``namespaces`` are the
    fds of namespace_fds(ident), open until Popen.  ``gate``, the read end of a pipe, holds the
    launch until a byte comes through it: at end of file (its writer gone) nothing starts.  The
    caller keeps stdin/stdout/stderr, start_new_session and close_fds.  Raises IdentityError when
    ``problems`` refuses (with ``old_argv``, the old QEMU's command line).
    """
    namespaces = namespaces or {}
    if sorted(namespaces) != namespaces_to_join(ident):
        raise IdentityError("the namespaces to join are %s, not %s" % (namespaces_to_join(ident), sorted(namespaces)))
    refused = problems(ident, old_argv, mountinfo=mountinfo)
    if refused:
        raise IdentityError("; ".join(refused))
    mounts = _mounts(mountinfo)
    argv = list(argv)
    spec = {
        "syscalls": syscalls.numbers(), "io_priority": scheduling.io_priority_to_set(ident["scheduling"]),
        "cgroup_procs": [os.path.join(cgroup_dir(cg, mounts), "cgroup.procs") for cg in cgroups_to_join(ident)],
        "namespaces": [[kind, fd, JOINED_NAMESPACES[kind]] for kind, fd in sorted(namespaces.items())],
        "umask": ident["umask"], "no_new_privs": ident["no_new_privs"], "cwd": ident["cwd"],
        "groups": ident["groups"], "gid": ident["gid"], "uid": ident["uid"], "scheduling": ident["scheduling"],
        "launcher": bool(launcher), "env": _env_dict(ident["environ"]), "gate": gate,
        "argv": list(launcher) + _drop_tail(argv, ident) if launcher else argv,
    }
    encoded = json.dumps(spec)
    if len(encoded) > SPEC_MAX:
        raise IdentityError("the new QEMU's argv and environment take %d bytes, more than %d"
                            % (len(encoded), SPEC_MAX))
    env = dict(os.environ)
    env[SPEC_VAR] = encoded
    passed = tuple(namespaces.values()) + ((gate,) if gate is not None else ())
    return [sys.executable, "-I", "-c", STAGE, SPEC_VAR], {"env": env, "cwd": "/", "pass_fds": passed}
