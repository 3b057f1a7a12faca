#!/usr/bin/env bash
# SPDX-License-Identifier: AGPL-3.0-or-later
#
# Installs whatever is missing, and nothing that is already there:
#   1. Debian packages (system libraries found by pkg-config, compilers;
#      with --test also Chromium for the browser tests),
#   2. a virtualenv at .venv/ with OctoPrint from PyPI and the build and test
#      tools (requirements-dev.txt),
#   3. the plugin itself, built from this checkout by meson-python into .venv.
# Safe to run again: each step checks first.
set -euo pipefail
cd "$(dirname "$0")/.."

WITH_TEST_TOOLS=0
for arg in "$@"; do
    case "$arg" in
        --test) WITH_TEST_TOOLS=1 ;;
        *) echo "usage: $0 [--test]" >&2; exit 2 ;;
    esac
done

say() { printf '==> %s\n' "$*"; }
# shellcheck source=scripts/debian_packages.sh
. scripts/debian_packages.sh

# ---- 1. Debian packages ----------------------------------------------------
APT_PACKAGES=(
    build-essential pkg-config python3 python3-venv python3-dev
    libwebsockets-dev libssl-dev libjansson-dev libyaml-dev libturbojpeg0-dev
    libopencv-dev libbson-dev zlib1g-dev
)
if [ "$WITH_TEST_TOOLS" = 1 ]; then
    # prometheus: promtool checks the metrics text (tests/integration/test_farm.py).
    APT_PACKAGES+=(chromium fonts-liberation prometheus)
fi

ensure_debian_packages "${APT_PACKAGES[@]}"

# ---- 2. the virtualenv -----------------------------------------------------
# Debian's interpreter, whatever else is first on PATH (pyenv, conda...).
PYTHON="${PYTHON:-/usr/bin/python3}"
VENV=.venv
if [ -x "$VENV/bin/python" ] && ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
    say "removing a broken $VENV"
    rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV with $PYTHON"
    "$PYTHON" -m venv "$VENV"
fi
wanted="$(sha256sum requirements-dev.txt | cut -d' ' -f1)"
stamp="$VENV/.tsd-requirements.sha256"
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    say "installing Python packages into $VENV (OctoPrint, meson-python, pytest, playwright)"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -r requirements-dev.txt
    echo "$wanted" > "$stamp"
else
    say "Python packages in $VENV: up to date"
fi

# ---- 3. the plugin ---------------------------------------------------------
# An incremental meson build under build/pip; meson and ninja from the venv.
say "building and installing the plugin into $VENV"
PATH="$PWD/$VENV/bin:$PATH" "$VENV/bin/python" -m pip install -q --no-build-isolation --no-deps \
    -Cbuild-dir=build/pip .
"$VENV/bin/python" - <<'PY'
import os, sys
os.chdir("/")  # import the installed package, not the checkout
from octoprint_tsd import bridge
info = bridge.native_info()
if not info["loaded"]:
    sys.exit("the native module does not import: {}".format(info["error"]))
print("==> installed: _tsd {} ({})".format(info["version"], bridge.helper_path()))
PY
