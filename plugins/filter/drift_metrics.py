# -*- coding: utf-8 -*-
# Copyright (c) 2026 cpr.qemu contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
name: drift_metrics
short_description: A host's QEMU drift inventory as a Prometheus textfile for node-exporter
version_added: 0.1.0
description:
  - Turns the C(cpr_qemu_vms) fact that M(cpr.qemu.qemu_cpr_info) sets into the Prometheus text exposition format
    (version 0.0.4), for node-exporter's textfile collector (C(--collector.textfile.directory); write the file
    there with a C(.prom) name, as M(ansible.builtin.copy) does, atomically).
  - All metrics are gauges, each with its C(# HELP) and C(# TYPE) line, in the order listed below; the series of a
    per-VM metric are sorted by C(qmp_socket). The same facts give the same text, byte for byte.
  - Per VM, with the labels C(host) (when O(host) is given), C(vm) (the guest name, or its QMP socket when it
    has none) and C(qmp_socket) (unique on a host, so two VMs of one name are two series).
  - C(cpr_qemu_vm_info) is 1, with the labels C(running_version), C(running_package), C(installed_version),
    C(binary_path), C(binary_state) (C(present), C(replaced), C(deleted)), C(machine_type), C(preferred_dialect),
    C(managed_by) and C(error_kind) (an empty string where the fact is null).
  - C(cpr_qemu_vm_cpr_capable) is 1 when a CPR dialect is ready for the VM now, else 0.
  - C(cpr_qemu_vm_outdated) is 1 when the VM is outdated, 0 when it is not; there is no series where that is
    unknown (no target binary was given and its binary is still on disk, or the VM could not be inspected).
  - C(cpr_qemu_vm_blockers) is the number of its blockers (0 when it is CPR-capable).
  - C(cpr_qemu_vm_next_restart_changes) is the number of changes to its configuration that its next restart
    should make (C(next_restart)).
  - Per host, with the label C(host) (when O(host) is given) - C(cpr_qemu_vms) counts the VMs;
    C(cpr_qemu_vms_cpr_capable), C(cpr_qemu_vms_outdated), C(cpr_qemu_vms_uninspected) (VMs that could not be
    inspected) and C(cpr_qemu_vms_fixable_at_restart) count those VMs; C(cpr_qemu_vms_binary) counts the
    inspected VMs per C(binary_state) label (always all three); C(cpr_qemu_vms_preferred_dialect) counts the VMs
    per C(dialect) label (C(cpr-exec), C(live-update), C(cpr-transfer), always all three) that dialect is
    preferred for.
  - Label values are escaped as the format requires (backslash, double quote, line feed).
author:
  - cpr.qemu contributors (@cpr-qemu)
options:
  _input:
    description: The C(cpr_qemu_vms) fact of one host.
    type: list
    elements: dict
    required: true
  host:
    description:
      - The host's name, given to every series as the label C(host). Left out when not given (node-exporter's
        scrape names the host as C(instance) anyway).
    type: str
seealso:
  - module: cpr.qemu.qemu_cpr_info
  - name: Prometheus text exposition format
    description: The format this filter writes.
    link: https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format
  - name: node-exporter's textfile collector
    description: Reads C(*.prom) files of this format from a directory.
    link: https://github.com/prometheus/node_exporter#textfile-collector
"""

EXAMPLES = r"""
- name: Refresh the drift inventory
  cpr.qemu.qemu_cpr_info:
    target_binary: /usr/bin/qemu-system-x86_64

- name: Publish it for node-exporter's textfile collector
  ansible.builtin.copy:
    content: "{{ ansible_facts.cpr_qemu_vms | cpr.qemu.drift_metrics(host=inventory_hostname) }}"
    dest: /var/lib/prometheus/node-exporter/cpr_qemu.prom
    mode: "0644"

# The fleet's share of CPR-capable VMs, in PromQL:
#   sum(cpr_qemu_vms_cpr_capable) / sum(cpr_qemu_vms)
# VMs still running a binary a package upgrade replaced:
#   cpr_qemu_vm_info{binary_state!="present"}
"""

RETURN = r"""
_value:
  description: The metrics, in the Prometheus text exposition format, ending with a line feed.
  type: str
  sample: |-
    # HELP cpr_qemu_vm_info A running QEMU VM and its build: running and installed version, binary on disk.
    # TYPE cpr_qemu_vm_info gauge
    cpr_qemu_vm_info{host="hv1",vm="web1",qmp_socket="/run/vm/web1/qmp.sock",running_version="10.0.2",...} 1
    # HELP cpr_qemu_vm_cpr_capable Whether a CPR dialect is ready for the VM now (1) or not (0).
    # TYPE cpr_qemu_vm_cpr_capable gauge
    cpr_qemu_vm_cpr_capable{host="hv1",vm="web1",qmp_socket="/run/vm/web1/qmp.sock"} 1
