# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import stat

import pytest

from ansible_collections.cpr.qemu.plugins.module_utils import session


def _session(tmp_path, token="t1"):
    return {"token": token, "state_dir_host": str(tmp_path), "dialect": "cpr-exec", "step": "saved",
            "started": 0, "new_argv": ["q", "-object", "secret,id=s,data=hunter2"]}


def test_the_lock_is_exclusive_and_names_the_holder(tmp_path):
    session.acquire(str(tmp_path), _session(tmp_path))
    assert stat.S_IMODE(os.stat(session.lock_path(str(tmp_path))).st_mode) == 0o600
    with pytest.raises(session.LockError, match="in progress: session t1 \\(cpr-exec, step saved\\)"):
        session.acquire(str(tmp_path), _session(tmp_path, "t2"))


def test_load_checks_the_token(tmp_path):
    session.acquire(str(tmp_path), _session(tmp_path))
    assert session.load(_session(tmp_path))["new_argv"][-1].endswith("hunter2")
    with pytest.raises(session.LockError, match="not the one in progress"):
        session.load(_session(tmp_path, "other"))
    session.release(str(tmp_path))
    with pytest.raises(session.LockError, match="run qemu_cprsave first"):
        session.load(_session(tmp_path))


def test_public_masks_secrets(tmp_path):
    out = session.public(_session(tmp_path))
    assert "hunter2" not in str(out)
    assert _session(tmp_path)["new_argv"][-1].endswith("hunter2")
