# -*- coding: utf-8 -*-
# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import copy
import re

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


def _with(vm, **more):
    vm = copy.deepcopy(vm)
    for k, v in more.items():
        if isinstance(v, dict) and isinstance(vm.get(k), dict):
            vm[k].update(v)
        else:
            vm[k] = v
    return vm


SESSION = {"token": "t1", "dialect": "cpr-exec", "step": "switching", "started": 1.0, "age_s": 42.0,
           "owner_alive": False, "stuck": True}


@pytest.mark.parametrize("vm", [
    # A paused cpr-exec guest already runs the target binary: never "already-current" while a session is open.
    _with(_vm("stuck", version="11.1.3", outdated=False, current=True), session=SESSION),
    _with(_vm("stuck"), session=SESSION),
])
def test_a_vm_with_a_session_is_neither_current_nor_upgraded(vm):
    for names in ([], ["stuck"]):
        (entry,) = upgrade_plan([vm], names=names)
        assert entry["action"] == "skipped" and not entry["precheck_failed"]
        assert "qemu_cpr_recover" in entry["reason"] and "step switching" in entry["reason"]


def test_a_move_to_an_older_release_is_refused_before_the_pause():
    vm = _with(_vm("back", version="11.1.3", outdated=False),
               target={"version": "10.0.2"}, binary={"path": "/usr/bin/qemu-system-x86_64", "root": "/"})
    (entry,) = upgrade_plan([vm], names=["back"])
    assert entry["action"] == "skipped" and entry["precheck_failed"]
    assert "QEMU 10.0.2 cannot take the guest over from the newer QEMU 11.1.3" in entry["reason"]
    # Within a release series the move is made.
    (entry,) = upgrade_plan([_with(vm, target={"version": "11.1.1"})], names=["back"])
    assert entry["action"] == "upgrade"


def _rooted(name, root, target_root, dialect="cpr-exec", transfer_ready=True):
    vm = _vm(name, version="11.1.3", dialect=dialect)
    vm["binary"] = {"path": "/usr/bin/qemu-system-x86_64", "root": root}
    vm["target"].update(path="/usr/bin/qemu-system-x86_64", root=target_root)
    vm["dialects"]["cpr-transfer"]["ready"] = transfer_ready
    vm["dialects"]["cpr-transfer"]["reasons"] = [] if transfer_ready else ["the launcher is missing"]
    return vm


def test_a_target_in_another_root_needs_cpr_transfer():
    (entry,) = upgrade_plan([_rooted("a", "/srv/trixie", "/")])
    assert (entry["action"], entry["dialect"], entry["switch_dialect"]) == ("upgrade", "cpr-transfer", "cpr-transfer")
    (entry,) = upgrade_plan([_rooted("b", "/srv/trixie/", "/srv/trixie")])
    assert (entry["action"], entry["dialect"], entry["switch_dialect"]) == ("upgrade", "cpr-exec", None)
    (entry,) = upgrade_plan([_rooted("c", "/srv/trixie", "/", transfer_ready=False)])
    assert entry["action"] == "skipped" and entry["precheck_failed"] and "the launcher is missing" in entry["reason"]
    (entry,) = upgrade_plan([_rooted("d", "/srv/trixie", "/")], dialect="cpr-exec")
    assert entry["action"] == "skipped" and "only cpr-transfer moves a guest to another root" in entry["reason"]


def test_the_binary_before_is_in_the_plan():
    vm = _with(_vm("old"), binary={"path": "/usr/bin/qemu-system-x86_64", "root": "/", "replaced_on_disk": False})
    (entry,) = upgrade_plan([vm])
    assert entry["binary_before"] == {"path": "/usr/bin/qemu-system-x86_64", "root": "/"}


def _inspected(name, path, root, version, current=False, vm_version="11.1.3"):
    vm = _vm(name, version=vm_version, outdated=False, current=current)
    vm["binary"] = {"path": "/usr/bin/qemu-system-x86_64", "root": "/srv/trixie"}
    vm["target"].update(path=path, root=root, version=version)
    return vm


def test_targets_move_each_named_vm_to_its_own_binary():
    # qemu_cpr_info ran once per target: every VM appears once per run.
    inspected = [
        _inspected("a", "/opt/qemu-a", "/srv/trixie", "11.1.2"), _inspected("b", "/opt/qemu-a", "/srv/trixie", "11.1.2"),
        _inspected("c", "/opt/qemu-a", "/srv/trixie", "11.1.2"),
        _inspected("a", "/usr/bin/qemu-system-x86_64", "/", "10.0.2"),
        _inspected("b", "/usr/bin/qemu-system-x86_64", "/", "10.0.2"),
        _inspected("c", "/usr/bin/qemu-system-x86_64", "/", "10.0.2"),
    ]
    targets = [{"vm": "a", "binary": "/opt/qemu-a", "root": "/srv/trixie", "version": "11.1.2"},
               {"vm": "b", "binary": "/usr/bin/qemu-system-x86_64", "root": "/", "version": "10.0.2",
                "launcher": ["/bin/enter"]},
               {"vm": "/run/vm/c/qmp.sock", "binary": "/opt/qemu-a", "root": "/srv/trixie/", "version": "11.0.0"}]
    plan = dict((p["vm"], p) for p in upgrade_plan(inspected, targets=targets))
    assert sorted(plan) == ["a", "b", "c"]
    assert (plan["a"]["action"], plan["a"]["target_binary"], plan["a"]["dialect"]) == ("upgrade", "/opt/qemu-a", "cpr-transfer")
    assert plan["b"]["action"] == "skipped" and "from the newer QEMU 11.1.3" in plan["b"]["reason"]
    assert plan["b"]["launcher"] == ["/bin/enter"]
    assert plan["c"]["action"] == "skipped" and plan["c"]["precheck_failed"]
    assert plan["c"]["reason"] == "/opt/qemu-a in /srv/trixie/ is now QEMU 11.1.2, not 11.0.0 as recorded: put that version back first"


