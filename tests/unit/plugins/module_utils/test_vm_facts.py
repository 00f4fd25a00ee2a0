# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.cpr.qemu.plugins.module_utils import vm_facts


def test_a_vm_with_several_monitors_is_inspected_once_through_one_that_answers(monkeypatch):
    def fake_inspect(sock, timeout, target=None):
        if sock.endswith("held.sock"):
            return {"qmp_socket": sock, "error": "in use by another client", "error_kind": "busy"}
        return {"qmp_socket": sock, "pid": int(sock.split("/")[2])}

    monkeypatch.setattr(vm_facts, "inspect", fake_inspect)
    found = [{"pid": 1, "qmp_socket": "/run/1/held.sock"}, {"pid": 1, "qmp_socket": "/run/1/qmp.sock"},
             {"pid": 2, "qmp_socket": "/run/2/held.sock"}, {"pid": 3, "qmp_socket": "/run/3/qmp.sock"}]
    got = vm_facts.inspect_discovered(found, 1.0)
    assert got == [{"qmp_socket": "/run/1/qmp.sock", "pid": 1},
                   {"qmp_socket": "/run/2/held.sock", "error": "in use by another client", "error_kind": "busy"},
                   {"qmp_socket": "/run/3/qmp.sock", "pid": 3}]
