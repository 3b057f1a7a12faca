# SPDX-License-Identifier: AGPL-3.0-or-later
"""The Spaghetti Detective for OctoPrint: the plugin class (the shim).

The shim owns every OctoPrint call: mixins, settings, templates, printer
actions. The native core (``_tsd``, reached only through :mod:`.bridge`) owns
the network, parsing and queues and never calls into Python from its own
threads.
"""

import collections
import json
import os
import threading
import time

import flask
import octoprint.plugin
from octoprint.events import Events

from . import bridge
from .discovery import Discovery, Refused, confirm_page, local_address, peer_address, refused_page, server_origin
from .link import LinkError, verify_code
from .pause import PauseSequence
from .remote import Remote
from .upload import Uploader
from .watch import Watcher, pick_webcam, resolve_webcam_url, webcam_choices

PLUGIN_IDENTIFIER = "tsd"
PLUGIN_NAME = "The Spaghetti Detective"
SETTINGS_VERSION = 1
DEFAULT_SERVER_URL = "https://app.obico.io"
ACTIONS = ("notify", "pause", "pause_heaters_off", "cancel")
STATE_HISTORY_MAX = 50
TOKEN_WATCH_SECONDS = 3.0
WEBCAM_CACHE_SECONDS = 30.0
DETECT_STATE_FILE = "detect-state.json"
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
        self._status_lock = threading.Lock()
        self._printer_state = None
        self._state_history = collections.deque(maxlen=STATE_HISTORY_MAX)
        self._helper_status = {"available": False, "error": "not probed yet"}
        self._pump = None
        self._event_queue = None
        self._pause_sequence = None
        self._remote = None
        self._remote_lock = threading.Lock()
        self._shutting_down = threading.Event()
        self._token_signature = None
        self._link_info = {"linked": False}
        self._octoprint_port = None
        self._watcher = None
        self._uploader = None
        self._webcams = (0.0, [])
        self._discovery = None  # discovery.Discovery, while unlinked

    ##~~ life cycle

    def initialize(self):
        self._pause_sequence = PauseSequence(self._logger)
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
            self._start_detection()
            self._remember_token_file()
            self.start_remote()
            # Unlinked: announce on the LAN for the bounded window (discovery.py).
            self.discovery().start_window("OctoPrint started")
            watcher = threading.Thread(target=self._watch_token_file, name="tsd-token-watch")
            watcher.daemon = True
            watcher.start()
        # Probing runs a subprocess: keep it off OctoPrint's start-up path.
        thread = threading.Thread(target=self._probe_helper, name="tsd-helper-probe")
        thread.daemon = True
        thread.start()

    def on_shutdown(self):
        self._shutting_down.set()
        for worker in (self._uploader, self._watcher):
            if worker is not None:
                worker.stop()
        self._save_detect_state()
        if self._discovery is not None:
            self._discovery.stop()
        self.stop_remote()
        pump = self._pump
        if pump is not None:
            pump.stop()
        self._logger.info("[shutdown] stopped: camera, helper, uploads and server link closed")

    ##~~ the server link

    def token_folder(self):
        return self.get_plugin_data_folder()

    def start_remote(self):
        """(Re)connects to the server with the stored token, if there is one."""
        record, error = bridge.load_token(self.token_folder())
        # What the UI may show of the link: never the token itself.
        self._link_info = (
            {"linked": True, "server": record["server"], "printer_name": record["name"]}
            if record else {"linked": False, "error": error}
        )
        with self._remote_lock:
            if self._remote is not None:
                self._remote.stop()
                self._remote = None
            if record is None:
                if error:
                    self._logger.error("[token] %s; the printer is treated as unlinked", error)
                self._remote_state = {"state": "unlinked", "detail": error or ""}
                return False
            remote = Remote(self, self._logger)
            self._remote = remote
        return remote.start(
            record["server"],
            record["token"],
            ca_file=self._settings.get(["ca_file"]) or None,
            allow_cleartext_lan=bool(self._settings.get_boolean(["allow_cleartext_lan"])),
            allow_raw_gcode=bool(self._settings.get_boolean(["allow_raw_gcode"])),
        )

    def stop_remote(self):
        with self._remote_lock:
            remote, self._remote = self._remote, None
        if remote is not None:
            remote.stop()

    def on_remote_state(self, state, detail):
        self._remote_state = {"state": state, "detail": detail}
        if state in ("unauthorized", "replaced"):
            self._plugin_manager.send_plugin_message(
                self._identifier, {"type": "remote_state", "state": state, "detail": detail}
            )

    def remote_pause(self, action):
        """A validated pause from the server: plan the G-code, then let
        OctoPrint pause (its state machine and the user's scripts run)."""
        printer = self._printer
        if not (printer.is_printing() or printer.is_pausing()):
            self._logger.info("[proto] pause requested by the server, but nothing is printing")
            return
        self._plan_and_pause("for the server ({})".format(action["initiator"]), self._logger.info,
                             retract=action["retract"], lift_z=action["lift_z"],
                             tools_off=action["tools_off"], bed_off=action["bed_off"],
                             extra_notes=action.get("warnings", []))

    def _plan_and_pause(self, reason, log, retract, lift_z, tools_off, bed_off, extra_notes=()):
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

    ##~~ detection

    def _start_detection(self):
        self._uploader = Uploader(self.post_to_server, self.is_printing,
                                  lambda: self._watcher.wake(), self._logger)
        self._watcher = Watcher(self, self._logger)
        self._watcher.add_frame_listener(self._uploader.on_frame)
        self._load_detect_state()
        self._watcher.start()
        self._uploader.start()

    def webcams(self):
        """OctoPrint's configured webcams (cached for a few seconds)."""
        fetched, choices = self._webcams
        if time.monotonic() - fetched < WEBCAM_CACHE_SECONDS and choices:
            return choices
        try:
            from octoprint.webcams import get_webcams

            choices = webcam_choices(get_webcams(plugin_manager=self._plugin_manager).values())
        except Exception as exc:  # OctoPrint before 1.9, or a broken provider
            self._logger.warning("[camera] could not list OctoPrint's webcams: %s", exc)
            choices = []
        self._webcams = (time.monotonic(), choices)
        return choices

    def watch_config(self):
        """What the watcher needs now (called on its thread each frame)."""
        chosen = pick_webcam(self.webcams(), self._settings.get(["webcam"]))
        camera = None
        if chosen is not None:
            url = chosen["snapshot"] or chosen["stream"]
            candidates = resolve_webcam_url(url, self._octoprint_port)
            if candidates:
                camera = {"name": chosen["name"], "display_name": chosen["display_name"],
                          "url": candidates[0], "urls": candidates,
                          "stream": not chosen["snapshot"]}
        model_config = self._settings.get(["model_config"]) or bridge.default_model_config()
        return {
            "camera": camera,
            "ca_file": self._settings.get(["webcam_ca_file"]) or None,
            "interval_s": self._settings.get_int(["frame_interval"]) or 10,
            "action": self._settings.get(["action"]) if self._settings.get(["action"]) in ACTIONS
            else "pause",
            "sensitivity": self._settings.get_float(["sensitivity"]) or 1.0,
            "model_config": model_config,
            "enabled": bool(self._settings.get_boolean(["detection_enabled"])),
            "detector_options": {},
        }

    def is_printing(self):
        printer = self._printer
        return bool(printer is not None and printer.is_printing())

    def failure_action(self, action, summary, jpeg, detections):
        """A failure episode began: carry out the user's action once."""
        printer = self._printer
        text = "The Spaghetti Detective sees a possible failure (score {score}).".format(**summary)
        if action in ("pause", "pause_heaters_off") and printer.is_printing():
            heaters_off = action == "pause_heaters_off"
            self._plan_and_pause("for a detected failure", self._logger.warning, retract=6.5,
                                 lift_z=2.5, tools_off=heaters_off, bed_off=heaters_off)
            text += " The print was paused{}.".format(" and the heaters turned off" if heaters_off else "")
        elif action == "cancel" and printer.is_printing():
            self._logger.warning("[detect] cancelling the print")
            printer.cancel_print()
            text += " The print was cancelled."
        else:
            text += " Nothing was done (action: notify only)."
        self._notify("failure", "Possible print failure", text, jpeg, detections, summary)

    def failure_warning(self, summary, jpeg, detections):
        text = "The print may be failing (score {score}); still watching.".format(**summary)
        self._notify("warning", "Print may be failing", text, jpeg, detections, summary)

    def _notify(self, kind, title, text, jpeg, detections, summary):
        self._plugin_manager.send_plugin_message(
            self._identifier, {"type": "alert", "kind": kind, "title": title, "text": text})
        if self._remote is None:
            return  # local-only: the toast is the notification
        fields = {
            "event_title": title,
            "event_text": text,
            "event_class": "ERROR" if kind == "failure" else "WARNING",
            "event_type": "PRINTER_ERROR",
            "notify": "true",
        }
        try:
            snapshot = bridge.annotate_jpeg(jpeg, detections)
        except Exception as exc:
            self._logger.warning("[detect] could not draw the boxes on the frame: %s", exc)
            snapshot = jpeg

        def post():
            try:
                status = self.post_to_server("/api/v1/octo/printer_events/", fields,
                                             {"snapshot": ("snapshot.jpg", snapshot, "image/jpeg")})
                if status is not None and not 200 <= status < 300:
                    self._logger.warning("[detect] the server refused the event: HTTP %s", status)
            except Exception as exc:
                self._logger.warning("[detect] could not post the event to the server: %s", exc)

        thread = threading.Thread(target=post, name="tsd-event-post")
        thread.daemon = True
        thread.start()

    def publish(self, info):
        uploader = self._uploader
        self._plugin_manager.send_plugin_message(self._identifier, {
            "type": "detect", "detect": info,
            "point": self._watcher.last_point() if self._watcher is not None else None,
            "upload": uploader.info() if uploader is not None else None,
        })

    def post_to_server(self, path, data, files):
        remote = self._remote
        if remote is None:
            return None
        return remote.post_form(path, data, files)

    def on_remote_status(self, viewing, should_watch):
        if self._uploader is not None:
            self._uploader.set_remote_status(viewing, should_watch)

    def _detect_state_path(self):
        return os.path.join(self.get_plugin_data_folder(), DETECT_STATE_FILE)

    def _load_detect_state(self):
        try:
            with open(self._detect_state_path(), encoding="utf-8") as handle:
                state = json.load(handle)
            self._watcher.restore_long_term(float(state["long_mean"]), int(state["long_count"]))
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self._logger.warning("[detect] ignoring an unreadable %s: %s", DETECT_STATE_FILE, exc)

    def _save_detect_state(self):
        watcher = self._watcher
        if watcher is None or watcher.long_term() is None:
            return
        mean, count = watcher.long_term()
        path = self._detect_state_path()
        try:
            with open(path + ".tmp", "w", encoding="utf-8") as handle:
                json.dump({"long_mean": mean, "long_count": count}, handle)
            os.replace(path + ".tmp", path)
        except OSError as exc:
            self._logger.warning("[detect] could not save %s: %s", DETECT_STATE_FILE, exc)

    @octoprint.plugin.BlueprintPlugin.route("/frame.jpg", methods=["GET"])
    def frame_jpeg(self):
        from octoprint.access.permissions import Permissions

        if not Permissions.WEBCAM.can():
            flask.abort(403)
        watcher = self._watcher
        if flask.request.args.get("evidence"):
            # The frame that triggered this print's action (the tab's "why").
            frame = watcher.evidence_frame() if watcher is not None else None
        else:
            latest = watcher.latest if watcher is not None else None
            frame = (latest[0], latest[3]) if latest is not None else None
        if frame is None:
            flask.abort(404)
        response = flask.make_response(frame[0])
        response.headers["Content-Type"] = "image/jpeg"
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Frame-Seq"] = str(frame[1])
        return response

    ##~~ discovery and OTP (octoprint_tsd/discovery.py)

    def discovery(self):
        if self._discovery is None:
            self._discovery = Discovery(self._discovery_config, self._discovery_link,
                                        lambda: bool(self._link_info.get("linked")), self._logger,
                                        notify=self._discovery_notify)
        return self._discovery

    def _discovery_config(self):
        global_get = getattr(self._settings, "global_get", None)
        public_host = global_get(["plugins", "discovery", "publicHost"]) if global_get else None
        public_port = global_get(["plugins", "discovery", "publicPort"]) if global_get else None
        return {
            "server_url": self._settings.get(["server_url"]),
            "ca_file": self._settings.get(["ca_file"]) or None,
            "allow_cleartext_lan": bool(self._settings.get_boolean(["allow_cleartext_lan"])),
            "host_or_ip": local_address(public_host),
            "port": public_port or self._octoprint_port,
            "plugin_version": self._plugin_version or "",
            "printer_profile": str(self.current_printer_profile().get("name") or ""),
        }

    def _discovery_link(self, code):
        return self.link_with_code(code)

    def _discovery_notify(self, event):
        manager = getattr(self, "_plugin_manager", None)
        if manager is not None:
            manager.send_plugin_message(self._identifier, event)

    def _discovery_command(self, command):
        if not bridge.native_available():
            return flask.make_response(flask.jsonify(error="native", message=bridge.NATIVE_IMPORT_ERROR), 409)
        if self._link_info.get("linked") and command != "otp_stop":
            return flask.make_response(flask.jsonify(error="linked", message="The printer is already linked"), 409)
        if command == "discover":
            self.discovery().start_window("an admin pressed Discover")
        elif command == "otp_start":
            self.discovery().start_otp()
        else:
            self.discovery().stop_otp("stopped by an admin")
        return flask.jsonify(self.discovery().status())

    def _discovery_user(self):
        """(is_admin, name) of the request's OctoPrint user."""
        from octoprint.access.permissions import Permissions

        import flask_login

        user = flask_login.current_user
        if user is None or user.is_anonymous or not user.is_active:
            return False, None
        return bool(Permissions.ADMIN.can()), user.get_id()

    @octoprint.plugin.BlueprintPlugin.route("/discovery", methods=["GET"])
    def discovery_page(self):
        """The page the server's app opens in a popup on the printer's LAN
        address. Logged-in admins only; it holds no secret."""
        admin, name = self._discovery_user()
        if not admin:
            return self._discovery_html(refused_page(
                "Sign in to OctoPrint as an administrator, then try again." if name is None else
                "Only an OctoPrint administrator can link this printer."), 403)
        try:
            self.discovery().check_request(flask.request.args.get("device_id", ""),
                                           peer_address(flask.request.environ))
        except Refused as exc:
            return self._discovery_html(refused_page(str(exc)), 403)
        origin = server_origin(self._settings.get(["server_url"]))
        if origin is None:
            return self._discovery_html(refused_page("No server is configured."), 403)
        from octoprint.server.util.csrf import generate_csrf_token

        csrf = generate_csrf_token()
        response = self._discovery_html(
            confirm_page(self.discovery().device_id, origin, csrf, name), 200)
        response.set_cookie("csrf_token", csrf, httponly=False)
        return response

    @octoprint.plugin.BlueprintPlugin.route("/discovery/allow", methods=["POST"])
    def discovery_allow(self):
        """An admin clicked "Allow": the window's secret, once, as JSON (the
        page posts it to the server's origin only)."""
        admin, _ = self._discovery_user()
        if not admin:
            return flask.make_response(flask.jsonify(error="forbidden", message="Only an OctoPrint "
                                                     "administrator can link this printer."), 403)
        body = flask.request.get_json(silent=True) or {}
        try:
            secret = self.discovery().hand_out_secret(body.get("device_id", ""),
                                                      peer_address(flask.request.environ))
        except Refused as exc:
            return flask.make_response(flask.jsonify(error="refused", message=str(exc)), 403)
        self._logger.info("[discovery] an admin allowed linking from the server's app")
        response = flask.jsonify(device_secret=secret)
        response.headers["Cache-Control"] = "no-store"
        return response

    @octoprint.plugin.BlueprintPlugin.errorhandler(403)
    def discovery_forbidden(self, error):
        # OctoPrint's login check refuses logged-out users before the view
        # runs: give the discovery page a clear answer instead of a bare 403.
        if flask.request.path.rstrip("/").endswith("/discovery"):
            return self._discovery_html(refused_page(
                "Sign in to OctoPrint as an administrator, then try again."), 403)
        return error

    @staticmethod
    def _discovery_html(html, status):
        response = flask.make_response(html, status)
        response.headers["Content-Type"] = "text/html; charset=utf-8"
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Frame-Options"] = "DENY"
        return response

    ##~~ WizardPlugin

    def get_wizard_version(self):
        return 1

    def is_wizard_required(self):
        return bridge.native_available() and not self._link_info.get("linked")

    def get_wizard_details(self):
        return {"default_server": DEFAULT_SERVER_URL}

    def is_blueprint_protected(self):
        return True

    def is_blueprint_csrf_protected(self):
        return True

    ##~~ hooks

    def script_hook(self, comm, script_type, script_name, *args, **kwargs):
        if self._pause_sequence is None:
            return None
        return self._pause_sequence.script_hook(comm, script_type, script_name, *args, **kwargs)

    def gcode_sent_hook(self, comm, phase, cmd, cmd_type, gcode, *args, **kwargs):
        if self._pause_sequence is not None:
            self._pause_sequence.sent_hook(comm, phase, cmd, cmd_type, gcode)

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
            "webcam_ca_file": "",
            "action": "pause",
            "sensitivity": 1.0,
            "frame_interval": 10,
            "detection_enabled": True,
            "model_config": "",
            "allow_raw_gcode": False,
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
            "admin": [["server_url"], ["allow_cleartext_lan"], ["ca_file"], ["allow_raw_gcode"],
                      ["webcam_ca_file"], ["model_config"]],
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
        result = octoprint.plugin.SettingsPlugin.on_settings_save(self, data)
        self._webcams = (0.0, [])
        if self._watcher is not None:
            self._watcher.wake()
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

    ##~~ SimpleApiPlugin

    def get_api_commands(self):
        return {"reconnect": [], "link": ["code"], "unlink": [], "looks_fine": [],
                "discover": [], "otp_start": [], "otp_stop": []}

    def on_api_command(self, command, data):
        from octoprint.access.permissions import Permissions

        if command == "looks_fine":
            # Anyone who may control a print may say it looks fine.
            if not Permissions.PRINT.can():
                flask.abort(403)
            if self._watcher is None:
                return flask.make_response(flask.jsonify(error="detection is not running"), 409)
            return flask.jsonify(bending_factor=self._watcher.looks_fine())
        # Linking, unlinking and reconnecting are for OctoPrint admins only:
        # typing a code here is the proof of presence.
        if not Permissions.ADMIN.can():
            flask.abort(403)
        if command == "reconnect":
            self.start_remote()
            return flask.make_response("", 204)
        if command == "link":
            try:
                result = self.link_with_code(data.get("code"), data.get("server_url"))
            except LinkError as exc:
                return flask.make_response(flask.jsonify(error=exc.kind, message=str(exc)), 400)
            return flask.jsonify(linked=True, printer_name=result["name"], server=result["server"])
        if command == "unlink":
            error = self.unlink()
            if error:
                return flask.make_response(flask.jsonify(error="io", message=error), 500)
            return flask.make_response("", 204)
        if command in ("discover", "otp_start", "otp_stop"):
            return self._discovery_command(command)
        flask.abort(400)

    ##~~ linking

    def link_with_code(self, code, server_url=None, reconnect=True):
        """Verifies a code with the server, stores the token, reconnects
        (the CLI does not: the running OctoPrint notices the new token)."""
        server_url = server_url or self._settings.get(["server_url"])
        result = verify_code(
            server_url,
            code,
            ca_file=self._settings.get(["ca_file"]) or None,
            allow_cleartext_lan=bool(self._settings.get_boolean(["allow_cleartext_lan"])),
        )
        error = bridge.save_token(self.token_folder(), result["server"], result["token"], result["name"])
        if error:
            raise LinkError("storage", "The token could not be stored: {}".format(error))
        # The endpoint is saved only after a successful verification.
        self._settings.set(["server_url"], result["server"])
        self._settings.save()
        self._logger.info("[link] linked to %s as %r", result["server"], result["name"])
        if self._discovery is not None:
            self._discovery.stop()  # linked: nothing to announce any more
        if reconnect:
            self.start_remote()
            self._remember_token_file()
        return result

    def unlink(self):
        self.stop_remote()
        error = bridge.delete_token(self.token_folder())
        self._remote_state = {"state": "unlinked", "detail": ""}
        self._link_info = {"linked": False}
        self._remember_token_file()
        if error:
            self._logger.error("[link] could not delete the token: %s", error)
        else:
            self._logger.info("[link] unlinked")
        return error

    def _token_file_signature(self):
        try:
            info = os.stat(os.path.join(self.token_folder(), "tsd-token"))
        except OSError:
            return None
        return (info.st_ino, info.st_mtime_ns, info.st_size)

    def _remember_token_file(self):
        self._token_signature = self._token_file_signature()

    def _watch_token_file(self):
        """Picks up a link or unlink made by the CLI while OctoPrint runs."""
        while not self._shutting_down.wait(TOKEN_WATCH_SECONDS):
            signature = self._token_file_signature()
            if signature != self._token_signature:
                self._token_signature = signature
                self._logger.info("[link] the stored token changed, reconnecting")
                if signature is None:
                    self.stop_remote()
                    self._remote_state = {"state": "unlinked", "detail": ""}
                else:
                    self.start_remote()

    def is_api_protected(self):
        return True

    def on_api_get(self, request):
        from octoprint.access.permissions import Permissions

        if not Permissions.STATUS.can():
            flask.abort(403)
        status = self.get_status()
        if "history" in request.values and self._watcher is not None:
            status["detect_history"] = self._watcher.history_points()
        return flask.jsonify(status)

    def get_status(self):
        with self._status_lock:
            helper = dict(self._helper_status)
            printer_state = self._printer_state
            history = list(self._state_history)
        if printer_state is None and self._printer is not None:
            try:  # before the first state change event
                printer_state = self._printer.get_state_id()
            except Exception:
                printer_state = None
        pump = self._pump
        return {
            "plugin_version": self._plugin_version,
            "native": bridge.native_info(),
            "helper": helper,
            "event_queue": self._event_queue.stats() if pump is not None else None,
            "printer": {"state": printer_state, "history": history},
            "link": dict(self._link_info),
            "discovery": self.discovery().status() if bridge.native_available() else None,
            "detect": self._watcher.info() if self._watcher is not None else None,
            "upload": self._uploader.info() if self._uploader is not None else None,
            "webcams": self.webcams() if self._watcher is not None else [],
            "actions": ACTION_LABELS,
            "remote": self._remote.info() if self._remote is not None else getattr(
                self, "_remote_state", {"state": "unlinked", "detail": ""}),
        }

    ##~~ EventHandlerPlugin

    def on_event(self, event, payload):
        remote = self._remote
        if remote is not None:
            remote.on_print_event(event, payload)
            if event == Events.SETTINGS_UPDATED:
                remote.set_allow_raw_gcode(self._settings.get_boolean(["allow_raw_gcode"]))
        if event == Events.SETTINGS_UPDATED:
            self._webcams = (0.0, [])  # a webcam may have changed
        if event in (Events.PRINT_DONE, Events.PRINT_FAILED, Events.PRINT_CANCELLED):
            if self._pause_sequence is not None:
                self._pause_sequence.clear()
        watcher = self._watcher
        if watcher is not None:
            if event == Events.PRINT_STARTED:
                watcher.on_print_started()
            elif event == Events.PRINT_RESUMED:
                watcher.on_print_resumed()
            elif event in (Events.PRINT_DONE, Events.PRINT_FAILED, Events.PRINT_CANCELLED):
                watcher.on_print_ended()
                self._save_detect_state()
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


