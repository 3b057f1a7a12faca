# SPDX-License-Identifier: AGPL-3.0-or-later
"""Benchmark of print from the app (cloud print start, issue 18). Prints
`bench <name> <value> <unit>` lines.

A 200 MB G-code file in the reference server's store, on loopback (plain
HTTP to the linked server's own loopback host, so the figure is the
plugin's side and not TLS), downloaded through the plugin's whole path: the
native tunnel and allow-list, the shim's Remote and CloudPrint, the native
download on its C thread into a file, the server's record, then "stored"
and "selected" by a stand-in for OctoPrint's file manager and printer.

cloudprint_mb_s: file size / (the call sent -> its ack);
cloudprint_rss_delta_mb: the peak resident memory of this process during
the download less before it (the reference server runs in this process
too: it reads the file in 256 KiB blocks);
cloudprint_pause_latency_max_ms / _median_ms: `pause` commands sent every
100 ms during the download, from the server's send to the plugin's
remote_pause() (as remote_pause_latency_* in bench_remote.py).
"""

import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from unittest import mock

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))

from obico_refserver import ReferenceServer  # noqa: E402
from tsd_testing import idle_printer_plugin  # noqa: E402

from octoprint_tsd import remote  # noqa: E402

TOKEN = "c1b2c3d4e5f6a7b8c9d0"
SIZE_MB = int(os.environ.get("TSD_BENCH_CLOUDPRINT_MB", "200"))


def bench(name, value, unit):
    print("bench {} {:.3f} {}".format(name, value, unit), flush=True)


def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024.0


def write_gcode(path, size):
    block = "".join("G1 X{} Y{} E{:.4f} F3000\n".format(10 + i % 90, 10 + (i * 7) % 90, i * 0.01)
                    for i in range(4096)).encode()
    with open(path, "wb") as f:
        written = 0
        while written < size:
            f.write(block)
            written += len(block)


def fake_plugin(uploads):
    """OctoPrint as far as the download path needs it: an idle printer and a
    file manager that moves the file into place."""
    plugin = idle_printer_plugin(uploads, free_margin_mb=100, agent_version="bench")

    def add_file(origin, path, wrapper, **kwargs):
        target = os.path.join(uploads, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        wrapper.save(target)
        return path

    plugin._file_manager.add_file.side_effect = add_file
    plugin._file_manager.get_metadata.return_value = {"hash": "0" * 40}
    return plugin


def main():
    work = tempfile.mkdtemp(prefix="tsd-bench-cloudprint-")
    uploads = os.path.join(work, "uploads")
    os.makedirs(uploads)
    source = os.path.join(work, "big.gcode")
    write_gcode(source, SIZE_MB * 1024 * 1024)
    size = os.path.getsize(source)
    server = ReferenceServer([TOKEN]).start()  # plain HTTP on 127.0.0.1
    plugin = fake_plugin(uploads)
    pauses = []
    plugin.remote_pause.side_effect = lambda action: pauses.append(time.perf_counter())
    link = remote.Remote(plugin, mock.Mock())
    try:
        assert link.start("http://127.0.0.1:{}".format(server.port), TOKEN)
        deadline = time.monotonic() + 15
        while server.live(TOKEN) == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)
        row, url = server.add_cloud_file(source, "big.gcode")
        baseline = rss_mb()
        peak = [baseline]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], rss_mb())
                time.sleep(0.02)

        sampler = threading.Thread(target=sample)
        sampler.start()
        sent = time.perf_counter()
        server.send(TOKEN, {"passthru": {"ref": "bench-1", "target": "file_downloader", "func": "download",
                                         "args": [{"id": row["id"], "url": url, "filename": "big.gcode",
                                                   "safe_filename": "big.gcode"}]}})
        latencies = []

        def pause_now_and_then():
            while not done.is_set():
                before = len(pauses)
                paused_at = time.perf_counter()
                server.send(TOKEN, {"commands": [{"cmd": "pause", "initiator": "bench"}]})
                while len(pauses) == before and time.perf_counter() - paused_at < 10:
                    time.sleep(0.0002)
                if len(pauses) > before:
                    latencies.append((pauses[before] - paused_at) * 1000.0)
                time.sleep(0.1)

        pauser = threading.Thread(target=pause_now_and_then)
        pauser.start()
        acked = None
        while acked is None and time.perf_counter() - sent < 600:
            for message in server.messages(TOKEN)[-20:]:
                body = (message.json or {}).get("passthru")
                if body and body.get("ref") == "bench-1":
                    acked = (time.perf_counter(), body)
            time.sleep(0.005)
        done.set()
        pauser.join()
        sampler.join()
        assert acked and "ret" in acked[1], acked
        # The ack comes after the whole file was written and checked.
        stored = os.path.join(uploads, "ObicoUpload", "big.gcode")
        assert os.path.getsize(stored) == size
        bench("cloudprint_mb_s", size / 1048576.0 / (acked[0] - sent), "MB/s")
        bench("cloudprint_rss_delta_mb", peak[0] - baseline, "MB")
        if latencies:
            bench("cloudprint_pause_latency_median_ms", statistics.median(latencies), "ms")
            bench("cloudprint_pause_latency_max_ms", max(latencies), "ms")
    finally:
        link.stop()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
