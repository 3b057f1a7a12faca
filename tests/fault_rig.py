# SPDX-License-Identifier: AGPL-3.0-or-later
"""The fault injector and OctoPrint's own gauges, for the fault suite
(tests/integration/test_faults.py) and the soak (scripts/soak.py).

FaultProxy sits on loopback between the plugin and the reference server and
does what a network and a server deploy do to a link: pass bytes, go down
(connections reset, new ones refused) and come back on the same port,
blackhole (accept, then silence), trickle 1 byte/s, or present a TLS
certificate that no trusted CA signed. The server-side faults (token
revoked, 4321, malformed and oversized frames) are the reference server's
own switches; the camera's are webcam_sim's; the helper's come from a
wrapper put in the helper's place (FaultyHelper).

LoopLag is a tiny OctoPrint plugin, written into the instance's plugins
folder, that runs a 10 ms timer on OctoPrint's Tornado loop and reports how
late each tick was; ApiLatency times /api/version from outside;
ProcessSampler reads RSS, descriptors and threads from /proc.
"""

import contextlib
import os
import select
import shutil
import socket
import ssl
import stat
import statistics
import struct
import subprocess
import threading
import time

import requests

from tsd_testing import processes

LOOPBACK = "127.0.0.1"

PASS = "pass"
DOWN = "down"            # the server killed: connections reset, new ones refused
BLACKHOLE = "blackhole"  # accepts, then silence both ways
SLOW = "slow"            # 1 byte a second each way
WRONG_TLS = "wrong_tls"  # a certificate from a CA the plugin does not trust
MODES = (PASS, DOWN, BLACKHOLE, SLOW, WRONG_TLS)


