#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
# Runs every test of the collection on a fresh Debian 12 machine, as root:
# sanity (no ignores), ansible-lint (production), unit tests, the dialects'
# failure paths on real QEMU, the integration tests against real QEMU 10.0
# and 11.1 guests, and the playbook over SSH against three namespace hosts.
# Usage: scripts/test.sh [sanity|lint|units|dialects|integration|fleet ...]  (default: all)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap cleanup EXIT

stages=("$@")
[ "${#stages[@]}" -gt 0 ] || stages=(sanity lint units dialects integration fleet)

setup

# ansible-test bootstraps pip in its sanity venvs with a script it downloads
# from a host this machine cannot reach; a stand-in that uses ensurepip does
# the same job offline.
pip_version=$(python -c 'import types; from ansible_test._internal.python_requirements import get_venv_packages as g; print(g(types.SimpleNamespace(version="3.11"))["pip"])')
get_pip=$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py
mkdir -p "$(dirname "$get_pip")"
cp "$REPO/tests/get_pip_offline.py" "$get_pip"

cd "$COLLECTION"
failed=()
for stage in "${stages[@]}"; do
    say "$stage"
    case $stage in
    sanity) ansible-test sanity --local --python 3.11 --requirements || failed+=(sanity) ;;
    lint) ansible-lint --offline || failed+=(lint) ;;
    units) ansible-test units --local --python 3.11 --requirements || failed+=(units) ;;
    dialects) PYTHONPATH=$COLLECTIONS_DIR python -m pytest -p no:cacheprovider -v tests/dialects || failed+=(dialects) ;;
    integration) ansible-test integration --local --python 3.11 --allow-destructive || failed+=(integration) ;;
    fleet) bash tests/fleet/run.sh || failed+=(fleet) ;;
    *) echo "unknown stage $stage" >&2; exit 2 ;;
    esac
done
if [ "${#failed[@]}" -gt 0 ]; then
    say "FAILED: ${failed[*]}"
    exit 1
fi
say "all passed: ${stages[*]}"
