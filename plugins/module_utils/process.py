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
import os
import re

# QEMU options that take no argument (qemu-options.hx entries without HAS_ARG),
# as far as they can appear on a system emulator's command line.
FLAG_OPTIONS = frozenset((
    "S", "s", "nodefaults", "nographic", "daemonize", "enable-kvm", "no-reboot",
    "no-shutdown", "snapshot", "no-user-config", "no-hpet", "no-acpi", "full-screen",
    "no-fd-bootchk", "no-quit", "alt-grab", "ctrl-grab", "only-migratable", "preconfig",
    "nodefconfig", "win2k-hack", "rtc-td-hack", "no-kvm", "usb", "curses", "portrait",
    "h", "help", "version", "enable-fips", "xen-attach", "singlestep", "mem-prealloc",
    "sdl", "no-frame", "old-param", "semihosting", "enable-sync-profile",
))

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


def iter_options(argv):
    """Yield (index, name, value) for each option of a QEMU argv; value is None for flags."""
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("-") and len(arg) > 1:
            name = arg.lstrip("-")
            if name in FLAG_OPTIONS or i + 1 >= len(argv):
                yield i, name, None
                i += 1
            else:
                yield i, name, argv[i + 1]
                i += 2
        else:
            # A bare argument is a disk image (the legacy -hda shorthand).
            yield i, "", arg
            i += 1


def _on(value):
    return value in ("on", "yes", "true", "y")


def parse_argv(argv):
    """What a QEMU command line says about the VM, as far as CPR cares."""
    facts = {
        "machine": None, "machine_options": {}, "accel": None, "sandbox": False,
        "spawn_denied": False, "qmp_sockets": [], "memory_objects": [], "incoming": [],
        "start_paused": False, "daemonize": False, "name": None, "vfio_devices": [],
        "memory": {}, "chardevs": {}, "cpr_enable": [],
    }
    sockets_by_chardev = {}
    control_chardevs = []
    for _i, name, value in iter_options(argv):
        if name == "S":
            facts["start_paused"] = True
        elif name == "daemonize":
            facts["daemonize"] = True
        elif name == "enable-kvm" and not facts["accel"]:
            facts["accel"] = "kvm"
        elif name in ("machine", "M"):
            for key, val in split_options(value, "type"):
                if key == "type":
                    facts["machine"] = val
                elif key == "accel":
                    facts["accel"] = facts["accel"] or val.split(":")[0]
                else:
                    facts["machine_options"][key] = val
        elif name == "accel":
            facts["accel"] = facts["accel"] or dict(split_options(value, "accel")).get("accel")
        elif name == "sandbox":
            opts = dict(split_options(value, "enable"))
            facts["sandbox"] = _on(opts.get("enable", "off"))
            facts["spawn_denied"] = facts["sandbox"] and opts.get("spawn") == "deny"
        elif name in ("qmp", "qmp-pretty"):
            kind, path = _socket_path(value)
            if kind == "unix":
                facts["qmp_sockets"].append(path)
        elif name == "chardev":
            d = dict(split_options(value, "backend"))
            if d.get("id"):
                facts["chardevs"][d["id"]] = d
            if d.get("backend") == "socket" and d.get("path") and d.get("id"):
                sockets_by_chardev[d["id"]] = d["path"]
        elif name == "m":
            facts["memory"] = dict(split_options(value, "size"))
        elif name == "cpr-enable":
            facts["cpr_enable"].append(value)
        elif name == "mon":
            d = dict(split_options(value, "chardev"))
            if d.get("mode") == "control" and d.get("chardev"):
                control_chardevs.append(d["chardev"])
        elif name == "object":
            d = dict(split_options(value, "qom-type"))
            if d.get("qom-type", "").startswith("memory-backend-"):
                facts["memory_objects"].append(d)
        elif name == "incoming":
            facts["incoming"].append(value)
        elif name == "name":
            facts["name"] = dict(split_options(value, "guest")).get("guest")
        elif name == "device":
            d = dict(split_options(value, "driver"))
            if d.get("driver", "").startswith("vfio-"):
                facts["vfio_devices"].append(d.get("id") or d.get("host") or d["driver"])
    for chardev in control_chardevs:
        if chardev in sockets_by_chardev:
            facts["qmp_sockets"].append(sockets_by_chardev[chardev])
    return facts


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


def credentials(pid, proc="/proc"):
    """(uid, gid, supplementary gids) a process runs with (its effective ids, from /proc/PID/status)."""
    fields = {}
    with open("%s/%d/status" % (proc, pid)) as f:
        for line in f:
            key, _sep, value = line.partition(":")
            fields[key] = value.split()
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


def is_qemu(argv, exe_name=""):
    names = [os.path.basename(argv[0]) if argv else "", os.path.basename(exe_name)]
    return any(re.match(r"^qemu-system-", n) for n in names)


def discover(proc="/proc"):
    """Every QEMU system emulator process here with a QMP UNIX socket on its command line.

    Returns a list of {pid, qmp_socket (reachable from here), qmp_socket_as_given}.
    """
    found = []
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            argv = read_argv(pid, proc)
            exe = executable(pid, proc)[0]
        except OSError:
            continue
        if not argv or not is_qemu(argv, exe):
            continue
        for sock in parse_argv(argv)["qmp_sockets"]:
            try:
                reachable = host_path(pid, sock, proc)
            except OSError:
                continue
            found.append({"pid": pid, "qmp_socket": reachable, "qmp_socket_as_given": sock})
    return sorted(found, key=lambda d: d["pid"])
