# SPDX-License-Identifier: AGPL-3.0-or-later
"""Failure detection as the plugin wires it: the watcher (watch.py) and the
uploader (upload.py), the camera and settings they read, what happens when a
failure is seen, and the long-term statistics kept across restarts.

:class:`Detection` is the watcher's ``host``. Every OctoPrint call it makes
goes through the plugin's injected objects (``_printer``, ``_settings``,
``_plugin_manager``).
"""

import json
import os
import threading
import time

from . import bridge, farm
from .learned import LearnedError, LearnedScene, write_json_file
from .settings import ACTIONS
from .upload import Uploader
from .watch import Watcher, pick_webcam, resolve_webcam_url, webcam_choices

WEBCAM_CACHE_SECONDS = 30.0
DETECT_STATE_FILE = "detect-state.json"
LEARNED_FILE = "tsd-learned.json"   # what "looks fine" taught (learned.py)


class Detection:
    def __init__(self, plugin):
        self._plugin = plugin
        self.watcher = None
        self.uploader = None
        self._state_save_error = None  # why the long-term statistics were not saved
        self._learned = None
        self._webcams = (0.0, [])

    # ---- life cycle ----

    def start(self):
        plugin = self._plugin
        self.uploader = Uploader(plugin.post_to_server, self.is_printing,
                                 lambda: self.watcher.wake(), self._plugin._logger)
        self._learned = learned = LearnedScene(os.path.join(plugin.get_plugin_data_folder(), LEARNED_FILE))
        try:
            learned.load()
        except LearnedError as exc:
            self._plugin._logger.warning("[detect] starting with nothing learned on this printer: %s", exc)
        self.watcher = Watcher(self, self._plugin._logger, learned=learned)
        self.watcher.add_frame_listener(self.uploader.on_frame)
        self._load_state()
        self.watcher.start()
        self.uploader.start()

    def stop(self):
        for worker in (self.uploader, self.watcher):
            if worker is not None:
                worker.stop()
        self._save_state()

    def forget_webcams(self):
        self._webcams = (0.0, [])  # a webcam may have changed

    def wake(self):
        if self.watcher is not None:
            self.watcher.wake()

    def on_print_event(self, event, ended):
        """OctoPrint's print events, for the watcher's episodes."""
        from octoprint.events import Events

        watcher = self.watcher
        if watcher is None:
            return
        if event == Events.PRINT_STARTED:
            watcher.on_print_started()
            if self.save_error is not None:
                self._save_state()  # the disk may have room again
        elif event == Events.PRINT_RESUMED:
            watcher.on_print_resumed()
        elif ended:
            watcher.on_print_ended()
            self._save_state()

    def on_owner_resumed(self):
        if self.watcher is not None:
            self.watcher.owner_resumed()

    def on_remote_status(self, viewing, should_watch):
        if self.uploader is not None:
            self.uploader.set_remote_status(viewing, should_watch)

    # ---- the watcher's host ----

    def webcams(self):
        """OctoPrint's configured webcams (cached for a few seconds)."""
        fetched, choices = self._webcams
        if time.monotonic() - fetched < WEBCAM_CACHE_SECONDS and choices:
            return choices
        try:
            from octoprint.webcams import get_webcams

            choices = webcam_choices(get_webcams(plugin_manager=self._plugin._plugin_manager).values())
        except Exception as exc:  # OctoPrint before 1.9, or a broken provider
            self._plugin._logger.warning("[camera] could not list OctoPrint's webcams: %s", exc)
            choices = []
        self._webcams = (time.monotonic(), choices)
        return choices

    def server_webcams(self):
        """OctoPrint's webcams as the server's settings block lists them;
        the one detection watches is the primary camera. The plugin streams
        no video (no Janus): each is reported with stream_mode "disabled"."""
        choices = self.webcams()
        chosen = pick_webcam(choices, self._plugin._settings.get(["webcam"]))
        return [{"name": choice["display_name"], "is_primary_camera": choice is chosen,
                 "stream_mode": "disabled", "flipV": choice["flip_v"], "flipH": choice["flip_h"],
                 "rotation": 90 if choice["rotate90"] else 0, "streamRatio": choice["ratio"]}
                for choice in choices]

    def watch_config(self):
        """What the watcher needs now (called on its thread each frame)."""
        settings = self._plugin._settings
        chosen = pick_webcam(self.webcams(), settings.get(["webcam"]))
        camera = None
        if chosen is not None:
            url = chosen["snapshot"] or chosen["stream"]
            candidates = resolve_webcam_url(url, self._plugin._octoprint_port)
            if candidates:
                camera = {"name": chosen["name"], "display_name": chosen["display_name"],
                          "url": candidates[0], "urls": candidates,
                          "stream": not chosen["snapshot"]}
        model_config = settings.get(["model_config"]) or bridge.default_model_config()
        return {
            "camera": camera,
            "ca_file": settings.get(["webcam_ca_file"]) or None,
            "interval_s": settings.get_int(["frame_interval"]) or 10,
            "action": settings.get(["action"]) if settings.get(["action"]) in ACTIONS else "pause",
            "sensitivity": settings.get_float(["sensitivity"]) or 1.0,
            "model_config": model_config,
            "enabled": bool(settings.get_boolean(["detection_enabled"])),
            "detector_options": farm.detector_options(settings.get_boolean(["shared_helper"]),
                                                      logger=self._plugin._logger),
        }

    def is_printing(self):
        printer = self._plugin._printer
        return bool(printer is not None and printer.is_printing())

    def failure_action(self, action, summary, jpeg, detections):
        """A failure episode began: carry out the user's action once."""
        plugin = self._plugin
        printer = plugin._printer
        text = "The Spaghetti Detective sees a possible failure (score {score}).".format(**summary)
        if action in ("pause", "pause_heaters_off") and printer.is_printing():
            heaters_off = action == "pause_heaters_off"
            plugin.plan_and_pause("for a detected failure", self._plugin._logger.warning, retract=6.5,
                                  lift_z=2.5, tools_off=heaters_off, bed_off=heaters_off)
            text += " The print was paused{}.".format(" and the heaters turned off" if heaters_off else "")
        elif action == "cancel" and printer.is_printing():
            self._plugin._logger.warning("[detect] cancelling the print")
            printer.cancel_print()
            text += " The print was cancelled."
        else:
            text += " Nothing was done (action: notify only)."
        self._notify("failure", "Possible print failure", text, jpeg, detections, summary)

    def failure_warning(self, summary, jpeg, detections):
        text = "The print may be failing (score {score}); still watching.".format(**summary)
        self._notify("warning", "Print may be failing", text, jpeg, detections, summary)

    def detect_info(self, info=None):
        """The watcher's info (or info, just taken) and why a file is behind."""
        return dict(self.watcher.info() if info is None else info, save_error=self.save_error)

    def publish(self, info):
        plugin = self._plugin
        uploader = self.uploader
        plugin._plugin_manager.send_plugin_message(plugin._identifier, {
            "type": "detect", "detect": self.detect_info(info),
            "point": self.watcher.last_point() if self.watcher is not None else None,
            "upload": uploader.info() if uploader is not None else None,
        })

    def _notify(self, kind, title, text, jpeg, detections, summary):
        plugin = self._plugin
        plugin._plugin_manager.send_plugin_message(
            plugin._identifier, {"type": "alert", "kind": kind, "title": title, "text": text})
        if plugin.remote() is None:
            return  # local-only: the toast is the notification
        if kind == "failure":
            # The server's own AI failure alert: with no event_class and
            # event_title it fills in "Possible Failure Detected" (ERROR) and
            # its app lists it with the frame. No notification reaches the
            # owner's channels for it; the PAUSED print event of our pause does.
            fields = {"event_type": "FAILURE_ALERTED", "event_text": text}
        else:
            fields = {"event_title": title, "event_text": text, "event_class": "WARNING",
                      "event_type": "PRINTER_ERROR", "notify": "true"}
        try:
            snapshot = bridge.annotate_jpeg(jpeg, detections)
        except Exception as exc:
            self._plugin._logger.warning("[detect] could not draw the boxes on the frame: %s", exc)
            snapshot = jpeg

        def post():
            try:
                status = plugin.post_to_server("/api/v1/octo/printer_events/", fields,
                                               {"snapshot": ("snapshot.jpg", snapshot, "image/jpeg")})
                if status is not None and not 200 <= status < 300:
                    self._plugin._logger.warning("[detect] the server refused the event: HTTP %s", status)
            except Exception as exc:
                self._plugin._logger.warning("[detect] could not post the event to the server: %s", exc)

        thread = threading.Thread(target=post, name="tsd-event-post")
        thread.daemon = True
        thread.start()

    # ---- the long-term statistics (detect-state.json) ----

    def _state_path(self):
        return os.path.join(self._plugin.get_plugin_data_folder(), DETECT_STATE_FILE)

    def _load_state(self):
        try:
            with open(self._state_path(), encoding="utf-8") as handle:
                state = json.load(handle)
            self.watcher.restore_long_term(float(state["long_mean"]), int(state["long_count"]))
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self._plugin._logger.warning("[detect] ignoring an unreadable %s: %s", DETECT_STATE_FILE, exc)

    @property
    def save_error(self):
        """Why detect-state.json or what was learned is behind (a save
        failed: a full disk), or None."""
        errors = [self._state_save_error, self._learned.save_error() if self._learned else None]
        return "; ".join(e for e in errors if e) or None

    def _save_state(self):
        """Saves the long-term statistics (and what was learned, where behind);
        the tab hears when that changes what is behind."""
        behind = self.save_error
        self._save_files()
        if self.save_error != behind and self.watcher is not None:
            self.publish(self.watcher.info())

    def _save_files(self):
        watcher = self.watcher
        if watcher is not None and watcher.long_term() is not None:
            mean, count = watcher.long_term()
            try:
                write_json_file(self._state_path(), {"long_mean": mean, "long_count": count})
            except OSError as exc:
                # The file keeps what it had; the status says why it is behind.
                self._state_save_error = "could not save {}: {}".format(DETECT_STATE_FILE, exc)
                self._plugin._logger.warning("[detect] %s", self._state_save_error)
            else:
                self._state_save_error = None
        self._save_learned_if_behind()

    def _save_learned_if_behind(self):
        """Saves what was learned again where its last save failed."""
        if self._learned is None or self._learned.save_error() is None:
            return
        still = self._learned.save_if_behind()
        if still:
            self._plugin._logger.warning("[detect] %s (what was learned is still in use)", still)
        else:
            self._plugin._logger.info("[detect] saved what was learned, which an earlier save could not")
