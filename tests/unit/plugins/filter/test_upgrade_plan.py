# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import copy

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.cpr.qemu.plugins.filter.upgrade_line import upgrade_line
from ansible_collections.cpr.qemu.plugins.filter.upgrade_plan import upgrade_plan, upstream_version
from ansible_collections.cpr.qemu.plugins.filter.upgrade_table import upgrade_table


def _vm(name, version="10.0.2", outdated=True, current=False, offers=True, dialect="cpr-transfer"):
    return {"name": name, "qmp_socket": "/run/vm/%s/qmp.sock" % name, "pid": 100, "version": version,
            "preferred_dialect": dialect,
            "dialects": {"cpr-transfer": {"offered": True, "ready": bool(dialect), "reasons": [] if dialect else
                                          ["guest RAM 'pc.ram' is QEMU's private anonymous memory"]},
                         "cpr-exec": {"offered": False, "ready": False, "reasons": ["not offered"]}},
            "target": {"version": "11.1.3", "outdated": outdated, "on_target_binary": current,
                       "offers_machine_type": offers,
                       "notes": [] if offers else ["target QEMU 11.1.3 does not offer the VM's machine type pc-q35-5.0"]}}


FLEET = [
    _vm("old"),
    _vm("current", version="11.1.3", outdated=False, current=True),
    _vm("newer", version="11.1.3", outdated=False),
    _vm("plain", dialect=None),
    _vm("ancient", offers=False),
    {"qmp_socket": "/run/vm/busy/qmp.sock", "error": "in use by another client", "error_kind": "busy"},
]


def _actions(plan):
    return dict((p["vm"], (p["action"], p["reason"])) for p in plan)


def test_default_selects_outdated_ready_vms_and_says_why_not_for_the_rest():
    got = _actions(upgrade_plan(copy.deepcopy(FLEET)))
    assert got["old"] == ("upgrade", "")
    assert got["current"] == ("already-current", "runs the target binary")
    assert got["newer"][0] == "already-current" and "not older than the target" in got["newer"][1]
    assert got["plain"][0] == "skipped" and "'pc.ram'" in got["plain"][1] and "cpr-exec" not in got["plain"][1]
    assert got["ancient"] == ("skipped", "target QEMU 11.1.3 does not offer the VM's machine type pc-q35-5.0")
    assert got["/run/vm/busy/qmp.sock"] == ("skipped", "not inspected: in use by another client")
    failed_prechecks = [p["vm"] for p in upgrade_plan(copy.deepcopy(FLEET)) if p["precheck_failed"]]
    assert failed_prechecks == ["plain", "ancient"]


def test_names_pick_vms_even_when_not_outdated():
    got = _actions(upgrade_plan(copy.deepcopy(FLEET), names=["newer", "/run/vm/old/qmp.sock"]))
    assert got["newer"] == ("upgrade", "")
    assert got["old"] == ("upgrade", "")
    assert got["plain"] == ("skipped", "not in the list of VMs to upgrade")


def test_query_narrows_the_selection():
    got = _actions(upgrade_plan(copy.deepcopy(FLEET), query="[?name=='plain']"))
    assert got["old"] == ("skipped", "not selected by the query")
    assert got["plain"][0] == "skipped" and got["plain"][1].startswith("not ready")


def test_bad_query_and_missing_target_are_clear_errors():
    with pytest.raises(AnsibleFilterError, match="bad JMESPath query"):
        upgrade_plan(copy.deepcopy(FLEET), query="[?")
    no_target = _vm("x")
    del no_target["target"]
    with pytest.raises(AnsibleFilterError, match="target_binary"):
        upgrade_plan([no_target])


@pytest.mark.parametrize("result, line", [
    ({"host": "hv1", "vm": "web1", "status": "upgraded", "version_before": "10.0.2", "version_after": "11.1.3",
      "dialect": "cpr-transfer", "pid_before": 1, "pid_after": 2, "pause_ms": 12.44, "reason": "ok"},
     "hv1 web1: upgraded 10.0.2 -> 11.1.3 by cpr-transfer, PID 1 -> 2, paused 12.4 ms"),
    ({"host": "hv1", "vm": "db1", "status": "skipped", "version_before": "10.0.2", "reason": "not ready: x"},
     "hv1 db1: skipped (QEMU 10.0.2): not ready: x"),
    ({"host": "hv1", "vm": "web2", "status": "planned", "version_before": "10.0.2", "version_after": None,
      "version_target": "11.1.3", "dialect": "cpr-exec", "pid_after": None, "pause_ms": None, "reason": "would"},
     "hv1 web2: planned 10.0.2 -> 11.1.3 by cpr-exec: would"),
])
def test_upgrade_line(result, line):
    assert upgrade_line(result) == line


@pytest.mark.parametrize("package, upstream", [("1:11.1.3+ds-1~bpo13+1", "11.1.3"), ("1:10.0.13+ds-0+deb13u1", "10.0.13"),
                                               ("11.2.0-1", "11.2.0"), ("10.0.2", "10.0.2")])
def test_upstream_version_of_a_debian_package_version(package, upstream):
    assert upstream_version(package) == upstream


def test_a_pending_package_version_is_compared_before_it_is_installed():
    # In check mode the target binary on disk is still the one the VMs run.
    fleet = [_vm("old", outdated=False, current=True), _vm("plain", outdated=False, current=True, dialect=None),
             _vm("newer", version="11.2.0", outdated=False)]
    got = dict((p["vm"], p) for p in upgrade_plan(copy.deepcopy(fleet), pending_version="1:11.1.3+ds-1~bpo13+1"))
    assert (got["old"]["action"], got["old"]["version_target"]) == ("upgrade", "11.1.3")
    assert got["plain"]["action"] == "skipped" and got["plain"]["reason"].startswith("not ready")
    assert got["newer"]["action"] == "already-current"


def test_upgrade_table_aligns_the_columns_and_counts_the_statuses():
    lines = upgrade_table([
        {"host": "hv1", "vm": "web1", "status": "upgraded", "version_before": "10.0.2", "version_after": "11.1.3",
         "dialect": "cpr-transfer", "pause_ms": 12.44, "reason": "verified"},
        {"host": "hv10", "vm": "db", "status": "skipped", "version_before": "10.0.2", "version_after": "10.0.2",
         "dialect": None, "pause_ms": None, "reason": "not ready: cpr-transfer: guest RAM 'pc.ram'"},
    ])
    assert lines == [
        "HOST  VM    STATUS    QEMU              DIALECT       PAUSE    REASON",
        "hv1   web1  upgraded  10.0.2 -> 11.1.3  cpr-transfer  12.4 ms",
        "hv10  db    skipped   10.0.2            -             -        not ready: cpr-transfer: guest RAM 'pc.ram'",
        "2 VMs: 1 skipped, 1 upgraded",
    ]
