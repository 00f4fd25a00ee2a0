# -*- coding: utf-8 -*-
# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import copy

import pytest

from ansible.errors import AnsibleFilterError
from prometheus_client.parser import text_string_to_metric_families

from ansible_collections.cpr.qemu.plugins.filter.drift_metrics import drift_metrics
from ansible_collections.cpr.qemu.plugins.module_utils import drift

HOSTILE = 'we"b\\1\nx'


def _vm(socket, **more):
    entry = dict((k, None) for k in drift.VM_KEYS)
    entry.update(qmp_socket=socket, pid=100, error_kind=None, runstate="running", machine_type="pc-q35-10.0",
                 running_version="10.0.2", running_package="Debian 1:10.0.2+ds-2", binary_path="/usr/bin/qemu-system-x86_64",
                 binary_root="/", binary_state="present", installed_version="11.1.3", installed_package="Debian 1:11.1.3",
                 outdated=True, cpr_capable=True, preferred_dialect="cpr-transfer", offered_dialects=["cpr-transfer"],
                 blockers=[], next_restart=[], untrusted=False)
    entry.update(more)
    return entry


FLEET = [
    _vm("/run/vm/web1/qmp.sock", name="web1"),
    # No name: the socket names the VM.
    _vm("/run/vm/anon/qmp.sock", outdated=False, running_version="11.1.3", preferred_dialect="cpr-exec"),
    _vm("/run/vm/plain/qmp.sock", name="plain", cpr_capable=False, preferred_dialect=None,
        blockers=["guest RAM 'pc.ram' is QEMU's private anonymous memory", "-machine aux-ram-share=on is not set"],
        next_restart=["-object memory-backend-memfd,id=ram0,size=4G,share=on and -machine memory-backend=ram0",
                      "-machine aux-ram-share=on"], next_restart_dialect="cpr-transfer", binary_state="replaced"),
    # Hostile label values: quotes, backslashes, line feeds.
    _vm('/run/vm/"evil"\\dir\n/qmp.sock', name=HOSTILE, running_package='Build "x" \\ y\nz', binary_state="deleted",
        installed_version=None, outdated=None),
    # Another VM of the same name: its own series.
    _vm("/run/vm/web1-b/qmp.sock", name="web1", cpr_capable=False, preferred_dialect=None, blockers=["x"]),
    # Not inspected.
    dict(_vm("/run/vm/busy/qmp.sock"), pid=None, error_kind="busy", runstate=None, machine_type=None, running_version=None,
         running_package=None, binary_path=None, binary_root=None, binary_state=None, outdated=None, cpr_capable=False,
         preferred_dialect=None, offered_dialects=[], blockers=["in use by another client"]),
]

VM_METRICS = ["cpr_qemu_vm_info", "cpr_qemu_vm_cpr_capable", "cpr_qemu_vm_outdated", "cpr_qemu_vm_blockers",
              "cpr_qemu_vm_next_restart_changes"]
HOST_METRICS = ["cpr_qemu_vms", "cpr_qemu_vms_cpr_capable", "cpr_qemu_vms_outdated", "cpr_qemu_vms_uninspected",
                "cpr_qemu_vms_fixable_at_restart", "cpr_qemu_vms_binary", "cpr_qemu_vms_preferred_dialect"]
INFO_LABELS = ["host", "vm", "qmp_socket", "running_version", "running_package", "installed_version", "binary_path",
               "binary_state", "machine_type", "preferred_dialect", "managed_by", "error_kind"]


def _families(text):
    return dict((f.name, f) for f in text_string_to_metric_families(text))


def _by_socket(family):
    out = {}
    for s in family.samples:
        assert s.labels["qmp_socket"] not in out, "two series for one VM"
        out[s.labels["qmp_socket"]] = s
    return out


def test_names_types_and_order():
    text = drift_metrics(FLEET, "hv1")
    families = list(text_string_to_metric_families(text))
    assert [f.name for f in families] == VM_METRICS + HOST_METRICS
    for f in families:
        assert f.type == "gauge" and f.documentation
        assert "# HELP %s " % f.name in text and "# TYPE %s gauge\n" % f.name in text
        assert all(s.name == f.name for s in f.samples)
    assert text.endswith("\n") and not text.endswith("\n\n")


