# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A QEMU process as /proc sees it: its argv parsed, its binary, its root, its QMP sockets.

Nothing here talks QMP.  Paths that QEMU was given are relative to QEMU's own
root and working directory (it may run under chroot or in another mount
namespace), so they are reached from the host through /proc/PID/root.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import fcntl
import os
import re
import stat

# Whether each QEMU option takes a value, as the QEMU binaries themselves told
# (qemu_binary.learn_options asks each binary about the options of an argv).
# An option no binary was asked about is taken to have a value unless the next
# word looks like an option; an argv is acted upon only when all its options
# are known (unknown_options).
_TAKES_VALUE = {}

# The options that name a QMP monitor: discovery finds them before it knows
# which process is QEMU, so without knowing which options take a value.
_OPTION_WORD = re.compile(r"^--?[A-Za-z0-9][A-Za-z0-9_.-]*$")
QMP_OPTIONS = frozenset(("qmp", "qmp-pretty", "chardev", "mon", "object"))

# Option keys whose values are secrets: never shown in results or logs.  A dotted
# key (``file.password``) counts by its last part; ``password-secret``,
# ``key-secret``, ``keyid`` and ``passwordid`` name objects and are not secrets.
SECRET_KEYS = frozenset(("data", "password", "passwd", "key"))
MASK = "********"
# Values of secret keys that are flags (``-vnc :1,password=on``), not secrets:
# handing "on" to Ansible's masking would hide that word everywhere.
_FLAG_VALUES = frozenset(("on", "off", "yes", "no", "true", "false", "y", "n"))
# ``scheme://userinfo@``: userinfo ends at the first "/", "?", "#", quote, blank or
# single comma (",," is a literal comma in QEMU's key=value syntax).
_URL_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://((?:,,|[^/?#@\s,\"'])*)@")
# ``rbd:pool/image:id=admin:key=SECRET:...`` (``\:`` is a literal colon there).
_RBD_KEY = re.compile(r"(?<=:)key=((?:\\.|,,|[^:\\,\s\"'])*)")
# A secret key=value pair in free text (a QEMU error message quoting its option).
_TEXT_PAIR = re.compile(r"(?<![\w.-])((?:[\w-]+\.)*(?:%s))=([^,\s:\"']+)" % "|".join(sorted(SECRET_KEYS)))

_DELETED = " (deleted)"


def split_options(text, implied=None):
    """Parse QEMU's ``key=value,key2=value2`` syntax (``,,`` is a literal comma).

    The first element without ``=`` is stored under ``implied`` (``-machine
    q35,...`` names the type), any later one as a flag set to ``on``.
    Returns an ordered list of (key, value) pairs.
    """
    if not text:
        return []
    parts, cur, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == ",":
            if text[i + 1:i + 2] == ",":
                cur.append(",")
                i += 2
                continue
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    pairs = []
    for n, part in enumerate(parts):
        if "=" in part:
            key, value = part.split("=", 1)
        elif n == 0 and implied is not None:
            key, value = implied, part
        elif part:
            key, value = part, "on"
        else:
            continue
        pairs.append((key, value))
    return pairs


def join_options(pairs, implied=None):
    """Inverse of split_options."""
    out = []
    for key, value in pairs:
        value = value.replace(",", ",,")
        out.append(value if key == implied and implied is not None and not out else "%s=%s" % (key, value))
    return ",".join(out)


def learn_options(takes_value):
    """Record {option name: whether it takes a value}, as a QEMU binary answered."""
    _TAKES_VALUE.update(takes_value)


def option_words(argv):
    """Every word of argv that could be an option, by name without its dashes (QEMU takes -opt and --opt)."""
    return set(a.lstrip("-") for a in argv[1:] if _OPTION_WORD.match(a))


