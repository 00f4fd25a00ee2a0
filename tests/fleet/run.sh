#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
# The fleet test: cpr.qemu.upgrade_qemu, from the collection's built tarball as
# AWX installs it, over real SSH against four namespace hosts (see fleet.py),
# each with its own QEMU 10.0 VMs, upgraded to
# QEMU 11.1 (h1, h2: a binary in place; the package host h4: by installing
# the QEMU 11.1 package first), or on h3 to the host's QEMU 10.0 after its
# own copy was replaced on disk. The first roll-out is interrupted (Ctrl-C while a guest
# switches, then its SSH connections killed) and run again; at the end
# cpr.qemu.rollback_qemu moves the guests back where QEMU can. First the
# role installs qemu.qmp where a host lacks it (h4); one roll-out runs as AWX
# runs docs/awx's job template, with its survey's answers.
# Run by scripts/test.sh (stage "fleet") with the venv on PATH and
# ANSIBLE_COLLECTIONS_PATH set; needs root.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
LAB=$REPO/tests/lab/vmlab.py
W=$(mktemp -d /run/cpr-qemu-lab/fleet-XXXXXX)
PY=$(command -v python)
# On failure the playbook logs are kept (printed at the end); the VMs and
# hosts are stopped either way.
trap 'rc=$?; [ -z "${pb:-}" ] || kill -KILL "$pb" 2>/dev/null || true
python "$HERE/fleet.py" down "$W"; [ $rc -eq 0 ] || tail -n 40 "$W"/*.log; rm -rf "$W"' EXIT

echo "== the collection as AWX gets it: built, and installed from the tarball"
ansible-galaxy collection build "$REPO" --output-path "$W/dist" >"$W/build.log"
export ANSIBLE_COLLECTIONS_PATH=$W/collections
ansible-galaxy collection install --force "$W"/dist/cpr-qemu-*.tar.gz -p "$W/collections" >>"$W/build.log"
[ -f "$W/collections/ansible_collections/cpr/qemu/MANIFEST.json" ] || { echo "the tarball was not installed"; exit 1; }
# Every playbook below runs from here: a report left to its default lands here.
cd "$W"

python "$HERE/fleet.py" up "$W" 3 "$PY" "$CPR_LAB_CACHE/pkghost"
INV=$W/inventory.json
# This run's SSH control sockets, so the interruption below finds its own.
export ANSIBLE_SSH_CONTROL_PATH_DIR=$W/cp
ssh_to() { local h=$1; shift; ssh -i "$W/id_ed25519" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o LogLevel=ERROR -o BatchMode=yes "root@$(python -c "import json;print(json.load(open('$INV'))['qemu_hosts']['hosts']['$h']['ansible_host'])")" "$@"; }
lab_on() {
    local h=$1 py=$PY; shift
    [ "$h" != h4 ] || py=/usr/bin/python3 # the package host's own
    ssh_to "$h" env CPR_LAB_RUN="$W/vms-$h" CPR_LAB_CACHE="${CPR_LAB_CACHE}" "$py" "$LAB" "$@"
}

echo "== starting VMs on h1 (one with plain RAM), h2, h3 and the package host h4, each inside its own host"
# Each VM has a second QMP monitor whose recorder logs every event, so a
# stage can prove no guest was paused.
lab_on h1 start vm-h1 --qemu 10.0 --event-monitor >/dev/null
lab_on h1 start plain-h1 --qemu 10.0 --ram plain --event-monitor >/dev/null
# h2's VM carries a secret on its command line: no output channel may show it (checked at the end).
lab_on h2 start vm-h2 --qemu 10.0 --event-monitor --arg=-object --arg=secret,id=s0,data=cprfleetsecret0 >/dev/null
# h3's VM runs a copy of QEMU 10.0 that is then replaced on disk, as by a
# rebuilt package of the same version: upgraded within its release, which is
# what a rollback can undo.
lab_on h3 start vm-h3 --qemu 10.0 --binary-copy --event-monitor >/dev/null
# h4's "10.0" is its own root's QEMU, from trixie.
lab_on h4 start vm-h4 --qemu 10.0 --event-monitor >/dev/null
for h in h1 h2 h3 h4; do lab_on "$h" wait-ticks "vm-$h" 2 >/dev/null; done
lab_on h3 replace-binary vm-h3

# h1 and h2 upgrade to the trixie root's QEMU 11.1 binary, h3 to the host's
# QEMU 10.0 binary; h4 installs the QEMU 11.1 package from its local
# repository and upgrades to that.
python - "$INV" "$REPO/tests/lab" "$CPR_LAB_CACHE" <<'EOP'
import json, sys
inv_path, lab, cache = sys.argv[1:]
sys.path.insert(0, lab)
import vmlab
with open(inv_path) as f:
    inv = json.load(f)
with open(cache + "/pkghost.json") as f:
    package = json.load(f)
inv["qemu_hosts"]["vars"].update(live_upgrade_target_root=cache + "/trixie", live_upgrade_launcher=vmlab.launcher())
inv["qemu_hosts"]["hosts"]["h4"].update(live_upgrade_target_root="/", live_upgrade_launcher=[],
                                        live_upgrade_target_version=package["target"])
inv["qemu_hosts"]["hosts"]["h3"].update(live_upgrade_target_root="/", live_upgrade_launcher=[])
with open(inv_path, "w") as f:
    json.dump(inv, f, indent=1)
EOP
EXTRAVARS=$W/extravars.json
# Each host's node-exporter textfile directory (the drift metrics) is on the shared filesystem, for check.py.
mkdir -p "$W"/textfile/h{1,2,3,4}
echo "{\"qemu_upgrade_become\": false, \"live_upgrade_report_dir\": \"$W\",
  \"live_upgrade_textfile_dir\": \"$W/textfile/{{ inventory_hostname }}\", \"live_upgrade_health_gate\": true}" >"$EXTRAVARS"
playbook() {
    local out=$1; shift
    ansible-playbook -i "$INV" cpr.qemu.upgrade_qemu -e "@$EXTRAVARS" \
        -e "qemu_upgrade_report=$W/report-$out.json" "$@" >"$W/$out.log" 2>&1
}
# As AWX runs a node of docs/awx's workflow (its job template): ansible-runner
# (no containers) on its project, with extra variables made from its survey's
# questions as AWX sends them (ANSWERS, a JSON object: text as typed), and the
# node's job type or limit as ansible-runner options. The report is left to its
# default, the job's working directory (the project), and then moved to
# report-OUT.json for check.py.
AWX=$REPO/docs/awx
# Survey answers as a person types them: VMs by commas and lines, batches as text.
ANSWERS='{"live_upgrade_vms": "vm-h1, plain-h1\nvm-h2\nvm-h3\nvm-h4\n", "qemu_upgrade_serial": "1, 25%, 100%",
  "live_upgrade_parallel": "2", "live_upgrade_install_requirements": "true"}'
runner() {
    local out=$1 answers=$2 dir=$W/runner
    shift 2
    mkdir -p "$dir/inventory" "$dir/env"
    # ansible-runner keeps a run's --cmdline in env/cmdline: each node gives its own.
    rm -f "$dir/env/cmdline"
    # AWX keeps the hosts' facts in its fact cache, as ansible-runner does with a jsonfile cache in the artifacts.
    echo '{"fact_cache_type": "jsonfile"}' >"$dir/env/settings"
    rm -rf "$dir/project"
    cp -r "$AWX/project" "$dir/project"
    cp "$INV" "$dir/inventory/hosts.json"
    echo "$answers" >"$W/answers-$out.json"
    # The job template's extra variables: the fleet's, and the hooks (each leaves a marker in $W/markers).
    mkdir -p "$W/markers"
    python -c 'import json, sys; v = json.load(open(sys.argv[1])); here, w = sys.argv[2:4]
v.update(("live_upgrade_hook_" + h, "%s/hooks/%s.yml" % (here, h)) for h in ("before_host", "after_host", "before_vm", "after_vm"))
v["fleet_markers"] = w + "/markers"; json.dump(v, open(sys.argv[4], "w"))' "$EXTRAVARS" "$HERE" "$W" "$W/extravars-$out.json"
    python "$HERE/survey.py" "$AWX/survey.json" "$W/extravars-$out.json" "$W/answers-$out.json" "$dir/env/extravars"
    ansible-runner run "$dir" -p upgrade-qemu.yml --ident "$out" "$@" >"$W/$out.log" 2>&1 || return 1
    grep -q "report: $dir/project/qemu-upgrade-report.json" "$W/$out.log" ||
        { echo "the job did not print its report's path, $dir/project/qemu-upgrade-report.json"; exit 1; }
    mv "$dir/project/qemu-upgrade-report.json" "$W/report-$out.json"
    mv "$dir/project/qemu-upgrade-report.html" "$W/report-$out.html"
}
check() { python "$HERE/check.py" "$W" "$@"; }
# Every host's VMs as qemu_cpr_info reports them, for check.py (no session left).
sessions() {
    ansible-playbook -i "$INV" "$HERE/sessions.yml" -e "fleet_sessions=$W/sessions-$1.json" >"$W/sessions-$1.log" 2>&1
}

echo "== preparing the hosts: qemu.qmp installed where it is missing (h4: from its distribution's package)"
ansible-playbook -i "$INV" "$HERE/prepare.yml" >"$W/prepare.log" 2>&1
ansible-playbook -i "$INV" "$HERE/prepare.yml" >"$W/prepare-again.log" 2>&1
check prepare

echo "== canary host fails a pre-check with max_fail_percentage 0: the roll-out stops after it"
if playbook canary -e live_upgrade_on_precheck_failure=fail; then
    echo "the playbook should have failed on the canary host"; exit 1
fi
check canary

echo "== the workflow's plan node (check mode) on the fleet: the plan, nothing changed"
runner check "$ANSWERS" --cmdline=--check
check check
# (The workflow's approval node: the test approves, as an operator reading the plan would.)

echo "== rolling upgrade interrupted: Ctrl-C while a guest switches, then its SSH connections killed"
(exec ansible-playbook -i "$INV" cpr.qemu.upgrade_qemu -e "@$EXTRAVARS" \
    -e "qemu_upgrade_report=$W/report-interrupted.json" >"$W/interrupted.log" 2>&1) &
pb=$!
python "$HERE/fleet.py" interrupt "$W" "$pb" >"$W/interrupted-switch.json"
rc=0
wait "$pb" || rc=$?
pb=
[ "$rc" -ne 0 ] || { echo "the interrupted playbook should have failed"; exit 1; }
check interrupted

echo "== the workflow's canary node: the canary host's interrupted switch is settled, its guest upgraded once"
runner wf-canary "$ANSWERS" --limit 'qemu_hosts[0]' --cmdline='-e qemu_upgrade_canary=true'
check wf-canary

echo "== the workflow's last node, every host: the roll-out picks up where it stopped, every guest upgraded once"
runner rollout "$ANSWERS"
sessions rollout
check rollout
# The roll-out's picture, opened in headless Chromium: every VM, its status and its pause as in the report.
python "$HERE/timeline.py" "$W/report-rollout.html" "$W/report-rollout.json"

echo "== second run: every VM already current, nothing changed"
playbook again
check again

# A recorder ends with the QEMU whose monitor it watched: record the QEMUs
# that took the guests over too, so the rollback's pauses are seen as well.
for h in h1 h2 h3 h4; do
    py=$PY
    [ "$h" != h4 ] || py=/usr/bin/python3
    ssh_to "$h" "env CPR_LAB_RUN=$W/vms-$h CPR_LAB_CACHE=$CPR_LAB_CACHE $py $LAB record-events vm-$h </dev/null >/dev/null 2>&1 &"
done
sleep 2

echo "== rollback of the roll-out: back where QEMU can, refused before the pause where it cannot"
ansible-playbook -i "$INV" cpr.qemu.rollback_qemu -e "@$EXTRAVARS" \
    -e "qemu_rollback_report=$W/report-rollout.json" -e "qemu_upgrade_report=$W/report-rollback.json" \
    >"$W/rollback.log" 2>&1
sessions rollback
check rollback

echo "== no output channel shows a secret of a VM's command line: reports, job artifacts, playbook output"
if grep -rls cprfleetsecret "$W"/*.json "$W"/*.log "$W"/runner/artifacts; then
    echo "a VM's secret leaked into the files above"; exit 1
fi
grep -qs "data=\*\*\*\*\*\*\*\*" "$W"/sessions-rollout.json || { echo "the masked secret is not where it should be"; exit 1; }
echo "fleet: all checks passed"
