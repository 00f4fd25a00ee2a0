# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a QEMU binary on disk is: does it run, which version, which machine types.

A binary may live in another root (a container image, a chroot); it is then run
with ``chroot ROOT PATH`` so it finds its own libraries and firmware.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re
import subprocess

_VERSION = re.compile(r"QEMU emulator version (\d+)\.(\d+)\.(\d+)(?:\s*\((.*)\))?")
_ALIAS = re.compile(r"\(alias of ([^)]+)\)")


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


def host_path(path, root=None):
    if not root or root == "/":
        return path
    return os.path.join(root, path.lstrip("/"))


def _run(cmd, timeout):
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise BinaryError("%s did not finish within %ss" % (" ".join(cmd), timeout))
    except OSError as e:
        raise BinaryError("cannot run %s: %s" % (cmd[0], e.strerror or e))
    out = proc.stdout.decode("utf-8", "replace")
    if proc.returncode != 0:
        raise BinaryError("%s exited with status %d: %s" % (" ".join(cmd), proc.returncode, out.strip()[:300]))
    return out


def probe(path, root=None, timeout=30):
    """Check that a QEMU binary exists, is executable and runs; report its version and machine types."""
    if not os.path.isabs(path):
        raise BinaryError("target binary %s is not an absolute path" % path)
    where = host_path(path, root)
    in_root = "" if where == path else " (in root %s)" % root
    if root and root != "/" and not os.path.isdir(root):
        raise BinaryError("root %s of target binary %s does not exist" % (root, path))
    if not os.path.exists(where):
        raise BinaryError("target binary %s does not exist%s" % (path, in_root))
    if not os.path.isfile(where):
        raise BinaryError("target binary %s is not a regular file%s" % (path, in_root))
    if not os.access(where, os.X_OK):
        raise BinaryError("target binary %s is not executable%s" % (path, in_root))
    prefix = [] if where == path else ["chroot", root]
    try:
        version, package = parse_version(_run(prefix + [path, "-version"], timeout))
        names, aliases = parse_machine_help(_run(prefix + [path, "-machine", "help"], timeout))
    except BinaryError as e:
        raise BinaryError("target binary %s does not work%s: %s" % (path, in_root, e))
    st = os.stat(where)
    return {"path": path, "root": root or "/", "version": version_string(version),
            "package": package, "machine_types": names, "machine_aliases": aliases,
            "file_id": [st.st_dev, st.st_ino]}
