# SPDX-License-Identifier: AGPL-3.0-or-later
"""Benchmarks of OctoPrint remote access (the http.tunnelv2 / ws.tunnel
tunnel). Prints `bench <name> <value> <unit>` lines.

tunnel_mb_s: a 10 MB download (random bytes: zlib cannot shrink them)
through the tunnel, from the request the reference server sends over TLS on
loopback to the decoded reply; the best of 3. The HTTP side is a local
server standing in for OctoPrint.

remote_pause_p99_ms_tunnel_busy (and _median_): bench_remote.py's pause
latency (300 commands) while a loader keeps the tunnel saturated: 16
requests for 1 MB answers always in flight, so the workers, the bulk lane
and the websocket are busy all the time.

tunnel_ui_load_ratio: the first load of OctoPrint's UI (the login page with
all its assets, a fresh browser profile, until the network is idle) through
the reference server's browser side of the tunnel, divided by the same load
directly from OctoPrint; Chromium, the real OctoPrint, the best of 3 each.
"""

import os
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))
sys.path.insert(0, os.path.join(REPO, "scripts"))
sys.path.insert(0, os.path.join(REPO, "bench"))

from obico_refserver import ReferenceServer, make_pki  # noqa: E402

import bench_remote  # noqa: E402
import tunnel_frames  # noqa: E402
from octoprint_tsd import _tsd  # noqa: E402

TOKEN = bench_remote.TOKEN
DOWNLOAD_BYTES = 10 * 1000 * 1000
BUSY_BYTES = 1000 * 1000
BUSY_IN_FLIGHT = 16


def bench(name, value, unit):
    print("bench {} {:.3f} {}".format(name, value, unit), flush=True)


class Payloads(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    blobs = {"/download": os.urandom(DOWNLOAD_BYTES), "/busy": os.urandom(BUSY_BYTES)}

    def log_message(self, *args):
        pass

    def do_GET(self):
        body = self.blobs.get(self.path, b"")
        self.send_response(200 if body else 404)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def payload_server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Payloads)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def tunnel_throughput(pki, httpd):
    server = ReferenceServer([TOKEN], pki=pki).start()
    tunnel = _tsd.Tunnel(server.url, TOKEN, ca_file=pki["ca"], octoprint_port=httpd.server_address[1],
                         remote_access=True)
    try:
        tunnel.start()
        deadline = time.monotonic() + 15
        while server.live(TOKEN) == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        best = None
        for run in range(3):
            ref = "v2.download.{}".format(run)
            start = time.perf_counter()
            server.send(TOKEN, tunnel_frames.http_request(ref, "get", "/download"))
            reply = tunnel_frames.wait_reply(server, TOKEN, ref, 120)
            seconds = time.perf_counter() - start
            assert reply.status == 200 and len(reply.content) == DOWNLOAD_BYTES
            best = seconds if best is None else min(best, seconds)
        bench("tunnel_mb_s", DOWNLOAD_BYTES / 1e6 / best, "MB/s")
    finally:
        tunnel.stop()
        server.stop()


def busy_loader(server, stop):
    """Keeps BUSY_IN_FLIGHT 1 MB requests in flight until stop is set. The
    replies are counted, not kept (the reference server records nothing)."""
    answered = [0]

    def count(token, data):
        answered[0] += 1

    server.silent = True
    server.binary_listener = count
    sent = 0
    while not stop.is_set():
        while sent - answered[0] < BUSY_IN_FLIGHT and not stop.is_set():
            server.send(TOKEN, tunnel_frames.http_request("v2.busy.{}".format(sent), "get", "/busy"))
            sent += 1
        time.sleep(0.005)
    bench("tunnel_busy_replies", answered[0], "replies")


class _TempDirs:
    """What remote_rig.linked_octoprint() needs of pytest's tmp_path_factory."""

    def mktemp(self, name):
        return tempfile.mkdtemp(prefix="tsd-bench-{}-".format(name))


def first_load_seconds(browser, url):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    try:
        start = time.perf_counter()
        page.goto(url + "/", wait_until="networkidle", timeout=120000)
        page.wait_for_selector("#login-user", state="visible", timeout=60000)
        return time.perf_counter() - start
    finally:
        context.close()


def ui_load_ratio():
    from playwright.sync_api import sync_playwright

    from refserver_tunnel import TunnelFrontend
    from remote_rig import TOKEN as RIG_TOKEN, linked_octoprint

    chromium = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if os.path.exists(p)), None)
    if chromium is None:
        print("bench tunnel_ui_load_ratio skipped: Debian's chromium is not installed", flush=True)
        return
    with linked_octoprint(_TempDirs(), "tunnel-load", 1.0) as linked:
        deadline = time.monotonic() + 60
        while linked.server.live(RIG_TOKEN) == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        frontend = TunnelFrontend(linked.server, RIG_TOKEN).start()
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium,
                                                     args=["--no-sandbox", "--disable-gpu"])
                try:
                    first_load_seconds(browser, linked.instance.url)  # OctoPrint's own caches warm
                    direct = min(first_load_seconds(browser, linked.instance.url) for _ in range(3))
                    tunnelled = min(first_load_seconds(browser, frontend.url) for _ in range(3))
                finally:
                    browser.close()
        finally:
            frontend.stop()
    bench("tunnel_ui_first_load_direct_s", direct, "s")
    bench("tunnel_ui_first_load_tunnel_s", tunnelled, "s")
    bench("tunnel_ui_load_ratio", tunnelled / direct, "ratio")


def main():
    pki = make_pki(tempfile.mkdtemp(prefix="tsd-bench-pki-"))
    httpd = payload_server()
    try:
        tunnel_throughput(pki, httpd)
        bench_remote.pause_latency(
            pki, commands=300,
            names=("remote_pause_median_ms_tunnel_busy", "remote_pause_p99_ms_tunnel_busy"),
            tunnel_options={"octoprint_port": httpd.server_address[1], "remote_access": True},
            load=busy_loader)
    finally:
        httpd.shutdown()
    ui_load_ratio()


if __name__ == "__main__":
    main()
