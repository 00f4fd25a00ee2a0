#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine, as root: starts one demo VM on
# QEMU 10.0 and one on QEMU 11.1, reports with cpr.qemu.qemu_cpr_info how
# each could be live-upgraded to QEMU 11.1, then stops them.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap cleanup EXIT

setup_lab
setup_venv
setup_collection_tree

say "starting demo VMs"
sockets=()
for spec in "demo-qemu10 10.0" "demo-qemu11 11.1"; do
    set -- $spec
    sockets+=("$(python "$REPO/tests/lab/vmlab.py" start "$1" --qemu "$2" --wait-ticks 1 |
        python -c 'import json, sys; print(json.load(sys.stdin)["qmp_socket"])')")
done

say "qemu_cpr_info on the demo VMs, target: QEMU 11.1 of the trixie root"
ANSIBLE_STDOUT_CALLBACK=default ansible-playbook -i localhost, "$REPO/demo/readiness.yml" \
    -e "{\"demo_sockets\": [\"${sockets[0]}\", \"${sockets[1]}\"], \"demo_target_root\": \"$CPR_LAB_CACHE/trixie\"}"