def test_per_vm_series_with_hostile_labels():
    families = _families(drift_metrics(FLEET, 'hv"1\\\n'))
    info = _by_socket(families["cpr_qemu_vm_info"])
    assert sorted(info) == sorted(vm["qmp_socket"] for vm in FLEET)
    evil = info['/run/vm/"evil"\\dir\n/qmp.sock']
    assert sorted(evil.labels) == sorted(INFO_LABELS)
    assert evil.labels["host"] == 'hv"1\\\n'
    assert evil.labels["vm"] == HOSTILE
    assert evil.labels["running_package"] == 'Build "x" \\ y\nz'
    assert evil.labels["binary_state"] == "deleted" and evil.labels["installed_version"] == ""
    assert evil.value == 1
    assert info["/run/vm/anon/qmp.sock"].labels["vm"] == "/run/vm/anon/qmp.sock"
    assert info["/run/vm/web1/qmp.sock"].labels["vm"] == info["/run/vm/web1-b/qmp.sock"].labels["vm"] == "web1"
    assert info["/run/vm/busy/qmp.sock"].labels["error_kind"] == "busy"
    assert info["/run/vm/web1/qmp.sock"].labels["error_kind"] == ""
    assert info["/run/vm/web1/qmp.sock"].labels["running_version"] == "10.0.2"
    assert info["/run/vm/web1/qmp.sock"].labels["installed_version"] == "11.1.3"

    capable = dict((k, s.value) for k, s in _by_socket(families["cpr_qemu_vm_cpr_capable"]).items())
    assert capable == {"/run/vm/web1/qmp.sock": 1, "/run/vm/anon/qmp.sock": 1, "/run/vm/plain/qmp.sock": 0,
                       '/run/vm/"evil"\\dir\n/qmp.sock': 1, "/run/vm/web1-b/qmp.sock": 0, "/run/vm/busy/qmp.sock": 0}
    # No series where it is not known whether the VM is outdated.
    outdated = dict((k, s.value) for k, s in _by_socket(families["cpr_qemu_vm_outdated"]).items())
    assert outdated == {"/run/vm/web1/qmp.sock": 1, "/run/vm/anon/qmp.sock": 0, "/run/vm/plain/qmp.sock": 1,
                        "/run/vm/web1-b/qmp.sock": 1}
    blockers = _by_socket(families["cpr_qemu_vm_blockers"])
    assert blockers["/run/vm/plain/qmp.sock"].value == 2 and blockers["/run/vm/web1/qmp.sock"].value == 0
    changes = _by_socket(families["cpr_qemu_vm_next_restart_changes"])
    assert changes["/run/vm/plain/qmp.sock"].value == 2 and changes["/run/vm/busy/qmp.sock"].value == 0
    for name in VM_METRICS[1:]:
        for s in families[name].samples:
            assert sorted(s.labels) == ["host", "qmp_socket", "vm"]


def test_per_host_counts():
    families = _families(drift_metrics(FLEET, "hv1"))

    def values(name, label=None):
        samples = families[name].samples
        assert all(s.labels["host"] == "hv1" for s in samples)
        if label is None:
            assert len(samples) == 1 and sorted(samples[0].labels) == ["host"]
            return samples[0].value
        return dict((s.labels[label], s.value) for s in samples)

    assert values("cpr_qemu_vms") == 6
    assert values("cpr_qemu_vms_cpr_capable") == 3
    assert values("cpr_qemu_vms_outdated") == 3
    assert values("cpr_qemu_vms_uninspected") == 1
    assert values("cpr_qemu_vms_fixable_at_restart") == 1
    assert values("cpr_qemu_vms_binary", "binary_state") == {"present": 3, "replaced": 1, "deleted": 1}
    assert values("cpr_qemu_vms_preferred_dialect", "dialect") == {"cpr-exec": 1, "live-update": 0, "cpr-transfer": 2}


def test_without_host_and_without_vms():
    families = _families(drift_metrics([]))
    assert families["cpr_qemu_vms"].samples[0].labels == {} and families["cpr_qemu_vms"].samples[0].value == 0
    assert families["cpr_qemu_vm_info"].samples == []
    families = _families(drift_metrics(FLEET))
    assert "host" not in families["cpr_qemu_vm_info"].samples[0].labels


def test_deterministic_whatever_the_input_order():
    text = drift_metrics(FLEET, "hv1")
    assert drift_metrics(list(reversed(copy.deepcopy(FLEET))), "hv1") == text
    lines = [line for line in text.splitlines() if line.startswith("cpr_qemu_vm_cpr_capable{")]
    assert lines[0] == 'cpr_qemu_vm_cpr_capable{host="hv1",vm="we\\"b\\\\1\\nx",qmp_socket="/run/vm/\\"evil\\"\\\\dir\\n/qmp.sock"} 1'


def test_works_on_the_facts_drift_builds():
    entries = drift.facts([{"qmp_socket": "/run/vm/x/qmp.sock", "error": "gone", "error_kind": "missing"}])["cpr_qemu_vms"]
    families = _families(drift_metrics(entries, "hv1"))
    assert families["cpr_qemu_vms_uninspected"].samples[0].value == 1


@pytest.mark.parametrize("vms, host", [("web1", "hv1"), ([["a"]], "hv1"), (None, "hv1"), ([], 5)])
def test_rejects_what_is_not_the_fact(vms, host):
    with pytest.raises(AnsibleFilterError):
        drift_metrics(vms, host)