def _reset(sock):
    """Closes with a TCP reset, as a killed server's kernel does."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class FaultProxy:
    """A loopback TCP proxy to 127.0.0.1:target_port that the test controls
    with set_mode(). wrong_pki: make_pki() output whose certificate the
    plugin must refuse (another CA) for WRONG_TLS."""

    def __init__(self, target_port, wrong_pki=None, port=0):
        self.target_port = target_port
        self.port = port
        self.mode = PASS
        self.accepted = 0
        self._wrong_tls = None
        if wrong_pki:
            self._wrong_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._wrong_tls.load_cert_chain(wrong_pki["cert"], wrong_pki["key"])
        self._lock = threading.Lock()
        self._conns = set()          # client sockets being served
        self._threads = set()
        self._listener = None
        self._accept_thread = None
        self._stopping = False

    # ---- control -------------------------------------------------------------------

    def start(self):
        self._stopping = False
        self._listen()
        return self

    def stop(self):
        self._stopping = True
        self._close_listener()
        self.kill_connections()
        for thread in list(self._threads):
            thread.join(5)

    def set_mode(self, mode):
        """Switches the fault: DOWN closes the listener and resets every
        connection; leaving DOWN listens again on the same port; leaving
        BLACKHOLE resets the silenced connections (a router that dropped the
        flow's state)."""
        if mode not in MODES:
            raise ValueError("unknown mode " + mode)
        previous, self.mode = self.mode, mode
        if mode == DOWN:
            self._close_listener()
            self.kill_connections()
        elif previous == DOWN:
            self._listen()
        if previous == BLACKHOLE and mode != BLACKHOLE:
            self.kill_connections()

    def kill_connections(self):
        """Resets every connection (a server process killed and restarted at once)."""
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for sock in conns:
            _reset(sock)
        return len(conns)

    def connections(self):
        with self._lock:
            return len(self._conns)

    # ---- serving -------------------------------------------------------------------

    def _listen(self):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((LOOPBACK, self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._accept_thread = threading.Thread(target=self._accept, args=(listener,),
                                               name="fault-proxy", daemon=True)
        self._accept_thread.start()

    def _close_listener(self):
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        if self._accept_thread is not None:
            self._accept_thread.join(5)
            self._accept_thread = None

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            self.accepted += 1
            with self._lock:
                self._conns.add(client)
            thread = threading.Thread(target=self._serve, args=(client,), daemon=True)
            self._threads.add(thread)
            thread.start()

    def _serve(self, client):
        upstream = None
        try:
            if self.mode == WRONG_TLS and self._wrong_tls is not None:
                client.settimeout(10)
                with contextlib.suppress(OSError, ssl.SSLError):
                    self._wrong_tls.wrap_socket(client, server_side=True).close()
                return
            if self.mode != BLACKHOLE:
                upstream = socket.create_connection((LOOPBACK, self.target_port), timeout=5)
            self._pump(client, upstream)
        except OSError:
            pass
        finally:
            with self._lock:
                self._conns.discard(client)
            for sock in (client, upstream):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.close()
            self._threads.discard(threading.current_thread())

    def _pump(self, client, upstream):
        """Copies both ways in the current mode until either side closes."""
        peers = {client: upstream, upstream: client} if upstream else {client: None}
        pending = {client: b"", upstream: b""}   # bytes read, to be written to the peer
        last_trickle = 0.0
        while client.fileno() >= 0:
            readable = [s for s in peers if not pending[s]]
            ready, _, _ = select.select(readable, [], [], 0.1)
            for sock in ready:
                data = sock.recv(65536)
                if not data:
                    return
                if self.mode != BLACKHOLE and peers[sock] is not None:
                    pending[sock] = data
            for sock, data in list(pending.items()):
                if not data or sock is None or self.mode == BLACKHOLE:
                    continue
                if self.mode == SLOW:
                    if time.monotonic() - last_trickle < 1.0:
                        continue
                    last_trickle = time.monotonic()
                    peers[sock].sendall(data[:1])
                    pending[sock] = data[1:]
                else:
                    peers[sock].sendall(data)
                    pending[sock] = b""


# ---- the helper's faults -----------------------------------------------------------

HELPER_PASS = "pass"
HELPER_GARBAGE = "garbage"   # answers random bytes to every request
HELPER_MEMORY = "memory"     # allocates past its address-space limit
HELPER_MODES = (HELPER_PASS, HELPER_GARBAGE, HELPER_MEMORY)

_GARBAGE_HELPER = r'''
import os, sys
while True:
    data = os.read(0, 65536)
    if not data:
        sys.exit(0)
    os.write(1, os.urandom(4096))
'''

# Address space only (anonymous maps are not touched): the limit is RLIMIT_AS,
# and a shared test machine keeps its memory.
_MEMORY_HELPER = r'''
import mmap
hog = []
while True:
    hog.append(mmap.mmap(-1, 64 * 1024 * 1024))
'''


class FaultyHelper:
    """A copy of the installed package whose tsd-helper is a wrapper: it runs
    the real helper, or misbehaves as the mode file says (read at each start
    of the helper). Put site first on OctoPrint's PYTHONPATH (as
    test_native_failure.py does with a broken extension)."""

    def __init__(self, directory, python):
        import octoprint_tsd

        self.site = os.path.join(directory, "site")
        package = os.path.join(self.site, "octoprint_tsd")
        shutil.copytree(os.path.dirname(octoprint_tsd.__file__), package,
                        ignore=shutil.ignore_patterns("__pycache__"))
        helper = os.path.join(package, "tsd-helper")
        real = os.path.join(directory, "tsd-helper.real")
        shutil.move(helper, real)
        self.mode_file = os.path.join(directory, "helper-mode")
        self.set_mode(HELPER_PASS)
        scripts = {}
        for name, text in (("garbage", _GARBAGE_HELPER), ("memory", _MEMORY_HELPER)):
            scripts[name] = os.path.join(directory, "helper-%s.py" % name)
            with open(scripts[name], "w") as f:
                f.write(text)
        with open(helper, "w") as f:
            f.write('#!/bin/sh\ncase "$(cat {mode})" in\n'
                    '  garbage) exec {python} -S {garbage} ;;\n'
                    '  memory) exec {python} -S {memory} ;;\n'
                    '  *) exec {real} "$@" ;;\nesac\n'.format(
                        mode=self.mode_file, python=python, real=real,
                        garbage=scripts["garbage"], memory=scripts["memory"]))
        os.chmod(helper, os.stat(helper).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)

    def set_mode(self, mode):
        if mode not in HELPER_MODES:
            raise ValueError("unknown helper mode " + mode)
        with open(self.mode_file, "w") as f:
            f.write(mode)


def helper_pids(parent_pid):
    """The running tsd-helper processes of OctoPrint (children of its pid)."""
    return [pid for pid, parent, argv in processes()
            if parent == parent_pid and any(b"tsd-helper" in arg for arg in argv)]


# ---- disk full ---------------------------------------------------------------------

class FullableFolder:
    """A small tmpfs mounted over a folder (root only), which fill() fills
    to the last byte and drain() empties again; what was in the folder is
    copied in first. available() says whether this system allows it."""

    def __init__(self, path, size_kb=512):
        self.path = path
        self.size_kb = size_kb
        self.filler = os.path.join(path, ".filler")
        self.mounted = False

    @staticmethod
    def available():
        return os.geteuid() == 0 and shutil.which("mount") is not None

    def mount(self):
        keep = self.path + ".before-mount"
        os.makedirs(self.path, exist_ok=True)
        shutil.copytree(self.path, keep)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dk,mode=0700" % self.size_kb,
                        "tmpfs", self.path], check=True)
        self.mounted = True
        shutil.copytree(keep, self.path, dirs_exist_ok=True)
        shutil.rmtree(keep)

    def fill(self):
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * 4096) > 0:
                    pass
        finally:
            os.close(fd)
        # tmpfs rounds to pages: what is left is less than a page.
        return os.statvfs(self.path).f_bavail

    def drain(self):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.filler)

    def unmount(self):
        if self.mounted:
            subprocess.run(["umount", "-l", self.path], check=False)
            self.mounted = False


