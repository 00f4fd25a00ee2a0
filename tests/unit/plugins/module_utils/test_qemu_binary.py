# -*- coding: utf-8 -*-
# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import pathlib
import re
import shutil
import subprocess

import pytest

from ansible_collections.cpr.qemu.plugins.module_utils import binary_cache, qemu_binary

MACHINE_HELP = """Supported machines are:
microvm              microvm (i386)
pc                   Standard PC (i440FX + PIIX, 1996) (alias of pc-i440fx-10.0)
pc-i440fx-10.0       Standard PC (i440FX + PIIX, 1996) (default)
q35                  Standard PC (Q35 + ICH9, 2009) (alias of pc-q35-10.0)
pc-q35-10.0          Standard PC (Q35 + ICH9, 2009)
pc-q35-8.1           Standard PC (Q35 + ICH9, 2009) (deprecated)
"""


@pytest.fixture(autouse=True)
def cache_base(tmp_path, monkeypatch):
    """Each test's binaries are kept in a cache of its own, nothing remembered in-process (test_binary_cache.py)."""
    monkeypatch.setattr(binary_cache, "BASE", str(tmp_path / "cpr-qemu"))
    monkeypatch.setattr(qemu_binary, "_KNOWN", {})


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


@pytest.fixture
def trusted(trusted_dir):
    return pathlib.Path(trusted_dir)


def _script(path, body, mode=0o755):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(mode)
    return str(path)


def _fake_qemu(path, record=""):
    """A script answering like QEMU 10.0.2 that first runs the shell commands record."""
    help_text = MACHINE_HELP.replace("\n", "\\n")
    return _script(path, record + '\ncase "$1" in -version) echo "QEMU emulator version 10.0.2 (Debian 1:10.0.2)";; '
                   '*) printf "%s";; esac\n' % help_text)


@pytest.mark.parametrize("setup, message", [
    (lambda d: str(d / "nope"), "does not exist"),
    (str, "is not a regular file"),
    (lambda d: _script(d / "q", "exit 0\n", 0o644), "is not executable"),
    (lambda d: _script(d / "q", "echo boom >&2; exit 3\n"), "exited with status 3: boom"),
    (lambda d: _script(d / "q", "echo hello\n"), "no 'QEMU emulator version'"),
    (lambda d: _script(d / "q", "sleep 5\n"), "did not finish within 0.5s"),
])
def test_probe_refuses_what_is_not_a_working_qemu(trusted, setup, message):
    with pytest.raises(qemu_binary.BinaryError, match=message):
        qemu_binary.probe(setup(trusted), timeout=0.5)


def test_probe_reports_a_working_binary(trusted):
    path = _fake_qemu(trusted / "qemu-system-x86_64")
    got = qemu_binary.probe(path)
    assert got["version"] == "10.0.2"
    assert got["package"] == "Debian 1:10.0.2"
    assert "pc-q35-10.0" in got["machine_types"]
    assert got["machine_aliases"]["q35"] == "pc-q35-10.0"
    assert got["file_id"] == [os.stat(path).st_dev, os.stat(path).st_ino]


def test_probe_requires_an_absolute_path():
    with pytest.raises(qemu_binary.BinaryError, match="not an absolute path"):
        qemu_binary.probe("qemu-system-x86_64")


@pytest.mark.parametrize("place, message", [
    (lambda d, tmp: d / "q", "q is owned by uid 65534"),
    (lambda d, tmp: tmp / "q", "/tmp is writable by others (mode 1777)"),
], ids=["binary-of-another-user", "binary-below-tmp"])
def test_probe_never_runs_an_untrusted_binary(trusted, tmp_path, place, message):
    marker = tmp_path / "ran"
    path = _fake_qemu(place(trusted, tmp_path), ": > %s" % marker)
    os.chown(path, 65534, 65534)
    with pytest.raises(qemu_binary.BinaryError, match="target binary %s is not trusted: .*%s"
                       % (re.escape(path), re.escape(message))):
        qemu_binary.probe(path)
    assert not marker.exists()


def test_probe_runs_with_a_clean_environment_from_the_root(trusted, monkeypatch):
    monkeypatch.setenv("CPR_QEMU_TEST_SECRET", "hunter2")
    monkeypatch.chdir(trusted)
    out = trusted / "out"
    path = _fake_qemu(trusted / "bin" / "qemu", "export -p > %s/env; pwd > %s/cwd" % (out, out))
    out.mkdir()
    qemu_binary.probe(path)
    env = (out / "env").read_text()
    assert "CPR_QEMU_TEST_SECRET" not in env
    assert "PATH='%s'" % qemu_binary.CLEAN_ENV["PATH"] in env
    assert (out / "cwd").read_text() == "/\n"


def test_probe_runs_as_the_user_given(trusted):
    out = trusted / "out"
    path = _fake_qemu(trusted / "bin" / "qemu", "id -u > %s/uid; id -G > %s/groups" % (out, out))
    out.mkdir(mode=0o777)
    out.chmod(0o777)
    qemu_binary.probe(path, run_as=(65534, 65534, [100]))
    assert (out / "uid").read_text() == "65534\n"
    assert (out / "groups").read_text() == "65534 100\n"


def test_probe_in_another_root_runs_as_the_user_given_through_chroot(trusted):
    busybox = shutil.which("busybox")
    assert busybox and subprocess.run(["ldd", busybox], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      check=False).returncode != 0, \
        "a static busybox (Debian's busybox-static, which the lab installs) is needed to fill a root of its own"
    root = trusted / "root"
    (root / "bin").mkdir(parents=True)
    shutil.copy(busybox, str(root / "bin" / "busybox"))
    for applet in ("sh", "id"):
        (root / "bin" / applet).symlink_to("busybox")
    (root / "out").mkdir(mode=0o777)
    (root / "out").chmod(0o777)
    _fake_qemu(root / "usr" / "bin" / "qemu", "id -u > /out/uid; id -G > /out/groups; export -p > /out/env")
    got = qemu_binary.probe("/usr/bin/qemu", str(root), run_as=(65534, 65534, [100, 65533]))
    assert got["version"] == "10.0.2"
    assert (root / "out" / "uid").read_text() == "65534\n"
    assert (root / "out" / "groups").read_text().split() == ["65534", "100", "65533"]
    assert "PATH='%s'" % qemu_binary.CLEAN_ENV["PATH"] in (root / "out" / "env").read_text()


def test_listed_options_are_the_names_help_starts_lines_with():
    text = ("QEMU emulator version 10.0.2\nusage: qemu-system-x86_64 [options] [disk_image]\n\n"
            "-h or -help     display this help and exit\n-machine [type=]name[,prop[=value][,...]]\n"
            "                selects emulated machine ('-machine help' for list)\n--preconfig     pause QEMU\n"
            "-M              as -machine\n")
    assert qemu_binary.listed_options(text) == set(["h", "machine", "preconfig", "M"])


def test_a_second_probe_of_the_same_binary_does_not_run_it(trusted, monkeypatch):
    runs = []
    real = subprocess.run

    def counting(cmd, *args, **kwargs):
        runs.append(cmd)
        return real(cmd, *args, check=kwargs.pop("check"), **kwargs)
    monkeypatch.setattr(qemu_binary.subprocess, "run", counting)
    path = _fake_qemu(trusted / "qemu-system-x86_64")
    first = qemu_binary.probe(path, run_as=(65534, 65534, []))
    assert len(runs) == 2
    qemu_binary._KNOWN.clear()  # a new module run: only the cache on disk is left
    assert qemu_binary.probe(path, run_as=(65534, 65534, [])) == first
    assert len(runs) == 2
