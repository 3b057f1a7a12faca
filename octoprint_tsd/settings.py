# SPDX-License-Identifier: AGPL-3.0-or-later
"""The plugin's settings: defaults, who may read which, migration and the
checks on a save (the SettingsPlugin mixin calls these)."""

from .remote import HEATER_LIMIT_SETTINGS

SETTINGS_VERSION = 1
DEFAULT_SERVER_URL = "https://app.obico.io"
ACTIONS = ("notify", "pause", "pause_heaters_off", "cancel")
# What each action does when a failure is detected (the UI shows these).
ACTION_LABELS = {
    "notify": "Notify only",
    "pause": "Pause the print",
    "pause_heaters_off": "Pause and turn the heaters off",
    "cancel": "Cancel the print",
}

# Secret settings: never readable through the settings API. The token itself
# lives in a 0600 file in the plugin's data folder, not in config.yaml; this
# list is a guard against an older or hand-edited config.
SECRET_SETTING_PATHS = [["auth_token"], ["device_secret"]]
# Only OctoPrint admins read or change where the printer connects and what
# the server may send it.
ADMIN_SETTING_PATHS = [["server_url"], ["allow_cleartext_lan"], ["ca_file"], ["allow_raw_gcode"],
                       ["remote_access"],
                       ["webcam_ca_file"], ["model_config"], ["max_tool_temp"], ["max_bed_temp"],
                       ["max_chamber_temp"], ["cloud_print_max_mb"], ["cloud_print_free_margin_mb"],
                       ["remote_calls"], ["shared_helper"]]


def defaults():
    return {
        "server_url": DEFAULT_SERVER_URL,
        "allow_cleartext_lan": False,
        "ca_file": "",
        "webcam": "",
        "webcam_ca_file": "",
        "action": "pause",
        "sensitivity": 1.0,
        "frame_interval": 10,
        "detection_enabled": True,
        "model_config": "",
        # One tsd-helper for the instances of this host's user (farm.py);
        # $TSD_SHARED_HELPER, where set, decides instead. No switch in the
        # UI: a farm file or config.yaml sets it.
        "shared_helper": False,
        "allow_raw_gcode": False,
        # OctoPrint remote access through the server (http.tunnelv2): on, as
        # users of the original plugin expect; remote_access.py says when it
        # is refused anyway.
        "remote_access": True,
        # Remote heater limits in °C; None: the fixed ceilings (proto.h).
        # OctoPrint's printer profiles carry no maximum temperature.
        "max_tool_temp": None,
        "max_bed_temp": None,
        "max_chamber_temp": None,
        # Print from the app: the largest file downloaded, and the space
        # always left free in OctoPrint's upload folder (cloudprint.py).
        "cloud_print_max_mb": 500,
        "cloud_print_free_margin_mb": 100,
        # The server's passthru calls this printer answers (remote.py); None:
        # all that the allow-list knows. A farm file sets it (farm.py).
        "remote_calls": None,
    }


def restricted_paths():
    return {"never": SECRET_SETTING_PATHS, "admin": ADMIN_SETTING_PATHS}


def migrate(settings, logger, current):
    """Brings config.yaml from settings version ``current`` to this one."""
    if current is None or current < 1:
        # Before version 1 nothing but defaults existed; make sure no
        # secret from a hand-edited or foreign config stays readable.
        for path in SECRET_SETTING_PATHS:
            if settings.get(path) is not None:
                logger.warning(
                    "[settings] removed a secret from config.yaml (%s); link the "
                    "printer again from the plugin's settings",
                    path[0],
                )
                settings.remove(path)


def checked(data):
    """What may be saved of a settings save: no secret, known actions, and
    numbers clamped to their ranges (a value that is no number is dropped)."""
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
    for key, low, high in (("cloud_print_max_mb", 1, 1024 * 1024),
                           ("cloud_print_free_margin_mb", 0, 1024 * 1024)):
        if key in data:
            try:
                data[key] = min(high, max(low, int(data[key])))
            except (TypeError, ValueError):
                data.pop(key)
    for key in HEATER_LIMIT_SETTINGS:  # None: the fixed ceilings
        if key in data:
            try:
                data[key] = None if data[key] in (None, "") else max(0.0, float(data[key]))
            except (TypeError, ValueError):
                data.pop(key)
    if "remote_calls" in data:
        calls = data["remote_calls"]
        if calls is not None and not (isinstance(calls, list) and all(isinstance(c, str) for c in calls)):
            data.pop("remote_calls")
    return data
