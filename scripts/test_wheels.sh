#!/usr/bin/env bash
# SPDX-License-Identifier: AGPL-3.0-or-later
#
# make test-wheels: the wheels of dist/ installed by OctoPrint's plugin
# manager in a fresh Debian minbase chroot per architecture, with no compiler
# (tests/wheels/test_wheels.py). Needs root (debootstrap, chroot, mount).
# Usage: scripts/test_wheels.sh [ARCH...]   (default: x86_64)
set -euo pipefail
cd "$(dirname "$0")/.."

ARCHES=(x86_64)
[ "$#" -gt 0 ] && ARCHES=("$@")
[ "$(id -u)" -eq 0 ] || { echo "make test-wheels needs root (debootstrap, chroot, mount)" >&2; exit 1; }

# shellcheck source=scripts/debian_packages.sh
. scripts/debian_packages.sh
packages=(debootstrap)
for arch in "${ARCHES[@]}"; do
    [ "$arch" = "$(uname -m)" ] || packages+=(qemu-user-static binfmt-support)
done
ensure_debian_packages "${packages[@]}"
./scripts/setup.sh
TSD_WHEEL_ARCHES="${ARCHES[*]}" .venv/bin/pytest -q -s -p no:cacheprovider tests/wheels
