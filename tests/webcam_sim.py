# SPDX-License-Identifier: AGPL-3.0-or-later
"""A simulated webcam for tests and the demo, speaking like mjpg-streamer.

Endpoints (loopback, ephemeral port by default):

  /?action=stream  or /stream    multipart/x-mixed-replace MJPEG, one long
                                 connection, `fps` frames a second; header
                                 Content-Type: multipart/x-mixed-replace;boundary=boundarydonotcross
                                 and each part with Content-Type: image/jpeg,
                                 Content-Length and X-Timestamp
  /?action=snapshot or /snapshot one JPEG
  /stats                         JSON counters (see WebcamSim.stats())
  /control?name=value&...        sets switches on the running server (for the
                                 demo: /control?scene=spaghetti); answers the
                                 current settings as JSON
  /redirect?hops=N&to=TARGET     302 to /redirect?hops=N-1..., the last one to
                                 TARGET (default /?action=snapshot); with
                                 absolute=1 the Location is an absolute URL
  /hang?seconds=S                accepts the request, answers nothing for S
                                 seconds (default 30), then closes

Frames come from a directory of JPEG files (cycled in name order), or are
rendered here: raw RGB drawn in pure Python, encoded once each with
libturbojpeg through ctypes (no image library needed), and cached. Scenes:
  print      a bed, a part that grows layer by layer, a moving nozzle
  spaghetti  the part stopped, tangled strands of filament around it
  schedule   "print" for the first `spaghetti_after` frames served (stream and
             snapshot together), "spaghetti" after that
Every frame served carries a JPEG comment "tsd-sim frame=N scene=S" (N counts
all frames served), so no two frames are byte-identical.

Switches. Each one is an attribute of WebcamSim that can be changed while it
runs, a query parameter of the stream or snapshot URL that overrides it for
that one request (?action=stream&truncate=1), and a command-line flag:

  scene=print|spaghetti|schedule, spaghetti_after=N (default 100)
  fps=F                (default 5)
  chunked=1            send the response with Transfer-Encoding: chunked
                       (legal HTTP/1.1, not a misbehaviour)
  truncate=1           cut every JPEG in half; the Content-Length matches the
                       cut frame (a buggy camera, not a broken connection)
  wrong_boundary=1     announce boundarydonotcross, delimit parts with
                       --wrongboundary
  wrong_content_type=1 answer Content-Type: text/html and an HTML page
                       (stream and snapshot), like a camera's web UI
  stall=S              stop sending for S seconds in the middle of a frame
                       (stream: once per connection, after `misbehave_after`
                       frames; snapshot: after half of the body)
  garbage=M            send M MiB of random bytes instead of a frame (stream:
                       one part with no Content-Length, after `misbehave_after`
                       frames, then good frames again; snapshot: the whole
                       body, delimited by closing the connection, or with a
                       Content-Length when garbage_length=1); garbage=50 is
                       50 MiB
  close_mid_frame=1    send half a frame, then close (stream: after
                       `misbehave_after` frames; snapshot: the Content-Length
                       announces the whole frame)
  snapshot_status=N    answer the snapshot with HTTP N (404, 500, ...) and a
                       short text body
  misbehave_after=N    good frames a stream connection sends before stall,
                       garbage or close_mid_frame (default 2)

Run as a program for the demo or from a C test:
  python tests/webcam_sim.py --port 0 [--frames DIR] [--fps 5] [--scene schedule]
It prints "PORT <n>" and "URL <url>" on stdout once it listens. With
--watch-stdin it exits when its standard input reaches end of file (so a test
that dies never leaves it behind).

With --tls-dir DIR (tls_dir=DIR) it speaks HTTPS instead: it makes a CA
(DIR/ca.pem) and a server certificate for the name "localhost" only (no IP
address), with the openssl command-line tool, so a client can check both the
chain (trusting DIR/ca.pem) and the host name (https://127.0.0.1 must fail).
"""

import argparse
import ctypes
import ctypes.util
import http.server
import json
import math
import os
import random
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse

LOOPBACK = "127.0.0.1"
BOUNDARY = "boundarydonotcross"
WRONG_BOUNDARY = "wrongboundary"
MIB = 1024 * 1024

