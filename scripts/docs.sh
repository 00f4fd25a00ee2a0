#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
# The collection's rendered documentation, docs/reference/, made by antsibull-docs
# from the modules', filters' and role's own documentation.
#
# Usage: scripts/docs.sh render   regenerate docs/reference/ from the current plugin docs
#        scripts/docs.sh check    lint the plugin docs and docs/docsite/ (antsibull-docs
#                                 lint-collection-docs --plugin-docs), and fail if render
#                                 would change docs/reference/
#
# Needs ansible-core and antsibull-docs on PATH (the test venv: tests/requirements.txt
# pins both, and the output depends on their versions). The collection documented is
# always the checkout this script is in, wherever it lives: it is made importable as
# cpr.qemu through a collections path of its own, put before ANSIBLE_COLLECTIONS_PATH.
#
# The output is antsibull-docs' simplified RST (it reads on GitHub, no Sphinx needed),
# without the antsibull-docs version, with SPDX lines added to each file. The extra docs
# (docs/docsite/rst/*.rst) are linked from docs/reference/index.rst, not copied.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=docs/reference
COLLECTION=cpr.qemu

usage() {
    echo "usage: $0 render|check" >&2
    exit 2
}

[ "$#" -eq 1 ] || usage
case $1 in render|check) ;; *) usage ;; esac

for tool in ansible-doc antsibull-docs python3; do
    if ! command -v "$tool" >/dev/null; then
        echo "$0: $tool not found: put the test venv (tests/requirements.txt) on PATH" >&2
        exit 2
    fi
done

TMP=$(mktemp -d /tmp/cpr-qemu-docs.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP/collections/ansible_collections/cpr"
ln -s "$REPO" "$TMP/collections/ansible_collections/cpr/qemu"
export ANSIBLE_COLLECTIONS_PATH=$TMP/collections${ANSIBLE_COLLECTIONS_PATH:+:$ANSIBLE_COLLECTIONS_PATH}

# Renders into $1 (a directory that must not exist yet).
render_to() {
    local dest=$1
    mkdir -p "$dest"
    # From an empty directory, so that no ansible.cfg around changes the output.
    (cd "$TMP" && antsibull-docs collection --use-current --fail-on-error \
        --output-format simplified-rst --squash-hierarchy --no-add-antsibull-docs-version \
        --cleanup everything --dest-dir "$dest" "$COLLECTION" >/dev/null)
    python3 - "$dest" "$REPO/docs/docsite/rst" <<'EOF'
import os
import re
import shutil
import sys

dest, extra = sys.argv[1:]
HEADER = """..
  SPDX-FileCopyrightText: 2026 cpr.qemu contributors
  SPDX-License-Identifier: GPL-3.0-or-later
  Made by scripts/docs.sh render from the collection's plugin docs: edit those, not this file.

"""


def title(path):
    """The first section title of an RST file: a line of text over a line of = - ~ ..."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    for text, under in zip(lines, lines[1:]):
        if text.strip() and not text.startswith(("..", " ")) and re.fullmatch(r"([=\-~^+*#])\1+", under):
            return text.strip()
    return os.path.basename(path)


# The extra docs stay where they are written (docs/docsite/rst); the index links there.
shutil.rmtree(os.path.join(dest, "docsite"), ignore_errors=True)


def extra_link(m):
    name = m.group(1)
    return "* `%s <../docsite/rst/%s.rst>`__" % (title(os.path.join(extra, name + ".rst")), name)


for name in sorted(os.listdir(dest)):
    path = os.path.join(dest, name)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    text = re.sub(r"^\* `<docsite/([^>]+)\.rst>`_$", extra_link, text, flags=re.M)
    text = "\n".join(line.rstrip() for line in text.splitlines()) + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(HEADER + text)
EOF
}

case $1 in
render)
    render_to "$TMP/out"
    rm -rf "${REPO:?}/$OUT"
    mkdir -p "$REPO/$OUT"
    cp -R "$TMP/out/." "$REPO/$OUT/"
    echo "rendered $OUT"
    ;;
check)
    rc=0
    antsibull-docs lint-collection-docs --plugin-docs --check-extra-docs-refs \
        --output-format simplified-rst --validate-collection-refs dependent \
        --disallow-unknown-collection-refs "$REPO" || rc=1
    render_to "$TMP/out"
    if ! diff -r -u "$REPO/$OUT" "$TMP/out"; then
        echo "$OUT differs from what the plugin docs render: run scripts/docs.sh render and commit $OUT" >&2
        rc=1
    fi
    [ "$rc" -eq 0 ] && echo "docs: lint passed, $OUT is current"
    exit "$rc"
    ;;
esac
