# SPDX-License-Identifier: AGPL-3.0-or-later
"""The one module that imports the native core, ``octoprint_tsd._tsd``.

Everything else in the shim goes through here. If the native module cannot be
imported (a missing system library, a build for another Python), the cause is
kept in :data:`NATIVE_IMPORT_ERROR` so the plugin can show it to the user. There
is no silent fallback: without the native core the plugin does nothing but
report why.
"""

import os
import subprocess
import threading

try:
    from . import _tsd
except Exception as exc:  # ImportError, or OSError from a missing .so
    _tsd = None
    NATIVE_IMPORT_ERROR = "{}: {}".format(type(exc).__name__, exc)
else:
    NATIVE_IMPORT_ERROR = None


class _Unavailable(Exception):
    """Stands in for the native exception types when _tsd is missing."""


TsdError = _tsd.TsdError if _tsd else _Unavailable
TunnelError = _tsd.TunnelError if _tsd else _Unavailable
QueueClosedError = _tsd.QueueClosedError if _tsd else _Unavailable
TokenError = _tsd.TokenError if _tsd else _Unavailable
GrabError = _tsd.GrabError if _tsd else _Unavailable
HelperError = _tsd.HelperError if _tsd else _Unavailable
TUNNEL_EVENT_LOG = _tsd.TUNNEL_EVENT_LOG if _tsd else -1
TUNNEL_EVENT_CONNECTED = _tsd.TUNNEL_EVENT_CONNECTED if _tsd else -1
TUNNEL_EVENT_DISCONNECTED = _tsd.TUNNEL_EVENT_DISCONNECTED if _tsd else -1
TUNNEL_EVENT_MESSAGE = _tsd.TUNNEL_EVENT_MESSAGE if _tsd else -1
TUNNEL_EVENT_UNAUTHORIZED = _tsd.TUNNEL_EVENT_UNAUTHORIZED if _tsd else -1
TUNNEL_EVENT_REPLACED = _tsd.TUNNEL_EVENT_REPLACED if _tsd else -1
TUNNEL_EVENT_STOPPED = _tsd.TUNNEL_EVENT_STOPPED if _tsd else -1
DOWNLOAD_EVENT_PROGRESS = _tsd.DOWNLOAD_EVENT_PROGRESS if _tsd else -1
DOWNLOAD_EVENT_DONE = _tsd.DOWNLOAD_EVENT_DONE if _tsd else -1
DOWNLOAD_EVENT_FAILED = _tsd.DOWNLOAD_EVENT_FAILED if _tsd else -1
TUNNEL_EVENT_REMOTE_LOGIN = _tsd.TUNNEL_EVENT_REMOTE_LOGIN if _tsd else -1

HELPER_NAME = "tsd-helper"

# Event types carried by the native event queue. The C producers (tunnel,
# helper supervisor) use the same numbers.
EVENT_LOG = 1

PUMP_WAIT_SECONDS = 1.0


def native_available():
    return _tsd is not None


def native_info():
    """Version and linked library versions of the native core, or the error."""
    if _tsd is None:
        return {"loaded": False, "error": NATIVE_IMPORT_ERROR}
    return {
        "loaded": True,
        "version": _tsd.__version__,
        "libraries": _tsd.library_versions(),
    }


def helper_path():
    """The helper installed next to this package; never looked up on PATH."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), HELPER_NAME)


def probe_helper(path=None, timeout=10.0):
    """Runs ``tsd-helper --version`` once and says whether it works."""
    path = path or helper_path()
    result = {"path": path, "available": False, "version": None, "error": None}
    if not os.path.isfile(path):
        result["error"] = "not installed at {}".format(path)
        return result
    if not os.access(path, os.X_OK):
        result["error"] = "not executable: {}".format(path)
        return result
    try:
        completed = subprocess.run(
            [path, "--version"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=timeout,
            close_fds=True,
            check=False,
        )
    except subprocess.TimeoutExpired:
        result["error"] = "did not answer within {:.0f} s".format(timeout)
        return result
    except OSError as exc:
        result["error"] = "could not start: {}".format(exc)
        return result
    if completed.returncode != 0:
        stderr = completed.stderr.decode("utf-8", "replace").strip()
        result["error"] = "exited with status {}: {}".format(
            completed.returncode, stderr[:300]
        )
        return result
    result["available"] = True
    result["version"] = completed.stdout.decode("utf-8", "replace").strip()
    return result


def default_model_config():
    """The helper configuration of the model shipped in the package, or ""
    when it is not installed."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model", "helper.yaml")
    return path if os.path.isfile(path) else ""


def new_camera(url, stream=False, ca_file=None, **timeouts):
    """A webcam (``_tsd.Camera``): snapshot URL, or one long MJPEG stream."""
    return _tsd.Camera(url, ca_file=ca_file, stream=bool(stream), **timeouts)


def new_detector(helper, config_path, **options):
    """The supervised helper (``_tsd.Detector``); starts nothing yet."""
    return _tsd.Detector(helper, config_path, **options)


def annotate_jpeg(jpeg, detections):
    """The frame with the detections' boxes drawn, for notifications."""
    return _tsd.annotate_jpeg(jpeg, detections)


def new_decider(**params):
    """The Obico decision logic (``_tsd.Decider``)."""
    return _tsd.Decider(**params)


def new_layer_counter():
    """Which layer a print is on, from the lines sent (``_tsd.LayerCounter``)."""
    return _tsd.LayerCounter()


