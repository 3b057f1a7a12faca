# SPDX-License-Identifier: AGPL-3.0-or-later
"""Failure detection as the shim runs it: a frame from the webcam every
interval, detections from the supervised helper, the Obico decision, and at
most one action per failure episode.

Grabbing (``_tsd.Camera``), inference (``_tsd.Detector``, which runs and
supervises tsd-helper) and the decision (``_tsd.Decider``) are native; this
module sequences them on one thread, ``tsd-watch``, and hands every printer
action to the plugin (``host``), which owns all OctoPrint calls. The native
calls release the GIL, and none of them waits longer than its deadline, so
OctoPrint never waits on the helper or the camera.

Time: the frame interval is a setting in seconds (default 10, the rate the
Obico constants were tuned for). The decider is told that nominal interval,
so its windows scale with it (docs/decisions.md). Tests shorten wall time
with TSD_TIME_SCALE: the thread sleeps interval * scale, decisions stay those
of the nominal interval.
"""

import collections
import json
import threading
import time
import urllib.parse

from . import bridge
from .learned import LearnedScene
from .remote import _time_scale

STATE_DISABLED = "disabled"   # no camera, or detection turned off
STATE_IDLE = "idle"           # not printing: frames for the live view only
STATE_WATCHING = "watching"
STATE_WARNING = "warning"     # failing at factor 1, not yet at 1.75
STATE_FAILING = "failing"     # failure episode, action "notify"
STATE_PAUSED = "paused"       # paused (or cancelled) by TSD
STATE_ERROR = "error"         # no frames or no detections right now

PAUSE_FACTOR = 1.75
THRESHOLD_LOW = 0.38
THRESHOLD_HIGH = 0.78
HISTORY_MAX = 2000            # points of the score plot (one print)
LOOKS_FINE_FACTOR = 0.5       # bending factor multiplier per "looks fine"
MIN_BENDING_FACTOR = 0.05
CAMERA_RETRY_MAX_S = 60.0
RECENT_FRAMES_LEARNED = 3     # "looks fine" teaches the detections of this many frames
JUDGED_CLEAR_FRAMES = 60      # frames without a failure that end a judged episode (10 min at 10 s)
COOLDOWN_S = 90.0             # after a resume or "looks fine", as the Obico server's
                              # alert cooldown: no new action before it has passed


SHORT_MULTIPLE = 3.8


def decision_gauge(short_mean, long_mean, adjusted):
    """The lines a frame's score was held against, and the Obico server's
    ``normalized_p`` gauge (reference section 10.6) that puts them on one
    scale: [0, 1/3) ok, [1/3, 2/3) warning, [2/3, 1] failure.

    The warning line is clamp(3.8 * (short - long), 0.38, 0.78) and the
    pause line 1.75 times it: the same test as the decision's "above 0.78,
    or between 0.38 and 0.78 and above 3.8 * (short - long)" (docs/decisions.md),
    written as one moving line per level. The gauge maps [0, warn] onto the
    first third, [warn, pause] onto the second and [pause, 1.5 * pause] onto
    the last, each clamped to its third. The decision itself is the native
    decider's; this only explains it."""
    warn_at = min(THRESHOLD_HIGH, max(THRESHOLD_LOW, (short_mean - long_mean) * SHORT_MULTIPLE))
    pause_at = warn_at * PAUSE_FACTOR

    def band(x, low, high, third):
        share = (x - low) / (high - low)
        return third / 3.0 + min(1.0, max(0.0, share)) / 3.0

    if adjusted > pause_at:
        gauge = band(adjusted, pause_at, pause_at * 1.5, 2)
    elif adjusted > warn_at:
        gauge = band(adjusted, warn_at, pause_at, 1)
    else:
        gauge = band(adjusted, 0.0, warn_at, 0)
    return {"warn_at": warn_at, "pause_at": pause_at, "normalized_p": gauge}


