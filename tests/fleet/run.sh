#!/usr/bin/env bash
# The fleet test: playbooks/upgrade-qemu.yml over real SSH against three
# namespace hosts (see fleet.py), each with its own QEMU 10.0 VMs, upgraded to
# QEMU 11.1. Run by scripts/test.sh (stage "fleet") with the venv on PATH and
# ANSIBLE_COLLECTIONS_PATH set; needs root.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
LAB=$REPO/tests/lab/vmlab.py
W=$(mktemp -d /run/cpr-qemu-lab/fleet-XXXXXX)
PY=$(command -v python)
# On failure the playbook logs are kept (printed at the end); the VMs and
# hosts are stopped either way.
trap 'rc=$?; python "$HERE/fleet.py" down "$W"; [ $rc -eq 0 ] || tail -n 40 "$W"/*.log; rm -rf "$W"' EXIT

python "$HERE/fleet.py" up "$W" 3 "$PY"
INV=$W/inventory.json
ssh_to() { local h=$1; shift; ssh -i "$W/id_ed25519" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o LogLevel=ERROR -o BatchMode=yes "root@$(python -c "import json;print(json.load(open('$INV'))['qemu_hosts']['hosts']['$h']['ansible_host'])")" "$@"; }
lab_on() { local h=$1; shift; ssh_to "$h" env CPR_LAB_RUN="$W/vms-$h" CPR_LAB_CACHE="${CPR_LAB_CACHE}" "$PY" "$LAB" "$@"; }

echo "== starting VMs on h1 (one with plain RAM), h2 and h3, each inside its own host"
lab_on h1 start vm-h1 --qemu 10.0 >/dev/null
lab_on h1 start plain-h1 --qemu 10.0 --ram plain >/dev/null
lab_on h2 start vm-h2 --qemu 10.0 >/dev/null
lab_on h3 start vm-h3 --qemu 10.0 >/dev/null
for h in h1 h2 h3; do lab_on "$h" wait-ticks "vm-$h" 2 >/dev/null; done

LAUNCHER=$(python -c "import json,sys; sys.path.insert(0,'$REPO/tests/lab'); import vmlab; print(json.dumps(vmlab.launcher()))")
playbook() {
    local out=$1; shift
    ansible-playbook -i "$INV" "$REPO/playbooks/upgrade-qemu.yml" -e "$(cat <<EOV
{"qemu_upgrade_become": false, "qemu_upgrade_report": "$W/report-$out.json",
 "live_upgrade_target_root": "${CPR_LAB_CACHE}/trixie", "live_upgrade_launcher": $LAUNCHER,
 "live_upgrade_report_dir": "$W"}
EOV
)" "$@" >"$W/$out.log" 2>&1
}
check() { python "$HERE/check.py" "$W" "$@"; }

echo "== canary host fails a pre-check with max_fail_percentage 0: the roll-out stops after it"
if playbook canary -e live_upgrade_on_precheck_failure=fail; then
    echo "the playbook should have failed on the canary host"; exit 1
fi
check canary

echo "== check mode on the fleet: the plan, nothing changed"
playbook check --check
check check

echo "== rolling upgrade of the fleet"
playbook rollout
check rollout

echo "== second run: every VM already current, nothing changed"
playbook again
check again
echo "fleet: all checks passed"
