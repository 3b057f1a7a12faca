#!/usr/bin/env bash
# SPDX-License-Identifier: AGPL-3.0-or-later
# `make bench`: build and run every benchmark under bench/. Each prints
# `bench <name> <value> <unit>` lines. Benchmarks report; they never fail
# because a machine is slow.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh >&2
export PATH="$PWD/.venv/bin:$PATH"
if [ -f build/bench/build.ninja ]; then
    meson setup --reconfigure build/bench -Dbuildtype=release -Dtests=false -Dfuzz=false -Dbench=true >/dev/null
else
    meson setup build/bench -Dbuildtype=release -Dtests=false -Dfuzz=false -Dbench=true >/dev/null
fi
meson compile -C build/bench >&2
for exe in build/bench/bench/bench_*; do
    [ -x "$exe" ] && [ -f "$exe" ] && "$exe"
done
for script in bench/bench_*.py; do
    [ -f "$script" ] && python "$script"
done
exit 0