def iter_options(argv):
    """Yield (index, name, value) for each option of a QEMU argv; value is None for options without one."""
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("-") and len(arg) > 1:
            name = arg.lstrip("-")
            takes_value = _TAKES_VALUE.get(name)
            if takes_value is None:
                # No binary was asked (an untrusted one never is): read as most command lines are written.
                takes_value = not argv[i + 1].startswith("-") if i + 1 < len(argv) else False
            if not takes_value or i + 1 >= len(argv):
                yield i, name, None
                i += 1
            else:
                yield i, name, argv[i + 1]
                i += 2
        else:
            # A bare argument is a disk image (the legacy -hda shorthand).
            yield i, "", arg
            i += 1


def unknown_options(argv):
    """The options of argv that no QEMU binary was asked about: argv cannot be read for sure."""
    return sorted(set(name for _i, name, _v in iter_options(argv) if name and name not in _TAKES_VALUE))


def _word_pairs(argv):
    """(index, name, next word) at every word that looks like an option, whatever QEMU would make of it."""
    for i, arg in enumerate(argv[1:-1], 1):
        if arg.startswith("-") and len(arg) > 1:
            yield i, arg.lstrip("-"), argv[i + 1]


def option_dict(value, implied):
    """An option's value as {key: text}: QEMU's key=value syntax, or the JSON object libvirt writes
    (top-level booleans read as on/off, numbers as their digits; nested objects stay as they are)."""
    if value.lstrip().startswith("{"):
        try:
            node = json.loads(value)
        except ValueError:
            node = None
        if isinstance(node, dict):
            return dict((k, ("on" if v else "off") if isinstance(v, bool) else
                         str(v) if isinstance(v, (int, float)) else v) for k, v in node.items())
    return dict(split_options(value, implied))


def _on(value):
    return value in ("on", "yes", "true", "y")


def parse_argv(argv, options=None):
    """What a QEMU command line says about the VM, as far as CPR cares.

    ``options`` is iter_options(argv) unless given (discovery passes word pairs).
    Objects, devices, block and network backends may be key=value or JSON.
    """
    facts = {
        "machine": None, "machine_options": {}, "accel": None, "sandbox": False,
        "spawn_denied": False, "qmp_sockets": [], "memory_objects": [], "incoming": [],
        "start_paused": False, "daemonize": False, "name": None, "vfio_devices": [],
        "memory": {}, "chardevs": {}, "cpr_enable": [], "pidfile": None, "netdevs": [], "compat": [],
    }
    monitors = []
    for _i, name, value in iter_options(argv) if options is None else options:
        handler = _PARSERS.get(name)
        if handler is not None:
            handler(facts, monitors, value)
    for chardev in monitors:
        path = facts["chardevs"].get(chardev, {}).get("path")
        if facts["chardevs"].get(chardev, {}).get("backend") == "socket" and path:
            facts["qmp_sockets"].append(path)
    return facts


def _flag(key):
    def handle(facts, _monitors, _value):
        facts[key] = True
    return handle


def _machine(facts, _monitors, value):
    for key, val in split_options(value or "", "type"):
        if key == "type":
            facts["machine"] = val
        elif key == "accel":
            facts["accel"] = facts["accel"] or val.split(":")[0]
        else:
            facts["machine_options"][key] = val


def _accel(facts, _monitors, value):
    facts["accel"] = facts["accel"] or dict(split_options(value or "", "accel")).get("accel")


def _enable_kvm(facts, _monitors, _value):
    facts["accel"] = facts["accel"] or "kvm"


def _sandbox(facts, _monitors, value):
    opts = dict(split_options(value or "", "enable"))
    facts["sandbox"] = _on(opts.get("enable", "off"))
    facts["spawn_denied"] = facts["sandbox"] and opts.get("spawn") == "deny"


def _qmp(facts, _monitors, value):
    kind, path = _socket_path(value or "")
    if kind == "unix":
        facts["qmp_sockets"].append(path)


def _chardev(facts, _monitors, value):
    d = option_dict(value or "", "backend")
    if d.get("id"):
        facts["chardevs"][d["id"]] = d


def _mon(facts, monitors, value):
    d = dict(split_options(value or "", "chardev"))
    if d.get("mode") == "control" and d.get("chardev"):
        monitors.append(d["chardev"])


