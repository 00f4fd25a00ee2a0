# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

import pytest

from ansible_collections.cpr.qemu.plugins.module_utils import qemu_binary

MACHINE_HELP = """Supported machines are:
microvm              microvm (i386)
pc                   Standard PC (i440FX + PIIX, 1996) (alias of pc-i440fx-10.0)
pc-i440fx-10.0       Standard PC (i440FX + PIIX, 1996) (default)
q35                  Standard PC (Q35 + ICH9, 2009) (alias of pc-q35-10.0)
pc-q35-10.0          Standard PC (Q35 + ICH9, 2009)
pc-q35-8.1           Standard PC (Q35 + ICH9, 2009) (deprecated)
"""


def test_parse_machine_help():
    names, aliases = qemu_binary.parse_machine_help(MACHINE_HELP)
    assert names == ["microvm", "pc", "pc-i440fx-10.0", "q35", "pc-q35-10.0", "pc-q35-8.1"]
    assert aliases == {"pc": "pc-i440fx-10.0", "q35": "pc-q35-10.0"}


@pytest.mark.parametrize("text, version, package", [
    ("QEMU emulator version 11.1.3 (Debian 1:11.1.3+ds-1~bpo13+1)\nCopyright ...", (11, 1, 3),
     "Debian 1:11.1.3+ds-1~bpo13+1"),
    ("QEMU emulator version 10.0.2\n", (10, 0, 2), ""),
])
def test_parse_version(text, version, package):
    assert qemu_binary.parse_version(text) == (version, package)


def test_parse_version_rejects_other_programs():
    with pytest.raises(qemu_binary.BinaryError, match="no 'QEMU emulator version'"):
        qemu_binary.parse_version("bash, version 5.2")


def _script(path, body, mode=0o755):
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(mode)
    return str(path)


@pytest.mark.parametrize("setup, message", [
    (lambda d: str(d / "nope"), "does not exist"),
    (str, "is not a regular file"),
    (lambda d: _script(d / "q", "exit 0\n", 0o644), "is not executable"),
    (lambda d: _script(d / "q", "echo boom >&2; exit 3\n"), "exited with status 3: boom"),
    (lambda d: _script(d / "q", "echo hello\n"), "no 'QEMU emulator version'"),
])
def test_probe_refuses_what_is_not_a_working_qemu(tmp_path, setup, message):
    with pytest.raises(qemu_binary.BinaryError, match=message):
        qemu_binary.probe(setup(tmp_path))


def test_probe_reports_a_working_binary(tmp_path):
    help_text = MACHINE_HELP.replace("\n", "\\n")
    path = _script(tmp_path / "qemu-system-x86_64",
                   'case "$1" in -version) echo "QEMU emulator version 10.0.2 (Debian 1:10.0.2)";; '
                   '*) printf "%s";; esac\n' % help_text)
    got = qemu_binary.probe(path)
    assert got["version"] == "10.0.2"
    assert got["package"] == "Debian 1:10.0.2"
    assert "pc-q35-10.0" in got["machine_types"]
    assert got["machine_aliases"]["q35"] == "pc-q35-10.0"
    assert got["file_id"] == [os.stat(path).st_dev, os.stat(path).st_ino]


def test_probe_requires_an_absolute_path():
    with pytest.raises(qemu_binary.BinaryError, match="not an absolute path"):
        qemu_binary.probe("qemu-system-x86_64")
