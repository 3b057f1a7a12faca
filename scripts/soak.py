#!/usr/bin/env python3
# SPDX-License-Identifier: AGPL-3.0-or-later
"""`make soak`: the long form of the fault suite (tests/fault_suite.py).

One real OctoPrint prints on its virtual printer, linked through the fault
proxy to the reference server, watching the simulated webcam, with
TSD_TIME_SCALE = 0.005 (a frame every 50 ms stands for one every 10 s).
In a row: every fault once, 1,000 server reconnects, 10,000 camera
reconnects, 1,000 helper restarts and 7 days of printing at one frame per
10 s (60,480 frames). OctoPrint's RSS, descriptors and threads are sampled
every half second, its loop lag and /api/version latency throughout, and the
printer's received G-code is checked at the end.

--scale F runs F times each count (0.05: a twentieth, about 9 minutes); the
figures then say so. Prints `bench <name> <value> <unit>` lines and writes
them to build/test-output/soak/figures.txt.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(REPO, "tests"), os.path.join(REPO, "scripts")]

import fault_rig  # noqa: E402
import fault_suite  # noqa: E402
from tsd_testing import output_dir, wait_for  # noqa: E402

SOAK_TIME_SCALE = 0.005
SERVER_RECONNECTS = 1000
CAMERA_RECONNECTS = 10000
HELPER_RESTARTS = 1000
WEEK_FRAMES = 7 * 24 * 3600 // 10
DISTURBED_STATES = {"Pausing", "Paused", "Resuming", "Cancelling", "Error", "Offline"}


class TmpFactory:
    """What fault_octoprint() needs of pytest's tmp_path_factory."""

    def __init__(self, base):
        self.base = base

    def mktemp(self, name):
        import pathlib

        return pathlib.Path(tempfile.mkdtemp(prefix=name + "-", dir=self.base))


def settled(run, seconds=3.0):
    """OctoPrint's (descriptors, threads) at rest: the median of a few samples."""
    time.sleep(seconds / 2)
    samples = []
    for _ in range(5):
        samples.append(fault_rig.process_sample(run.linked.instance.process.pid))
        time.sleep(seconds / 10)
    return (statistics.median(s[2] for s in samples), statistics.median(s[3] for s in samples),
            statistics.median(s[1] for s in samples))


