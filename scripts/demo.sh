#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
# The main job on a fresh Debian 12 machine, as root: what an operator does in a
# maintenance window, on demo VMs. Starts a VM on QEMU 10.0 and one on QEMU 11.1
# whose binary was then replaced on disk, shows what cpr.qemu.qemu_cpr_info says
# of them, live-upgrades both to QEMU 11.1 with playbooks/upgrade-qemu.yml, and
# shows from each guest's console that it never rebooted. Then stops them.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap cleanup EXIT

setup
lab() { python "$REPO/tests/lab/vmlab.py" "$@"; }

say "starting demo VMs"
lab start demo-qemu10 --qemu 10.0 --wait-ticks 3 >/dev/null
lab start demo-qemu11 --qemu 11.1 --binary-copy --wait-ticks 3 >/dev/null
lab replace-binary demo-qemu11 >/dev/null
sockets=$(python - <<EOP
import json, sys
sys.path.insert(0, "$REPO/tests/lab")
import vmlab
print(json.dumps([vmlab.load(n).qmp_socket for n in ("demo-qemu10", "demo-qemu11")]))
EOP
)

say "qemu_cpr_info: the demo VMs against QEMU 11.1 (of the trixie root)"
ANSIBLE_STDOUT_CALLBACK=default ansible-playbook -i localhost, "$REPO/demo/readiness.yml" \
    -e "{\"demo_sockets\": $sockets, \"demo_target_root\": \"$CPR_LAB_CACHE/trixie\"}"

say "live upgrade with playbooks/upgrade-qemu.yml"
inventory=$CPR_LAB_RUN/inventory.yml
cat >"$inventory" <<EOI
qemu_hosts:
  hosts:
    localhost:
      ansible_connection: local
      ansible_python_interpreter: $VENV/bin/python
EOI
ANSIBLE_STDOUT_CALLBACK=default ansible-playbook -i "$inventory" "$REPO/playbooks/upgrade-qemu.yml" -e "$(python - <<EOP
import json, sys
sys.path.insert(0, "$REPO/tests/lab")
import vmlab
print(json.dumps({
    "qemu_upgrade_become": False,
    "qemu_upgrade_report": "$CPR_LAB_RUN/qemu-upgrade-report.json",
    "live_upgrade_target_root": "$CPR_LAB_CACHE/trixie",
    "live_upgrade_launcher": vmlab.launcher(),
    # Only the demo's VMs, whatever else runs on this machine.
    "live_upgrade_query": "[?contains(qmp_socket, '/demo-qemu')]",
}))
EOP
)"

say "each guest's console after the upgrade (one boot, counter continuous, RAM checksum unchanged)"
for vm in demo-qemu10 demo-qemu11; do
    lab wait-ticks "$vm" 6 | python -c "
import json, sys
e = json.load(sys.stdin)
print('$vm: %d boot, %d ticks, last uptime %ss, RAM checksum %s seen %d times, %s' % (
    e['boots'], e['ticks'], e['last_uptime'], e['ram_checksum'], e['checksums_seen'],
    'one continuous life' if not e['problems'] else 'PROBLEMS: ' + '; '.join(e['problems'])))"
done
