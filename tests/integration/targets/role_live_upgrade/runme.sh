#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 cpr.qemu contributors
# SPDX-License-Identifier: GPL-3.0-or-later
# The role's tests are a playbook (tests_live_upgrade.yml) a person can run by hand.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
ansible-playbook -i "$INVENTORY_PATH" tests_live_upgrade.yml -e @../../integration_config.yml "$@"
