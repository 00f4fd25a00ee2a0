# -*- coding: utf-8 -*-
# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import shutil
import tempfile

import pytest

from ansible_collections.cpr.qemu.plugins.module_utils import process
from ansible_collections.cpr.qemu.plugins.module_utils.privilege import trust


@pytest.fixture
def trusted_dir():
    """A root-owned 0755 directory below root's directories only (tmp_path is below the sticky /tmp).

    The trust tests build trees of root's files and another user's: they run as root (as CI does) or fail.
    """
    assert os.geteuid() == 0, "the trust tests need root to create files owned by others"
    for parent in ("/var/lib", "/var/cache", "/run"):
        try:
            trust.check_path("/", parent)
        except (trust.UntrustedError, OSError):
            continue
        if not os.statvfs(parent).f_flag & os.ST_NOEXEC:
            break
    else:
        pytest.fail("no trusted, executable place for test files under /var/lib, /var/cache or /run")
    path = tempfile.mkdtemp(prefix="cpr-qemu-test-", dir=parent)
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path)


@pytest.fixture(autouse=True)
def qemu_options():
    """What QEMU 10.0.2 and 11.1.3 answered to ``-version -NAME`` for every option of their -help (data/options.json:
    true, the option takes a value), taught to process.py as qemu_binary.learn_options would."""
    with open(os.path.join(os.path.dirname(__file__), "data", "options.json")) as f:
        process.learn_options(json.load(f))
