# -*- coding: utf-8 -*-
# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.cpr.qemu.plugins.filter.rollback_targets import rollback_targets
from ansible_collections.cpr.qemu.plugins.filter.upgrade_line import upgrade_line
from ansible_collections.cpr.qemu.plugins.filter.upgrade_recovery import upgrade_recovery
from ansible_collections.cpr.qemu.plugins.filter.upgrade_table import upgrade_table


def _settled(name, action, recovered):
    return {"vm": "VM %s (/run/vm/%s/qmp.sock)" % (name, name), "qmp_socket": "/run/vm/%s/qmp.sock" % name,
            "key": "qmp.sock-0123456789abcdef", "step": "switching", "action": action, "guest": "somewhere",
            "recovered": recovered, "msg": "%s: %s" % (name, action)}


RECOVERY = {"failed": True, "msg": "2 of 5 sessions not settled", "settled": [
    _settled("a", "finished", True), _settled("b", "rolled-back", True), _settled("c", "released", True),
    _settled("d", "lost", False), _settled("e", "in-progress", False)]}


def test_every_session_is_a_result():
    vms = [{"qmp_socket": "/run/vm/a/qmp.sock", "name": "guest-a"}]
    got = dict((r["vm"], r) for r in upgrade_recovery(RECOVERY, "hv1", vms=vms))
    assert sorted(got) == ["b", "c", "d", "e", "guest-a"]
    assert [got[v]["status"] for v in ("guest-a", "b", "c", "d", "e")] == ["recovered"] * 3 + ["failed"] * 2
    assert got["guest-a"]["action"] == "finished" and got["guest-a"]["host"] == "hv1"
    assert got["d"]["reason"] == "d: lost" and got["d"]["recovered"] is False
    line = upgrade_line(got["b"])
    assert line == "hv1 b: recovered (rolled-back, interrupted at step switching): b: rolled-back"
    assert upgrade_table(list(got.values()))[-1] == "5 VMs: 2 failed, 3 recovered"


def test_check_mode_plans_and_a_failed_module_fails_the_host():
    (rec,) = upgrade_recovery({"settled": [_settled("a", "would-settle", False)]}, "hv1", check_mode=True)
    assert rec["status"] == "planned"
    (rec,) = upgrade_recovery({"failed": True, "msg": "MODULE FAILURE"}, "hv1")
    assert rec["status"] == "failed" and "MODULE FAILURE" in rec["reason"]
    assert upgrade_recovery({"changed": False, "settled": [], "msg": "no live upgrade to settle"}, "hv1") == []


REPORT = [
    {"host": "h1", "vm": "a", "status": "upgraded", "version_before": "11.1.3",
     "binary_before": {"path": "/run/a/qemu", "root": "/srv/trixie"}},
    {"host": "h1", "vm": "b", "status": "skipped", "version_before": "10.0.2",
     "binary_before": {"path": "/usr/bin/qemu-system-x86_64", "root": "/"}},
    {"host": "h2", "vm": "c", "status": "upgraded", "version_before": "10.0.2",
     "binary_before": {"path": "/usr/bin/qemu-system-x86_64", "root": "/"}},
]


def test_rollback_targets_are_the_binaries_from_before_of_the_upgraded_vms():
    assert rollback_targets(REPORT, launchers={"/srv/trixie": ["/bin/enter"]}) == {
        "h1": [{"vm": "a", "binary": "/run/a/qemu", "root": "/srv/trixie", "version": "11.1.3",
                "launcher": ["/bin/enter"]}],
        "h2": [{"vm": "c", "binary": "/usr/bin/qemu-system-x86_64", "root": "/", "version": "10.0.2",
                "launcher": None}]}
    assert list(rollback_targets(REPORT, vms=["c"])) == ["h2"]


def test_a_switch_finished_by_the_recovery_is_rolled_back_when_the_report_knows_the_binary_before():
    settled = dict(_settled("f", "finished", True), old_version="10.0.2", new_version="11.1.3",
                   old_binary={"path": "/usr/bin/qemu-system-x86_64", "root": "/", "replaced_on_disk": False})
    (rec,) = upgrade_recovery({"settled": [settled, _settled("g", "finished", True)]}, "h3")[:1]
    assert (rec["version_before"], rec["version_after"]) == ("10.0.2", "11.1.3")
    report = upgrade_recovery({"settled": [settled, _settled("g", "finished", True)]}, "h3")
    assert rollback_targets(report) == {"h3": [{"vm": "f", "binary": "/usr/bin/qemu-system-x86_64", "root": "/",
                                                "version": "10.0.2", "launcher": None}]}


def test_a_report_without_the_binary_before_is_refused():
    with pytest.raises(AnsibleFilterError, match="older cpr.qemu"):
        rollback_targets([{"host": "h1", "vm": "a", "status": "upgraded", "version_before": "10.0.2"}])
