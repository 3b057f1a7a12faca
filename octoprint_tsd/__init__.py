# SPDX-License-Identifier: AGPL-3.0-or-later
"""The Spaghetti Detective for OctoPrint: the plugin class (the shim).

The shim owns every OctoPrint call. This class only wires OctoPrint's mixins
to the modules that do the work:

  settings.py          defaults, restricted paths, migration, checks on save
  api.py               the REST API, one function per permission tier
  status.py            the status document
  discovery_routes.py  the discovery pages of the blueprint
  linking.py           the stored token, the server link, link and unlink
  detection.py         the watcher and uploader, failure actions
  farm.py              the farm provisioning file: settings it manages
  cli.py               ``octoprint plugins tsd:…``

The native core (``_tsd``, reached only through :mod:`.bridge`) owns the
network, parsing and queues and never calls into Python from its own
threads.
"""

import threading

import octoprint.plugin
from octoprint.events import Events

from . import api, bridge, discovery_routes, remote_access, settings
from .cli import cli_commands
from .detection import Detection
from .discovery import Discovery
from .farm import Farm, FarmError
from .link import LinkError
from .linking import Linking
from .layers import PrintLayers
from .pause import PauseSequence
from .settings import DEFAULT_SERVER_URL, SETTINGS_VERSION
from .status import Observed

PLUGIN_IDENTIFIER = "tsd"
PLUGIN_NAME = "The Spaghetti Detective"
# The distribution on the package index (pyproject.toml), which the
# software update checks and installs.
DISTRIBUTION_NAME = "OctoPrint-TSD"
PRINT_ENDED = (Events.PRINT_DONE, Events.PRINT_FAILED, Events.PRINT_CANCELLED)