PRINT_FRAMES = 40       # frames in one cycle of the growing part
SPAGHETTI_FRAMES = 24   # frames in one cycle of the growing tangle

# Switch name -> parser of its query / CLI text.
def _bool(text):
    return str(text).strip().lower() in ("1", "true", "yes", "on")


SWITCHES = {
    "scene": str,
    "spaghetti_after": int,
    "fps": float,
    "chunked": _bool,
    "truncate": _bool,
    "wrong_boundary": _bool,
    "wrong_content_type": _bool,
    "stall": float,
    "garbage": float,
    "garbage_length": _bool,
    "close_mid_frame": _bool,
    "snapshot_status": int,
    "misbehave_after": int,
}

DEFAULTS = {
    "scene": "print",
    "spaghetti_after": 100,
    "fps": 5.0,
    "chunked": False,
    "truncate": False,
    "wrong_boundary": False,
    "wrong_content_type": False,
    "stall": 0.0,
    "garbage": 0.0,
    "garbage_length": False,
    "close_mid_frame": False,
    "snapshot_status": 200,
    "misbehave_after": 2,
}

HTML_PAGE = (b"<!DOCTYPE html>\n<html><head><title>MJPG-Streamer</title></head>"
             b"<body><h1>MJPG-Streamer</h1><img src=\"/?action=stream\"></body></html>\n")


# ---- JPEG encoding with libturbojpeg (ctypes) -------------------------------

class TurboJPEG:
    """The few libturbojpeg calls needed to compress packed RGB."""

    TJPF_RGB = 0
    TJSAMP_420 = 2

    def __init__(self):
        lib = None
        for name in ("libturbojpeg.so.0", ctypes.util.find_library("turbojpeg")):
            if not name:
                continue
            try:
                lib = ctypes.CDLL(name)
                break
            except OSError:
                continue
        if lib is None:
            raise RuntimeError("libturbojpeg was not found (apt-get install libturbojpeg0); "
                               "or serve files with --frames DIR")
        lib.tjInitCompress.restype = ctypes.c_void_p
        lib.tjInitCompress.argtypes = []
        lib.tjCompress2.restype = ctypes.c_int
        lib.tjCompress2.argtypes = [
            ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.c_int,
            ctypes.c_int, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_ulong),
            ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.tjFree.restype = None
        lib.tjFree.argtypes = [ctypes.c_void_p]
        lib.tjDestroy.restype = ctypes.c_int
        lib.tjDestroy.argtypes = [ctypes.c_void_p]
        lib.tjGetErrorStr.restype = ctypes.c_char_p
        lib.tjGetErrorStr.argtypes = []
        self._lib = lib
        self._lock = threading.Lock()
        self._handle = lib.tjInitCompress()
        if not self._handle:
            raise RuntimeError("tjInitCompress failed")

    def encode_rgb(self, rgb, width, height, quality=80):
        out = ctypes.c_void_p()
        size = ctypes.c_ulong(0)
        with self._lock:
            if not self._handle:
                raise RuntimeError("encoder closed")
            rc = self._lib.tjCompress2(self._handle, bytes(rgb), width, width * 3, height,
                                       self.TJPF_RGB, ctypes.byref(out), ctypes.byref(size),
                                       self.TJSAMP_420, quality, 0)
            if rc != 0:
                message = self._lib.tjGetErrorStr()
                if out:
                    self._lib.tjFree(out)
                raise RuntimeError("tjCompress2: " + (message or b"?").decode(errors="replace"))
            try:
                return ctypes.string_at(out, size.value)
            finally:
                self._lib.tjFree(out)

    def close(self):
        with self._lock:
            if self._handle:
                self._lib.tjDestroy(self._handle)
                self._handle = None


# ---- rendering -------------------------------------------------------------