def _object(facts, monitors, value):
    d = option_dict(value or "", "qom-type")
    kind = d.get("qom-type", "")
    if kind.startswith("memory-backend-"):
        facts["memory_objects"].append(d)
    elif kind == "monitor-qmp" and d.get("chardev"):
        monitors.append(d["chardev"])


def _device(facts, _monitors, value):
    d = option_dict(value or "", "driver")
    if str(d.get("driver", "")).startswith("vfio-"):
        facts["vfio_devices"].append(d.get("id") or d.get("host") or d["driver"])


def _netdev(facts, _monitors, value):
    facts["netdevs"].append(option_dict(value or "", "type"))


def _setter(key, implied=None):
    def handle(facts, _monitors, value):
        facts[key] = value if implied is None else dict(split_options(value or "", implied)).get(implied)
    return handle


def _appender(key):
    def handle(facts, _monitors, value):
        facts[key].append(value)
    return handle


def _memory(facts, _monitors, value):
    facts["memory"] = dict(split_options(value or "", "size"))


# What each option the collection reads does to parse_argv's facts.
_PARSERS = {
    "S": _flag("start_paused"), "daemonize": _flag("daemonize"), "enable-kvm": _enable_kvm,
    "machine": _machine, "M": _machine, "accel": _accel, "sandbox": _sandbox,
    "qmp": _qmp, "qmp-pretty": _qmp, "chardev": _chardev, "mon": _mon, "object": _object,
    "device": _device, "netdev": _netdev, "nic": _netdev, "net": _netdev, "m": _memory,
    "cpr-enable": _appender("cpr_enable"), "incoming": _appender("incoming"), "compat": _appender("compat"),
    "name": _setter("name", "guest"), "pidfile": _setter("pidfile"),
}


def _socket_path(value):
    """('unix', path) for a ``unix:PATH,...`` chardev address, else (kind, None)."""
    if value.startswith("unix:"):
        return "unix", value[5:].split(",")[0]
    return value.split(":", 1)[0], None


def _hide(value, found):
    """MASK for a secret value (noted in found); flags, empty and masked values stay."""
    if not value or value == MASK or value.lower() in _FLAG_VALUES:
        return value
    found.update((value, value.replace(",,", ",")))
    return MASK


def _mask_userinfo(match, found):
    """``scheme://user:pass@`` with the password masked (libiscsi also takes ``user%pass``)."""
    scheme, userinfo = match.group(1), match.group(2)
    sep = "%" if scheme.lower().endswith("iscsi") and "%" in userinfo else ":"
    if sep not in userinfo:
        return match.group(0)
    user, password = userinfo.split(sep, 1)
    return "%s://%s%s%s@" % (scheme, user, sep, _hide(password, found))


def _mask_creds(text, found):
    """text with URL passwords and rbd keys masked."""
    text = _URL_USERINFO.sub(lambda m: _mask_userinfo(m, found), text)
    if "rbd:" in text:
        text = _RBD_KEY.sub(lambda m: "key=" + _hide(m.group(1), found), text)
    return text


def _mask_json(node, found):
    """A decoded JSON value with secret keys' string values and credentials in strings masked."""
    if isinstance(node, dict):
        return dict((k, _hide(v, found) if k in SECRET_KEYS and isinstance(v, str) else _mask_json(v, found))
                    for k, v in node.items())
    if isinstance(node, list):
        return [_mask_json(v, found) for v in node]
    if isinstance(node, str):
        return _mask_string(node, found)
    return node


def _mask_json_text(text, found):
    """JSON text (libvirt's ``-object {...}``, ``-blockdev {...}``) masked; None if text is no JSON object."""
    try:
        node = json.loads(text)
    except ValueError:
        return None
    if not isinstance(node, (dict, list)):
        return None
    masked = _mask_json(node, found)
    return text if masked == node else json.dumps(masked, separators=(",", ":"), ensure_ascii=False)


