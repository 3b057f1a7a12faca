# SPDX-License-Identifier: AGPL-3.0-or-later
# Sourced by the scripts here: ensure_debian_packages PACKAGE... installs the
# Debian packages of the list that are not installed yet (with sudo when not
# root), and nothing else.
#
# Who needs what (each script asks for its own list):
#   setup.sh       build-essential pkg-config python3 python3-venv python3-dev and
#                  the -dev packages of the C libraries (README), chromium for --test
#   wheels.sh      the same for x86_64; for aarch64 and armv7l also debootstrap,
#                  qemu-user-static, binfmt-support and the cross compilers
#                  g++-aarch64-linux-gnu / g++-arm-linux-gnueabihf (the target's
#                  libraries come from a debootstrap sysroot, not from apt here)
#   test_wheels.sh debootstrap; qemu-user-static and binfmt-support for a chroot of
#                  another architecture
ensure_debian_packages() {
    local package
    local missing=()
    local sudo=""

    for package in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$package")
        fi
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        printf '==> %s\n' "Debian packages: all present"
        return 0
    fi
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "need root or sudo to install: ${missing[*]}" >&2; return 1; }
        sudo=sudo
    fi
    printf '==> %s\n' "installing Debian packages: ${missing[*]}"
    $sudo apt-get update -q
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}