"""

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_text
from ansible.module_utils.six import string_types

from ansible_collections.cpr.qemu.plugins.module_utils.drift import BINARY_STATES
from ansible_collections.cpr.qemu.plugins.module_utils.readiness import DIALECTS
INFO_LABELS = ("running_version", "running_package", "installed_version", "binary_path", "binary_state",
               "machine_type", "preferred_dialect", "managed_by", "error_kind")

# (name, help) of the per-VM metrics, in the order they are written.
VM_METRICS = (
    ("cpr_qemu_vm_info", "A running QEMU VM and its build: running and installed version, binary on disk."),
    ("cpr_qemu_vm_cpr_capable", "Whether a CPR dialect is ready for the VM now (1) or not (0)."),
    ("cpr_qemu_vm_outdated", "Whether the VM runs an older QEMU than installed or a binary replaced on disk (1) or not (0)."),
    ("cpr_qemu_vm_blockers", "What keeps the VM from every CPR dialect now: the number of reasons."),
    ("cpr_qemu_vm_next_restart_changes", "Changes to make at the VM's next restart for it to become CPR-capable."),
)


def escape_label(value):
    """A label value as the text format writes it: backslash, double quote and line feed escaped."""
    return to_text(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _series(name, labels, value):
    inner = ",".join('%s="%s"' % (k, escape_label("" if v is None else v)) for k, v in labels)
    return "%s{%s} %d" % (name, inner, value) if inner else "%s %d" % (name, value)


def _vm_labels(host, vm):
    labels = [("host", host)] if host is not None else []
    name = vm.get("name")
    return labels + [("vm", name if name not in (None, "") else vm.get("qmp_socket")), ("qmp_socket", vm.get("qmp_socket"))]


def _vm_values(vm):
    """{metric: value or None (no series)} of one VM."""
    outdated = vm.get("outdated")
    return {
        "cpr_qemu_vm_info": 1,
        "cpr_qemu_vm_cpr_capable": 1 if vm.get("cpr_capable") else 0,
        "cpr_qemu_vm_outdated": None if outdated is None else (1 if outdated else 0),
        "cpr_qemu_vm_blockers": len(vm.get("blockers") or []),
        "cpr_qemu_vm_next_restart_changes": len(vm.get("next_restart") or []),
    }


def _host_metrics(vms):
    """(name, help, [(extra labels, value)]) of the per-host counts."""
    inspected = [vm for vm in vms if not vm.get("error_kind")]
    return (
        ("cpr_qemu_vms", "QEMU VMs on the host.", [((), len(vms))]),
        ("cpr_qemu_vms_cpr_capable", "VMs a CPR dialect is ready for now.",
         [((), sum(1 for vm in vms if vm.get("cpr_capable")))]),
        ("cpr_qemu_vms_outdated", "VMs that run an older QEMU than installed or a binary replaced on disk.",
         [((), sum(1 for vm in vms if vm.get("outdated")))]),
        ("cpr_qemu_vms_uninspected", "VMs that could not be inspected.", [((), len(vms) - len(inspected))]),
        ("cpr_qemu_vms_fixable_at_restart", "VMs with changes to make at their next restart to become CPR-capable.",
         [((), sum(1 for vm in vms if vm.get("next_restart")))]),
        ("cpr_qemu_vms_binary", "Inspected VMs per state of their QEMU binary on disk.",
         [((("binary_state", s),), sum(1 for vm in inspected if vm.get("binary_state") == s)) for s in BINARY_STATES]),
        ("cpr_qemu_vms_preferred_dialect", "VMs per CPR dialect preferred for them.",
         [((("dialect", d),), sum(1 for vm in vms if vm.get("preferred_dialect") == d)) for d in DIALECTS]),
    )


def drift_metrics(vms, host=None):
    if not isinstance(vms, list) or not all(isinstance(vm, dict) for vm in vms):
        raise AnsibleFilterError("drift_metrics expects the cpr_qemu_vms fact, a list of dicts, not %r" % (vms,))
    if host is not None and not isinstance(host, string_types):
        raise AnsibleFilterError("drift_metrics: host must be a string, not %r" % (host,))
    vms = sorted(vms, key=lambda vm: (to_text(vm.get("qmp_socket")), to_text(vm.get("name"))))
    lines = []
    for name, text in VM_METRICS:
        lines += ["# HELP %s %s" % (name, text), "# TYPE %s gauge" % name]
        for vm in vms:
            value = _vm_values(vm)[name]
            if value is None:
                continue
            labels = _vm_labels(host, vm)
            if name == "cpr_qemu_vm_info":
                labels += [(k, vm.get(k)) for k in INFO_LABELS]
            lines.append(_series(name, labels, value))
    base = [("host", host)] if host is not None else []
    for name, text, series in _host_metrics(vms):
        lines += ["# HELP %s %s" % (name, text), "# TYPE %s gauge" % name]
        lines += [_series(name, base + list(extra), value) for extra, value in series]
    return "\n".join(lines) + "\n"


class FilterModule(object):
    def filters(self):
        return {"drift_metrics": drift_metrics}
