# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a QEMU binary on disk is: does it run, which version, which machine types.

A binary may live in another root (a container image, a chroot); it is then run
with ``chroot ROOT PATH`` so it finds its own libraries and firmware.  Only a
binary that root alone could have put where it is ever runs (trust.py).

A binary runs once per host for what it is asked, not once per VM or module run:
its answers are kept in this process and in binary_cache.py, by the identity of
the very file judged, the root it runs in and who it runs as.  The trust checks
run every time, before anything kept is looked up.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re
import shutil
import stat
import subprocess
import threading

from ansible_collections.cpr.qemu.plugins.module_utils import binary_cache, parallel, process
from ansible_collections.cpr.qemu.plugins.module_utils.privilege import trust

_VERSION = re.compile(r"QEMU emulator version (\d+)\.(\d+)\.(\d+)(?:\s*\((.*)\))?")
_ALIAS = re.compile(r"\(alias of ([^)]+)\)")
# What a probe runs with: nothing of the caller's environment (Ansible's, the SSH session's) leaks in.
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
# How many option questions run at once (each is one short run of the binary).
_ASKING = 8
# Entry name (binary_cache.Pinned.name) -> what that binary answered: version, package, machine_types,
# machine_aliases (probe), options (what its -help lists), arity ({option: takes a value, or None}).
_KNOWN = {}
# One question at a time per binary: threads inspecting VMs of one binary run it once.
_LOCKS = {}
_LOCKS_LOCK = threading.Lock()
_HELP_OPTION = re.compile(r"^--?([A-Za-z0-9][A-Za-z0-9_.-]*)", re.M)


class BinaryError(Exception):
    pass


def parse_version(text):
    """(major, minor, micro), package from ``qemu-system-* -version`` output."""
    m = _VERSION.search(text)
    if not m:
        raise BinaryError("no 'QEMU emulator version' line in its -version output")
    return tuple(int(x) for x in m.group(1, 2, 3)), (m.group(4) or "")


def parse_machine_help(text):
    """Machine type names and {alias: versioned name} from ``-machine help`` output."""
    names, aliases = [], {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("Supported machines"):
            continue
        name = line.split()[0]
        names.append(name)
        m = _ALIAS.search(line)
        if m:
            aliases[name] = m.group(1).strip()
    return names, aliases


def version_string(version):
    return ".".join(str(x) for x in version)


def _chroot():
    """coreutils chroot, which runs as root: judged like any binary run as root."""
    path = shutil.which("chroot", path=CLEAN_ENV["PATH"])
    if path is None:
        raise BinaryError("no chroot command in %s" % CLEAN_ENV["PATH"])
    try:
        trust.check_path("/", path)
    except (trust.UntrustedError, OSError) as e:
        raise BinaryError("%s is not trusted: %s" % (path, e))
    return path


def _command(path, root, run_as):
    """The argv that runs path inside root, as run_as = (uid, gid, groups) when given.

    Returns (argv, keyword arguments for subprocess).  In the host's root the
    identity is dropped by subprocess itself (no preexec_fn: the modules probe
    from threads); in another root chroot drops it after entering that root.
    """
    in_host_root = root == "/"
    if run_as is None:
        return ([path] if in_host_root else [_chroot(), root, path]), {}
    uid, gid, groups = run_as
    if in_host_root:
        return [path], {"user": uid, "group": gid, "extra_groups": list(groups)}
    # "+N" makes chroot take N as a number even where a user or group is named N.
    return [_chroot(), "--userspec=+%d:+%d" % (uid, gid), "--groups=%s" % ",".join("+%d" % g for g in groups),
            root, path], {}


def _run(cmd, timeout, identity):
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env=CLEAN_ENV, cwd="/", timeout=timeout, check=False, **identity)
    except subprocess.TimeoutExpired:
        raise BinaryError("%s did not finish within %ss" % (" ".join(cmd), timeout))
    except OSError as e:
        raise BinaryError("cannot run %s: %s" % (cmd[0], e.strerror or e))
    out = proc.stdout.decode("utf-8", "replace")
    if proc.returncode != 0:
        raise BinaryError("%s exited with status %d: %s" % (" ".join(cmd), proc.returncode, out.strip()[:300]))
    return out


def _trusted_stat(path, root, in_root):
    """The binary's host path and stat, once it is known that root alone could have put it where it is."""
    try:
        host_path, st = trust.check_path(root, path)
    except trust.UntrustedError as e:
        raise BinaryError("target binary %s is not trusted%s: %s" % (path, in_root, e))
    except FileNotFoundError:
        raise BinaryError("target binary %s does not exist%s" % (path, in_root))
    except OSError as e:
        raise BinaryError("target binary %s cannot be looked up%s: %s: %s" % (path, in_root, e.filename, e.strerror))
    if not stat.S_ISREG(st.st_mode):
        raise BinaryError("target binary %s is not a regular file%s" % (path, in_root))
    if not st.st_mode & 0o111:
        raise BinaryError("target binary %s is not executable%s" % (path, in_root))
    return host_path, st


