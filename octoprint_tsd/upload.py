# SPDX-License-Identifier: AGPL-3.0-or-later
"""Frame uploads to the server (``POST /api/v1/octo/pic/``) at the server's
cadence (obico-protocol.md, section 2.6):

- when ``remote_status.viewing`` turns true: at once, with ``viewing_boost``;
- while printing: every 10 s if someone is viewing or the server says it
  should watch, else every 120 s;
- nothing while not printing.

Uploads run on their own thread, ``tsd-upload``: the watcher hands frames
over (newest wins) and never waits; the tunnel is not involved. A failed
upload backs off (doubling up to 5 minutes) and is counted in ``info()``.
TSD_TIME_SCALE shortens every period for tests.
"""

import threading
import time

from .remote import _time_scale

INTERVAL_WATCHED = 10.0
INTERVAL_UNWATCHED = 120.0
BACKOFF_MIN = 5.0
BACKOFF_MAX = 300.0
TICK = 1.0
PIC_PATH = "/api/v1/octo/pic/"


class Uploader:
    """``post(path, data, files)`` returns the HTTP status, or None when the
    printer is not linked; it raises on network errors. ``is_printing()``
    says whether OctoPrint is printing. ``request_frame()`` asks the
    watcher for a frame now."""

    def __init__(self, post, is_printing, request_frame, logger, time_scale=None,
                 clock=time.monotonic):
        self._post = post
        self._is_printing = is_printing
        self._request_frame = request_frame
        self._logger = logger
        self._scale = _time_scale() if time_scale is None else time_scale
        self._clock = clock
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = None
        self._frame = None            # (jpeg, seq, clock time)
        self._last_seq = None
        self._last_post = None
        self._boost_from = None       # a boost waits for a frame newer than this
        self._retry_at = 0.0
        self._backoff = 0.0
        self.viewing = False
        self.should_watch = False
        self.posted = 0
        self.boosts = 0
        self.failed = 0
        self.last_error = None
        self.last_status = None
        self.last_post_time = None

    def start(self):
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="tsd-upload")
        self._thread.daemon = True
        self._thread.start()

    def stop(self):
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(10)

    # ---- inputs (any thread) -----------------------------------------------------

    def on_frame(self, jpeg, width, height, seq):
        del width, height
        with self._lock:
            self._frame = (jpeg, seq, self._clock())
            boost = self._boost_from is not None
        if boost:
            self._wake.set()

    def set_remote_status(self, viewing=None, should_watch=None):
        with self._lock:
            if should_watch is not None:
                self.should_watch = bool(should_watch)
            if viewing is not None:
                turned_on = bool(viewing) and not self.viewing
                self.viewing = bool(viewing)
                if turned_on:
                    self._boost_from = self._clock()
        if viewing:
            self._request_frame()
            self._wake.set()

    def info(self):
        with self._lock:
            return {
                "posted": self.posted,
                "boosts": self.boosts,
                "failed": self.failed,
                "last_error": self.last_error,
                "last_status": self.last_status,
                "last_post_time": self.last_post_time,
                "backoff_s": self._backoff,
                "viewing": self.viewing,
                "should_watch": self.should_watch,
                "interval_s": self.interval(),
            }

    def interval(self):
        """Seconds between uploads now (unscaled), or None: none are due."""
        if not self._is_printing():
            return None
        return INTERVAL_WATCHED if (self.viewing or self.should_watch) else INTERVAL_UNWATCHED

    # ---- the loop ----------------------------------------------------------------------

    def _run(self):
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception:
                self._logger.exception("[upload] unexpected error; going on")
            if self._wake.wait(TICK * self._scale):
                self._wake.clear()

    def _due(self, now):
        """(jpeg, seq, boost) to post now, or None."""
        with self._lock:
            frame = self._frame
            if frame is None or now < self._retry_at:
                return None
            jpeg, seq, received = frame
            if self._boost_from is not None:
                if received >= self._boost_from and seq != self._last_seq:
                    return jpeg, seq, True
                if now - self._boost_from < 30 * self._scale:
                    return None  # wait for the fresh frame
                self._boost_from = None
            interval = self.interval()
            if interval is None or seq == self._last_seq:
                return None
            if self._last_post is not None and now - self._last_post < interval * self._scale:
                return None
            return jpeg, seq, False

    def _tick(self):
        now = self._clock()
        due = self._due(now)
        if due is None:
            return
        jpeg, seq, boost = due
        data = {"viewing_boost": "true"} if boost else {}
        error = None
        try:
            status = self._post(PIC_PATH, data, {"pic": ("snapshot.jpg", jpeg, "image/jpeg")})
        except Exception as exc:  # requests' errors; never a reason to stop
            status, error = None, "{}: {}".format(type(exc).__name__, exc)
        with self._lock:
            if boost:
                self._boost_from = None
            if status is None and error is None:
                return  # not linked: nothing to do
            self._last_post = now
            self.last_status = status
            if error is None and 200 <= status < 300:
                self._last_seq = seq
                self.posted += 1
                self.boosts += 1 if boost else 0
                self.last_error = None
                self.last_post_time = time.time()
                self._backoff = 0.0
                self._retry_at = 0.0
                return
            self.failed += 1
            self.last_error = error or "HTTP {}".format(status)
            self._backoff = min(BACKOFF_MAX, max(BACKOFF_MIN, self._backoff * 2))
            self._retry_at = now + self._backoff * self._scale
            message, backoff = self.last_error, self._backoff
        self._logger.warning("[upload] frame upload failed (%s); next try in %.0f s",
                             message, backoff)
