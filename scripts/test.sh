#!/usr/bin/env bash
# SPDX-License-Identifier: AGPL-3.0-or-later
#
# `make test`: install what is missing, then run every suite:
#   c          meson test: C unit tests of native/core and the helper
#   release    the same, built optimized as pip builds it (-O3 warnings differ)
#   py         pytest tests/py: the shim with mocks, the native module from Python
#   integration pytest tests/integration: real OctoPrint + virtual printer + Chromium
#   model      the shipped detector loads and answers; where ../shared/datasets
#              is present, its held-out figures still hold (says when skipped)
#   octoprint-1.10 the plugin loads in OctoPrint 1.10 too (its own virtualenv)
#   demo       the demo starts, the plugin loads, it stops
#   asan-c     the C tests again, built with AddressSanitizer + UBSan
#   asan-py    tests/py again, with the extension and helper built with ASan + UBSan
#   tsan       the threaded parts built with ThreadSanitizer: Camera.grab() on
#              one thread while stats() and close() come from another, the
#              grabber's name lookup thread (sec05, sec09), and remote access
#              (its HTTP workers, bulk lane and websocket bridge)
# Every suite runs even when an earlier one fails; the exit status is non-zero
# if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"

./scripts/setup.sh --test || { echo "setup failed" >&2; exit 1; }
export PATH="$REPO/.venv/bin:$PATH"
export PYTHONUNBUFFERED=1
export TSD_TEST_OUTPUT="${TSD_TEST_OUTPUT:-$REPO/build/test-output}"
mkdir -p "$TSD_TEST_OUTPUT"

passed=()
failed=()
run_suite() {
    local name="$1"
    shift
    printf '\n==> suite %s\n' "$name"
    if "$@"; then
        passed+=("$name")
    else
        failed+=("$name")
        printf '==> suite %s FAILED\n' "$name"
    fi
}

meson_configure() {
    local dir="$1"
    shift
    if [ -f "$dir/build.ninja" ]; then
        meson setup --reconfigure "$dir" "$@" >/dev/null
    else
        meson setup "$dir" "$@" >/dev/null
    fi
}

meson_build() {
    meson_configure "$@" && meson compile -C "$1"
}

suite_c() {
    meson_build build/test -Dtests=true -Dbench=true &&
        meson test -C build/test --print-errorlogs
}

suite_release() {
    # What pip builds (-O3) warns differently from a debug build: keep it clean.
    meson_build build/release -Dbuildtype=release -Dtests=true -Dbench=true &&
        meson test -C build/release --print-errorlogs
}

suite_py() {
    pytest -q tests/py
}

suite_integration() {
    pytest -q tests/integration --ignore=tests/integration/test_compat.py
}

# OctoPrint 1.10 (the oldest supported line) in a virtualenv of its own, with
# this plugin installed from a wheel built from the checkout.
COMPAT_VENV="$REPO/build/venv-octoprint-1.10"
suite_model() {
    pytest -q -rs tests/model
}

