# SPDX-License-Identifier: AGPL-3.0-or-later
# Sourced by the scripts here: ensure_debian_packages PACKAGE... installs the
# Debian packages of the list that are not installed yet (with sudo when not
# root), and nothing else.
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