# ---- OctoPrint's gauges ------------------------------------------------------------

LOOP_LAG_PLUGIN = r'''
# A test-only plugin (tests/fault_rig.py): a 10 ms timer on OctoPrint's
# Tornado loop; GET /api/plugin/tsd_looplag answers how late each tick was
# (ms) since the last GET and clears them; ?threads=1 lists the Python threads;
# ?memory=1 says where OctoPrint's memory is (the soak's RSS breakdown).
import ctypes, threading, time
import octoprint.plugin

PERIOD_S = 0.010


class LoopLag(octoprint.plugin.StartupPlugin, octoprint.plugin.SimpleApiPlugin):
    def __init__(self):
        self._lags = []
        self._ticks = 0
        self._lock = threading.Lock()
        self._last = None

    def on_startup(self, host, port):
        from tornado.ioloop import IOLoop
        IOLoop.current().add_callback(self._arm)

    def _arm(self):
        from tornado.ioloop import PeriodicCallback
        self._timer = PeriodicCallback(self._tick, PERIOD_S * 1000)
        self._timer.start()

    def _tick(self):
        now = time.monotonic()
        if self._last is not None:
            with self._lock:
                self._ticks += 1
                if len(self._lags) < 500000:
                    self._lags.append(max(0.0, (now - self._last - PERIOD_S) * 1000.0))
        self._last = now

    def is_api_protected(self):
        return True

    def on_api_get(self, request):
        import flask
        if request.args.get("threads"):
            return flask.jsonify(threads=python_threads())
        if request.args.get("memory"):
            return flask.jsonify(memory_breakdown(int(request.args.get("top", "0"))))
        with self._lock:
            lags, self._lags = self._lags, []
            ticks, self._ticks = self._ticks, 0
        return flask.jsonify(lags=lags, ticks=ticks)


def python_threads():
    """OctoPrint's Python threads: name, kernel id and where each is now
    (the soak tells which threads came or went)."""
    import sys, traceback
    frames = sys._current_frames()
    found = []
    for thread in threading.enumerate():
        frame = frames.get(thread.ident)
        stack = traceback.format_stack(frame, limit=6) if frame is not None else []
        found.append({"name": thread.name, "native_id": thread.native_id, "daemon": thread.daemon,
                      "stack": [line.strip() for line in stack]})
    return found


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
        "keepcost")]


_snapshot = []


def memory_breakdown(top):
    """MiB held by glibc's heap (in use, free but kept, mmapped), blocks held
    by Python's allocator, and with top > 0 what grew most: with
    PYTHONTRACEMALLOC set, the Python files that allocated it since the first
    call; else the kinds of objects a full collection leaves, since the
    previous call."""
    import gc, sys, tracemalloc
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    info = libc.mallinfo2()
    mib = 1024.0 * 1024.0
    found = {"heap_in_use_mib": info.uordblks / mib, "heap_free_mib": info.fordblks / mib,
             "heap_mmapped_mib": info.hblkhd / mib, "python_blocks": sys.getallocatedblocks(),
             "gc_objects": None}
    if top and tracemalloc.is_tracing():
        found["gc_objects"] = len(gc.get_objects())
        # Against the first snapshot, file by file: what grew since then.
        snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        if _snapshot:
            found["grown"] = [str(stat) for stat in snapshot.compare_to(_snapshot[0], "filename")[:top]]
        else:
            _snapshot[:] = [snapshot]
        found["traced_mib"] = sum(stat.size for stat in snapshot.statistics("filename")) / mib
    elif top:
        # Without tracemalloc: which kinds of objects grew that a full
        # collection leaves (what it freed is garbage that waited for one).
        import collections
        found["gc_freed"] = gc.collect()
        found["gc_full_collections"] = gc.get_stats()[2]["collections"]
        census = collections.Counter("{}.{}".format(type(o).__module__, type(o).__qualname__) for o in gc.get_objects())
        found["gc_objects"] = sum(census.values())
        if _snapshot:
            grown = census.copy()
            grown.subtract(_snapshot[0])
            found["grown"] = ["{:+d} {} (now {})".format(n, kind, census[kind])
                              for kind, n in grown.most_common(top) if n > 0]
        _snapshot[:] = [census]
    return found


__plugin_name__ = "TSD loop lag (tests)"
__plugin_pythoncompat__ = ">=3.7,<4"
__plugin_implementation__ = LoopLag()
'''


