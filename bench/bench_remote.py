# SPDX-License-Identifier: AGPL-3.0-or-later
"""Benchmarks of the server link. Prints `bench <name> <value> <unit>` lines.

remote_pause_latency_*: the reference server sends 1,000 `pause` commands
over TLS on loopback; each goes through the native tunnel, the native
allow-list and the shim's Remote to the printer's pause_print(), here a
recorder (OctoPrint's own pause work is not part of the figure).

idle_*_delta: a real OctoPrint (virtual printer, connected) with the plugin
linked to the reference server, against the same OctoPrint with the plugin
disabled, both idle for IDLE_SECONDS after start-up.
"""

import os
import statistics
import sys
import tempfile
import threading
import time
from unittest import mock

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))
sys.path.insert(0, os.path.join(REPO, "scripts"))

from obico_refserver import ReferenceServer, make_pki  # noqa: E402

from octoprint_tsd import bridge, remote  # noqa: E402

TOKEN = "b1b2c3d4e5f6a7b8c9d0"
COMMANDS = 1000
IDLE_SECONDS = int(os.environ.get("TSD_BENCH_IDLE_SECONDS", "60"))


def bench(name, value, unit):
    print("bench {} {:.3f} {}".format(name, value, unit), flush=True)


def pause_latency(pki, commands=COMMANDS, names=("remote_pause_latency_median_ms",
                                                  "remote_pause_latency_p99_ms"),
                  tunnel_options=None, load=None):
    """names: the two figures printed; tunnel_options: more options of the
    native tunnel; load(server, stop_event): a thread that keeps the link
    busy meanwhile (bench_tunnel.py)."""
    server = ReferenceServer([TOKEN], pki=pki).start()
    arrivals = []
    done = threading.Event()
    plugin = mock.Mock()
    plugin._printer.get_current_data.return_value = {}
    plugin._printer.get_current_temperatures.return_value = {}
    plugin._printer.is_printing.return_value = True
    plugin._printer.is_paused.return_value = False
    plugin.current_printer_profile.return_value = {}
    plugin._settings.get_float.return_value = None
    plugin.agent_version.return_value = "bench"

    def on_pause(action):
        arrivals.append(time.perf_counter())
        if len(arrivals) == commands:
            done.set()

    plugin.remote_pause.side_effect = on_pause
    link = remote.Remote(plugin, mock.Mock())
    stop_load = threading.Event()
    loader = None
    try:
        assert link.start("https://localhost:{}".format(server.port), TOKEN, ca_file=pki["ca"],
                          **(tunnel_options or {}))
        deadline = time.monotonic() + 15
        while server.live(TOKEN) == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)
        if load is not None:
            loader = threading.Thread(target=load, args=(server, stop_load), daemon=True)
            loader.start()
            time.sleep(2)  # saturated before the first command
        latencies = []
        for i in range(commands):
            before = len(arrivals)
            sent = time.perf_counter()
            server.send(TOKEN, {"commands": [{"cmd": "pause", "initiator": "bench-%d" % i}]})
            while len(arrivals) == before:
                time.sleep(0.00005)
            latencies.append((arrivals[before] - sent) * 1000.0)
        latencies.sort()
        bench(names[0], statistics.median(latencies), "ms")
        bench(names[1], latencies[int(len(latencies) * 0.99) - 1], "ms")
    finally:
        stop_load.set()
        if loader is not None:
            loader.join(30)
        link.stop()
        server.stop()


def proc_stats(pid):
    with open("/proc/{}/status".format(pid)) as f:
        rss_kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    with open("/proc/{}/stat".format(pid)) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return rss_kb / 1024.0, ticks / os.sysconf("SC_CLK_TCK")


def idle_cost(pki):
    from octoprint_instance import OctoPrintInstance

    results = {}
    server = ReferenceServer([TOKEN], pki=pki).start()
    try:
        for label, enabled in (("with", True), ("without", False)):
            base = tempfile.mkdtemp(prefix="tsd-bench-")
            data = os.path.join(base, "data", "tsd")
            os.makedirs(data)
            error = bridge.save_token(data, "https://localhost:{}".format(server.port), TOKEN)
            assert error is None, error
            instance = OctoPrintInstance(base, python=sys.executable)
            settings = {"tsd": {"ca_file": pki["ca"]}}
            instance.prepare(extra_plugin_settings=settings)
            if not enabled:
                import yaml
                path = os.path.join(base, "config.yaml")
                with open(path) as f:
                    config = yaml.safe_load(f)
                config["plugins"]["_disabled"] = config["plugins"].get("_disabled", []) + ["tsd"]
                with open(path, "w") as f:
                    yaml.safe_dump(config, f)
            instance.start()
            try:
                time.sleep(10)  # settle after start-up
                rss0, cpu0 = proc_stats(instance.process.pid)
                time.sleep(IDLE_SECONDS)
                rss1, cpu1 = proc_stats(instance.process.pid)
                results[label] = (rss1, (cpu1 - cpu0) / IDLE_SECONDS * 100.0)
            finally:
                instance.stop()
        bench("idle_rss_with_plugin_mb", results["with"][0], "MB")
        bench("idle_rss_delta_mb", results["with"][0] - results["without"][0], "MB")
        bench("idle_cpu_delta_percent", results["with"][1] - results["without"][1], "percent")
    finally:
        server.stop()


def main():
    pki = make_pki(tempfile.mkdtemp(prefix="tsd-bench-pki-"))
    pause_latency(pki)
    idle_cost(pki)


if __name__ == "__main__":
    main()