class _Answers(object):
    """What the judged binary answered before (this process, then binary_cache), and keeping new answers.

    Use as a context manager: it holds the binary open (binary_cache.pin) and
    one lock per binary, so that threads asking about one binary run it once.
    """

    def __init__(self, host_path, st, root, run_as):
        self.pinned = binary_cache.pin(host_path, st, root, run_as)
        self.lock = None
        self.known = {}

    def __enter__(self):
        if self.pinned is None:
            return self
        with _LOCKS_LOCK:
            self.lock = _LOCKS.setdefault(self.pinned.name, threading.Lock())
        self.lock.acquire()
        known = _KNOWN.get(self.pinned.name)
        if known is None or known.get("_key") != self.pinned.key:
            known = dict(binary_cache.load(self.pinned), _key=self.pinned.key)
            _KNOWN[self.pinned.name] = known
        self.known = known
        return self

    def __exit__(self, *exc):
        if self.lock is not None:
            self.lock.release()
        if self.pinned is not None:
            self.pinned.close()

    def keep(self, **answers):
        """Remember new answers, here and (while the binary is still the file pinned) on disk."""
        if self.pinned is None or not self.pinned.unchanged():
            return
        self.known.update(answers)
        binary_cache.store(self.pinned, dict((k, v) for k, v in self.known.items() if k != "_key"))


def probe(path, root=None, timeout=30, run_as=None):
    """Check that a QEMU binary is trusted, exists, is executable and runs; report its version and machine types.

    Nothing runs unless root alone could have put the binary where it is (see
    trust.py).  It runs with a clean environment, from "/", and as run_as =
    (uid, gid, supplementary gids) when given: a probe needs no more rights
    than the QEMU that will run the binary.
    """
    if not os.path.isabs(path):
        raise BinaryError("target binary %s is not an absolute path" % path)
    root = root or "/"
    in_root = "" if root == "/" else " (in root %s)" % root
    if not os.path.isdir(root):
        raise BinaryError("root %s of target binary %s does not exist" % (root, path))
    host_path, st = _trusted_stat(path, root, in_root)
    with _Answers(host_path, st, root, run_as) as answers:
        known = answers.known
        if "version" not in known:
            cmd, identity = _command(path, root, run_as)
            try:
                version, package = parse_version(_run(cmd + ["-version"], timeout, identity))
                names, aliases = parse_machine_help(_run(cmd + ["-machine", "help"], timeout, identity))
            except BinaryError as e:
                raise BinaryError("target binary %s does not work%s: %s" % (path, in_root, e))
            known = {"version": version_string(version), "package": package, "machine_types": names,
                     "machine_aliases": aliases}
            answers.keep(**known)
    return {"path": path, "root": root, "version": known["version"],
            "package": known["package"], "machine_types": list(known["machine_types"]),
            "machine_aliases": dict(known["machine_aliases"]), "file_id": [st.st_dev, st.st_ino]}


def _takes_value(cmd, identity, name, timeout):
    """Whether option -name takes a value, as the binary says: QEMU reads its whole command line once
    before acting on any option, and stops there at an option missing its value; so ``-version -name``
    prints the version when -name takes none.  None when the binary has no such option."""
    try:
        proc = subprocess.run(cmd + ["-version", "-" + name], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, env=CLEAN_ENV, cwd="/", timeout=timeout, check=False,
                              **identity)
    except (subprocess.TimeoutExpired, OSError) as e:
        raise BinaryError("cannot ask %s about -%s: %s" % (cmd[-1], name, e))
    out = proc.stdout.decode("utf-8", "replace")
    if proc.returncode == 0 and _VERSION.search(out):
        return False
    if "requires an argument" in out:
        return True
    return None


def listed_options(text):
    """The option names a ``-help`` output lists (``-name`` or ``--name`` at the start of a line)."""
    return set(m.group(1) for m in _HELP_OPTION.finditer(text))


def learn_options(path, root, argv, run_as=None, timeout=15):
    """Ask a QEMU binary which options of argv take a value, and teach process.py the answers.

    The binary is judged first (trust.py) and runs as run_as, with a clean
    environment, inside root.  Only the words of argv that its ``-help`` lists,
    and that were not asked before, are asked: what a VM's user writes on its
    command line never chooses what runs.  Returns the options of argv that no
    binary knows (process.unknown_options).  Each answer is a ``-version`` run, quick on any host; the timeout
    only bounds a binary that hangs, so it is generous for a host under load.
    """
    root = root or "/"
    in_root = "" if root == "/" else " (in root %s)" % root
    host_path, st = _trusted_stat(path, root, in_root)
    wanted = process.option_words(argv)
    with _Answers(host_path, st, root, run_as) as answers:
        listed, arity = answers.known.get("options"), dict(answers.known.get("arity") or {})
        words = sorted((wanted & set(listed or ())) - set(arity))
        if listed is None or words:
            cmd, identity = _command(path, root, run_as)
            if listed is None:
                listed = sorted(listed_options(_run(cmd + ["-help"], timeout, identity)))
                words = sorted((wanted & set(listed)) - set(arity))
            if words:
                arity.update(zip(words, parallel.side_by_side(lambda w: _takes_value(cmd, identity, w, timeout), words,
                                                              _ASKING)))
            answers.keep(options=listed, arity=arity)
    process.learn_options(dict((w, arity[w]) for w in wanted if arity.get(w) is not None))
    return process.unknown_options(argv)
