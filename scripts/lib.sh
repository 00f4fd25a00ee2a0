# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
# Shared by scripts/demo.sh and scripts/test.sh; sourced, not run.
# Sets up, idempotently and with caches, everything the collection needs on a
# fresh Debian 12 machine (as root): the real-QEMU lab and a Python venv.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CPR_LAB_CACHE=${CPR_LAB_CACHE:-/var/cache/cpr-qemu-lab}
# The lab VMs of this run live here, so cleanup stops exactly those.
export CPR_LAB_RUN=/run/cpr-qemu-lab/$(basename "$0" .sh)-$$
PYTHON=${PYTHON:-python3.11}

say() { printf '== %s\n' "$*" >&2; }

# One venv serves both sides of the lab: the controller's requirements, the QEMU
# hosts' and the test tooling. It is keyed by every requirement file it installs,
# so a change to any of them builds a new one.
setup_venv() {
    local key req reqs=(requirements.txt requirements-qemu-hosts.txt tests/requirements.txt) pip_args=()
    for req in "${reqs[@]}"; do pip_args+=(-r "$REPO/$req"); done
    key=$(cd "$REPO" && cat "${reqs[@]}" | sha256sum | cut -c1-12)
    VENV=$CPR_LAB_CACHE/venv-$key
    if [ ! -f "$VENV/.complete" ]; then
        say "creating Python venv $VENV"
        rm -rf "$VENV"
        "$PYTHON" -m venv "$VENV"
        "$VENV/bin/pip" install -q --disable-pip-version-check "${pip_args[@]}"
        touch "$VENV/.complete"
    fi
    export PATH="$VENV/bin:$PATH"
}

setup_lab() {
    say "provisioning the QEMU lab"
    bash "$REPO/tests/lab/provision.sh"
}

# ansible-test wants the collection at .../ansible_collections/cpr/qemu; the
# checkout may live anywhere, so work on a copy of its files.
setup_collection_tree() {
    COLLECTIONS_DIR=$(mktemp -d /tmp/cpr-qemu-collections.XXXXXX)
    COLLECTION=$COLLECTIONS_DIR/ansible_collections/cpr/qemu
    mkdir -p "$COLLECTION"
    tar -C "$REPO" --exclude=./.git --exclude=./tests/output -cf - . | tar -C "$COLLECTION" -xf -
    export ANSIBLE_COLLECTIONS_PATH=$COLLECTIONS_DIR
    # ansible-test copies each integration target away from the tree; this
    # file (passed to every target as extra vars) tells them where the lab is.
    cat >"$COLLECTION/tests/integration/integration_config.yml" <<EOC
---
cpr_lab_python: $VENV/bin/python
cpr_lab: $COLLECTION/tests/lab/vmlab.py
cpr_lab_root: $CPR_LAB_CACHE/trixie
cpr_lab_cache: $CPR_LAB_CACHE
cpr_lab_env:
  CPR_LAB_CACHE: $CPR_LAB_CACHE
  CPR_LAB_RUN: $CPR_LAB_RUN
EOC
}

# Everything a script needs: the lab, the venv and the collection tree.
setup() {
    setup_lab
    setup_venv
    setup_collection_tree
}

# Stops every lab VM this run started (by recorded PID) and removes the copy.
cleanup() {
    if [ -n "${VENV:-}" ] && [ -d "$CPR_LAB_RUN" ]; then
        "$VENV/bin/python" "$REPO/tests/lab/vmlab.py" stop-all >/dev/null || true
        rm -rf "$CPR_LAB_RUN"
    fi
    if [ -n "${COLLECTIONS_DIR:-}" ]; then
        rm -rf "$COLLECTIONS_DIR"
    fi
}