def install_loop_lag_plugin(basedir):
    folder = os.path.join(basedir, "plugins")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "tsd_looplag.py"), "w") as f:
        f.write(LOOP_LAG_PLUGIN)


def percentile(values, fraction):
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class LoopLag:
    """Collects the loop-lag plugin's ticks (call collect() now and then:
    the plugin keeps at most 500,000)."""

    def __init__(self, url, headers):
        self.url = url + "/api/plugin/tsd_looplag"
        self.headers = headers
        self.lags = []
        self.ticks = 0

    def collect(self):
        body = requests.get(self.url, headers=self.headers, timeout=30).json()
        self.lags.extend(body["lags"])
        self.ticks += body["ticks"]
        return body

    def reset(self):
        self.collect()
        self.lags, self.ticks = [], 0

    def memory(self, top=0):
        """Where OctoPrint's memory is (the plugin's memory_breakdown)."""
        response = requests.get(self.url, params={"memory": 1, "top": top}, headers=self.headers, timeout=120)
        response.raise_for_status()
        return response.json()


class Sampler:
    """A thread that, every period: times GET /api/version (latency_ms),
    reads OctoPrint's RSS, descriptors and threads (samples) and the
    printer's state (states: every state seen)."""

    def __init__(self, url, headers, pid, period=0.5):
        self.url, self.headers, self.pid, self.period = url, headers, pid, period
        self.latency_ms = []
        self.samples = []      # (monotonic, rss_mb, fds, threads)
        self.states = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-sampler", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(30)

    def _run(self):
        session = requests.Session()
        while not self._stop.wait(self.period):
            started = time.monotonic()
            try:
                session.get(self.url + "/api/version", headers=self.headers, timeout=30)
                self.latency_ms.append((time.monotonic() - started) * 1000.0)
                state = session.get(self.url + "/api/printer", headers=self.headers,
                                    timeout=30).json().get("state", {}).get("text")
                self.states.add(state)
            except requests.RequestException:
                self.latency_ms.append(30000.0)
            with contextlib.suppress(OSError):
                self.samples.append(process_sample(self.pid))
        session.close()


def process_sample(pid):
    """(monotonic, RSS MiB, open descriptors, threads) of pid."""
    with open("/proc/%d/status" % pid) as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    rss = int(fields["VmRSS"].split()[0]) / 1024.0
    threads = int(fields["Threads"])
    fds = len(os.listdir("/proc/%d/fd" % pid))
    return time.monotonic(), rss, fds, threads


# OctoPrint answers its HTTP API on a ThreadPoolExecutor whose workers are
# named WsgiRequestHandler_<n> (octoprint/server/__init__.py). The pool grows
# one worker whenever a request comes while every worker is busy, up to the
# executor's default bound, and its workers never exit: the soak's own
# overlapping requests (status polls, /api/version, the loop-lag reads) add
# one now and then. Growth of that pool up to its bound is OctoPrint's, not
# a leak; past the bound it cannot happen unless the pool is not what it was.
OCTOPRINT_REQUEST_POOL = "WsgiRequestHandler_"


def request_pool_bound():
    """concurrent.futures' default max_workers (Python 3.8 to 3.12)."""
    return min(32, (os.cpu_count() or 1) + 4)


def request_pool_size(census):
    """How many of OctoPrint's request-pool workers a thread_census() holds."""
    return sum(1 for _, name, _ in census.values() if name and name.startswith(OCTOPRINT_REQUEST_POOL))