def repeat(label, count, unit):
    started = time.monotonic()
    for i in range(count):
        unit()
        if (i + 1) % max(1, count // 10) == 0:
            print("  {} {}/{} ({:.0f} s)".format(label, i + 1, count, time.monotonic() - started), flush=True)


def soak(scale, keep):
    counts = {name: max(1, int(round(n * scale))) for name, n in (
        ("server", SERVER_RECONNECTS), ("camera", CAMERA_RECONNECTS),
        ("helper", HELPER_RESTARTS), ("frames", WEEK_FRAMES))}
    # Long enough to print through all of it (each line: a move and 100 ms).
    estimate_s = 600 + 0.5 * counts["server"] + 0.3 * counts["camera"] + 2.5 * counts["helper"] \
        + 0.1 * counts["frames"]
    figures = []

    def figure(name, value, unit):
        fault_rig.bench(name, value, unit)
        figures.append("bench {} {} {}".format(name, "%.2f" % value if isinstance(value, float) else value,
                                                unit))

    base = tempfile.mkdtemp(prefix="tsd-soak-")
    with fault_suite.fault_octoprint(TmpFactory(base), "soak", print_lines=int(estimate_s / 0.1),
                                     disk=False, time_scale=SOAK_TIME_SCALE) as run:
        pid = run.linked.instance.process.pid
        lag = fault_rig.LoopLag(run.linked.instance.url, run.linked.headers)
        fault_suite.start_print(run)
        mark = len(run.linked.serial_log())
        lag.reset()
        sampler = fault_rig.Sampler(run.linked.instance.url, run.linked.headers, pid).start()
        try:
            print("soak: every fault once", flush=True)
            for fault in fault_suite.SHORT_FAULTS:
                getattr(run, fault)()
                lag.collect()

            print("soak: {} server reconnects".format(counts["server"]), flush=True)
            repeat("server reconnects", 10, run.server_reconnect)  # warm-up
            fds_before, threads_before, _ = settled(run)
            names_before = fault_rig.thread_names(pid)
            repeat("server reconnects", counts["server"], lambda: (run.server_reconnect(), lag.collect()))
            assert wait_for(lambda: run.remote()["state"] == "connected", 30)
            fds_after, threads_after, _ = settled(run)
            names_after = fault_rig.thread_names(pid)

            print("soak: {} camera reconnects".format(counts["camera"]), flush=True)
            repeat("camera reconnects", counts["camera"], run.camera_reconnect)
            lag.collect()
            print("soak: {} helper restarts".format(counts["helper"]), flush=True)
            repeat("helper restarts", counts["helper"], run.helper_restart)
            lag.collect()
            camera_helper = settled(run)

            print("soak: {} frames (7 days at one per 10 s, scaled)".format(counts["frames"]), flush=True)
            first = run.detect()["frames"]
            warm = first + max(1, counts["frames"] // 10)
            assert wait_for(lambda: run.detect()["frames"] >= warm, counts["frames"] * 2 + 60, 1.0)
            _, _, rss_warm = settled(run)
            deadline = counts["frames"] * 2 + 60
            assert wait_for(lambda: run.detect()["frames"] >= first + counts["frames"], deadline, 1.0), \
                run.detect()
            _, _, rss_end = settled(run)
            lag.collect()
        finally:
            sampler.stop()
        odd = fault_rig.unexpected_gcode(run.linked.sent_since(mark), run.gcode)
        disturbed = len(odd) + len(sampler.states & DISTURBED_STATES)
        if odd or sampler.states & DISTURBED_STATES:
            print("soak: the print was disturbed: states {}, G-code {}".format(sampler.states, odd[:20]))
        shortened = "" if scale == 1 else " (shortened: scale {})".format(scale)
        print("soak: figures{}".format(shortened), flush=True)
        figure("reconnect_fd_growth_1000", int(fds_after - fds_before),
               "fds" + ("" if counts["server"] == 1000 else "_after_%d" % counts["server"]))
        figure("reconnect_thread_growth_1000", int(threads_after - threads_before),
               "threads" + ("" if counts["server"] == 1000 else "_after_%d" % counts["server"]))
        figure("soak_rss_growth_mb", rss_end - rss_warm,
               "MiB" + ("" if counts["frames"] == WEEK_FRAMES else "_over_%d_frames" % counts["frames"]))
        figure("octoprint_loop_lag_p99_ms_faults", fault_rig.percentile(lag.lags, 0.99) or -1.0, "ms")
        figure("octoprint_api_version_p99_ms_faults", fault_rig.percentile(sampler.latency_ms, 0.99) or -1.0,
               "ms")
        figure("faults_print_disturbed", disturbed, "count")
        figure("recovery_s_max", max(run.recovery.values()), "s")
        print("soak: descriptors/threads after the camera and helper runs: {} / {} (before: {} / {})".format(
            camera_helper[0], camera_helper[1], fds_before, threads_before))
        print("soak: threads by name after the reconnects, more: {}; fewer: {}".format(
            dict(names_after - names_before) or "none", dict(names_before - names_after) or "none"))
        print("soak: slowest recoveries: {}".format(sorted(run.recovery.items(), key=lambda kv: -kv[1])[:5]))
    with open(os.path.join(output_dir("soak"), "figures.txt"), "w") as f:
        f.write("scale {}\n".format(scale) + "\n".join(figures) + "\n")
    if not keep:
        import shutil

        shutil.rmtree(base, ignore_errors=True)
    return 0 if disturbed == 0 else 1


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0,
                        help="run this fraction of each count (default 1: the full soak)")
    parser.add_argument("--keep", action="store_true", help="keep the OctoPrint base folder")
    args = parser.parse_args(argv)
    if not 0 < args.scale <= 1:
        parser.error("--scale must be in (0, 1]")
    return soak(args.scale, args.keep)


if __name__ == "__main__":
    sys.exit(main())
