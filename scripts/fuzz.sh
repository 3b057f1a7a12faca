#!/usr/bin/env bash
# SPDX-License-Identifier: AGPL-3.0-or-later
#
# `make fuzz`: builds the libFuzzer variants of the fuzz targets under
# tests/fuzz/ with clang, AddressSanitizer and UndefinedBehaviorSanitizer
# (build/fuzz), runs each for a number of executions over a copy of its seed
# corpus, and merges the inputs that reached new code back into
# tests/fuzz/corpus/<target>/ (libFuzzer -merge=1: only what adds coverage,
# so the corpora stay small). Prints, per target, the executions, the time,
# the corpus size and "no finding" or the crash.
#
#   scripts/fuzz.sh [-runs=N] [TARGET...]
#
# N defaults to 10000000 (the record in docs/security.md); TARGET defaults
# to every target. The fuzzers take one core each, one after the other: on
# a shared machine run it under `nice -n 15`. A crash leaves its input in
# build/fuzz/artifacts/<target>/; the script then exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=10000000
TARGETS=()
for arg in "$@"; do
    case "$arg" in
        -runs=*|--runs=*) RUNS="${arg#*=}" ;;
        -h|--help) sed -n '3,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "usage: $0 [-runs=N] [TARGET...]" >&2; exit 2 ;;
        *) TARGETS+=("$arg") ;;
    esac
done
case "$RUNS" in
    ''|*[!0-9]*) echo "-runs needs a whole number, not '$RUNS'" >&2; exit 2 ;;
esac
if [ "${#TARGETS[@]}" -eq 0 ]; then
    for dir in tests/fuzz/corpus/*/; do
        TARGETS+=("$(basename "$dir")")
    done
fi
for name in "${TARGETS[@]}"; do
    if [ ! -f "tests/fuzz/fuzz_$name.c" ] || [ ! -d "tests/fuzz/corpus/$name" ]; then
        echo "unknown fuzz target '$name' (tests/fuzz/fuzz_$name.c and tests/fuzz/corpus/$name/)" >&2
        exit 2
    fi
done

# ---- the compiler ----------------------------------------------------------
# shellcheck source=scripts/debian_packages.sh
. scripts/debian_packages.sh
# clang with its runtime libraries (libFuzzer, the sanitizers), and what a
# meson setup of the project needs (scripts/setup.sh installs the rest).
ensure_debian_packages clang-14 libclang-rt-14-dev >&2
CLANG=clang-14
CLANGXX=clang++-14

MESON=meson
if [ -x .venv/bin/meson ]; then
    MESON=.venv/bin/meson
    export PATH="$PWD/.venv/bin:$PATH"
fi
BUILD=build/fuzz
options=(-Dlibfuzzer=true -Dsanitize=true -Db_lundef=false -Dfuzz=true -Dtests=false
         -Dbench=false -Dbuildtype=debugoptimized)
if [ -f "$BUILD/build.ninja" ]; then
    "$MESON" setup --reconfigure "$BUILD" "${options[@]}" >/dev/null
else
    CC="$CLANG" CXX="$CLANGXX" "$MESON" setup "$BUILD" "${options[@]}" >/dev/null
fi
build_targets=()
for name in "${TARGETS[@]}"; do
    build_targets+=("tests/fuzz/fuzz_${name}_libfuzzer")
done
"$MESON" compile -C "$BUILD" "${build_targets[@]}" >&2

# ---- the runs --------------------------------------------------------------
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
found=0
summary=()
for name in "${TARGETS[@]}"; do
    fuzzer="$BUILD/tests/fuzz/fuzz_${name}_libfuzzer"
    corpus="tests/fuzz/corpus/$name"
    artifacts="$BUILD/artifacts/$name"
    log="$BUILD/fuzz-$name.log"
    mkdir -p "$artifacts" "$work/$name"
    cp -- "$corpus"/* "$work/$name"/
    printf '==> %s: %s runs\n' "$name" "$RUNS" >&2
    start=$(date +%s)
    status=0
    "$fuzzer" -runs="$RUNS" -print_final_stats=1 -timeout=30 \
        -artifact_prefix="$artifacts/" "$work/$name" >"$log" 2>&1 || status=$?
    seconds=$(( $(date +%s) - start ))
    executions="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
    if [ "$status" -eq 0 ]; then
        # Only inputs that reach code the corpus does not are added.
        "$fuzzer" -merge=1 "$corpus" "$work/$name" >>"$log" 2>&1
        verdict="no finding"
    else
        found=1
        crash="$(sed -n 's/.*Test unit written to //p' "$log" | tail -n 1)"
        what="$(grep -m 1 '^SUMMARY: ' "$log" || grep -m 1 -E 'ERROR|runtime error' "$log" || true)"
        verdict="FINDING (exit $status): ${what:-see $log} input: ${crash:-none}"
    fi
    files="$(find "$corpus" -maxdepth 1 -type f | wc -l)"
    bytes="$(du -sb "$corpus" | cut -f1)"
    summary+=("$(printf '%-13s %12s %7ss %6s files %9s bytes  %s' "$name" "${executions:-?}" \
        "$seconds" "$files" "$bytes" "$verdict")")
    printf '%s\n' "${summary[-1]}"
done

printf '\n%-13s %12s %8s %12s %15s  %s\n' target executions time "corpus files" bytes result
printf '%s\n' "${summary[@]}"
[ "$found" -eq 0 ]
