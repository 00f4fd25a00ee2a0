# -*- coding: utf-8 -*-
# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

import pytest

from ansible_collections.cpr.qemu.plugins.module_utils.dialects import cpr_transfer


def _session(path):
    return {"new_argv": ["/usr/bin/qemu-system-x86_64", "-pidfile", path], "uid": 0}


def test_only_the_pidfile_qemu_holds_open_for_writing_is_handed_over(trusted_dir):
    """This test's own process stands in for QEMU: it holds its pidfile open for writing."""
    path = os.path.join(trusted_dir, "vm.pid")
    other = os.path.join(trusted_dir, "passwd")
    for name in (path, other):
        with open(name, "w") as f:
            f.write("1\n")
    with open(path, "r+") as held:
        assert cpr_transfer.pidfile_problems(dict(_session(path), pid=os.getpid())) == []
        # A name that resolves elsewhere now (a relative -pidfile after -daemonize's chdir, say) is not touched.
        problems = cpr_transfer.pidfile_problems(dict(_session(other), pid=os.getpid()))
        assert "is not the file QEMU holds open" in problems[0]
        with cpr_transfer.PidFile(_session(path), os.getpid()) as pids:
            pids.move_aside()
            assert sorted(os.listdir(trusted_dir)) == ["passwd", "vm.pid.cpr-old"]
            with open(path, "w") as new:  # the new QEMU writes its own
                new.write("2\n")
            pids.give_back()  # a rollback: the old one is back, the new one gone
            assert sorted(os.listdir(trusted_dir)) == ["passwd", "vm.pid"]
            assert os.path.samestat(os.fstat(held.fileno()), os.stat(path))
            pids.move_aside()
            pids.drop_old()  # a switch that finished: the new QEMU's is the pidfile
            assert sorted(os.listdir(trusted_dir)) == ["passwd"]


def test_a_vm_without_a_pidfile_has_nothing_to_hand_over():
    session = {"new_argv": ["/usr/bin/qemu-system-x86_64"], "uid": 0, "pid": os.getpid()}
    assert cpr_transfer.pidfile_problems(session) == []


@pytest.mark.parametrize("returncode, said", [(1, "exit status 1"), (126, "exit status 126"),
                                              (-9, "killed by SIGKILL"), (-200, "killed by signal 200")])
def test_how_the_new_qemu_ended_is_said(returncode, said):
    assert cpr_transfer._ended(returncode) == said