def cli_commands(cli_group, pass_octoprint_ctx, *args, **kwargs):
    """octoprint plugins tsd:link / tsd:unlink / tsd:status"""
    import click

    import logging

    from octoprint.plugin import PluginSettings

    # Outside the server OctoPrint injects nothing: give the plugin what the
    # link needs (its settings and data folder) and no more.
    plugin = TsdPlugin()
    plugin._identifier = PLUGIN_IDENTIFIER
    plugin._logger = logging.getLogger("octoprint.plugins." + PLUGIN_IDENTIFIER)
    plugin._settings = PluginSettings(cli_group.settings, PLUGIN_IDENTIFIER,
                                      defaults=plugin.get_settings_defaults())
    plugin._data_folder = os.path.join(cli_group.settings.getBaseFolder("data"), PLUGIN_IDENTIFIER)
    os.makedirs(plugin._data_folder, exist_ok=True)

    @click.command("link")
    @click.option("--code", required=True, help="The 6-digit code from the server's app")
    @click.option("--server", "server_url", default=None, help="Server URL (default: the configured one)")
    def link_command(code, server_url):
        """Link this printer to your account with a code from the app."""
        try:
            result = plugin.link_with_code(code, server_url, reconnect=False)
        except LinkError as exc:
            click.echo("Not linked: {}".format(exc), err=True)
            raise SystemExit(1)
        click.echo("Linked to {} as \"{}\".".format(result["server"], result["name"] or "printer"))

    @click.command("unlink")
    def unlink_command():
        """Forget this printer's link (deletes its token)."""
        error = plugin.unlink()
        if error:
            click.echo("Could not unlink: {}".format(error), err=True)
            raise SystemExit(1)
        click.echo("Unlinked.")

    @click.command("status")
    def status_command():
        """Show whether this printer is linked (never shows the token)."""
        record, error = bridge.load_token(plugin.token_folder())
        if error:
            click.echo("Not linked: {}".format(error))
            raise SystemExit(1)
        if record is None:
            click.echo("Not linked.")
            return
        click.echo("Linked to {} as \"{}\".".format(record["server"], record["name"] or "printer"))

    @click.command("otp")
    def otp_command():
        """Show a one-time passcode to type into the server's app (10 minutes at most)."""
        import time as _time

        from .discovery import OTP_SECONDS

        if not bridge.native_available():
            click.echo("The native module is not loaded: {}".format(bridge.NATIVE_IMPORT_ERROR), err=True)
            raise SystemExit(1)
        record, _ = bridge.load_token(plugin.token_folder())
        if record is not None:
            click.echo("Already linked to {}.".format(record["server"]), err=True)
            raise SystemExit(1)
        plugin._octoprint_port = cli_group.settings.getInt(["server", "port"]) or 5000
        plugin._plugin_version = ""
        found = {}
        discovery = Discovery(plugin._discovery_config,
                              lambda code: found.setdefault("result", plugin.link_with_code(code, reconnect=False)),
                              lambda: "result" in found, plugin._logger)
        discovery.start_otp()
        shown = None
        deadline = _time.monotonic() + OTP_SECONDS + 5
        while _time.monotonic() < deadline and discovery.otp_active() and "result" not in found:
            passcode = discovery.status()["otp"]["passcode"]
            if passcode and passcode != shown:
                shown = passcode
                click.echo("Type this passcode into the server's app within 10 minutes: {}".format(passcode))
            _time.sleep(1)
        discovery.stop()
        if "result" in found:
            click.echo("Linked to {} as \"{}\".".format(found["result"]["server"],
                                                      found["result"]["name"] or "printer"))
            return
        click.echo("Not linked: {}".format(discovery.status()["last"] or "the passcode expired"), err=True)
        raise SystemExit(1)

    return [link_command, unlink_command, status_command, otp_command]


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
    }
