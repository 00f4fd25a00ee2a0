# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
"""Stand-in for ansible-test's downloaded get-pip script: bootstrap pip offline.

ansible-test runs this with pip's command-line options and the packages to
install (pip==X and friends).  ensurepip brings the pip bundled with Python;
that pip then installs what was asked for from the package index.
"""
import subprocess
import sys

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"])
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install"] + args))
