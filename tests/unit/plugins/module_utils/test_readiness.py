# -*- coding: utf-8 -*-
# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import copy
import os

import pytest
import yaml

from ansible_collections.cpr.qemu.plugins.module_utils import readiness

DATA = os.path.join(os.path.dirname(__file__), "data")

with open(os.path.join(DATA, "readiness.yml")) as f:
    READINESS = yaml.safe_load(f)
with open(os.path.join(DATA, "target.yml")) as f:
    TARGET = yaml.safe_load(f)


def _patched(base, patch):
    out = copy.deepcopy(base)
    out.update(copy.deepcopy(patch or {}))
    return out


@pytest.mark.parametrize("case", READINESS["cases"], ids=[c["id"] for c in READINESS["cases"]])
def test_assess(case):
    dialects, preferred = readiness.assess(_patched(READINESS["base"], case.get("patch")))
    for dialect, ready in case["ready"].items():
        assert dialects[dialect]["ready"] is ready, (dialect, dialects[dialect]["reasons"])
        # A dialect is ready exactly when nothing stands in its way.
        assert ready == (not dialects[dialect]["reasons"])
    for dialect, wanted in case.get("reasons", {}).items():
        text = " | ".join(dialects[dialect]["reasons"])
        for fragment in wanted:
            assert fragment in text, (dialect, fragment, text)
    for dialect, via in case.get("via", {}).items():
        assert dialects[dialect]["via"] == via
    if "preferred" in case:
        assert preferred == case["preferred"]


@pytest.mark.parametrize("case", TARGET["cases"], ids=[c["id"] for c in TARGET["cases"]])
def test_assess_target(case):
    got = readiness.assess_target(_patched(TARGET["vm"], case.get("vm_patch")),
                                  _patched(TARGET["target"], case.get("target_patch")))
    for key, want in case["expect"].items():
        assert got[key] == want, key
    text = " | ".join(got["notes"])
    for fragment in case.get("notes", []):
        assert fragment in text, (fragment, text)


def test_devices_carry_the_verdicts_the_dialects_act_on():
    facts = {"memory_backends": [{"id": "ram0", "kind": "memory-backend-memfd", "share": True, "size": 1},
                                 {"id": "pc.ram", "kind": "memory-backend-ram", "share": False, "size": 1}],
             "netdevs": [{"type": "tap", "id": "net0", "queues": "2"}, {"type": "user", "id": "net1"}],
             "vfio_devices": ["hostdev0"],
             "migration": {"status": "none", "blocked_reasons": ["hostdev0: VFIO migration is not supported"]}}
    got = dict((d["id"], d) for d in readiness.devices(facts))
    assert got["ram0"]["carried"] == {"cpr-exec": True, "cpr-transfer": True} and got["ram0"]["reasons"] == {}
    assert "private anonymous memory" in got["pc.ram"]["reasons"]["cpr-transfer"]
    assert got["net0"]["carried"] == {"cpr-exec": False, "cpr-transfer": True}
    assert "fd survives the exec" in got["net0"]["reasons"]["cpr-exec"]
    assert got["net1"]["carried"] == {"cpr-exec": True, "cpr-transfer": True}
    assert got["hostdev0"]["reasons"]["cpr-exec"] == "QEMU blocks migration: hostdev0: VFIO migration is not supported"