def test_targets_leave_other_vms_alone_and_a_target_back_on_its_binary_is_current():
    inspected = [_inspected("a", "/opt/a", "/", "11.1.3", current=True), _inspected("z", "/opt/a", "/", "11.1.3")]
    plan = dict((p["vm"], p) for p in upgrade_plan(inspected, targets=[{"vm": "a", "binary": "/opt/a"}]))
    assert plan["a"]["action"] == "already-current"
    assert plan["z"] == dict(plan["z"], action="skipped", reason="not in the list of VMs to upgrade")
    with pytest.raises(AnsibleFilterError, match="against its target"):
        upgrade_plan(inspected, targets=[{"vm": "a", "binary": "/opt/other"}])
    with pytest.raises(AnsibleFilterError, match="vm and binary"):
        upgrade_plan(inspected, targets=[{"binary": "/opt/a"}])


def test_names_as_text_are_refused():
    # Text would be compared with VM names character by character; the role makes it a list first.
    with pytest.raises(AnsibleFilterError, match="names must be a list"):
        upgrade_plan(FLEET, names="old,plain")


POLICY = [
    {"from": "10.0", "to": "11.1", "status": "tested", "proof": "tests/fleet/run.sh"},
    {"from": "10.0.2", "to": "11.1.3", "status": "bad", "reason": "a regression of 10.0.2 only"},
    {"from": "11.1", "to": "10.0", "status": "bad", "reason": "10.0 fails on 11.1's CPR state"},
]


@pytest.mark.parametrize("version, target, unknown, canary, action, status, why", [
    # An exact version wins over its release series.
    ("10.0.2", "11.1.3", "allow", False, "skipped", "bad", "QEMU 10.0.2 -> 11.1.3 is known bad: a regression"),
    ("10.0.7", "11.1.3", "refuse", False, "upgrade", "tested", ""),
    ("10.1.0", "11.1.3", "allow", False, "upgrade", "unknown", ""),
    ("10.1.0", "11.1.3", "canary", True, "upgrade", "unknown", ""),
    ("10.1.0", "11.1.3", "canary", False, "skipped", "unknown", "unknown pair .* on the canary batch only"),
    ("10.1.0", "11.1.3", "refuse", True, "skipped", "unknown", "unknown pair .* moves nowhere"),
])
def test_version_pairs(version, target, unknown, canary, action, status, why):
    vm = _vm("vm", version=version)
    vm["target"]["version"] = target
    (entry,) = upgrade_plan([vm], policy=POLICY, unknown_pairs=unknown, canary=canary)
    assert (entry["action"], entry["version_pair"]["status"]) == (action, status)
    assert (entry["version_pair"]["from"], entry["version_pair"]["to"]) == (version, target)
    if why:
        assert re.search(why, entry["reason"]) and entry["precheck_failed"]
    else:
        assert not entry["precheck_failed"] and not entry["reason"]


def test_a_current_vm_is_current_whatever_its_pair():
    (entry,) = upgrade_plan([_vm("current", version="11.1.3", outdated=False, current=True)], policy=POLICY,
                            unknown_pairs="refuse")
    assert entry["action"] == "already-current" and entry["version_pair"]["status"] == "unknown"


@pytest.mark.parametrize("policy, unknown", [([{"from": "10.0", "to": "11.1"}], "allow"),
                                             ([{"from": "10.0", "to": "11.1", "status": "fine"}], "allow"),
                                             ([], "sometimes")])
def test_a_bad_policy_is_a_clear_error(policy, unknown):
    with pytest.raises(AnsibleFilterError, match="upgrade_plan: "):
        upgrade_plan([_vm("vm")], policy=policy, unknown_pairs=unknown)


def test_a_vm_upgraded_by_an_earlier_run_keeps_that_runs_pause():
    vm = _vm("done", version="11.1.3", outdated=False, current=True)
    vm["last_upgrade"] = {"old_version": "10.0.2", "new_version": "11.1.3", "pause_ms": 6.5, "paused_at": 1700000000.5}
    (entry,) = upgrade_plan([vm])
    assert (entry["action"], entry["done_before"], entry["pause_ms"], entry["paused_at"]) == \
        ("already-current", True, 6.5, 1700000000.5)
    assert "upgraded by an earlier run from QEMU 10.0.2 (paused 6.5 ms)" in entry["reason"]
    (fresh,) = upgrade_plan([_vm("current", version="11.1.3", outdated=False, current=True)])
    assert "done_before" not in fresh and "pause_ms" not in fresh
