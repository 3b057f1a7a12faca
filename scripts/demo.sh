#!/usr/bin/env bash
# SPDX-License-Identifier: AGPL-3.0-or-later
# `make demo`: install what is missing, then run the demo (see scripts/demo.py).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/python scripts/demo.py "$@"