class TsdPlugin(
    octoprint.plugin.StartupPlugin,
    octoprint.plugin.ShutdownPlugin,
    octoprint.plugin.SettingsPlugin,
    octoprint.plugin.AssetPlugin,
    octoprint.plugin.TemplatePlugin,
    octoprint.plugin.SimpleApiPlugin,
    octoprint.plugin.EventHandlerPlugin,
    octoprint.plugin.BlueprintPlugin,
    octoprint.plugin.WizardPlugin,
):
    def __init__(self):
        super().__init__()
        self._observed = Observed()
        self._pump = None
        self._event_queue = None
        self._pause_sequence = None
        self._print_layers = None  # layers.PrintLayers, from initialize()
        self._shutting_down = threading.Event()
        self._octoprint_port = None
        self._linking = Linking(self)
        self._detection = Detection(self)
        self._discovery = None  # discovery.Discovery, while unlinked
        self._farm = Farm(self)

    ##~~ life cycle

    def initialize(self):
        self._pause_sequence = PauseSequence(self._logger)
        self._print_layers = PrintLayers(self._logger, self._file_manager)
        # Before anything reads the settings: the farm file sets them.
        self._farm.load_at_start()
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

    def on_startup(self, host, port):
        self._octoprint_port = port

    def on_after_startup(self):
        if bridge.native_available():
            try:
                queue = bridge.new_event_queue()
                self._event_queue = queue
                self._pump = bridge.EventPump(queue.pop, queue.close, self._on_native_event,
                                              self._logger)
                self._pump.start()
            except Exception:
                self._logger.exception("[bridge] could not start the event pump")
                self._pump = None
        if bridge.native_available():
            self._detection.start()
            self._linking.remember_token_file()
            self.start_remote()
            # Unlinked: announce on the LAN for the bounded window (discovery.py).
            self.discovery().start_window("OctoPrint started")
            watcher = threading.Thread(target=self._linking.watch_token_file,
                                       args=(self._shutting_down,), name="tsd-token-watch")
            watcher.daemon = True
            watcher.start()
        # Probing runs a subprocess: keep it off OctoPrint's start-up path.
        thread = threading.Thread(target=self._probe_helper, name="tsd-helper-probe")
        thread.daemon = True
        thread.start()

    def on_shutdown(self):
        self._shutting_down.set()
        self._detection.stop()
        if self._discovery is not None:
            self._discovery.stop()
        self._linking.close()
        pump = self._pump
        if pump is not None:
            pump.stop()
        self._logger.info("[shutdown] stopped: camera, helper, uploads and server link closed")

    def _probe_helper(self):
        try:
            status = bridge.probe_helper()
        except Exception as exc:
            self._logger.exception("[helper] probe failed")
            status = {"available": False, "error": str(exc)}
        self._observed.helper_probed(status)
        if status.get("available"):
            self._logger.info("[helper] available: %s", status.get("version"))
        else:
            self._logger.error("[helper] not available: %s", status.get("error"))

    def _on_native_event(self, event_type, payload):
        if event_type == bridge.EVENT_LOG:
            self._logger.info("%s", payload.decode("utf-8", "replace"))
        else:
            self._logger.debug("[bridge] unhandled native event type %d", event_type)

    ##~~ the server link (linking.py, remote.py)

    def token_folder(self):
        return self._linking.folder()

    def start_remote(self):
        return self._linking.start()

    def stop_remote(self):
        self._linking.stop()

    def remote(self):
        """The running server link, or None."""
        return self._linking.remote

    def link_with_code(self, code, server_url=None, reconnect=True):
        try:
            self._farm.check_server_url(server_url)
        except FarmError as exc:
            raise LinkError("managed", str(exc)) from None
        return self._linking.link_with_code(code, server_url, reconnect)

    def unlink(self):
        return self._linking.unlink()

    def post_to_server(self, path, data, files):
        remote = self._linking.remote
        if remote is None:
            return None
        return remote.post_form(path, data, files)

    # Called by remote.Remote:

    def on_remote_state(self, state, detail):
        self._linking.on_remote_state(state, detail)
        if state in ("unauthorized", "replaced"):
            self._plugin_manager.send_plugin_message(
                self._identifier, {"type": "remote_state", "state": state, "detail": detail}
            )

    def on_remote_status(self, viewing, should_watch):
        self._detection.on_remote_status(viewing, should_watch)

    def on_cloud_print_progress(self, info):
        self._plugin_manager.send_plugin_message(self._identifier, {"type": "cloud_print", "cloud_print": info})

    def on_cloud_print_failed(self, filename, error):
        """A download from the app failed after its call was answered: the
        web UI says so (the log already has it)."""
        self._plugin_manager.send_plugin_message(
            self._identifier, {"type": "cloud_print_failed", "filename": filename, "error": error})

    def on_remote_resume(self):
        """The server's resume: the owner has seen the print and resumed it."""
        self._detection.on_owner_resumed()

    def remote_pause(self, action):
        """A validated pause from the server."""
        printer = self._printer
        if not (printer.is_printing() or printer.is_pausing()):
            self._logger.info("[proto] pause requested by the server, but nothing is printing")
            return
        self.plan_and_pause("for the server ({})".format(action["initiator"]), self._logger.info,
                            retract=action["retract"], lift_z=action["lift_z"],
                            tools_off=action["tools_off"], bed_off=action["bed_off"],
                            extra_notes=action.get("warnings", []))

    def plan_and_pause(self, reason, log, retract, lift_z, tools_off, bed_off, extra_notes=()):
        """Plans the pause G-code (bounded locally: pause.py), logs it, then
        lets OctoPrint pause (its state machine and the user's scripts run).
        Used by the server's pause and by a detected failure."""
        printer = self._printer
        data = printer.get_current_data() or {}
        plan = self._pause_sequence.plan(
            retract=retract,
            lift_z=lift_z,
            tools_off=tools_off,
            bed_off=bed_off,
            temperatures=printer.get_current_temperatures() or {},
            current_z=data.get("currentZ"),
            z_max=float(self.current_printer_profile().get("volume", {}).get("height") or 0),
        )
        for note in list(plan["notes"]) + list(extra_notes):
            self._logger.warning("[pause] %s", note)
        log("[pause] pausing %s: %s", reason, "; ".join(plan["pause"]) or "no extra G-code")
        printer.pause_print()

    def current_printer_profile(self):
        try:
            return self._printer_profile_manager.get_current_or_default() or {}
        except Exception:
            return {}

    def agent_version(self):
        # The server enables features by the OctoPrint-Obico protocol level it
        # sees; we speak that level's wire format.
        return "2.6.1"

    ##~~ discovery and OTP (discovery.py, discovery_routes.py)

    def discovery(self):
        if self._discovery is None:
            self._discovery = Discovery(lambda: discovery_routes.config(self), self.link_with_code,
                                        lambda: bool(self._linking.info.get("linked")), self._logger,
                                        notify=lambda event: discovery_routes.notify(self, event))
        return self._discovery

    ##~~ BlueprintPlugin

    @octoprint.plugin.BlueprintPlugin.route("/frame.jpg", methods=["GET"])
    def frame_jpeg(self):
        return api.frame_get(self)

    @octoprint.plugin.BlueprintPlugin.route("/metrics", methods=["GET"])
    def metrics_text(self):
        return api.metrics_get(self)

    @octoprint.plugin.BlueprintPlugin.route("/discovery", methods=["GET"])
    def discovery_page(self):
        return discovery_routes.page(self)

    @octoprint.plugin.BlueprintPlugin.route("/discovery/allow", methods=["POST"])
    def discovery_allow(self):
        return discovery_routes.allow(self)

    @octoprint.plugin.BlueprintPlugin.errorhandler(403)
    def discovery_forbidden(self, error):
        return discovery_routes.forbidden(error)

    def is_blueprint_protected(self):
        return True

    def is_blueprint_csrf_protected(self):
        return True

    ##~~ SimpleApiPlugin (api.py)

    def get_api_commands(self):
        return dict(api.COMMANDS)

    def on_api_command(self, command, data):
        return api.command(self, command, data)

    def is_api_protected(self):
        return True

    def on_api_get(self, request):
        return api.status_get(self, request)

    ##~~ WizardPlugin

    def get_wizard_version(self):
        return 1

    def is_wizard_required(self):
        return bridge.native_available() and not self._linking.info.get("linked")

    def get_wizard_details(self):
        return {"default_server": DEFAULT_SERVER_URL}

    ##~~ SettingsPlugin (settings.py)

    def get_settings_defaults(self):
        return settings.defaults()

    def get_settings_version(self):
        return SETTINGS_VERSION

    def on_settings_migrate(self, target, current):
        settings.migrate(self._settings, self._logger, current)

    def get_settings_restricted_paths(self):
        return settings.restricted_paths()

    def on_settings_save(self, data):
        data = settings.checked(self._farm.refuse_managed(data))
        result = octoprint.plugin.SettingsPlugin.on_settings_save(self, data)
        self._detection.forget_webcams()
        self._detection.wake()
        return result

    ##~~ AssetPlugin / TemplatePlugin

    def get_assets(self):
        return {"js": ["js/tsd.js", "js/tsd_tab.js", "js/tsd_wizard.js"], "css": ["css/tsd.css"]}

    def is_template_autoescaped(self):
        return True

    def get_template_configs(self):
        return [
            {"type": "settings", "name": PLUGIN_NAME, "custom_bindings": True},
            # Short, with an icon (tsd.css) and the full name as its tooltip
            # (tsd_tab.js): OctoPrint's tab bar is 620 px wide from 980 px up,
            # the core tabs take 472 and the overflow menu 56, so a longer
            # name ("Spaghetti Detective", even "Detective") falls into
            # the overflow menu.
            {"type": "tab", "name": "TSD", "custom_bindings": True},
            {"type": "wizard", "name": PLUGIN_NAME, "template": "tsd_wizard.jinja2", "custom_bindings": True},
        ]

    ##~~ EventHandlerPlugin

    def on_event(self, event, payload):
        remote = self._linking.remote
        layers = self._print_layers
        if event == Events.PRINT_STARTED and layers is not None:
            layers.on_print_started(payload)  # before the status that starts the print
        if remote is not None:
            remote.on_print_event(event, payload)
            if event == Events.SETTINGS_UPDATED:
                remote.set_allow_raw_gcode(self._settings.get_boolean(["allow_raw_gcode"]))
                remote.set_remote_access(remote_access.tunnel_options(self)["remote_access"])
        if event in (Events.PRINT_DONE, Events.PRINT_FAILED) and layers is not None:
            layers.on_print_ended()  # after the status that ends it (PrintFailed follows a cancel)
        if event == Events.SETTINGS_UPDATED:
            self._detection.forget_webcams()
        if event in PRINT_ENDED and self._pause_sequence is not None:
            self._pause_sequence.clear()
        self._detection.on_print_event(event, event in PRINT_ENDED)
        if event == Events.PRINTER_STATE_CHANGED:
            self._observed.printer_state_changed(payload)

    ##~~ hooks

    def script_hook(self, comm, script_type, script_name, *args, **kwargs):
        if self._pause_sequence is None:
            return None
        return self._pause_sequence.script_hook(comm, script_type, script_name, *args, **kwargs)

    def gcode_sent_hook(self, comm, phase, cmd, cmd_type, gcode, *args, **kwargs):
        if self._pause_sequence is not None:
            self._pause_sequence.sent_hook(comm, phase, cmd, cmd_type, gcode)
        if self._print_layers is not None:
            self._print_layers.on_sent(cmd)
        if gcode == "M117":
            remote = self._linking.remote
            if remote is not None:
                words = (cmd or "").split(None, 1)
                remote.on_display_message(words[1].strip() if len(words) > 1 else "")

    def get_additional_permissions(self, *args, **kwargs):
        """PLUGIN_TSD_METRICS: reading /plugin/tsd/metrics (api.metrics_get)."""
        from octoprint.access import ADMIN_GROUP

        return [{
            "key": "METRICS",
            "name": "Read metrics",
            "description": "Read the detector's, the helper's and the server link's counters "
                           "in the Prometheus format (no token, no address)",
            "roles": ["metrics"],
            "default_groups": [ADMIN_GROUP],
        }]

    def get_update_information(self):
        return {
            PLUGIN_IDENTIFIER: {
                "displayName": PLUGIN_NAME,
                "displayVersion": self._plugin_version,
                # The release channel is the package index: the plugin and the
                # native wheels of one version are published there together
                # (docs/packaging.md), and pip picks this machine's wheel.
                "type": "pypi_release",
                "package": DISTRIBUTION_NAME,
                "current": self._plugin_version,
                "pip": DISTRIBUTION_NAME + "=={target_version}",
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
        "octoprint.comm.protocol.scripts": __plugin_implementation__.script_hook,
        "octoprint.comm.protocol.gcode.sent": __plugin_implementation__.gcode_sent_hook,
        "octoprint.cli.commands": cli_commands,
        "octoprint.access.permissions": __plugin_implementation__.get_additional_permissions,
        # The token never goes into OctoPrint's backups (linking.py).
        "octoprint.plugin.backup.additional_excludes": __plugin_implementation__._linking.backup_excludes,
    }