def _mask_string(text, found):
    """A value that is no key=value list: a ``json:{...}`` filename, a URL, an rbd: filename."""
    if text.startswith("json:"):
        masked = _mask_json_text(text[5:], found)
        if masked is not None:
            return "json:" + masked
    return _mask_creds(text, found)


def _mask_pair(key, value, found):
    """The value of a key=value pair: hidden for a secret key (``file.password`` counts as ``password``)."""
    if key.rsplit(".", 1)[-1] in SECRET_KEYS:
        return _hide(value, found)
    return _mask_string(value, found) if value.startswith("json:") else value


def _mask_value(value, found):
    """One option's value (JSON or key=value, or a bare argument) with its secrets masked."""
    if value.lstrip().startswith(("{", "[")):
        masked = _mask_json_text(value, found)
        if masked is not None:
            return masked
    text = _mask_string(value, found)
    if "=" not in text:
        return text
    pairs = split_options(text, implied="")
    masked = [(k, _mask_pair(k, v, found)) for k, v in pairs]
    return text if masked == pairs else join_options(masked, implied="")


def _mask(argv):
    """(masked copy of argv, set of the secret values it hid)."""
    out, found = list(argv), set()
    for i, name, value in iter_options(argv):
        if value is not None:
            out[i + 1 if name else i] = _mask_value(value, found)
    return out, found


def mask_argv(argv):
    """A copy of argv with its secrets masked: secret keys' values (k=v or JSON), rbd keys, URL passwords."""
    return _mask(argv)[0]


def secret_values(argv):
    """The secret values in an argv (what mask_argv hides), to hand to Ansible's masking."""
    return _mask(argv)[1]


def mask_text(text, secrets=()):
    """Free text (a QEMU log) with each of secrets, URL passwords, rbd keys and secret key=value pairs masked."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, MASK)
    found = set()
    text = _TEXT_PAIR.sub(lambda m: "%s=%s" % (m.group(1), _hide(m.group(2), found)), text)
    return _mask_creds(text, found)


def read_argv(pid, proc="/proc"):
    with open("%s/%d/cmdline" % (proc, pid), "rb") as f:
        raw = f.read()
    return [a.decode("utf-8", "surrogateescape") for a in raw.split(b"\0")[:-1]]


def executable(pid, proc="/proc"):
    """(path, deleted): the path /proc/PID/exe names, and whether the file was removed or replaced since
    (the kernel appends " (deleted)" then)."""
    exe = os.readlink("%s/%d/exe" % (proc, pid))
    if exe.endswith(_DELETED):
        return exe[:-len(_DELETED)], True
    return exe, False


def binary_facts(pid, proc="/proc"):
    """The binary a process runs: path (inside its root), root, file identity, replaced on disk.

    /proc/PID/exe reads as the path in QEMU's own mount namespace, with
    " (deleted)" appended once the file was removed or replaced (a package
    upgrade renames a new file over it).  stat() through it reaches the very
    file QEMU runs, deleted or not, so (dev, inode) identifies the binary.
    """
    base = "%s/%d" % (proc, pid)
    exe, deleted = executable(pid, proc)
    root = os.readlink(base + "/root")
    path = exe
    if root != "/" and exe.startswith(root.rstrip("/") + "/"):
        path = exe[len(root.rstrip("/")):]
    st = os.stat(base + "/exe")
    return {"path": path, "root": root, "replaced_on_disk": deleted,
            "file_id": [st.st_dev, st.st_ino]}


def open_for_writing(pid, proc="/proc"):
    """(device, inode) of every regular file process pid holds open for writing."""
    held = set()
    for fd, _link in _fd_links(pid, proc):
        try:
            with open("%s/%d/fdinfo/%s" % (proc, pid, fd)) as f:
                flags = int(next(line for line in f if line.startswith("flags:")).split()[1], 8)
            st = os.stat("%s/%d/fd/%s" % (proc, pid, fd))
        except (OSError, StopIteration, ValueError):
            continue
        if flags & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR) and stat.S_ISREG(st.st_mode):
            held.add((st.st_dev, st.st_ino))
    return held


def _fd_links(pid, proc):
    """(fd number, what its /proc/PID/fd link reads) for each fd the process holds now."""
    fd_dir = "%s/%d/fd" % (proc, pid)
    for fd in os.listdir(fd_dir):
        try:
            yield fd, os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue  # closed meanwhile


def tun_fds(pid, proc="/proc"):
    """How many /dev/net/tun fds (taps) the process holds, whatever its argv says (netdev_add adds some)."""
    return sum(1 for _fd, link in _fd_links(pid, proc) if link == "/dev/net/tun")


def user_ids(pid, proc="/proc"):
    """((real uid, real gid), (effective uid, effective gid)) of a process."""
    fields = status(pid, proc)
    return (int(fields["Uid"][0]), int(fields["Gid"][0])), (int(fields["Uid"][1]), int(fields["Gid"][1]))


def status(pid, proc="/proc"):
    """/proc/PID/status as {field: [words]}."""
    fields = {}
    with open("%s/%d/status" % (proc, pid)) as f:
        for line in f:
            key, _sep, value = line.partition(":")
            fields[key] = value.split()
    return fields


def credentials(pid, proc="/proc"):
    """(uid, gid, supplementary gids) a process runs with (its effective ids, from /proc/PID/status)."""
    fields = status(pid, proc)
    return int(fields["Uid"][1]), int(fields["Gid"][1]), [int(g) for g in fields.get("Groups", [])]


def host_path(pid, path, proc="/proc"):
    """A path as the process sees it, made reachable from here (through its root and cwd)."""
    if not os.path.isabs(path):
        return "%s/%d/cwd/%s" % (proc, pid, path)
    root = os.readlink("%s/%d/root" % (proc, pid))
    if root == "/":
        return path
    return "%s/%d/root%s" % (proc, pid, path)


def qmp_socket_as_given(pid, argv, path):
    """The VM's QMP socket path as its QEMU was given it, matching the path we connected to (or None)."""
    for sock in parse_argv(argv)["qmp_sockets"]:
        try:
            if os.path.samefile(host_path(pid, sock), path):
                return sock
        except OSError:
            continue
    return None


