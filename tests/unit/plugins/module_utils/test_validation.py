# -*- coding: utf-8 -*-
# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import stat

import pytest
import yaml

from ansible_collections.cpr.qemu.plugins.module_utils import validation

with open(os.path.join(os.path.dirname(__file__), "data", "new_argv.yml")) as f:
    NEW_ARGV = yaml.safe_load(f)


@pytest.mark.parametrize("case", NEW_ARGV["cases"], ids=[c["id"] for c in NEW_ARGV["cases"]])
def test_check_argv(case):
    problems = validation.check_argv(case["argv"], NEW_ARGV["vm"], NEW_ARGV["qmp_socket"])
    assert len(problems) == len(case["problems"]), problems
    for wanted, got in zip(case["problems"], problems):
        assert wanted in got


@pytest.mark.parametrize("case", NEW_ARGV["live_update_cases"], ids=[c["id"] for c in NEW_ARGV["live_update_cases"]])
def test_check_argv_live_update(case):
    vm = dict(NEW_ARGV["live_update_vm"], **case.get("vm_patch", {}))
    problems = validation.check_argv(case["argv"], vm, NEW_ARGV["qmp_socket"], "live-update")
    assert len(problems) == len(case["problems"]), problems
    for wanted, got in zip(case["problems"], problems):
        assert wanted in got


def test_derive_argv_pins_the_machine_and_drops_what_the_modules_own():
    old = ["/usr/bin/qemu-system-x86_64", "-S", "-machine", "q35,memory-backend=ram0,aux-ram-share=on",
           "-object", "memory-backend-memfd,id=ram0,size=256M,share=on", "-daemonize",
           "-qmp", "unix:/run/vm/qmp.sock,server=on", "-incoming", "file:/old/state"]
    new = validation.derive_argv(old, "/srv/new/qemu-system-x86_64", "pc-q35-10.0")
    assert new == NEW_ARGV["good"]
    assert validation.check_argv(new, NEW_ARGV["vm"], NEW_ARGV["qmp_socket"]) == []


@pytest.mark.parametrize("argv, pinned", [
    (["q", "-M", "q35"], ["q", "-M", "pc-q35-10.0"]),
    (["q", "-machine", "accel=tcg"], ["q", "-machine", "pc-q35-10.0,accel=tcg"]),
    (["q", "-m", "1G"], ["q", "-machine", "pc-q35-10.0", "-m", "1G"]),
])
def test_pin_machine(argv, pinned):
    assert validation.pin_machine(argv, "pc-q35-10.0") == pinned


@pytest.mark.parametrize("text, size", [("256M", 256 << 20), ("1G", 1 << 30), ("4096", 4096),
                                        ("2k", 2048), ("1.5G", 3 << 29), ("0.5k", 512), ("1T", 1 << 40),
                                        ("1.5X", None), ("1..5G", None), ("", None)])
def test_parse_size(text, size):
    assert validation.parse_size(text) == size


def test_kvm_problems_name_who_cannot_open_dev_kvm(trusted_dir):
    dev = os.path.join(trusted_dir, "dev")
    os.mkdir(dev)
    assert "is not there" in validation.kvm_problems(trusted_dir, 0, 0, [])[0]
    os.mknod(os.path.join(dev, "kvm"), 0o600 | stat.S_IFCHR, os.makedev(10, 232))
    assert validation.kvm_problems(trusted_dir, 0, 0, []) == []
    assert "cannot be opened for reading and writing by uid 1000" in validation.kvm_problems(trusted_dir, 1000, 1000, [])[0]
    os.chown(os.path.join(dev, "kvm"), 0, 36)
    os.chmod(os.path.join(dev, "kvm"), 0o660)
    assert validation.kvm_problems(trusted_dir, 1000, 1000, [36]) == []


def test_relative_paths_are_named():
    assert validation.relative_paths(state_dir="cpr-here", new_root="/srv/root", new_binary=None) == ["state_dir"]


def test_permits_judges_by_the_one_class_the_user_falls_in():
    st = os.stat_result((stat.S_IFCHR | 0o066, 0, 0, 1, 1000, 36, 0, 0, 0, 0))
    assert not validation.permits(st, 1000, 36, [], 0o6), "the owner's class denies; the group's does not count"
    assert validation.permits(st, 2000, 2000, [36], 0o6)
    assert validation.permits(st, 2000, 2000, [], 0o6)
    st = os.stat_result((stat.S_IFCHR | 0o606, 0, 0, 1, 1000, 36, 0, 0, 0, 0))
    assert not validation.permits(st, 2000, 2000, [36], 0o6), "the group's class denies; others' does not count"
    assert validation.permits(st, 0, 0, [], 0o6)
