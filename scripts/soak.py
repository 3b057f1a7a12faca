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
figures then say so. --phases runs some of the phases (faults, server,
camera, helper, week), each in the same OctoPrint, in that order, and prints
only their figures. Prints `bench <name> <value> <unit>` lines, how long each
phase took, and writes the figures to build/test-output/soak/figures.txt
(figures-<phases>.txt for a selection).

Where the time goes at scale 1 (2 shared cores): every fault once about a
minute, the server reconnects 0.15 s each (2.5 min), the camera reconnects
about 60 ms each (10 min), the helper restarts about 1.1 s each (19 min:
the helper supervisor's first backoff is 1 s, not scaled), and the week 50
min (60,480 frames at the frame interval's floor of 50 ms).

Descriptors and threads are counted when they stay (see fault_rig.Settled): the
camera's per-frame connection and the name-lookup thread come and go, and
OctoPrint's request pool grows a worker when the soak's own requests
overlap, up to its bound; none of that is a leak, and a leak stays.
"""

import argparse
import os
import signal
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


def settled(run):
    """OctoPrint at rest now (fault_rig.Settled), the rig's ports named."""
    ports = {run.proxy.port: "fault-proxy", run.linked.server.port: "server", run.sim.port: "camera",
             int(run.linked.instance.url.rsplit(":", 1)[1]): "octoprint"}
    return fault_rig.Settled(run.linked.instance.process.pid, run.linked.instance.url, run.linked.headers,
                             ports)


def wait_frames(run, lag, first, count, total, started, memory_top=0):
    """Until count frames after first, saying how far (and OctoPrint's RSS,
    and where its memory is) every tenth of total (seconds since started); at
    most two periods a frame (the frame interval's floor is 50 ms). Collects
    the loop lag each second: the loop-lag plugin holds every tick until
    collected (100 a second, about 3 MiB a quarter hour), which is
    OctoPrint's RSS too. memory_top > 0 also lists what grew most
    (fault_rig.memory_breakdown)."""
    step = max(1, total // 10)
    shown = (run.detect()["frames"] - first) // step   # said by the call before
    while True:
        done = run.detect()["frames"] - first
        if done // step > shown:
            shown = done // step
            print("  frames {}/{} ({:.0f} s, RSS {:.1f} MiB)".format(
                done, total, time.monotonic() - started,
                fault_rig.process_sample(run.linked.instance.process.pid)[1]), flush=True)
            memory = lag.memory(memory_top)
            print("    heap in use {heap_in_use_mib:.2f} MiB, free {heap_free_mib:.2f}, mmapped {heap_mmapped_mib:.2f}; "
                  "Python blocks {python_blocks}".format(**memory)
                  + ("" if memory["gc_objects"] is None else "; objects {}".format(memory["gc_objects"])), flush=True)
            if "traced_mib" in memory:
                print("    traced by tracemalloc: {traced_mib:.2f} MiB".format(**memory), flush=True)
            if "gc_freed" in memory:
                print("    a full collection freed {gc_freed} objects ({gc_full_collections} full collections "
                      "so far)".format(**memory), flush=True)
            for line in memory.get("grown", []):
                print("    " + line, flush=True)
        if done >= count:
            return
        assert time.monotonic() - started < count * 0.1 + 60, run.detect()
        lag.collect()
        time.sleep(1.0)


def repeat(label, count, unit, lag=None):
    """count units in a row, saying how far every tenth (and collecting the
    loop lag then: see wait_frames)."""
    started = time.monotonic()
    for i in range(count):
        unit()
        if (i + 1) % max(1, count // 10) == 0:
            if lag is not None:
                lag.collect()
            print("  {} {}/{} ({:.0f} s)".format(label, i + 1, count, time.monotonic() - started), flush=True)


PHASES = ("faults", "server", "camera", "helper", "week")


def thread_changes(before, after):
    """What came and went between two thread censuses (fault_rig.thread_census),
    one line each: kernel id, comm, Python name, where it is."""
    lines = []
    for label, census, tids in (("more", after, after.keys() - before.keys()),
                                ("gone", before, before.keys() - after.keys())):
        for tid in sorted(tids):
            comm, name, stack = census[tid]
            lines.append("{} {} {} {} {}".format(label, tid, comm, name or "(native)",
                                                 " | ".join(" ".join(line.split()) for line in stack[-2:]) if stack else ""))
    return lines


def descriptor_changes(before, after):
    """The descriptors that are new or gone or now something else."""
    return ["{} {}: {} -> {}".format("now" if fd in before and fd in after else "more" if fd in after else "gone",
                                     fd, before.get(fd, "-"), after.get(fd, "-"))
            for fd in sorted(before.keys() | after.keys()) if before.get(fd) != after.get(fd)]


def soak(scale, keep, phases=PHASES, memory_top=0):
    counts = {name: max(1, int(round(n * scale))) for name, n in (
        ("server", SERVER_RECONNECTS), ("camera", CAMERA_RECONNECTS),
        ("helper", HELPER_RESTARTS), ("frames", WEEK_FRAMES))}
    # Long enough to print through all of it (each line: a move and 100 ms).
    estimate_s = 600 + 0.5 * counts["server"] + 0.3 * counts["camera"] + 2.5 * counts["helper"] \
        + 0.1 * counts["frames"]
    figures = []
    timings = []

    def figure(name, value, unit):
        fault_rig.bench(name, value, unit)
        figures.append("bench {} {} {}".format(name, "%.2f" % value if isinstance(value, float) else value,
                                                unit))

    def phase(name, title):
        print("soak: {} ({})".format(title, time.strftime("%H:%M:%S")), flush=True)
        timings.append((name, time.monotonic()))

    base = tempfile.mkdtemp(prefix="tsd-soak-")
    # OctoPrint keeps the temperatures of the last temperature.cutoff minutes
    # of wall-clock time (printer/standard.py DataHistory, about 1.5 reports
    # a second here): 30 minutes fill for the first 30 minutes of the week's
    # 50, a bounded cache of OctoPrint's that would count as growth. In the
    # real week it fills in its first half hour; one minute here is the same
    # at the soak's time scale (a minute stands for 3.3 hours).
    with fault_suite.fault_octoprint(TmpFactory(base), "soak", print_lines=int(estimate_s / 0.1),
                                     disk=False, time_scale=SOAK_TIME_SCALE,
                                     octoprint_settings={"temperature": {"cutoff": 1}}) as run:
        pid = run.linked.instance.process.pid

        lag = fault_rig.LoopLag(run.linked.instance.url, run.linked.headers)
        fault_suite.start_print(run)
        mark = len(run.linked.serial_log())
        lag.reset()
        sampler = fault_rig.Sampler(run.linked.instance.url, run.linked.headers, pid).start()
        try:
            if "faults" in phases:
                phase("faults", "every fault once")
                for fault in fault_suite.SHORT_FAULTS:
                    getattr(run, fault)()
                    lag.collect()

            if "server" in phases:
                phase("server", "{} server reconnects".format(counts["server"]))
                repeat("server reconnects", 10, run.server_reconnect)  # warm-up
                server_before = settled(run)
                repeat("server reconnects", counts["server"], lambda: (run.server_reconnect(), lag.collect()))
                assert wait_for(lambda: run.remote()["state"] == "connected", 30)
                server_after = settled(run)

            if "camera" in phases:
                phase("camera", "{} camera reconnects".format(counts["camera"]))
                repeat("camera reconnects", counts["camera"], run.camera_reconnect, lag)
                lag.collect()
            if "helper" in phases:
                phase("helper", "{} helper restarts".format(counts["helper"]))
                repeat("helper restarts", counts["helper"], run.helper_restart, lag)
                lag.collect()
            camera_helper = settled(run)

            if "week" in phases:
                phase("week", "{} frames (7 days at one per 10 s, scaled)".format(counts["frames"]))
                first, started = run.detect()["frames"], time.monotonic()
                # Memory is compared from the end of the first tenth on (caches filled).
                wait_frames(run, lag, first, max(1, counts["frames"] // 10), counts["frames"], started,
                            memory_top)
                rss_warm = settled(run).rss_mb
                wait_frames(run, lag, first, counts["frames"], counts["frames"], started, memory_top)
                rss_end = settled(run).rss_mb
                lag.collect()
            phase("end", "done")
        finally:
            sampler.stop()
        odd = fault_rig.unexpected_gcode(run.linked.sent_since(mark), run.gcode)
        disturbed = len(odd) + len(sampler.states & DISTURBED_STATES)
        if odd or sampler.states & DISTURBED_STATES:
            print("soak: the print was disturbed: states {}, G-code {}".format(sampler.states, odd[:20]))
        shortened = "" if scale == 1 else " (shortened: scale {})".format(scale)
        print("soak: figures{}; phases {}".format(shortened, ",".join(phases)), flush=True)
        if "server" in phases:
            figure("reconnect_fd_growth_1000", int(server_after.fds - server_before.fds),
                   "fds" + ("" if counts["server"] == 1000 else "_after_%d" % counts["server"]))
            figure("reconnect_thread_growth_1000", fault_rig.thread_growth(server_before, server_after),
                   "threads" + ("" if counts["server"] == 1000 else "_after_%d" % counts["server"]))
        if "week" in phases:
            figure("soak_rss_growth_mb", rss_end - rss_warm,
                   "MiB" + ("" if counts["frames"] == WEEK_FRAMES else "_over_%d_frames" % counts["frames"]))
        figure("octoprint_loop_lag_p99_ms_faults", fault_rig.percentile(lag.lags, 0.99) or -1.0, "ms")
        figure("octoprint_api_version_p99_ms_faults", fault_rig.percentile(sampler.latency_ms, 0.99) or -1.0,
               "ms")
        figure("faults_print_disturbed", disturbed, "count")
        if run.recovery:
            figure("recovery_s_max", max(run.recovery.values()), "s")
        for (name, began), (_, ended) in zip(timings, timings[1:]):
            print("soak: phase {} took {:.0f} s".format(name, ended - began))
        if "server" in phases:
            print("soak: threads that stayed over the server reconnects: {} -> {}; OctoPrint's request pool {} -> {} "
                  "(its bound {})".format(server_before.threads, server_after.threads, server_before.request_pool,
                                          server_after.request_pool, fault_rig.request_pool_bound()))
            print("soak: threads that came or went over the server reconnects:")
            for line in thread_changes(server_before.census, server_after.census) or ["none"]:
                print("  " + line)
            print("soak: descriptors that came or went over the server reconnects:")
            for line in descriptor_changes(server_before.descriptors, server_after.descriptors) or ["none"]:
                print("  " + line)
            print("soak: descriptors/threads kept after the camera and helper runs: {} / {} (before the server "
                  "reconnects: {} / {})".format(camera_helper.fds, camera_helper.threads_kept, server_before.fds,
                                                server_before.threads_kept))
        print("soak: slowest recoveries: {}".format(sorted(run.recovery.items(), key=lambda kv: -kv[1])[:5]))
    name = "figures.txt" if phases == PHASES else "figures-{}.txt".format("-".join(phases))
    with open(os.path.join(output_dir("soak"), name), "w") as f:
        f.write("scale {} phases {}\n".format(scale, ",".join(phases)) + "\n".join(figures) + "\n")
    if not keep:
        import shutil

        shutil.rmtree(base, ignore_errors=True)
    return 0 if disturbed == 0 else 1


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0,
                        help="run this fraction of each count (default 1: the full soak)")
    parser.add_argument("--keep", action="store_true", help="keep the OctoPrint base folder")
    parser.add_argument("--phases", default=",".join(PHASES),
                        help="which phases to run, in their fixed order (default: all): " + ",".join(PHASES))
    parser.add_argument("--memory-top", type=int, default=0, metavar="N",
                        help="over the week, list the N things that grew most each tenth: with "
                             "PYTHONTRACEMALLOC=1 the Python files that allocated them, else kinds of objects "
                             "(slower)")
    args = parser.parse_args(argv)
    if not 0 < args.scale <= 1:
        parser.error("--scale must be in (0, 1]")
    phases = tuple(p for p in PHASES if p in args.phases.split(","))
    unknown = set(args.phases.split(",")) - set(PHASES)
    if unknown or not phases:
        parser.error("--phases: choose among " + ",".join(PHASES))
    # Stopped by a signal, it still stops its OctoPrint, helper and webcam.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    return soak(args.scale, args.keep, phases, args.memory_top)


if __name__ == "__main__":
    sys.exit(main())