def qmp_socket_candidates(argv):
    """The UNIX sockets argv names as QMP monitors, read without knowing which options take a value:
    every word that looks like one of QMP_OPTIONS is taken with the word after it."""
    pairs = [(i, name, value) for i, name, value in _word_pairs(argv) if name in QMP_OPTIONS]
    return parse_argv(argv, pairs)["qmp_sockets"]


def discover(proc="/proc"):
    """Every process here whose command line names a QMP monitor on a UNIX socket, whatever its name.

    A QEMU is recognised by what it is, not by what it is called (RHEL's
    /usr/libexec/qemu-kvm, a build of one's own): its QMP socket answers as
    QEMU, and its executable is judged before anything is done for it
    (vm_facts.inspect_discovered).  Returns a list of {pid, qmp_socket
    (reachable from here), qmp_socket_as_given}.
    """
    found = []
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            argv = read_argv(pid, proc)
        except OSError:
            continue
        for sock in qmp_socket_candidates(argv):
            try:
                reachable = host_path(pid, sock, proc)
            except OSError:
                continue
            found.append({"pid": pid, "qmp_socket": reachable, "qmp_socket_as_given": sock})
    return sorted(found, key=lambda d: d["pid"])


# ioctl_ns(2): a namespace's owning user namespace.
NS_GET_USERNS = 0xb701


def namespace_owner(ns_fd):
    """The user namespace ('user:[N]') that owns the namespace open at fd ``ns_fd`` (ioctl_ns(2) NS_GET_USERNS)."""
    owner = fcntl.ioctl(ns_fd, NS_GET_USERNS)
    try:
        return os.readlink("/proc/self/fd/%d" % owner)
    finally:
        os.close(owner)