def resolve_webcam_url(url, octoprint_port):
    """Absolute camera URLs as they are; a relative one (``/webcam/?action=
    stream``) against OctoPrint on the loopback address. Returns a list of
    candidates: OctoPrint's own port, then port 80 (OctoPi's haproxy serves
    /webcam/ there, not on OctoPrint's port)."""
    url = (url or "").strip()
    if not url:
        return []
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme in ("http", "https"):
        return [url]
    if parsed.scheme or url.startswith("//"):
        return []
    path = url if url.startswith("/") else "/" + url
    candidates = []
    if octoprint_port:
        candidates.append("http://127.0.0.1:{}{}".format(int(octoprint_port), path))
    if octoprint_port != 80:
        candidates.append("http://127.0.0.1{}".format(path))
    return candidates


def webcam_choices(webcams):
    """OctoPrint's webcams (``octoprint.webcams.get_webcams()`` values, or
    dicts of the same shape) as plain dicts: name, display name, snapshot
    URL, stream URL."""
    choices = []
    for webcam in webcams:
        config = getattr(webcam, "config", webcam)
        compat = getattr(config, "compat", None)
        if isinstance(config, dict):
            compat = config.get("compat")
            name, display = config.get("name"), config.get("displayName")
        else:
            name, display = config.name, config.displayName
        if isinstance(compat, dict):
            snapshot, stream = compat.get("snapshot"), compat.get("stream")
        elif compat is not None:
            snapshot, stream = compat.snapshot, compat.stream
        else:
            snapshot = stream = None
        if not (snapshot or stream):
            continue
        ratio = _field(compat, "streamRatio")
        choices.append({"name": name, "display_name": display or name,
                        "snapshot": snapshot or "", "stream": stream or "",
                        "flip_h": bool(_field(config, "flipH")), "flip_v": bool(_field(config, "flipV")),
                        "rotate90": bool(_field(config, "rotate90")),
                        "ratio": str(getattr(ratio, "value", ratio) or "16:9")})
    return choices


def _field(config, name):
    """A field of OctoPrint's webcam configuration, as an object or a dict."""
    return config.get(name) if isinstance(config, dict) else getattr(config, name, None)


def pick_webcam(choices, wanted):
    """The webcam named ``wanted``, else the first one; None when none."""
    for choice in choices:
        if choice["name"] == wanted:
            return choice
    return choices[0] if choices else None


