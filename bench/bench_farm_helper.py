# SPDX-License-Identifier: AGPL-3.0-or-later
"""One detector per host (issue 14, part 3): N instances on one host, each
sending one frame a second, scored by one shared helper (tsd-helper-shared
and its one tsd-helper) or by a helper each.

An "instance" here is a process driving the plugin's own native detector
(``_tsd.Detector``: native/core/superv.c and superv_shared.c, the C code
the plugin calls for every frame), not a whole OctoPrint: ten OctoPrint
servers would measure OctoPrint on this 2-core machine, and the helper side
-- what this compares -- is the same. Each instance starts its detector
(the first shared one starts tsd-helper-shared), then sends a 1280x720
JPEG once a second, at a random phase, for TSD_BENCH_FARM_SECONDS seconds
(default 20), with the plugin's default deadline (10 s).

Prints ``bench <name> <value> <unit>`` lines:

  farm_helper_rss_mb_{1,4,10}_shared   the resident memory of every helper
                                       process (tsd-helper-shared and its
                                       tsd-helper), peak of samples taken
                                       while the instances send frames
  farm_helper_rss_mb_10_separate       the same for ten tsd-helpers
  farm_detect_p99_ms_{1,4,10}          round trip of a frame, p99 over all
                                       instances' answered frames, shared
  farm_detect_p99_ms_10_separate       the same with ten helpers
  farm_frames_late_pct_{1,4,10}        frames the shared helper answered
                                       "late" (dropped unscored), percent

The model is the shipped one (the package's model/helper.yaml), or, when it
is not installed, a random-weight YOLOv2 at 224x224 (then said on stderr).
"""

import ctypes
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))

import helper_models  # noqa: E402
from tsd_testing import children_of, rss_mb  # noqa: E402
from octoprint_tsd import bridge  # noqa: E402

SECONDS = int(os.environ.get("TSD_BENCH_FARM_SECONDS", "20"))
DEADLINE_MS = 10000
PR_SET_CHILD_SUBREAPER = 36
RSS_SAMPLE_S = 1.0


def bench(name, value, unit):
    print("bench {} {:.3f} {}".format(name, value, unit), flush=True)


# ---- one instance ---------------------------------------------------------------


def client(config, shared_dir, seconds):
    """Starts the detector, says ready, waits for "go", then sends one frame
    a second; prints {"ms": [...], "late": n, "errors": [...]}."""
    options = {"shared_dir": shared_dir, "shared_idle_exit_s": 60} if shared_dir else {}
    detector = bridge.new_detector(bridge.helper_path(), config, deadline_ms=DEADLINE_MS,
                                   start_timeout_ms=300000, **options)
    jpeg = helper_models.make_jpeg(1280, 720, seed=5)
    detector.detect(jpeg)  # started, model loaded
    print("ready", flush=True)
    sys.stdin.readline()
    result = {"ms": [], "late": 0, "errors": []}
    start = time.monotonic() + random.random()
    for frame in range(seconds):
        delay = start + frame - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        sent = time.monotonic()
        try:
            detector.detect(jpeg)
            result["ms"].append((time.monotonic() - sent) * 1000.0)
        except bridge.HelperError as exc:
            if exc.code == "late":
                result["late"] += 1
            else:
                result["errors"].append("{}: {}".format(exc.code, exc))
    print(json.dumps(result), flush=True)
    detector.stop()


# ---- the host ---------------------------------------------------------------------


def descendants(pid):
    found = []
    for child in children_of(pid):
        found.append(child)
        found += descendants(child)
    return found


def helper_rss_bytes():
    """RSS of every tsd-helper and tsd-helper-shared under this process
    (the shared ones are reparented here: we are their subreaper)."""
    total = 0
    for pid in descendants(os.getpid()):
        try:
            exe = os.path.basename(os.readlink("/proc/{}/exe".format(pid)))
            if not exe.startswith("tsd-helper"):
                continue
            total += int(rss_mb(pid) * 1048576)
        except (OSError, ValueError, StopIteration):  # gone, or a zombie (no VmRSS)
            continue
    return total


def shared_servers():
    pids = []
    for pid in descendants(os.getpid()):
        try:
            if os.readlink("/proc/{}/exe".format(pid)).endswith("/tsd-helper-shared"):
                pids.append(pid)
        except OSError:
            continue
    return pids


def run(config, instances, shared):
    """(latencies ms, late, frames, peak helper RSS bytes, errors)"""
    folder = tempfile.mkdtemp(prefix="tsd-bf-")
    shared_dir = os.path.join(folder, "s") if shared else ""
    procs = [subprocess.Popen([sys.executable, os.path.abspath(__file__), "--client", config,
                               shared_dir, str(SECONDS)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for _ in range(instances)]
    try:
        for proc in procs:
            line = proc.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError("an instance did not start: {!r}".format(line))
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        peak = 0
        end = time.monotonic() + SECONDS
        while time.monotonic() < end:
            peak = max(peak, helper_rss_bytes())
            time.sleep(RSS_SAMPLE_S)
        latencies, late, errors = [], 0, []
        for proc in procs:
            result = json.loads(proc.stdout.readline())
            latencies += result["ms"]
            late += result["late"]
            errors += result["errors"]
            proc.wait(60)
        return sorted(latencies), late, instances * SECONDS, peak, errors
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for pid in shared_servers():
            os.kill(pid, signal.SIGTERM)
            os.waitpid(pid, 0)
        subprocess.run(["rm", "-rf", folder], check=False)


def p99(values):
    return values[min(len(values) - 1, int(len(values) * 0.99))] if values else float("nan")


def main():
    if not bridge.native_available():
        print("bench_farm_helper: the native module is not available", file=sys.stderr)
        return 1
    # The shared helpers detach from the instance that starts them; as
    # their subreaper this process sees (and ends) them.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    with tempfile.TemporaryDirectory() as tmp:
        config = bridge.default_model_config()
        if not config:
            print("bench_farm_helper: no shipped model; a random-weight YOLOv2 224x224 instead",
                  file=sys.stderr)
            cfg, weights = helper_models.write_yolov2_model(tmp, 224)
            config = helper_models.write_config(os.path.join(tmp, "helper.yaml"), cfg, weights,
                                                224)
        for instances in (1, 4, 10):
            latencies, late, frames, peak, errors = run(config, instances, shared=True)
            bench("farm_helper_rss_mb_{}_shared".format(instances), peak / 1048576.0, "MB")
            bench("farm_detect_p99_ms_{}".format(instances), p99(latencies), "ms")
            bench("farm_frames_late_pct_{}".format(instances), 100.0 * late / frames, "%")
            for error in errors[:3]:
                print("bench_farm_helper: {} shared: {}".format(instances, error),
                      file=sys.stderr)
        latencies, late, frames, peak, errors = run(config, 10, shared=False)
        bench("farm_helper_rss_mb_10_separate", peak / 1048576.0, "MB")
        bench("farm_detect_p99_ms_10_separate", p99(latencies), "ms")
        for error in errors[:3]:
            print("bench_farm_helper: 10 separate: {}".format(error), file=sys.stderr)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--client":
        client(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        sys.exit(0)
    sys.exit(main())
