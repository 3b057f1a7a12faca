# SPDX-License-Identifier: AGPL-3.0-or-later
"""The print farm's provisioning file: one YAML file sets the plugin's
settings for every OctoPrint instance of a farm, with overrides per instance.

The file is read and checked in C (``native/core/farm.c``, through
:func:`bridge.farm_load`): every key known, every value in range, no token.
A bad file is refused whole with its line and column, and nothing changes.
This module only finds the file and the instance's name, compares and saves
settings, and keeps the settings the file sets from being changed elsewhere.

Where the file is: ``$TSD_FARM_FILE`` when set (then it must exist), else
``/etc/octoprint-tsd/farm.yaml`` when it exists. The instance's name (the key
of its overrides under ``printers:``): ``$TSD_INSTANCE_NAME`` when set, else
OctoPrint's own name for itself (Settings > Appearance > Title,
``appearance.name`` in config.yaml), else none: only the farm-wide settings.

One detector per host: with ``shared_helper: true`` under ``detection:`` in
the farm file, or ``$TSD_SHARED_HELPER`` set (which decides where both are),
the instances of one user share one tsd-helper through tsd-helper-shared
(README, "One detector per host"); else each instance runs its own.
"""

import os

from . import bridge

FARM_FILE_ENV = "TSD_FARM_FILE"
DEFAULT_FARM_FILE = "/etc/octoprint-tsd/farm.yaml"
INSTANCE_ENV = "TSD_INSTANCE_NAME"
SHARED_HELPER_ENV = "TSD_SHARED_HELPER"
SHARED_HELPER_SUBDIR = "octoprint-tsd"


class FarmError(Exception):
    """A farm file that is refused: the message names the file, the field,
    its line and column."""


def farm_path(environ=None):
    """(path, explicit): the file to look up, and whether the environment
    named it (an explicit file must exist; the default one may not)."""
    environ = os.environ if environ is None else environ
    named = environ.get(FARM_FILE_ENV)
    if named:
        return named, True
    return DEFAULT_FARM_FILE, False


def instance_name(octoprint_get, environ=None):
    """This instance's name in the farm file; octoprint_get reads one of
    OctoPrint's own settings by path."""
    environ = os.environ if environ is None else environ
    name = environ.get(INSTANCE_ENV) or octoprint_get(["appearance", "name"]) or ""
    return name.strip() or None


def load(path, instance):
    """{"settings", "places", "printers", "instance_known"} for the instance
    (bridge.farm_load), or FarmError."""
    if not bridge.native_available():
        raise FarmError("the native module is not loaded: {}".format(bridge.NATIVE_IMPORT_ERROR))
    try:
        return bridge.farm_load(path, instance)
    except (ValueError, OSError) as exc:
        raise FarmError(str(exc)) from None


def changes(plugin_settings, wanted):
    """[(setting, now, then)] for the settings the file would change."""
    found = []
    for key in sorted(wanted):
        now = plugin_settings.get([key])
        if now != wanted[key]:
            found.append((key, now, wanted[key]))
    return found


def save(plugin_settings, found):
    for key, _, then in found:
        plugin_settings.set([key], then)
    if found:
        plugin_settings.save()


class Farm:
    """What the farm file found at start manages for this plugin."""

    def __init__(self, plugin):
        self._plugin = plugin
        self.file = None
        self.managed = {}  # setting -> value
        self.places = {}   # setting -> "section.key, line L column C"
        self.instance = None
        self.error = None

    def load_at_start(self, environ=None):
        """Applies the file (if there is one) to the settings, and remembers
        what it manages. A refused file changes nothing and manages nothing."""
        plugin = self._plugin
        logger = plugin._logger
        path, explicit = farm_path(environ)
        self.instance = instance_name(plugin._settings.global_get, environ)
        if not explicit and not os.path.exists(path):
            return
        try:
            document = load(path, self.instance)
        except FarmError as exc:
            self.error = str(exc)
            logger.error("[farm] the farm file was refused, no setting changed: %s", exc)
            return
        found = changes(plugin._settings, document["settings"])
        save(plugin._settings, found)
        for key, now, then in found:
            logger.info("[farm] %s: %r -> %r (%s)", key, now, then, path)
        if self.instance and not document["instance_known"]:
            logger.info("[farm] %s has no overrides for %r: the farm's settings apply",
                        path, self.instance)
        self.file = path
        self.managed = dict(document["settings"])
        self.places = dict(document["places"])
        logger.info("[farm] %d settings managed by %s (instance %r)", len(self.managed), path,
                    self.instance)

    def info(self):
        return {"file": self.file, "managed": sorted(self.managed), "instance": self.instance}

    def refuse_managed(self, data):
        """A settings save without the settings the farm file manages: they
        change only in the file. Each refused change is logged."""
        data = dict(data)
        for key in self.managed:
            if key in data:
                value = data.pop(key)
                if value != self.managed[key]:
                    self._plugin._logger.warning(
                        "[farm] not saved: %s is managed by %s", key, self.file)
        return data

    def check_server_url(self, server_url):
        """FarmError when a link asks for another server than the managed one."""
        managed = self.managed.get("server_url")
        if managed is not None and server_url and server_url != managed:
            raise FarmError("the server URL is managed by {}: {}".format(self.file, managed))


def shared_helper_dir(shared=False, environ=None):
    """The folder of the shared helper's socket, or None (a helper of this
    instance's own). ``$TSD_SHARED_HELPER``, where set and not empty,
    decides: ``0``: none; ``1``: ``$XDG_RUNTIME_DIR/octoprint-tsd``, or
    ``/tmp/octoprint-tsd-<uid>`` without XDG_RUNTIME_DIR; an absolute path:
    that folder. Else shared (the ``shared_helper`` setting, which a farm
    file sets) as ``1`` or ``0``. The native side creates the folder 0700
    and refuses one that is not this user's alone."""
    environ = os.environ if environ is None else environ
    value = (environ.get(SHARED_HELPER_ENV) or "").strip() or ("1" if shared else "0")
    if value == "0":
        return None
    if value == "1":
        runtime = environ.get("XDG_RUNTIME_DIR")
        if runtime and os.path.isabs(runtime):
            return os.path.join(runtime, SHARED_HELPER_SUBDIR)
        return "/tmp/{}-{}".format(SHARED_HELPER_SUBDIR, os.geteuid())
    if not os.path.isabs(value):
        raise FarmError("{} must be 1, 0 or an absolute folder, not {!r}".format(
            SHARED_HELPER_ENV, value))
    return os.path.normpath(value)


def detector_options(shared=False, environ=None, logger=None):
    """The ``_tsd.Detector`` options of the shared helper, or {} (a helper of
    this instance's own, also when the variable is unusable: then logged);
    shared: the ``shared_helper`` setting."""
    try:
        folder = shared_helper_dir(shared, environ)
    except FarmError as exc:
        if logger is not None:
            logger.error("[farm] %s; this instance runs its own helper", exc)
        return {}
    return {"shared_dir": folder} if folder else {}
