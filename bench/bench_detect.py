# SPDX-License-Identifier: AGPL-3.0-or-later
"""Detection cost per frame, through the plugin's own path: a 1280x720 JPEG
handed to ``_tsd.Detector`` (the native supervisor) -> tsd-helper (decode at
the reduced DCT scale + OpenCV DNN inference + NMS) -> detections back.

Prints ``bench <name> <value> <unit>`` lines:

  detect_latency_median_ms, detect_latency_p99_ms   round trip per frame,
                                                     shipped model
  detect_cpu_ms_per_frame                            the helper's user+system
                                                     CPU time per frame
  helper_rss_mb                                      the helper's resident memory
  obico_arch_latency_median_ms                       the same round trip for a
                                                     model with the architecture
                                                     of Obico's server model
                                                     (YOLOv2 at 416x416, random
                                                     weights: timing only)

The helper runs as in the plugin: one thread, nice 10.
"""

import os
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))

import helper_models  # noqa: E402
from octoprint_tsd import bridge  # noqa: E402

FRAMES = int(os.environ.get("TSD_BENCH_DETECT_FRAMES", "100"))
OBICO_FRAMES = int(os.environ.get("TSD_BENCH_OBICO_FRAMES", "10"))
WARMUP = 3


def bench(name, value, unit):
    print("bench {} {:.3f} {}".format(name, value, unit), flush=True)


def cpu_seconds(pid):
    with open("/proc/{}/stat".format(pid)) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def run(config, frames, jpeg):
    """(latencies in ms, CPU ms per frame, RSS in MB)"""
    detector = bridge.new_detector(bridge.helper_path(), config, start_timeout_ms=300000,
                                   deadline_ms=300000)
    try:
        for _ in range(WARMUP):
            detector.detect(jpeg)
        pid = detector.health()["pid"]
        cpu_before = cpu_seconds(pid)
        times = []
        for _ in range(frames):
            started = time.perf_counter()
            detector.detect(jpeg)
            times.append((time.perf_counter() - started) * 1000.0)
        cpu_ms = (cpu_seconds(pid) - cpu_before) * 1000.0 / frames
        rss_mb = detector.health()["rss_bytes"] / (1024.0 * 1024.0)
        return sorted(times), cpu_ms, rss_mb
    finally:
        detector.stop()


def main():
    if not bridge.native_available():
        print("bench_detect: the native module is not available", file=sys.stderr)
        return 1
    jpeg = helper_models.make_jpeg(1280, 720, seed=5)
    config = bridge.default_model_config()
    if config:
        times, cpu_ms, rss_mb = run(config, FRAMES, jpeg)
        bench("detect_latency_median_ms", statistics.median(times), "ms")
        bench("detect_latency_p99_ms", times[min(len(times) - 1, int(len(times) * 0.99))], "ms")
        bench("detect_cpu_ms_per_frame", cpu_ms, "ms")
        bench("helper_rss_mb", rss_mb, "MB")
    else:
        print("bench_detect: no shipped model installed; shipped-model figures skipped",
              file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        cfg, weights = helper_models.write_yolov2_model(tmp, 416)
        obico = helper_models.write_config(os.path.join(tmp, "obico.yaml"), cfg, weights, 416)
        times, _, obico_rss = run(obico, OBICO_FRAMES, jpeg)
        bench("obico_arch_latency_median_ms", statistics.median(times), "ms")
        bench("obico_arch_helper_rss_mb", obico_rss, "MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