def thread_census(pid, url, headers):
    """Every thread of OctoPrint by kernel id: {tid: (comm, python name or
    None, python stack)}; a thread Python does not know is a native one
    (ours are named tsd-*; one a thread of ours started unnamed reads as
    its starter's name)."""
    python = {}
    with contextlib.suppress(requests.RequestException, ValueError):
        for thread in requests.get(url + "/api/plugin/tsd_looplag", params={"threads": 1},
                                   headers=headers, timeout=30).json()["threads"]:
            python[thread["native_id"]] = (thread["name"], thread["stack"])
    census = {}
    for task in os.listdir("/proc/%d/task" % pid):
        with contextlib.suppress(OSError), open("/proc/%d/task/%s/comm" % (pid, task)) as f:
            name, stack = python.get(int(task), (None, []))
            census[int(task)] = (f.read().strip(), name, stack)
    return census


def descriptor_census(pid, ports=None):
    """Every open descriptor of pid: {fd: what it is}; a TCP socket reads
    as tcp <local port> -> <remote port> <state>, a port named as ports
    ({port: name}) names it (the soak tells which descriptors came or went)."""
    ports = ports or {}
    sockets = {}
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError), open("/proc/%d/net/%s" % (pid, table)) as f:
            for line in list(f)[1:]:
                fields = line.split()
                local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
                local, remote = (int(end.rsplit(":", 1)[1], 16) for end in (local, remote))
                sockets["socket:[%s]" % inode] = "tcp {} -> {} {}".format(
                    ports.get(local, local), ports.get(remote, remote), state)
    census = {}
    for fd in os.listdir("/proc/%d/fd" % pid):
        with contextlib.suppress(OSError):
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            census[int(fd)] = sockets.get(target, target)
    return census


class Settled:
    """A process at rest, from samples over about seconds: the median RSS,
    and the descriptors and threads that were there in every sample.

    Only what stays is counted: the camera is fetched every 50 ms on a new
    connection and a name lookup runs on a thread of its own, so a single
    reading of /proc catches one in flight now and then (+1 descriptor or
    thread that is gone a moment later). A leaked descriptor or thread is
    there in every sample, so it is counted. OctoPrint's request pool is
    counted apart (request_pool: its largest size; OCTOPRINT_REQUEST_POOL).
    url, headers: the OctoPrint with the loop-lag plugin that names Python's
    threads (thread_census); ports: names for descriptor_census."""

    def __init__(self, pid, url, headers, ports=None, seconds=3.0, samples=5):
        time.sleep(seconds / 2)
        rss, threads, descriptors = [], [], []
        for _ in range(samples):
            threads.append(thread_census(pid, url, headers))
            descriptors.append(descriptor_census(pid, ports))
            rss.append(process_sample(pid)[1])
            time.sleep(seconds / 2 / samples)
        self.rss_mb = statistics.median(rss)
        stayed = set.intersection(*(set(census) for census in threads))
        self.census = {tid: threads[-1][tid] for tid in stayed}
        self.request_pool = max(request_pool_size(census) for census in threads)
        self.threads = len(self.census)
        self.threads_kept = self.threads - request_pool_size(self.census)
        self.descriptors = dict(set.intersection(*(set(census.items()) for census in descriptors)))
        self.fds = len(self.descriptors)


def thread_growth(before, after):
    """Threads that stayed, after minus before (two Settled), OctoPrint's
    request pool left out while it stays within its bound; past the bound
    its excess counts."""
    excess = max(0, after.request_pool - max(before.request_pool, request_pool_bound()))
    return after.threads_kept - before.threads_kept + excess


# G-code OctoPrint itself sends while printing (temperature and SD polls,
# line-number resets): never counted as a disturbance.
ROUTINE_GCODE = ("M105", "M27", "M110", "M115", "M114", "M21", "M20", "M155", "M113")


def unexpected_gcode(sent_lines, file_text):
    """The lines sent to the printer that are neither the print file's nor
    OctoPrint's routine polls: what a fault would have caused."""
    allowed = {line.split(";", 1)[0].strip() for line in file_text.splitlines()}
    odd = []
    for line in sent_lines:
        code = line.strip()
        if not code or code in allowed or code.split()[0] in ROUTINE_GCODE:
            continue
        odd.append(code)
    return odd


def bench(name, value, unit):
    """The line `make bench` and `make soak` readers parse."""
    if isinstance(value, float):
        value = "%.2f" % value
    print("bench {} {} {}".format(name, value, unit), flush=True)
