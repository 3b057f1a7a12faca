# SPDX-License-Identifier: AGPL-3.0-or-later
"""The status documents: what the plugin reports about itself (the status
API, the settings page, the tab), one per permission tier. Neither holds the
token or the discovery secret; what only an admin may read (the one-time
passcode, discovery, where the printer is linked) is in the admin document
only, which only an admin-checked path builds."""

import collections
import threading
import time

from . import bridge
from .settings import ACTION_LABELS

STATE_HISTORY_MAX = 50


class Observed:
    """What the plugin saw happen: the printer's state changes (a bounded
    history) and the helper probe's answer. OctoPrint's event thread and the
    probe thread write; request threads read."""

    def __init__(self):
        self._lock = threading.Lock()
        self._printer_state = None
        self._state_history = collections.deque(maxlen=STATE_HISTORY_MAX)
        self._helper_status = {"available": False, "error": "not probed yet"}

    def printer_state_changed(self, payload):
        payload = payload or {}
        state = payload.get("state_id")
        with self._lock:
            self._printer_state = state
            self._state_history.append(
                {"state": state, "text": payload.get("state_string"), "time": time.time()}
            )

    def helper_probed(self, status):
        with self._lock:
            self._helper_status = status

    def snapshot(self, printer):
        """(printer state, its history, helper status)."""
        with self._lock:
            helper = dict(self._helper_status)
            printer_state = self._printer_state
            history = list(self._state_history)
        if printer_state is None and printer is not None:
            try:  # before the first state change event
                printer_state = printer.get_state_id()
            except Exception:
                printer_state = None
        return printer_state, history, helper


def viewer_document(plugin):
    """For anyone with OctoPrint's STATUS permission. It is built without
    reading any secret or admin-only state: no discovery window, no one-time
    passcode, not where or as what the printer is linked, no link detail."""
    printer_state, history, helper = plugin._observed.snapshot(plugin._printer)
    detection = plugin._detection
    event_queue = plugin._event_queue
    return {
        "plugin_version": plugin._plugin_version,
        "native": bridge.native_info(),
        "helper": helper,
        "event_queue": event_queue.stats() if plugin._pump is not None else None,
        "printer": {"state": printer_state, "history": history},
        "link": {"linked": bool(plugin._linking.info.get("linked")),
                 "refused": bool(plugin._linking.info.get("refused"))},
        "detect": detection.detect_info() if detection.watcher is not None else None,
        "upload": detection.uploader.info() if detection.uploader is not None else None,
        "webcams": detection.webcams() if detection.watcher is not None else [],
        "actions": ACTION_LABELS,
        "remote": {"state": plugin._linking.status()["state"]},
        # Print from the app: the download in progress and how the last ended.
        "cloud_print": (plugin._linking.remote.cloud_print.info()
                        if plugin._linking.remote is not None else None),
        # Which settings the farm file manages (read-only in the UI).
        "farm": plugin._farm.info(),
    }


def admin_document(plugin):
    """For OctoPrint admins only: the caller checks ADMIN first. The link's
    details (server, printer name, why it is not linked), the server link's
    state in full, and discovery with the one-time passcode. Never the token
    or the discovery secret."""
    return {
        "link": dict(plugin._linking.info),
        "remote": plugin._linking.status(),
        "discovery": plugin.discovery().status() if bridge.native_available() else None,
        # The farm file's values (the server URL among them) and why a file
        # was refused: admins only.
        "farm": dict(plugin._farm.info(), error=plugin._farm.error,
                     settings=plugin._farm.managed, places=plugin._farm.places),
    }
