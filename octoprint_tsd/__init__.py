# SPDX-License-Identifier: AGPL-3.0-or-later
"""The Spaghetti Detective for OctoPrint: the plugin class (the shim).

The shim owns every OctoPrint call: mixins, settings, templates, printer
actions. The native core (``_tsd``, reached only through :mod:`.bridge`) owns
the network, parsing and queues and never calls into Python from its own
threads.
"""

import collections
import threading
import time

import flask
import octoprint.plugin
from octoprint.events import Events

from . import bridge

PLUGIN_IDENTIFIER = "tsd"
PLUGIN_NAME = "The Spaghetti Detective"
SETTINGS_VERSION = 1
DEFAULT_SERVER_URL = "https://app.obico.io"
ACTIONS = ("notify", "pause", "pause_heaters_off", "cancel")
STATE_HISTORY_MAX = 50

# Secret settings: never readable through the settings API. The token itself
# lives in a 0600 file in the plugin's data folder, not in config.yaml; this
# list is a guard against an older or hand-edited config.
SECRET_SETTING_PATHS = [["auth_token"], ["device_secret"]]


class TsdPlugin(
    octoprint.plugin.StartupPlugin,
    octoprint.plugin.ShutdownPlugin,
    octoprint.plugin.SettingsPlugin,
    octoprint.plugin.AssetPlugin,
    octoprint.plugin.TemplatePlugin,
    octoprint.plugin.SimpleApiPlugin,
    octoprint.plugin.EventHandlerPlugin,
):
    def __init__(self):
        super().__init__()
        self._status_lock = threading.Lock()
        self._printer_state = None
        self._state_history = collections.deque(maxlen=STATE_HISTORY_MAX)
        self._helper_status = {"available": False, "error": "not probed yet"}
        self._pump = None

    ##~~ life cycle

    def initialize(self):
        info = bridge.native_info()
        if info["loaded"]:
            self._logger.info(
                "[bridge] native module loaded: _tsd %s (%s)",
                info["version"],
                ", ".join("{} {}".format(k, v) for k, v in sorted(info["libraries"].items())),
            )
        else:
            self._logger.error(
                "[bridge] native module could not be loaded, the plugin is inactive: %s",
                info["error"],
            )

    def on_after_startup(self):
        if bridge.native_available():
            try:
                self._pump = bridge.EventPump(
                    bridge.new_event_queue(), self._on_native_event, self._logger
                )
                self._pump.start()
            except Exception:
                self._logger.exception("[bridge] could not start the event pump")
                self._pump = None
        # Probing runs a subprocess: keep it off OctoPrint's start-up path.
        thread = threading.Thread(target=self._probe_helper, name="tsd-helper-probe")
        thread.daemon = True
        thread.start()

    def on_shutdown(self):
        pump = self._pump
        if pump is not None:
            pump.stop()

    def _probe_helper(self):
        try:
            status = bridge.probe_helper()
        except Exception as exc:
            self._logger.exception("[helper] probe failed")
            status = {"available": False, "error": str(exc)}
        with self._status_lock:
            self._helper_status = status
        if status.get("available"):
            self._logger.info("[helper] available: %s", status.get("version"))
        else:
            self._logger.error("[helper] not available: %s", status.get("error"))

    def _on_native_event(self, event_type, payload):
        if event_type == bridge.EVENT_LOG:
            self._logger.info("%s", payload.decode("utf-8", "replace"))
        else:
            self._logger.debug("[bridge] unhandled native event type %d", event_type)

    ##~~ SettingsPlugin

    def get_settings_defaults(self):
        return {
            "server_url": DEFAULT_SERVER_URL,
            "allow_cleartext_lan": False,
            "ca_file": "",
            "webcam": "",
            "action": "pause",
            "sensitivity": 1.0,
            "frame_interval": 10,
        }

    def get_settings_version(self):
        return SETTINGS_VERSION

    def on_settings_migrate(self, target, current):
        if current is None or current < 1:
            # Before version 1 nothing but defaults existed; make sure no
            # secret from a hand-edited or foreign config stays readable.
            for path in SECRET_SETTING_PATHS:
                if self._settings.get(path) is not None:
                    self._logger.warning(
                        "[settings] removed a secret from config.yaml (%s); link the "
                        "printer again from the plugin's settings",
                        path[0],
                    )
                    self._settings.remove(path)

    def get_settings_restricted_paths(self):
        return {
            "never": SECRET_SETTING_PATHS,
            "admin": [["server_url"], ["allow_cleartext_lan"], ["ca_file"]],
        }

    def on_settings_save(self, data):
        data = dict(data)
        for path in SECRET_SETTING_PATHS:
            data.pop(path[0], None)
        if "action" in data and data["action"] not in ACTIONS:
            data.pop("action")
        if "sensitivity" in data:
            try:
                data["sensitivity"] = min(2.0, max(0.2, float(data["sensitivity"])))
            except (TypeError, ValueError):
                data.pop("sensitivity")
        if "frame_interval" in data:
            try:
                data["frame_interval"] = min(120, max(1, int(data["frame_interval"])))
            except (TypeError, ValueError):
                data.pop("frame_interval")
        return octoprint.plugin.SettingsPlugin.on_settings_save(self, data)

    ##~~ AssetPlugin / TemplatePlugin

    def get_assets(self):
        return {"js": ["js/tsd.js"], "css": ["css/tsd.css"]}

    def is_template_autoescaped(self):
        return True

    def get_template_configs(self):
        return [{"type": "settings", "name": PLUGIN_NAME, "custom_bindings": True}]

    ##~~ SimpleApiPlugin

    def get_api_commands(self):
        return {}

    def is_api_protected(self):
        return True

    def on_api_get(self, request):
        from octoprint.access.permissions import Permissions

        if not Permissions.STATUS.can():
            flask.abort(403)
        return flask.jsonify(self.get_status())

    def get_status(self):
        with self._status_lock:
            helper = dict(self._helper_status)
            printer_state = self._printer_state
            history = list(self._state_history)
        pump = self._pump
        return {
            "plugin_version": self._plugin_version,
            "native": bridge.native_info(),
            "helper": helper,
            "event_queue": pump.queue.stats() if pump is not None else None,
            "printer": {"state": printer_state, "history": history},
        }

    ##~~ EventHandlerPlugin

    def on_event(self, event, payload):
        if event != Events.PRINTER_STATE_CHANGED:
            return
        payload = payload or {}
        state = payload.get("state_id")
        with self._status_lock:
            self._printer_state = state
            self._state_history.append(
                {"state": state, "text": payload.get("state_string"), "time": time.time()}
            )

    ##~~ Software update hook

    def get_update_information(self):
        return {
            PLUGIN_IDENTIFIER: {
                "displayName": PLUGIN_NAME,
                "displayVersion": self._plugin_version,
                "type": "github_release",
                "user": "thespaghettidetective",
                "repo": "octoprint-tsd",
                "current": self._plugin_version,
                "pip": "https://github.com/thespaghettidetective/octoprint-tsd/archive/{target_version}.zip",
            }
        }


__plugin_name__ = PLUGIN_NAME
__plugin_identifier__ = PLUGIN_IDENTIFIER
__plugin_description__ = (
    "Watches the print through the webcam, detects failures on the printer's own "
    "computer, and pauses or cancels the print."
)
__plugin_license__ = "AGPL-3.0-or-later"
__plugin_pythoncompat__ = ">=3.9,<4"


def __plugin_load__():
    global __plugin_implementation__
    __plugin_implementation__ = TsdPlugin()

    global __plugin_hooks__
    __plugin_hooks__ = {
        "octoprint.plugin.softwareupdate.check_config": __plugin_implementation__.get_update_information,
    }
