#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
# Benchmarks: they measure and print, they assert nothing, and CI does not run them.
#   scripts/bench.sh [ARGS]        the guest pause of live upgrades, bare qemu.qmp vs. the
#                                  cpr.qemu modules, at several guest RAM sizes (bench/pause.py;
#                                  ARGS go to it, for example --sizes 256 --rounds 1)
#   scripts/bench.sh scale [ARGS]  the scale benchmarks (bench/scale.py: the fleet report's cost,
#                                  the pause under KVM, one host with many VMs, a fleet of
#                                  namespace hosts over SSH; ARGS go to it, for example
#                                  --parts host --vms 1,8)
# Same set-up as the other scripts; every VM, host and namespace a run starts is
# stopped at its end, on failure and on Ctrl-C too.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap cleanup EXIT

setup
if [ "${1:-}" = scale ]; then
    shift
    python "$REPO/bench/scale.py" "$@"
else
    python "$REPO/bench/pause.py" "$@"
fi