class Episode:
    """One failure episode: at most one action; ended by "looks fine" or a
    new print; re-armed (a new episode may start) after a resume, except
    after a resume from the server's app (judged): then it ends only when no
    failure has been seen for JUDGED_CLEAR_FRAMES frames in a row."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.active = self.acted = self.warned = self.judged = False
        self.clear_frames = 0  # judged: frames in a row without a failure seen


class Watcher:
    """``host`` gives: ``watch_config()`` (dict: camera (dict or None),
    interval_s, action, sensitivity, model_config, enabled), ``is_printing()``,
    ``failure_action(action, summary, frame)``, ``failure_warning(summary,
    frame)`` and ``publish(update)``."""

    def __init__(self, host, logger, helper_path=None, time_scale=None, learned=None):
        self._host = host
        self._logger = logger
        self._helper_path = helper_path or bridge.helper_path()
        self._time_scale = _time_scale() if time_scale is None else time_scale
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = None
        self._camera = None
        self._camera_key = None
        self._urls = ()              # the candidate URLs of the chosen camera
        self._url_index = 0          # the one in use
        self._url_proven = False     # it has given a frame: keep it
        self._camera_failures = 0
        self._camera_retry_at = 0.0
        self._detector = None
        self._detector_key = None
        self._decider = None
        self._episode = Episode()
        self._bending_factor = 1.0
        self._printing = False
        self.state = STATE_DISABLED
        self.detail = ""
        self.camera_error = None
        self.helper_error = None
        self.latest = None           # (jpeg, width, height, seq, monotonic time)
        self._evidence = None        # (jpeg, summary): the frame that triggered the action
        self.last_result = None
        self.history = collections.deque(maxlen=HISTORY_MAX)
        self.frames = 0
        self.detections_ok = 0
        self.detection_errors = 0
        self.frames_late = 0
        self.actions_taken = 0
        self._print_started = time.monotonic()
        self._frame_listeners = []
        self._long_term = None       # (mean, count) to restore into a new decider
        self._quiet_until = 0.0      # no action before this (monotonic)
        # What the owner marked as fine on this printer, and the detections
        # of the newest frames (what "looks fine" teaches it).
        self._learned = learned if learned is not None else LearnedScene()
        self._recent = collections.deque(maxlen=RECENT_FRAMES_LEARNED)
        self.suppressed = 0

    # ---- life cycle ------------------------------------------------------------

    def start(self):
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="tsd-watch")
        self._thread.daemon = True
        self._thread.start()

    def stop(self):
        self._stop.set()
        self._wake.set()
        camera, detector = self._camera, self._detector
        if camera is not None:
            camera.close()        # wakes a grab in progress
        if detector is not None:
            detector.interrupt()  # wakes a detection in progress
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(10)
        self._camera = self._detector = None

    def wake(self):
        """Take the next frame now (a viewing boost, a changed setting)."""
        self._wake.set()
        camera = self._camera
        if camera is not None:
            camera.nudge()

    def add_frame_listener(self, listener):
        """listener(jpeg, width, height, seq) on the watch thread, for uploads."""
        self._frame_listeners.append(listener)

    # ---- print life cycle (called by the plugin on OctoPrint events) -----------

    def on_print_started(self):
        with self._lock:
            self._printing = True
            self._episode.reset()
            self._quiet_until = 0.0
            self._bending_factor = 1.0
            self.history.clear()
            self._evidence = None
            self._print_started = time.monotonic()
            if self._decider is not None:
                self._decider.print_start()
                self._decider.set_params(bending_factor=1.0)
        self.wake()

    def owner_resumed(self):
        """The owner resumed from the server's app after this plugin paused
        the print: the failure in view is judged, and never pauses the print
        a second time; the episode ends once it is no longer seen."""
        with self._lock:
            if not self._episode.acted:
                return
            self._episode.judged = True
        self._logger.info("[detect] resumed from the server's app: no second action for this failure")

    def on_print_resumed(self):
        with self._lock:
            # Re-armed: a failure seen from now on is a new episode, once
            # the cooldown has passed (a judged one lasts while it is seen).
            if not self._episode.judged:
                self._episode.reset()
            self._quiet_until = time.monotonic() + COOLDOWN_S * self._time_scale
            if self.state == STATE_PAUSED:
                self.state = STATE_WATCHING

    def on_print_ended(self):
        with self._lock:
            self._printing = False
            self._episode.reset()
            self.state = STATE_IDLE if self._camera_key else STATE_DISABLED

    def looks_fine(self):
        """The user says the print is fine: end the episode, restart the
        rolling means (the grace period applies again) and lower the
        bending factor for the rest of this print."""
        with self._lock:
            self._episode.reset()
            self._quiet_until = time.monotonic() + COOLDOWN_S * self._time_scale
            self._bending_factor = max(MIN_BENDING_FACTOR,
                                       self._bending_factor * LOOKS_FINE_FACTOR)
            if self._decider is not None:
                self._decider.print_start()
                self._decider.set_params(bending_factor=self._bending_factor)
            if self.state in (STATE_WARNING, STATE_FAILING):
                self.state = STATE_WATCHING
            bending = self._bending_factor
            recent = list(self._recent)
        learned = 0
        try:
            for camera, detections, width, height in recent:
                learned += self._learned.learn(camera, detections, width, height)
        except OSError as exc:
            self._logger.warning("[detect] could not save what was learned: %s", exc)
        self._logger.info("[detect] marked as looking fine; bending factor now %.3f; %d detection(s) "
                          "learned as fine on this printer (%d in all)", bending, learned,
                          self._learned.count())
        self._publish()
        return bending

    def forget_learned(self):
        """Forgets what "looks fine" taught; returns how many were forgotten."""
        gone = self._learned.forget()
        self._logger.info("[detect] forgot %d detection(s) learned as fine", gone)
        self._publish()
        return gone

    def restore_long_term(self, mean, count):
        """The printer's long-term mean, saved from an earlier run."""
        with self._lock:
            if mean >= 0 and count >= 0:
                self._long_term = (float(mean), int(count))
                if self._decider is not None:
                    self._decider.set_long_term(*self._long_term)

    def long_term(self):
        with self._lock:
            if self._decider is not None:
                return self._decider.long_term()
            return self._long_term

    # ---- status ------------------------------------------------------------------

    def info(self):
        with self._lock:
            detector = self._detector
            info = {
                "state": self.state,
                "detail": self.detail,
                "camera": dict(self._camera_key[2]) if self._camera_key else None,
                "camera_error": self.camera_error,
                "camera_stats": self._camera.stats() if self._camera is not None else None,
                "helper_error": self.helper_error,
                "frames": self.frames,
                "detections_ok": self.detections_ok,
                "detection_errors": self.detection_errors,
                "frames_late": self.frames_late,
                "actions_taken": self.actions_taken,
                "bending_factor": self._bending_factor,
                "learned": self._learned.count(),
                "suppressed": self.suppressed,
                "last": self.last_result,
                "evidence": self._evidence[1] if self._evidence else None,
                "thresholds": {"low": THRESHOLD_LOW, "high": THRESHOLD_HIGH,
                               "pause_factor": PAUSE_FACTOR},
            }
        info["helper"] = detector.health() if detector is not None else None
        if info["helper"] is not None:
            info["helper"].pop("stderr_tail", None)
        return info

    def evidence_frame(self):
        """(jpeg, seq) of the frame that triggered this print's action, or None."""
        with self._lock:
            if self._evidence is None:
                return None
            return self._evidence[0], self._evidence[1]["seq"]

    def history_points(self):
        with self._lock:
            return list(self.history)

    def last_point(self):
        """The newest point of the score plot, or None (no copy of the rest)."""
        with self._lock:
            return self.history[-1] if self.history else None

    def _publish(self):
        try:
            self._host.publish(self.info())
        except Exception:
            self._logger.exception("[detect] could not publish an update")

    # ---- the loop ------------------------------------------------------------------

    def _run(self):
        while not self._stop.is_set():
            config = self._host.watch_config()
            interval = max(0.05, float(config["interval_s"]) * self._time_scale)
            started = time.monotonic()
            try:
                self._step(config, interval)
            except Exception:
                self._logger.exception("[detect] unexpected error; going on")
            left = interval - (time.monotonic() - started)
            if left > 0 and self._wake.wait(left):
                self._wake.clear()

    def _step(self, config, interval):
        camera = self._ensure_camera(config)
        if camera is None:
            return
        frame = self._grab(camera, interval)
        if frame is None:
            return
        jpeg, width, height, _ = frame
        # Our own frame number: a snapshot camera numbers every frame 1.
        self.frames += 1
        seq = self.frames
        self.latest = (jpeg, width, height, seq, time.monotonic())
        if self.camera_error is not None:
            self._logger.info("[camera] frames again from %s", self._camera_key[0])
        self._camera_failures = 0
        self._url_proven = True
        with self._lock:
            self.camera_error = None
            if self.state == STATE_ERROR and self.helper_error is None:
                self.state, self.detail = STATE_IDLE, ""
        for listener in list(self._frame_listeners):
            try:
                listener(jpeg, width, height, seq)
            except Exception:
                self._logger.exception("[detect] a frame listener failed")
        printing = self._host.is_printing()
        if not (config["enabled"] and printing):
            with self._lock:
                if self.state != STATE_PAUSED:
                    self.state = STATE_IDLE if config["enabled"] else STATE_DISABLED
                self.detail = "" if config["enabled"] else "detection is turned off in the settings"
            self._publish()
            return
        self._detect(config, jpeg, width, height, seq)

    def _learned_camera(self):
        """The camera's identity for what was learned: OctoPrint's webcam
        name (stable when its URL changes), else the URL."""
        key = self._camera_key
        if not key:
            return ""
        return str(key[2].get("name") or key[0])

    def _ensure_camera(self, config):
        camera_choice = config.get("camera")
        if not camera_choice:
            with self._lock:
                self.state = STATE_DISABLED
                self.detail = "no webcam is configured in OctoPrint"
                self._drop_camera()
            return None
        urls = tuple(camera_choice.get("urls") or (camera_choice["url"],))
        if urls != self._urls:
            self._urls, self._url_index, self._url_proven = urls, 0, False
        url = urls[self._url_index % len(urls)]
        key = (url, camera_choice["stream"], dict(camera_choice, url=url))
        if self._camera_key is None or self._camera_key[:2] != key[:2]:
            self._drop_camera()
            try:
                camera = bridge.new_camera(url, stream=camera_choice["stream"],
                                           ca_file=config.get("ca_file") or None)
            except bridge.GrabError as exc:
                self._camera_failed("the camera URL {} cannot be used: {}".format(url, exc))
                return None
            self._camera, self._camera_key = camera, key
            self._camera_failures = 0
            self._camera_retry_at = 0.0
        if time.monotonic() < self._camera_retry_at:
            return None
        return self._camera

    def _drop_camera(self):
        camera, self._camera, self._camera_key = self._camera, None, None
        if camera is not None:
            camera.close()

    def _camera_failed(self, message):
        if len(self._urls) > 1 and not self._url_proven:
            # A relative URL has more than one candidate (OctoPrint's own
            # port, then port 80): try the next one before backing off.
            self._url_index = (self._url_index + 1) % len(self._urls)
            if self._url_index != 0:
                self._logger.info("[camera] %s; trying %s", message, self._urls[self._url_index])
                return
        self._camera_failures += 1
        delay = min(CAMERA_RETRY_MAX_S, 2 ** min(self._camera_failures - 1, 6)) * self._time_scale
        self._camera_retry_at = time.monotonic() + delay
        changed = message != self.camera_error
        with self._lock:
            self.camera_error = message
            self.state = STATE_ERROR
            self.detail = message
        if changed:
            self._logger.warning("[camera] %s", message)
        self._publish()

    def _grab(self, camera, interval):
        wait_ms = int(interval * 1000) if self._camera_key[1] else 0
        try:
            # Stream: keep the connection for one interval, take the newest.
            return camera.grab(wait_ms=max(0, wait_ms - 50))
        except bridge.GrabError as exc:
            if self._stop.is_set():
                return None
            url = self._camera_key[0]
            self._camera_failed("no frame from {} ({}): {}".format(
                url, getattr(exc, "code", "error"), exc))
            return None

    def _detector_for(self, config):
        options = config.get("detector_options", {})
        key = (self._helper_path, config["model_config"], tuple(sorted(options.items())))
        if self._detector is None or self._detector_key != key:
            old, self._detector = self._detector, None
            if old is not None:
                old.stop()
            self._detector = bridge.new_detector(self._helper_path, config["model_config"],
                                                 **options)
            self._detector_key = key
        return self._detector

    def _decider_for(self, config):
        interval = min(3600.0, max(0.1, float(config["interval_s"])))
        sensitivity = float(config["sensitivity"])
        if self._decider is None:
            self._decider = bridge.new_decider(sensitivity=sensitivity,
                                               bending_factor=self._bending_factor,
                                               frame_interval_s=interval)
            if self._long_term is not None:
                self._decider.set_long_term(*self._long_term)
        else:
            self._decider.set_params(sensitivity=sensitivity, frame_interval_s=interval,
                                     bending_factor=self._bending_factor)
        return self._decider

    def _detect(self, config, jpeg, width, height, seq):
        if not config["model_config"]:
            with self._lock:
                self.state = STATE_ERROR
                self.detail = "no detection model is installed"
            self._publish()
            return
        try:
            detector = self._detector_for(config)
            reply = json.loads(detector.detect(jpeg))
        except bridge.HelperError as exc:
            code = getattr(exc, "code", "error")
            if code == "late":
                # The shared helper dropped this frame unscored (its turn
                # came too late, or a newer frame of ours replaced it).
                self.frames_late += 1
                return
            if code == "backoff" and self.helper_error:
                # Waiting to restart: keep showing why it failed.
                message = self.helper_error
                detail = "{} (restarting it: {})".format(message, exc)
            else:
                self.detection_errors += 1
                message = detail = "detection failed ({}): {}".format(code, exc)
                if message != self.helper_error:
                    self._logger.warning("[helper] %s", message)
            with self._lock:
                self.helper_error = message
                if self.state != STATE_PAUSED:
                    self.state = STATE_ERROR
                self.detail = detail
            self._publish()
            return
        except (ValueError, bridge.TsdError) as exc:
            self.detection_errors += 1
            self._logger.warning("[helper] unusable answer: %s", exc)
            return
        detections = [d for d in reply.get("detections", [])
                      if isinstance(d, dict) and 0 <= float(d.get("confidence", -1)) <= 1]
        camera = self._learned_camera()
        self._recent.append((camera, detections, width, height))
        detections, suppressed = self._learned.filter(camera, detections, width, height)
        with self._lock:
            self.suppressed += suppressed
            decider = self._decider_for(config)
            result = decider.add_frame([float(d["confidence"]) for d in detections])
            self.detections_ok += 1
            self.helper_error = None
            self.camera_error = None
            result.update({"seq": seq, "w": width, "h": height, "ms": reply.get("ms"),
                           "detections": detections, "time": time.time()})
            result.update(decision_gauge(result["short_mean"], result["long_mean"],
                                         result["adjusted"]))
            result["grace"] = result["frame"] <= decider.params()["grace_frames"]
            self.last_result = result
            self.history.append({
                "t": round(time.monotonic() - self._print_started, 2),
                "p": round(result["p"], 4), "ewm": round(result["ewm"], 4),
                "adjusted": round(result["adjusted"], 4), "verdict": result["verdict"],
                "np": round(result["normalized_p"], 4), "warn_at": round(result["warn_at"], 4),
                "pause_at": round(result["pause_at"], 4), "grace": result["grace"],
            })
            act = self._verdict(config, result)
            if act is not None and act != "warn":
                # Kept until the next print: why it acted, on screen.
                self._evidence = (jpeg, dict(result, action=act,
                                             t=self.history[-1]["t"]))
        if act is not None:
            self._act(act, config, result, jpeg)
        self._publish()

    def _verdict(self, config, result):
        """Called with the lock held: the new state, and the action to take
        (None, "warn" or the configured action), at most once per episode."""
        verdict = result["verdict"]
        episode = self._episode
        if self.state == STATE_PAUSED:
            return None  # never repeated while paused
        if verdict in ("pause", "warn") and time.monotonic() < self._quiet_until:
            self.state = STATE_WARNING
            self.detail = "the print may be failing (no action during the cooldown)"
            return None
        if verdict in ("pause", "warn"):
            episode.clear_frames = 0
        if verdict == "pause":
            episode.active = True
            if not episode.acted:
                episode.acted = True
                action = config["action"]
                self.state = STATE_FAILING if action == "notify" else STATE_PAUSED
                self.detail = "failure detected"
                return action
            if episode.judged:
                self.state = STATE_WARNING
                self.detail = "the failure is still seen; resumed from the server's app, not paused again"
            return None
        if verdict == "warn":
            if self.state != STATE_FAILING:
                self.state = STATE_WARNING
            self.detail = "the print may be failing"
            if not episode.warned and not episode.acted:
                episode.warned = True
                return "warn"
            return None
        if episode.judged and not result["grace"]:
            # The decider restarts its grace period after a pause, and its
            # rolling means take a while to rise again over the same failure:
            # only a long clear stretch says that the judged failure is gone.
            episode.clear_frames += 1
            if episode.clear_frames >= JUDGED_CLEAR_FRAMES:
                episode.reset()  # a failure seen from now on is a new episode
        if self.state in (STATE_WARNING, STATE_ERROR, STATE_IDLE, STATE_DISABLED):
            self.state = STATE_WATCHING
            self.detail = ""
        return None

    def _act(self, action, config, result, jpeg):
        summary = {
            "score": round(result["adjusted"], 3),
            "p": round(result["p"], 3),
            "detections": len(result["detections"]),
            "frame": result["frame"],
        }
        try:
            if action == "warn":
                self._host.failure_warning(summary, jpeg, result["detections"])
            else:
                self.actions_taken += 1
                self._logger.warning("[detect] failure detected (score %.3f): %s",
                                     result["adjusted"], action)
                self._host.failure_action(action, summary, jpeg, result["detections"])
        except Exception:
            self._logger.exception("[detect] the %s action failed", action)