class Canvas:
    """Packed RGB, drawn with slice assignments (fast enough in pure Python)."""

    def __init__(self, width, height, color=(0, 0, 0)):
        self.width = width
        self.height = height
        self.rgb = bytearray(bytes(color) * (width * height))

    def rect(self, x0, y0, x1, y1, color):
        x0, x1 = max(0, int(x0)), min(self.width, int(x1))
        y0, y1 = max(0, int(y0)), min(self.height, int(y1))
        if x0 >= x1 or y0 >= y1:
            return
        row = bytes(color) * (x1 - x0)
        for y in range(y0, y1):
            start = (y * self.width + x0) * 3
            self.rgb[start:start + len(row)] = row

    def vgradient(self, y0, y1, top, bottom):
        span = max(1, y1 - y0 - 1)
        for y in range(max(0, y0), min(self.height, y1)):
            t = (y - y0) / span
            color = tuple(int(a + (b - a) * t) for a, b in zip(top, bottom))
            self.rect(0, y, self.width, y + 1, color)

    def dot(self, x, y, radius, color):
        self.rect(x - radius, y - radius, x + radius + 1, y + radius + 1, color)


FILAMENT = (235, 120, 30)
FILAMENT_DARK = (180, 85, 20)


def _scene_base(width, height):
    canvas = Canvas(width, height)
    canvas.vgradient(0, height, (40, 44, 52), (70, 72, 78))          # enclosure
    bed_top = int(height * 0.72)
    canvas.rect(0, bed_top, width, int(height * 0.80), (25, 25, 28))  # bed surface
    canvas.rect(0, int(height * 0.80), width, height, (55, 55, 60))   # bed edge / frame
    for x in range(0, width, max(8, width // 16)):                    # bed texture
        canvas.rect(x, bed_top, x + 1, int(height * 0.80), (35, 35, 40))
    return canvas, bed_top


def _draw_part(canvas, bed_top, layers):
    width = canvas.width
    part_w = width // 4
    x0 = width // 2 - part_w // 2
    top = bed_top - layers
    canvas.rect(x0, top, x0 + part_w, bed_top, FILAMENT)
    for y in range(bed_top - 2, top, -4):                             # layer lines
        canvas.rect(x0, y, x0 + part_w, y + 1, FILAMENT_DARK)
    return x0, top, part_w


def _draw_nozzle(canvas, x, tip_y):
    canvas.rect(x - 10, tip_y - 40, x + 10, tip_y - 12, (150, 150, 155))  # hotend
    canvas.rect(x - 4, tip_y - 12, x + 4, tip_y - 3, (200, 170, 60))      # nozzle
    canvas.rect(x - 2, tip_y - 3, x + 2, tip_y, (200, 170, 60))
    canvas.rect(0, tip_y - 52, canvas.width, tip_y - 44, (90, 90, 95))    # gantry


def render_print(width, height, index):
    """A healthy print: the part grows with index (0..PRINT_FRAMES-1)."""
    canvas, bed_top = _scene_base(width, height)
    max_layers = int(height * 0.35)
    layers = 2 + (max_layers - 2) * index // max(1, PRINT_FRAMES - 1)
    x0, top, part_w = _draw_part(canvas, bed_top, layers)
    phase = index / PRINT_FRAMES * 6 * math.pi
    nozzle_x = int(x0 + part_w / 2 + math.sin(phase) * part_w / 2)
    _draw_nozzle(canvas, nozzle_x, top)
    return canvas


def render_spaghetti(width, height, index):
    """A failed print: a tangle of strands that grows with index
    (0..SPAGHETTI_FRAMES-1), around a part that stopped growing."""
    canvas, bed_top = _scene_base(width, height)
    x0, top, part_w = _draw_part(canvas, bed_top, int(height * 0.12))
    nozzle_x = x0 + part_w // 2
    nozzle_tip = top - int(height * 0.15)
    _draw_nozzle(canvas, nozzle_x, nozzle_tip)
    rng = random.Random(20240601)
    # 40 thin strands over a wide area: what the shipped detector (trained on
    # photos of real failures) recognises in this drawing, measured in
    # the demo (scripts/demo.py --smoke, suite demo) at 640 x 480.
    strands = 40
    grow = 0.6 + 0.4 * index / max(1, SPAGHETTI_FRAMES - 1)
    for strand in range(strands):
        if strand < 3:   # hanging from the nozzle
            x, y = float(nozzle_x + rng.uniform(-3, 3)), float(nozzle_tip)
            angle = math.pi / 2 + rng.uniform(-0.4, 0.4)
        else:            # heaped on and around the part
            x = rng.uniform(x0 - part_w * 1.04, x0 + part_w * 2.04)
            y = rng.uniform(top - height * 0.156, bed_top)
            angle = rng.uniform(0, 2 * math.pi)
        steps = int(rng.randint(120, 320) * grow)
        turn = rng.uniform(-0.25, 0.25)
        color = FILAMENT if strand % 3 else FILAMENT_DARK
        for _ in range(steps):
            turn = max(-0.5, min(0.5, turn + rng.gauss(0, 0.12)))
            angle += turn
            x += math.cos(angle) * 1.6
            y += math.sin(angle) * 1.6
            if y > bed_top + 2:                  # strands rest on the bed
                y = bed_top + 2
                angle = -abs(angle)
            canvas.dot(x, y, 1, color)
    return canvas


def jpeg_with_comment(jpeg, text):
    """jpeg with a COM segment holding text inserted right after SOI."""
    data = text.encode("ascii", "replace")[:60000]
    length = len(data) + 2
    return jpeg[:2] + b"\xff\xfe" + bytes((length >> 8, length & 0xFF)) + data + jpeg[2:]


class RenderedFrames:
    """Pre-rendered frames of the two scenes, JPEG-encoded once at start-up."""

    def __init__(self, width=320, height=240, quality=80):
        encoder = TurboJPEG()
        try:
            self.print = [encoder.encode_rgb(render_print(width, height, i).rgb, width, height,
                                             quality) for i in range(PRINT_FRAMES)]
            self.spaghetti = [encoder.encode_rgb(render_spaghetti(width, height, i).rgb, width,
                                                 height, quality)
                              for i in range(SPAGHETTI_FRAMES)]
        finally:
            encoder.close()

    def get(self, scene, index):
        frames = self.spaghetti if scene == "spaghetti" else self.print
        return frames[index % len(frames)]


def _read_jpegs(directory):
    names = sorted(n for n in os.listdir(directory) if n.lower().endswith((".jpg", ".jpeg")))
    frames = []
    for name in names:
        with open(os.path.join(directory, name), "rb") as f:
            data = f.read()
        if data[:2] == b"\xff\xd8":
            frames.append(data)
    if not frames:
        raise ValueError("no JPEG files in " + directory)
    return frames


class DirectoryFrames:
    """The JPEG files of a directory, in name order, cycled. A directory
    with print/ and spaghetti/ folders has one set per scene."""

    def __init__(self, directory):
        scenes = [os.path.join(directory, name) for name in ("print", "spaghetti")]
        if all(os.path.isdir(path) for path in scenes):
            self.print, self.spaghetti = (_read_jpegs(path) for path in scenes)
        else:
            self.print = self.spaghetti = _read_jpegs(directory)

    def get(self, scene, index):
        frames = self.spaghetti if scene == "spaghetti" else self.print
        return frames[index % len(frames)]


# ---- TLS -----------------------------------------------------------------------

def make_tls_files(directory, hostname="localhost"):
    """A CA (ca.pem) and a certificate for hostname only (server.pem,
    server.key) in directory, made with the openssl CLI. Returns
    (ca, cert, key) paths."""
    os.makedirs(directory, exist_ok=True)

    def run(*args):
        subprocess.run(["openssl", *args], cwd=directory, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=TSD webcam_sim test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    with open(os.path.join(directory, "ext.cnf"), "w") as f:
        f.write("subjectAltName=DNS:%s\nbasicConstraints=CA:FALSE\n"
                "extendedKeyUsage=serverAuth\n" % hostname)
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=" + hostname)
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")
    return (os.path.join(directory, "ca.pem"), os.path.join(directory, "server.pem"),
            os.path.join(directory, "server.key"))


# ---- the server ------------------------------------------------------------

class _Stopping(Exception):
    pass


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = False      # server_close() joins the handler threads
    block_on_close = True
    allow_reuse_address = True
    request_queue_size = 64
    ssl_context = None

    def handle_error(self, request, client_address):
        if self.sim.verbose:
            super().handle_error(request, client_address)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "MJPG-Streamer/0.2"
    timeout = 30                # socket timeout: a client that stops reading

    @property
    def sim(self):
        return self.server.sim

    def version_string(self):
        return self.server_version

    def setup(self):
        if self.server.ssl_context is not None:
            self.request.settimeout(self.timeout)
            self.request = self.server.ssl_context.wrap_socket(self.request, server_side=True)
        super().setup()
        self.sim._connection_opened(self.connection)

    def finish(self):
        try:
            super().finish()
        finally:
            self.sim._connection_closed(self.connection)

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        if self.sim.verbose:
            sys.stderr.write("webcam_sim: %s %s\n" % (self.address_string(), format % args))

    # -- plumbing --

    def _write(self, data):
        if self.sim._stopping.is_set():
            raise _Stopping()
        if not data:
            return
        if self._chunked:
            data = b"%x\r\n" % len(data) + data + b"\r\n"
        self.wfile.write(data)

    def _head(self, status, content_type, length=None, chunked=False, extra=()):
        self._chunked = False
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-store, no-cache, must-revalidate, max-age=0")
        self.send_header("Pragma", "no-cache")
        self.send_header("Connection", "close")
        self.send_header("Access-Control-Allow-Origin", "*")
        for name, value in extra:
            self.send_header(name, value)
        if length is not None:
            self.send_header("Content-Length", str(length))
        elif chunked:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        self._chunked = chunked and length is None

    def _end(self):
        if self._chunked:
            self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _wait(self, seconds):
        if self.sim._stopping.wait(max(0.0, seconds)):
            raise _Stopping()

    def _json(self, obj, status=200):
        body = (json.dumps(obj, sort_keys=True) + "\n").encode()
        self._head(status, "application/json", length=len(body))
        self.wfile.write(body)

    # -- routing --

    def do_GET(self):  # noqa: N802 - the base class's name
        self.close_connection = True
        self._chunked = False
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        self.sim._count("requests")
        try:
            action = query.get("action")
            if url.path in ("/stream",) or (url.path == "/" and action == "stream"):
                self._stream(self.sim._options(query))
            elif url.path in ("/snapshot",) or (url.path == "/" and action == "snapshot"):
                self._snapshot(self.sim._options(query))
            elif url.path == "/stats":
                self._json(self.sim.stats())
            elif url.path == "/control":
                try:
                    self.sim.configure(**{k: v for k, v in query.items()})
                except (KeyError, ValueError) as e:
                    self._json({"error": str(e)}, status=400)
                    return
                self._json(self.sim.settings())
            elif url.path == "/redirect":
                self._redirect(query)
            elif url.path == "/hang":
                self._wait(float(query.get("seconds", 30)))
            else:
                body = b"not found\n"
                self._head(404, "text/plain", length=len(body))
                self.wfile.write(body)
        except (_Stopping, BrokenPipeError, ConnectionResetError, socket.timeout, OSError):
            self.close_connection = True

    def _redirect(self, query):
        hops = int(query.get("hops", 1))
        target = query.get("to", "/?action=snapshot")
        absolute = _bool(query.get("absolute", "0"))
        if hops > 1:
            location = "/redirect?" + urllib.parse.urlencode(
                {"hops": hops - 1, "to": target, "absolute": int(absolute)})
        else:
            location = target
        if absolute and location.startswith("/"):
            location = "http://%s:%d%s" % (self.server.server_address[0],
                                           self.server.server_address[1], location)
        self._head(302, "text/plain", length=0, extra=[("Location", location)])

    def _snapshot(self, opts):
        self.sim._count("snapshots")
        if opts["snapshot_status"] != 200:
            status = opts["snapshot_status"]
            body = ("%d error\n" % status).encode()
            self._head(status, "text/plain", length=len(body))
            self.wfile.write(body)
            return
        if opts["wrong_content_type"]:
            self._head(200, "text/html", length=len(HTML_PAGE))
            self.wfile.write(HTML_PAGE)
            return
        if opts["garbage"] > 0:
            total = int(opts["garbage"] * MIB)
            if opts["garbage_length"]:
                self._head(200, "image/jpeg", length=total)
            else:
                self._head(200, "image/jpeg")  # delimited by closing the connection
            self._send_garbage(total)
            return
        jpeg = self.sim._next_frame()
        if opts["truncate"]:
            jpeg = jpeg[:len(jpeg) // 2]
        self._head(200, "image/jpeg", length=len(jpeg), chunked=opts["chunked"])
        half = len(jpeg) // 2
        if opts["close_mid_frame"]:
            self.wfile.write(jpeg[:half])
            self.wfile.flush()
            return
        if opts["stall"] > 0:
            self._write(jpeg[:half])
            self.wfile.flush()
            self._wait(opts["stall"])
            self._write(jpeg[half:])
        else:
            self._write(jpeg)
        self._end()

    def _send_garbage(self, total):
        block = self.sim._garbage_block()
        while total > 0:
            chunk = block[:min(total, len(block))]
            self._write(chunk)
            total -= len(chunk)
        self.wfile.flush()

    def _stream(self, opts):
        self.sim._count("streams")
        if opts["wrong_content_type"]:
            self._head(200, "text/html", length=len(HTML_PAGE))
            self.wfile.write(HTML_PAGE)
            return
        self._head(200, "multipart/x-mixed-replace;boundary=" + BOUNDARY,
                   chunked=opts["chunked"])
        delimiter = ("--" + (WRONG_BOUNDARY if opts["wrong_boundary"] else BOUNDARY)).encode()
        period = 1.0 / opts["fps"] if opts["fps"] > 0 else 0.2
        after = max(0, opts["misbehave_after"])
        next_time = time.monotonic()
        sent = 0
        while True:
            if sent == after and opts["garbage"] > 0:
                self._write(delimiter + b"\r\nContent-Type: image/jpeg\r\n\r\n")
                self._send_garbage(int(opts["garbage"] * MIB))
                self._write(b"\r\n")
            jpeg = self.sim._next_frame()
            if opts["truncate"]:
                jpeg = jpeg[:len(jpeg) // 2]
            head = (delimiter + b"\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n"
                    b"X-Timestamp: %.6f\r\n\r\n" % (len(jpeg), time.time()))
            half = len(jpeg) // 2
            if sent == after and opts["close_mid_frame"]:
                self._write(head + jpeg[:half])
                self.wfile.flush()
                return
            if sent == after and opts["stall"] > 0:
                self._write(head + jpeg[:half])
                self.wfile.flush()
                self._wait(opts["stall"])
                self._write(jpeg[half:] + b"\r\n")
            else:
                self._write(head + jpeg + b"\r\n")
            self.wfile.flush()
            self.sim._count("stream_frames")
            sent += 1
            next_time += period
            now = time.monotonic()
            if next_time < now - period:   # fell behind (a slow reader): don't burst
                next_time = now
            self._wait(next_time - now)


class WebcamSim:
    """The simulated webcam. Switches are plain attributes (see the module
    docstring); change them at any time, they apply to the next request."""

    def __init__(self, host=LOOPBACK, port=0, frames_dir=None, width=320, height=240,
                 quality=80, verbose=False, tls_dir=None, poll_interval=0.1, **switches):
        self.host = host
        # stop() waits up to this long for the serving loop to notice
        # (the soak restarts the camera 10,000 times: it asks for less).
        self.poll_interval = poll_interval
        self.port = port
        self.verbose = verbose
        self.ca_file = None
        self._ssl_context = None
        if tls_dir:
            self.ca_file, cert, key = make_tls_files(tls_dir)
            self._ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._ssl_context.load_cert_chain(cert, key)
        for name, value in DEFAULTS.items():
            setattr(self, name, value)
        self.configure(**switches)
        if frames_dir:
            self._frames = DirectoryFrames(frames_dir)
        else:
            self._frames = RenderedFrames(width, height, quality)
        self._lock = threading.Lock()
        self._counters = {"connections": 0, "requests": 0, "streams": 0, "snapshots": 0,
                          "stream_frames": 0, "frames": 0}
        self._open = set()
        self._stopping = threading.Event()
        self._server = None
        self._thread = None
        self._garbage = None

    # -- settings --

    def configure(self, **switches):
        """Sets switches by name; text values (from a query) are converted."""
        for name, value in switches.items():
            if name not in SWITCHES:
                raise KeyError("unknown switch: " + name)
            if isinstance(value, str):
                value = SWITCHES[name](value)
            if name == "scene" and value not in ("print", "spaghetti", "schedule"):
                raise ValueError("scene must be print, spaghetti or schedule")
            setattr(self, name, value)

    def settings(self):
        return {name: getattr(self, name) for name in SWITCHES}

    def use_frames(self, frames_dir):
        """Serves the JPEGs of another directory from the next frame on (a
        camera that comes back at another resolution)."""
        self._frames = DirectoryFrames(frames_dir)

    def _options(self, query):
        opts = self.settings()
        for name, text in query.items():
            if name in SWITCHES:
                opts[name] = SWITCHES[name](text)
        return opts

    # -- lifecycle --

    @property
    def url(self):
        """http://host:port (no trailing slash)."""
        if not self._server:
            raise RuntimeError("not started")
        if self._ssl_context:
            return "https://localhost:%d" % self.port
        return "http://%s:%d" % (self.host, self.port)

    @property
    def stream_url(self):
        return self.url + "/?action=stream"

    @property
    def snapshot_url(self):
        return self.url + "/?action=snapshot"

    def start(self):
        self._stopping.clear()
        self._server = _Server((self.host, self.port), _Handler)
        self._server.sim = self
        self._server.ssl_context = self._ssl_context
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": self.poll_interval},
                                        name="webcam-sim", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stops serving, ends every open connection, joins every thread."""
        if not self._server:
            return
        self._stopping.set()
        self._server.shutdown()
        self._thread.join(10)
        with self._lock:
            open_sockets = list(self._open)
        for sock in open_sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._server.server_close()   # joins the handler threads
        self._server = None
        self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- counters --

    def _count(self, name, n=1):
        with self._lock:
            self._counters[name] += n

    def _connection_opened(self, sock):
        with self._lock:
            self._counters["connections"] += 1
            self._open.add(sock)

    def _connection_closed(self, sock):
        with self._lock:
            self._open.discard(sock)

    def stats(self):
        """connections (TCP connections accepted), requests, streams and
        snapshots (requests of each kind), stream_frames (frames sent on
        streams), frames (all frames served), open (connections open now)."""
        with self._lock:
            result = dict(self._counters)
            result["open"] = len(self._open)
        return result

    @property
    def frames_served(self):
        with self._lock:
            return self._counters["frames"]

    @property
    def connections(self):
        with self._lock:
            return self._counters["connections"]

    # -- frames --

    def _next_frame(self):
        with self._lock:
            number = self._counters["frames"]
            self._counters["frames"] += 1
        scene = self.scene
        if scene == "schedule":
            scene = "print" if number < self.spaghetti_after else "spaghetti"
        if scene == "spaghetti":
            index = max(0, number - (self.spaghetti_after if self.scene == "schedule" else 0))
        else:
            index = number
        jpeg = self._frames.get(scene, index)
        return jpeg_with_comment(jpeg, "tsd-sim frame=%d scene=%s" % (number, scene))

    def _garbage_block(self):
        with self._lock:
            if self._garbage is None:
                self._garbage = os.urandom(MIB)
            return self._garbage


def main(argv=None):
    parser = argparse.ArgumentParser(description="A simulated MJPEG webcam (mjpg-streamer style).")
    parser.add_argument("--host", default=LOOPBACK)
    parser.add_argument("--port", type=int, default=0, help="0: an ephemeral port (default)")
    parser.add_argument("--frames", metavar="DIR", help="serve the JPEG files of DIR, cycled")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--quality", type=int, default=80)
    parser.add_argument("--watch-stdin", action="store_true",
                        help="exit when standard input reaches end of file")
    parser.add_argument("--verbose", action="store_true", help="log requests on stderr")
    parser.add_argument("--tls-dir", metavar="DIR",
                        help="serve HTTPS with a CA and certificate made in DIR (ca.pem)")
    for name, kind in SWITCHES.items():
        flag = "--" + name.replace("_", "-")
        if kind is _bool:
            parser.add_argument(flag, action="store_true", default=None)
        else:
            parser.add_argument(flag, type=kind, default=None)
    args = parser.parse_args(argv)
    switches = {name: getattr(args, name) for name in SWITCHES if getattr(args, name) is not None}
    sim = WebcamSim(host=args.host, port=args.port, frames_dir=args.frames, width=args.width,
                    height=args.height, quality=args.quality, verbose=args.verbose,
                    tls_dir=args.tls_dir, **switches)
    sim.start()
    print("PORT %d" % sim.port)
    print("URL %s" % sim.url)
    sys.stdout.flush()
    try:
        if args.watch_stdin:
            while sys.stdin.buffer.read(4096):
                pass
        else:
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