suite_compat() {
    if [ ! -x "$COMPAT_VENV/bin/python" ] || ! "$COMPAT_VENV/bin/python" -c 'import octoprint' 2>/dev/null; then
        rm -rf "$COMPAT_VENV"
        /usr/bin/python3 -m venv "$COMPAT_VENV" &&
            "$COMPAT_VENV/bin/python" -m pip install -q "OctoPrint>=1.10,<1.11" \
                -c tests/integration/octoprint-1.10-constraints.txt || return 1
    fi
    rm -rf build/wheel &&
        python -m pip wheel -q --no-build-isolation --no-deps -w build/wheel . &&
        "$COMPAT_VENV/bin/python" -m pip install -q --no-deps --force-reinstall build/wheel/*.whl &&
        TSD_COMPAT_PYTHON="$COMPAT_VENV/bin/python" pytest -q tests/integration/test_compat.py
}

suite_demo() {
    PORT="$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')" \
        python scripts/demo.py --smoke --basedir "$REPO/build/test-demo/octoprint"
}

ASAN_RUNTIME="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

suite_asan_c() {
    meson_build build/asan -Dsanitize=true -Db_lundef=false -Dtests=true -Dbench=false &&
        ASAN_OPTIONS="detect_leaks=1:abort_on_error=1" meson test -C build/asan --print-errorlogs
}

suite_asan_py() {
    # The same package, built with sanitizers into its own folder that shadows
    # the .venv copy; CPython itself is not instrumented, so its runtime is
    # preloaded, and leak checks are off (the interpreter frees little at exit).
    python -m pip install -q --no-build-isolation --no-deps --upgrade \
        --target build/asan-site -Cbuild-dir=build/asan-pip \
        -Csetup-args=-Dsanitize=true -Csetup-args=-Db_lundef=false . &&
        PYTHONPATH="$REPO/build/asan-site" \
        TSD_EXPECT_PACKAGE_DIR="$REPO/build/asan-site/octoprint_tsd" \
        LD_PRELOAD="$ASAN_RUNTIME" ASAN_OPTIONS="detect_leaks=0" \
        pytest -q -p no:cacheprovider tests/py tests/integration/test_tunnel.py \
        tests/integration/test_remote_access.py
}

# gcc 12's TSan cannot map its shadow memory when the kernel randomizes
# mmap with more than 28 bits ("unexpected memory mapping"): run without
# address randomization where the system allows it.
tsan_run() {
    if setarch "$(uname -m)" -R true 2>/dev/null; then
        setarch "$(uname -m)" -R "$@"
    else
        "$@"
    fi
}

suite_tsan() {
    # Only what runs threads, to keep it short (TSan is 5-15x slower). The
    # package goes to its own folder, as for asan-py; CPython itself is not
    # instrumented and needs no suppressions: its GIL is a pthread mutex and
    # condition, which TSan sees. --capture=sys leaves stderr to TSan, whose
    # report would otherwise vanish with the aborted process's captured output.
    local tsan_runtime
    tsan_runtime="$(gcc -print-file-name=libtsan.so)"
    export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1"
    python -m pip install -q --no-build-isolation --no-deps --upgrade \
        --target build/tsan-site -Cbuild-dir=build/tsan-pip \
        -Csetup-args=-Db_sanitize=thread -Csetup-args=-Db_lundef=false \
        -Csetup-args=-Dbuildtype=debugoptimized -Csetup-args=-Dtests=false \
        -Csetup-args=-Dbench=false -Csetup-args=-Dfuzz=false . &&
        PYTHONPATH="$REPO/build/tsan-site" \
        TSD_EXPECT_PACKAGE_DIR="$REPO/build/tsan-site/octoprint_tsd" \
        LD_PRELOAD="$tsan_runtime" \
        tsan_run pytest -q -p no:cacheprovider --capture=sys tests/py/test_camera_threads.py \
            tests/integration/test_remote_access.py &&
        meson_configure build/tsan -Db_sanitize=thread -Db_lundef=false -Dtests=true \
            -Dbench=false -Dfuzz=false &&
        meson compile -C build/tsan tests/c/test_grab_dns &&
        tsan_run meson test -C build/tsan --no-rebuild --print-errorlogs sec09-dns-deadline
}

# The x86_64 wheels of `make wheels`, installed by OctoPrint's plugin manager in
# a fresh chroot without a compiler (docs/packaging.md): 40 s to 2.5 min once the
# chroot and OctoPrint's wheels are cached under build/test-wheels/cache.
suite_wheels() {
    if [ "$(id -u)" -ne 0 ] || [ "$(uname -m)" != x86_64 ]; then
        echo "wheels: skipped (needs root for chroot, and an x86_64 machine)"
        return 0
    fi
    ./scripts/wheels.sh x86_64 && ./scripts/test_wheels.sh x86_64
}

run_suite c suite_c
run_suite release suite_release
run_suite py suite_py
run_suite integration suite_integration
run_suite model suite_model
run_suite octoprint-1.10 suite_compat
run_suite demo suite_demo
run_suite asan-c suite_asan_c
run_suite asan-py suite_asan_py
run_suite tsan suite_tsan
run_suite wheels suite_wheels

printf '\n==> passed: %s\n' "${passed[*]:-none}"
printf '==> failed: %s\n' "${failed[*]:-none}"
printf 'suites: %d passed, %d failed\n' "${#passed[@]}" "${#failed[@]}"
[ "${#failed[@]}" -eq 0 ]
