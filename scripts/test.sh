#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
# Runs every test of the collection on a fresh Debian 12 machine, as root:
# the package (REUSE licensing, changelog fragments, the tarball
# ansible-galaxy builds, the execution environment's build context, the
# docs), sanity (no ignores), ansible-lint (production), unit tests, the
# dialects' failure paths on real QEMU, the integration tests against real
# QEMU 10.0 and 11.1 guests, and the playbook over SSH against three
# namespace hosts.
# Usage: scripts/test.sh [package|sanity|lint|units|dialects|integration|fleet ...]  (default: all, in this order)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap cleanup EXIT

usage() {
    echo "usage: scripts/test.sh [package|sanity|lint|units|dialects|integration|fleet ...]  (default: all, in this order)" >&2
    exit 2
}
stages=("$@")
[ "${#stages[@]}" -gt 0 ] || stages=(package sanity lint units dialects integration fleet)
for stage in "${stages[@]}"; do
    case $stage in
    package | sanity | lint | units | dialects | integration | fleet) ;;
    *) echo "unknown stage $stage" >&2; usage ;;
    esac
done

# The package stage: the collection as it ships, checked from the collection
# tree. Every check runs and reports; the stage fails if any failed.
package() {
    local out tarball version ctx f bad=()
    out=$(mktemp -d /tmp/cpr-qemu-package.XXXXXX)
    version=$(python -c 'import yaml; print(yaml.safe_load(open("galaxy.yml"))["version"])')
    tarball=$out/cpr-qemu-$version.tar.gz

    # REUSE: on a copy of the tree made a git work tree (every file not
    # ignored added), so that reuse honours .gitignore: caches and what other
    # stages generate or leave in the tree are not linted.
    cp -a . "$out/tree" && git -C "$out/tree" init -q && git -C "$out/tree" add -A &&
        (cd "$out/tree" && reuse lint) || bad+=("reuse lint")
    antsibull-changelog lint || bad+=("antsibull-changelog lint")

    if ansible-galaxy collection build --output-path "$out" . >/dev/null && [ -f "$tarball" ]; then
        tar -tzf "$tarball" | sed 's,/$,,' >"$out/files"
        for f in LICENSES/GPL-3.0-or-later.txt CHANGELOG.rst README.md MANIFEST.json FILES.json \
            meta/runtime.yml meta/execution-environment.yml requirements.txt bindep.txt \
            roles/live_upgrade/meta/argument_specs.yml playbooks/upgrade_qemu.yml playbooks/rollback_qemu.yml; do
            grep -qxF "$f" "$out/files" || bad+=("tarball lacks $f")
        done
        grep -q '^docs/' "$out/files" || bad+=("tarball lacks docs/")
        if grep -E '^(\.git|\.ci|bench|scripts|tests)(/|$)|^playbooks/(upgrade|rollback)-qemu\.yml$|\.tar\.gz$|(^|/)__pycache__(/|$)' "$out/files"; then
            bad+=("tarball holds what it must not (listed above)")
        fi
        # execution-environment.yml takes the tarball from beside itself, where
        # `ansible-galaxy collection build` in the checkout's root writes it.
        ctx=$out/ee-context
        cp "$tarball" . &&
            ansible-builder create -f execution-environment.yml --context "$ctx" >/dev/null &&
            [ -f "$ctx/_build/collection/cpr-qemu-$version.tar.gz" ] &&
            [ -f "$ctx/_build/requirements.yml" ] &&
            grep -q '^jmespath' "$ctx/_build/requirements.txt" &&
            ! grep -qi 'qemu.qmp' "$ctx/_build/requirements.txt" ||
            bad+=("ansible-builder create (the EE must name cpr-qemu-$version.tar.gz and the controller's requirements only)")
        rm -f "cpr-qemu-$version.tar.gz"
    else
        bad+=("ansible-galaxy collection build")
    fi

    bash scripts/docs.sh check || bad+=("scripts/docs.sh check")

    rm -rf "$out"
    if [ "${#bad[@]}" -gt 0 ]; then
        printf 'package: %s\n' "${bad[@]}" >&2
        return 1
    fi
}

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
    package) package || failed+=(package) ;;
    sanity) ansible-test sanity --local --python 3.11 --requirements || failed+=(sanity) ;;
    lint) ansible-lint --offline || failed+=(lint) ;;
    units) ansible-test units --local --python 3.11 --requirements || failed+=(units) ;;
    dialects) PYTHONPATH=$COLLECTIONS_DIR python -m pytest -p no:cacheprovider -v tests/dialects || failed+=(dialects) ;;
    integration) ansible-test integration --local --python 3.11 --allow-destructive || failed+=(integration) ;;
    fleet) bash tests/fleet/run.sh || failed+=(fleet) ;;
    esac
done
if [ "${#failed[@]}" -gt 0 ]; then
    say "FAILED: ${failed[*]}"
    exit 1
fi
say "all passed: ${stages[*]}"
