#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
# Prints the guest pause of live upgrades, bare qemu.qmp vs. the cpr.qemu
# modules, at several guest RAM sizes (see bench/pause.py). Not a test: it
# measures and prints. Same set-up as the other scripts; arguments go to
# bench/pause.py (for example --sizes 256 --rounds 1).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap cleanup EXIT

setup
python "$REPO/bench/pause.py" "$@"