def count_layers(path, max_bytes):
    """The layers of a G-code file by the same rule (GIL released); TsdError
    if it cannot be read or is larger than max_bytes."""
    return _tsd.count_layers(path, max_bytes)


class EventPump:
    """Drains native events on a Python thread.

    C threads never call into Python: they push events into a bounded queue
    (an ``EventQueue``, or a ``Tunnel``'s own), and this thread waits on
    ``next_event(timeout=...)`` (the GIL is released while it waits) and hands
    each event to ``handler(type, payload)``. ``stop()`` is idempotent: it
    calls ``close()``, which closes the queue and wakes the thread at once,
    and joins it.
    """

    def __init__(self, next_event, close, handler, logger, name="tsd-event-pump"):
        self._next_event = next_event
        self._close = close
        self._handler = handler
        self._logger = logger
        self._name = name
        self._thread = None
        self._lock = threading.Lock()

    def start(self):
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name=self._name)
            # Daemon: OctoPrint calls on_shutdown() (which stops the pump)
            # from an atexit handler, and Python joins non-daemon threads
            # before it runs atexit handlers -- a non-daemon pump would keep
            # OctoPrint from exiting on SIGTERM.
            self._thread.daemon = True
            self._thread.start()

    def stop(self, timeout=5.0):
        with self._lock:
            thread = self._thread
        self._close()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                self._logger.error("[bridge] event pump did not stop within %.1f s", timeout)

    def is_running(self):
        thread = self._thread
        return thread is not None and thread.is_alive()

    def _run(self):
        closed_error = _tsd.QueueClosedError
        while True:
            try:
                event = self._next_event(timeout=PUMP_WAIT_SECONDS)
            except closed_error:
                return
            except Exception:
                self._logger.exception("[bridge] event queue failed, stopping the pump")
                return
            if event is None:
                continue
            event_type, payload = event
            try:
                self._handler(event_type, payload)
            except Exception:
                self._logger.exception(
                    "[bridge] handler for event type %d failed, ignoring", event_type
                )


def new_event_queue(max_events=1024, max_bytes=1024 * 1024):
    return _tsd.EventQueue(max_events=max_events, max_bytes=max_bytes)


def new_tunnel(url, token, **options):
    """(raises TunnelError, ValueError) A native tunnel, not yet started."""
    return _tsd.Tunnel(url, token, **options)


def new_download(url, path, max_bytes, **options):
    """(raises GrabError) A cloud-print download (``_tsd.Download``) into the
    new file path, already running on its C thread."""
    return _tsd.Download(url, path, max_bytes, **options)


def new_dispatcher(allow_raw_gcode=False):
    return _tsd.Dispatcher(allow_raw_gcode=allow_raw_gcode)


def load_token(folder):
    """(record, error): the stored link, or (None, None) when unlinked, or
    (None, reason) when the file is unusable. Never raises, never logs the
    token."""
    if _tsd is None:
        return None, "the native module is not loaded"
    try:
        return _tsd.token_load(folder), None
    except _tsd.TokenError as exc:
        if getattr(exc, "code", "") == "not_found":
            return None, None
        return None, "the stored token cannot be used ({}): {}".format(
            getattr(exc, "code", "error"), exc)
    except OSError as exc:
        return None, "the token folder cannot be read: {}".format(exc)


def save_token(folder, server, token, name=None):
    """None on success, else the reason."""
    try:
        _tsd.token_save(folder, server, token, name)
    except (_tsd.TokenError, ValueError) as exc:
        return str(exc)
    return None


def delete_token(folder):
    try:
        _tsd.token_delete(folder)
    except _tsd.TokenError as exc:
        return str(exc)
    return None


def parse_unlinked_response(body):
    """The server's /unlinked/ answer, parsed and bounded in C
    (native/core/linkmsg.c); ValueError with the reason."""
    if _tsd is None:
        raise ValueError("the native module is not loaded")
    return _tsd.parse_unlinked_response(bytes(body))


def parse_verify_response(body):
    """The server's /verify/ answer: {"token", "name"}; ValueError with the reason."""
    if _tsd is None:
        raise ValueError("the native module is not loaded")
    return _tsd.parse_verify_response(bytes(body))


def host_class(host):
    """The one host rule (native/core/hostrule.c): "loopback", "private",
    "public" or "name". Anything but a str, and everything without the native
    module, is a "name": never local."""
    if _tsd is None or not isinstance(host, str):
        return "name"
    return _tsd.host_class(host)


def check_server_url(url, allow_cleartext_lan=False):
    """An http(s) or ws(s) server URL read and checked by the one host rule:
    {scheme, tls, host, port, path, host_class}. ValueError with .code
    "bad_url" or "insecure_url" (cleartext to a host the rule does not allow)."""
    if _tsd is None:
        raise ValueError("the native module is not loaded")
    return _tsd.check_server_url(url, allow_cleartext_lan=bool(allow_cleartext_lan))


def farm_load(path, instance=None):
    """The farm provisioning file, read and checked in C (native/core/farm.h),
    as the settings it sets for one instance: {"settings", "places",
    "printers", "instance_known"}. ValueError with .code "io", "syntax" or
    "field" and the file, line and column for a refused file."""
    if _tsd is None:
        raise ValueError("the native module is not loaded")
    return _tsd.farm_load(path, instance)
