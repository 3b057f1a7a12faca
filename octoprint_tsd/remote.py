# SPDX-License-Identifier: AGPL-3.0-or-later
"""The server link as the shim sees it: start the native tunnel, report the
printer's status at the server's cadence, and carry out the actions that the
native allow-list (``_tsd.Dispatcher``) produced from server messages.

Only validated, normalized actions arrive here; this module maps each one to
an OctoPrint call. It never evaluates anything the server names.
"""

import copy
import json
import os
import platform
import re
import threading
import time

from . import bridge, remote_access
from .cloudprint import STATE_TEXT as DOWNLOADING_STATE_TEXT
from .cloudprint import CloudPrint
from .pause import ModeTracker

STATUS_INTERVAL = 50.0       # seconds, idle
STATUS_INTERVAL_BOOSTED = 10.0
BOOST_SECONDS = 120.0        # after a remote action or passthru call
SETTINGS_INTERVAL = 30 * 60.0
# The native tunnel's defaults (native/core/tunnel.h), scaled in tests.
TUNNEL_BACKOFF_FIRST_S = 1.0
TUNNEL_BACKOFF_CAP_S = 60.0   # the longest wait between two connection attempts
TUNNEL_PING_AFTER_S = 30
TUNNEL_HANGUP_AFTER_S = 60
MAX_ERROR_TEXT = 512         # characters of an error ack
TEMPERATURE_KEY = re.compile(r"^(tool\d+|bed|chamber)$")
AGENT_NAME = "octoprint_obico"  # the server checks agent names/versions it knows
PRINT_EVENTS = {
    "PrintStarted", "PrintDone", "PrintFailed", "PrintCancelling", "PrintCancelled",
    "PrintPaused", "PrintResumed", "FilamentChange",
}



def _time_scale():
    """Tests shorten the server's cadence with TSD_TIME_SCALE (0.001 to 1)."""
    try:
        scale = float(os.environ.get("TSD_TIME_SCALE", "1"))
    except ValueError:
        return 1.0
    return min(1.0, max(0.001, scale))


STATE_UNLINKED = "unlinked"
STATE_CONNECTING = "connecting"
STATE_CONNECTED = "connected"
STATE_DISCONNECTED = "disconnected"
STATE_UNAUTHORIZED = "unauthorized"
STATE_REPLACED = "replaced"
STATE_ERROR = "error"


def ws_url(server_url):
    """The device websocket of a server: https://host -> wss://host/ws/dev/."""
    server_url = (server_url or "").strip().rstrip("/")
    scheme = server_url.split("://", 1)[0].lower()
    if "://" in server_url and scheme in ("https", "http"):
        return ("wss" if scheme == "https" else "ws") + server_url[len(scheme):] + "/ws/dev/"
    raise ValueError("the server URL must start with https:// (or http:// for a LAN server)")


HEATER_LIMIT_SETTINGS = ("max_tool_temp", "max_bed_temp", "max_chamber_temp")
# Events after which the printer profile or the owner's limits may differ.
# The print's identity ends with these only: OctoPrint follows PrintCancelled
# with PrintFailed (reason "cancelled"), and a status with -1 while the
# server's print is active makes the server force-close it.
PRINT_ENDING_EVENTS = ("PrintDone", "PrintFailed")
PROFILE_EVENTS = {"SettingsUpdated", "PrinterProfileModified", "PrinterProfileAdded",
                  "PrinterProfileDeleted", "Connected"}
PROFILE_FACTS_SECONDS = 10.0  # and read again at least this often
# Events after which the server gets the settings block again.
SETTINGS_EVENTS = {"FirmwareData", "SettingsUpdated"}
GCODE_FILE_TIMEOUT = 10.0     # seconds; the print's first status waits for it


class Remote:
    def __init__(self, plugin, logger, clock=time.time, modes=None, layers=None):
        """modes: the ModeTracker that follows what OctoPrint sends to the
        printer (the plugin's pause sequence owns it); layers: the plugin's
        layers.PrintLayers (None: no layer numbers in the status)."""
        self._plugin = plugin
        self._logger = logger
        self._clock = clock
        self._modes = modes if modes is not None else ModeTracker()
        self._layers = layers
        self._profile_facts = None  # (read again after, facts)
        self._lock = threading.Lock()
        self._tunnel = None
        self._pump = None
        self._dispatcher = None
        self._threads = []
        self._stop = threading.Event()
        self._wake = threading.Event()
        self.state = STATE_UNLINKED
        self.state_detail = ""
        self.viewing = False
        self.should_watch = False
        self.current_print_ts = -1
        self._boost_until = 0.0
        self._last_status = 0.0
        self._last_settings = 0.0
        self._send_settings = True
        self._pending_event = None
        self._state_changed = False  # a status is owed for a printer state change
        self._display_message = None  # the last M117 text
        self._printer_metadata = None  # FirmwareData's payload
        self._gcode_file_id = None     # the server's record of the file printing now
        self._file_metadata = (None, None)  # ((origin, path), OctoPrint's metadata)
        self.actions_done = 0
        self.actions_refused = 0
        self._time_scale = _time_scale()
        self._rest = None
        self._download_policy = None  # (server host, allow_cleartext_lan, ca_file)
        self.cloud_print = CloudPrint(plugin, self, logger)

    # ---- life cycle --------------------------------------------------------

    def start(self, server_url, token, ca_file=None, allow_cleartext_lan=False,
              allow_raw_gcode=False, **tunnel_options):
        self.stop()
        self._stop.clear()
        tunnel_options = dict(self._scaled_tunnel_timing(), **tunnel_options)
        try:
            url = ws_url(server_url)
            server_host = bridge.check_server_url(server_url, allow_cleartext_lan)["host"]
            tunnel = bridge.new_tunnel(url, token, ca_file=ca_file or None,
                                       allow_cleartext_lan=allow_cleartext_lan, **tunnel_options)
            self._dispatcher = bridge.new_dispatcher(allow_raw_gcode=allow_raw_gcode)
            tunnel.start()
        except (ValueError, bridge.TunnelError) as exc:
            self._set_state(STATE_ERROR, str(exc))
            self._logger.error("[tunnel] cannot connect to %s: %s", server_url, exc)
            return False
        with self._lock:
            self._tunnel = tunnel
            self._send_settings = True
            # For REST calls (uploads, events); the token never leaves this object.
            self._rest = (server_url.strip().rstrip("/"), token, ca_file or None)
            self._download_policy = (server_host, bool(allow_cleartext_lan), ca_file or None)
        self._set_state(STATE_CONNECTING, url)
        # stop() of the pump stops the tunnel, which closes its event queue.
        self._pump = bridge.EventPump(
            tunnel.next_event, tunnel.stop,
            lambda kind, payload: self._on_event(tunnel, kind, payload.decode("utf-8", "replace"), payload),
            self._logger, name="tsd-tunnel-events",
        )
        self._pump.start()
        thread = threading.Thread(target=self._status_loop, name="tsd-status")
        thread.daemon = True
        thread.start()
        self._threads.append(thread)
        return True

    def _scaled_tunnel_timing(self):
        """Under TSD_TIME_SCALE the tunnel's reconnect backoff and its
        idle-link ping and hang-up times shrink with the rest (the native
        defaults otherwise: 1 s doubling to 60 s; ping after 30 s, hang up
        after 60 s). Whole seconds for ping and hang-up, as libwebsockets
        counts them."""
        scale = self._time_scale
        if scale >= 1.0:
            return {}
        return {"backoff_first_ms": max(10, int(TUNNEL_BACKOFF_FIRST_S * 1000 * scale)),
                "backoff_cap_ms": max(10, int(TUNNEL_BACKOFF_CAP_S * 1000 * scale)),
                "ping_after_s": max(2, int(TUNNEL_PING_AFTER_S * scale)),
                "hangup_after_s": max(5, int(TUNNEL_HANGUP_AFTER_S * scale))}

    def stop(self):
        self.cloud_print.stop()
        with self._lock:
            self._tunnel = None
            self._rest = None
        pump, self._pump = self._pump, None
        self._stop.set()
        self._wake.set()
        if pump is not None:
            pump.stop()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(5)
        self._threads = []
        if self.state in (STATE_CONNECTING, STATE_CONNECTED, STATE_DISCONNECTED):
            self._set_state(STATE_UNLINKED, "")

    def post_form(self, path, data, files, timeout=30.0):
        """POSTs a multipart form to the server with the printer's token.
        Returns the HTTP status; None when not started. Raises requests'
        exceptions on network errors (their text never holds the token: it
        travels in a header)."""
        response = self.request("POST", path, data, timeout, files=files)
        return None if response is None else response.status_code

    def request(self, method, path, data, timeout, files=None):
        """A form request to the server with the printer's token: the
        response, its body read and the connection closed; None when not
        started."""
        import requests

        rest = self._rest
        if rest is None or self._stop.is_set():
            return None
        server, token, ca_file = rest
        response = requests.request(method, server + path, data=data, files=files, timeout=timeout,
                                    headers={"Authorization": "Token " + token},
                                    verify=ca_file or True, allow_redirects=False)
        response.close()
        return response

    def set_remote_access(self, enabled):
        tunnel = self._tunnel
        if tunnel is not None:
            tunnel.set_remote_access(bool(enabled))

    def set_allow_raw_gcode(self, allow):
        if self._dispatcher is not None:
            self._dispatcher.set_allow_raw_gcode(bool(allow))

    def info(self):
        tunnel = self._tunnel
        return {
            "state": self.state,
            "detail": self.state_detail,
            "viewing": self.viewing,
            "actions_done": self.actions_done,
            "actions_refused": self.actions_refused,
            "cloud_print": self.cloud_print.info(),
            "tunnel": tunnel.stats() if tunnel is not None else None,
        }

    def _set_state(self, state, detail):
        self.state = state
        self.state_detail = detail
        self._plugin.on_remote_state(state, detail)

    # ---- events from the native tunnel --------------------------------------

    def _on_event(self, tunnel, kind, text, payload):
        if kind == bridge.TUNNEL_EVENT_LOG:
            level, _, message = text.partition(" ")
            log = {"E": self._logger.error, "W": self._logger.warning,
                   "I": self._logger.info}.get(level, self._logger.debug)
            log("%s", message)
        elif kind == bridge.TUNNEL_EVENT_CONNECTED:
            with self._lock:
                self._send_settings = True
            self._set_state(STATE_CONNECTED, "")
            self.send_status()
        elif kind == bridge.TUNNEL_EVENT_DISCONNECTED:
            self._set_state(STATE_DISCONNECTED, text)
        elif kind == bridge.TUNNEL_EVENT_UNAUTHORIZED:
            self._set_state(STATE_UNAUTHORIZED, text)
        elif kind == bridge.TUNNEL_EVENT_REPLACED:
            self._set_state(STATE_REPLACED, text)
        elif kind == bridge.TUNNEL_EVENT_MESSAGE:
            self._on_message(payload)
        elif kind == bridge.TUNNEL_EVENT_REMOTE_LOGIN:
            remote_access.log_login(self._logger, text)

    def printer_facts(self):
        """What the native allow-list needs to know about the printer for one
        message: its state and positioning modes (read now), its profile and
        the owner's heater limits (see _read_profile_facts)."""
        printer = self._plugin._printer
        if printer.is_paused():
            state = "paused"
        elif printer.is_printing():  # also starting, pausing, resuming, cancelling, finishing
            state = "printing"
        else:
            state = "idle"
        facts = {
            "state": state,
            # A download in progress keeps the printer from another one.
            "operational": bool(printer.is_operational()) and not self.cloud_print.active(),
            "print_id": self.current_print_ts,
            "absolute_xyz": self._modes.absolute_xyz,
            "absolute_e": self._modes.absolute_e,
            "now_ms": int(time.monotonic() * 1000),
        }
        cached = self._profile_facts
        if cached is None or time.monotonic() >= cached[0]:
            cached = (time.monotonic() + PROFILE_FACTS_SECONDS, self._read_profile_facts())
            self._profile_facts = cached
        facts.update(cached[1])
        return facts

    def _read_profile_facts(self):
        """The printer profile's extruders and heaters and the owner's heater
        limits (absent: the fixed ceilings). Reading them from OctoPrint costs
        milliseconds, too much for every message of a flooding server: they
        are kept until an event in PROFILE_EVENTS or PROFILE_FACTS_SECONDS."""
        plugin = self._plugin
        profile = plugin.current_printer_profile() or {}
        extruder = profile.get("extruder") or {}
        facts = {
            "extruders": int(extruder.get("count") or 1),
            "shared_nozzle": bool(extruder.get("sharedNozzle")),
            "heated_bed": bool(profile.get("heatedBed")),
            "heated_chamber": bool(profile.get("heatedChamber")),
        }
        for key in HEATER_LIMIT_SETTINGS:
            limit = plugin._settings.get_float([key])
            if limit is not None:
                facts[key] = limit
        return facts

    def _on_message(self, payload):
        try:
            facts = self.printer_facts()
        except Exception:
            # Never lose a pause for it: the strictest state, the fewest heaters.
            self._logger.exception("[proto] reading the printer's state failed; as if printing")
            facts = {"state": "printing", "print_id": self.current_print_ts}
        try:
            actions = json.loads(self._dispatcher.dispatch(payload, **facts))
        except bridge.TsdError as exc:
            self._logger.warning("[proto] %s", exc)
            return
        for action in actions:
            # One failing action never costs the others their turn or their ack.
            try:
                self._perform(action)
            except Exception as exc:
                self.actions_refused += 1
                self._logger.exception("[proto] the server's %s failed", action["action"])
                if action.get("ref"):
                    self.ack(action["ref"], error=str(exc))

    # ---- actions -------------------------------------------------------------

    def _perform(self, action):
        kind = action["action"]
        printer = self._plugin._printer
        if kind == "remote_status":
            if action.get("viewing") is not None:
                self.viewing = action["viewing"]
                if self.viewing:
                    self.boost()
            if action.get("should_watch") is not None:
                self.should_watch = action["should_watch"]
            self._plugin.on_remote_status(action.get("viewing"), action.get("should_watch"))
        elif kind == "pause":
            self.actions_done += 1
            self.boost()
            self._plugin.remote_pause(action)
        elif kind == "resume":
            self.actions_done += 1
            self.boost()
            self._logger.info("[proto] resume requested by the server (%s)", action["initiator"])
            # The owner looked and resumed: the plugin's failure episode ends.
            self._plugin.on_remote_resume()
            printer.resume_print()
        elif kind == "cancel":
            self.actions_done += 1
            self.boost()
            self._logger.info("[proto] cancel requested by the server (%s)", action["initiator"])
            # A cancel while the file is still downloading ends the download.
            self.cloud_print.cancel("cancel requested by the server")
            printer.cancel_print()
        elif kind == "passthru":
            self._passthru(action)
        elif kind == "passthru_error":
            self.actions_refused += 1
            self._logger.warning("[proto] refused a server call: %s", action["error"])
            self.ack(action["ref"], error=action["error"])
        elif kind == "rejected":
            self.actions_refused += 1
            self._logger.warning("[proto] ignored a server message: %s", action["reason"])

    def ack(self, ref, ret=None, error=None):
        """Answers one passthru call. A reply that cannot be sent (larger than
        the outgoing lane, or not serializable) is answered with an error
        instead: every call gets an answer."""
        tunnel = self._tunnel
        if tunnel is None:
            return
        if error is None:
            try:
                self._send_ack(tunnel, {"ref": ref, "ret": ret})
                return
            except (bridge.TunnelError, TypeError, ValueError) as exc:
                error = "the reply could not be sent: {}".format(exc)
                self.actions_refused += 1
                self._logger.warning("[proto] %s", error)
        try:
            self._send_ack(tunnel, {"ref": ref, "error": str(error)[:MAX_ERROR_TEXT]})
        except (bridge.TunnelError, ValueError) as exc:
            self._logger.warning("[tunnel] an error ack was not sent: %s", exc)

    def _send_ack(self, tunnel, body):
        """(raises TunnelError; ValueError for a message larger than the
        lane; TypeError or ValueError for a reply that is not JSON)"""
        if not tunnel.send(json.dumps({"passthru": body}, default=str)):
            self._logger.warning("[tunnel] outgoing lane full, an ack was dropped")

    def _passthru(self, action):
        call = action["call"]
        params = action["params"]
        printer = self._plugin._printer
        try:
            enabled = self._plugin._settings.get(["remote_calls"])
            if enabled is not None and call not in enabled:
                raise ValueError("{} is turned off on this printer".format(call))
            if call == "jog":
                axes = dict(params["axes"])
                profile = self._plugin.current_printer_profile()
                for axis in list(axes):
                    if (profile.get("axes", {}).get(axis) or {}).get("inverted"):
                        axes[axis] = -axes[axis]
                ret = printer.jog(axes, relative=True, speed=params.get("speed") or None)
            elif call == "home":
                ret = printer.home(params["axes"])
            elif call == "set_temperature":
                ret = printer.set_temperature(params["heater"], params["value"])
            elif call == "commands":
                ret = printer.commands(params["lines"])
            elif call == "select_file":
                if not self._plugin._file_manager.file_exists("local", params["path"]):
                    raise ValueError("no such file: %s" % params["path"])
                ret = printer.select_file(params["path"], False, printAfterSelect=params["print"])
            elif call == "connect":
                ret = self._connect(params)
            elif call == "get_connection_options":
                ret = printer.get_connection_options()
            elif call == "list_files":
                ret = self._list_files(params)
            elif call == "download":
                if self._download_policy is None:
                    raise ValueError("not linked")
                # Answered by cloud_print when the outcome is known.
                self.cloud_print.start(action["ref"], params, *self._download_policy)
                self.actions_done += 1
                self.boost()
                return
            else:  # the native allow-list and this table disagree: refuse
                raise ValueError("not allowed")
        except Exception as exc:
            self.actions_refused += 1
            self._logger.warning("[proto] server call %s failed: %s", call, exc)
            self.ack(action["ref"], error=str(exc))
            return
        self.actions_done += 1
        self.ack(action["ref"], ret=ret)
        self.boost()

    def _connect(self, params):
        """Connects only to a port and at a baud rate that OctoPrint itself
        offers now (None or "AUTO": OctoPrint's own detection among them)."""
        printer = self._plugin._printer
        options = printer.get_connection_options() or {}
        port, baudrate = params["port"], params["baudrate"]
        if port not in (None, "AUTO") and port not in (options.get("ports") or []):
            raise ValueError("connect: {} is not one of OctoPrint's serial ports".format(port))
        if baudrate is not None and baudrate not in (options.get("baudrates") or []):
            raise ValueError("connect: OctoPrint does not offer {} baud".format(baudrate))
        return printer.connect(port=port, baudrate=baudrate)

    def _list_files(self, params):
        name_filter = None
        if params.get("filter"):
            needle = params["filter"].lower()

            def name_filter(node):
                return node.get("type") == "folder" or needle in node.get("name", "").lower()

        return self._plugin._file_manager.list_files(
            "local", path=params["path"] or None, filter=name_filter,
            recursive=params["recursive"], level=params["level"],
        )

    # ---- status -----------------------------------------------------------------

    def boost(self, seconds=BOOST_SECONDS):
        self._boost_until = max(self._boost_until, time.monotonic() + seconds * self._time_scale)
        self._wake.set()

    def on_print_event(self, event, payload):
        if event in PROFILE_EVENTS:
            self._profile_facts = None
        if event in SETTINGS_EVENTS:
            if event == "FirmwareData":
                self._printer_metadata = (payload or {}).get("data")
            with self._lock:
                self._send_settings = True
            self._wake.set()
        if event == "PrinterStateChanged":
            # The server shows the state it last received: after Pausing,
            # Resuming or Cancelling it must hear where the printer settled.
            # The status loop sends one status for any number of changes,
            # built when it goes out (the latest state wins).
            self._state_changed = True
            self._wake.set()
            return
        if event not in PRINT_EVENTS:
            return
        if event == "PrintStarted":
            self.current_print_ts = int(self._clock())
            # Before the status that starts the print: its record names the file.
            self._gcode_file_id = self._register_gcode_file(payload or {})
        self._pending_event = {"event_type": event, "data": payload or {}}
        self.send_status()
        if event in PRINT_ENDING_EVENTS:
            # Reset only after the status that reports the end was built.
            self.current_print_ts = -1
            self._gcode_file_id = None

    def on_display_message(self, message):
        """The printer was sent M117 (its display): the server shows it."""
        self._display_message = message
        self._state_changed = True
        self._wake.set()

    def _register_gcode_file(self, job):
        """Upserts the server's record of the file a print starts with
        (POST /api/v1/octo/g_code_files/, as OctoPrint-Obico does); its id
        goes into status.job.file.obico_g_code_file_id. None when the file
        has no hash in OctoPrint (an SD card file) or the server refuses."""
        origin, path = job.get("origin"), job.get("path")
        if origin != "local" or not path:
            return None
        try:
            metadata = self._plugin._file_manager.get_metadata(origin, path) or {}
            if not metadata.get("hash"):
                return None
            fields = {"filename": job.get("name") or os.path.basename(path),
                      "safe_filename": os.path.basename(path),
                      "num_bytes": str(job.get("size") or 0),
                      "agent_signature": "md5:" + metadata["hash"], "url": path}
            response = self.request("POST", "/api/v1/octo/g_code_files/", fields, GCODE_FILE_TIMEOUT)
            if response is None:
                return None
            if response.status_code not in (200, 201):
                self._logger.warning("[status] the server refused the G-code file record: HTTP %s",
                                     response.status_code)
                return None
            return int(response.json()["id"])
        except Exception as exc:
            self._logger.warning("[status] could not register the G-code file with the server: %s", exc)
            return None

    def _status_loop(self):
        while not self._stop.is_set():
            boosted = self.viewing or time.monotonic() < self._boost_until
            interval = (STATUS_INTERVAL_BOOSTED if boosted else STATUS_INTERVAL) * self._time_scale
            due = self._last_status + interval - time.monotonic()
            if due <= 0 or self._state_changed:
                self._state_changed = False
                self.send_status()
                continue
            self._wake.wait(min(due, 1.0))
            self._wake.clear()

    def send_status(self):
        tunnel = self._tunnel
        if tunnel is None:
            return False
        try:
            message = self.build_status()
        except Exception:
            self._logger.exception("[status] building the status failed")
            return False
        self._last_status = time.monotonic()
        return tunnel.send_status(json.dumps(message, default=str))

    def build_status(self):
        printer = self._plugin._printer
        data = dict(printer.get_current_data() or {})
        temperatures = printer.get_current_temperatures() or {}
        job = copy.deepcopy(data.get("job")) or {}
        progress = dict(data.get("progress") or {})
        if progress:
            tool0 = ((job.get("filament") or {}).get("tool0") or {})
            progress["filamentUsed"] = tool0.get("length")
        job_file = job.get("file") or {}
        if job_file.get("path") and self._gcode_file_id is not None:
            job_file["obico_g_code_file_id"] = self._gcode_file_id
        state = data.get("state")
        download = self.cloud_print.progress()
        if download is not None:
            # The server's pseudo-state while a cloud download runs (its text
            # exactly, not operational); the progress for whoever reads it.
            state = dict(state or {})
            state["text"] = DOWNLOADING_STATE_TEXT
            state["flags"] = dict(state.get("flags") or {}, operational=False)
            state["download"] = download
        status = {
            "state": state,
            "job": job or data.get("job"),
            "progress": progress or data.get("progress"),
            "currentZ": data.get("currentZ"),
            "offsets": data.get("offsets") or {},
            "resends": data.get("resends"),
            "temperatures": {k: v for k, v in temperatures.items() if TEMPERATURE_KEY.match(k)},
            "_ts": int(self._clock()),
            "file_metadata": self._current_file_metadata(job_file),
            # a layer number (the name is the server's), None between prints
            "currentLayerHeight": self._layers.current() if self._layers else None,
        }
        if self._display_message is not None:
            status["display_status"] = {"message": self._display_message}
        message = {"current_print_ts": self.current_print_ts, "status": status}
        now = time.monotonic()
        with self._lock:
            send_settings = (self._send_settings or
                             now - self._last_settings > SETTINGS_INTERVAL * self._time_scale)
            self._send_settings = False
        if send_settings:
            self._last_settings = now
            message["settings"] = self._settings_block()
        event, self._pending_event = self._pending_event, None
        if event is not None:
            message["event"] = event
        return message

    def _current_file_metadata(self, job_file):
        """OctoPrint's metadata of the file printing now (its hash and
        analysis; not its print history, which only grows), read once per
        file; None with no file."""
        key = (job_file.get("origin"), job_file.get("path"))
        if not key[1]:
            return None
        cached_key, metadata = self._file_metadata
        if cached_key != key or metadata is None:
            try:
                metadata = self._plugin._file_manager.get_metadata(*key)
            except Exception as exc:  # a file gone since: the status goes out without it
                self._logger.debug("[status] no metadata for %s: %s", key[1], exc)
                metadata = None
            if not isinstance(metadata, dict):
                return None
            metadata = {k: v for k, v in metadata.items() if k not in ("history", "statistics")}
            self._file_metadata = (key, metadata)
        if self._layers is not None and "obico" not in metadata:
            total = self._layers.total(key[0], key[1], metadata.get("hash"))
            if total is not None:
                # The server reads the total where OctoPrint-Obico's
                # preprocessor stores it.
                metadata["obico"] = {"totalLayerCount": total}
        return metadata

    def _settings_block(self):
        import octoprint

        plugin = self._plugin
        block = {
            "agent": {"name": AGENT_NAME, "version": plugin.agent_version()},
            "octoprint_version": getattr(octoprint, "__version__", "unknown"),
            "platform_uname": list(platform.uname()),
            "installed_plugins": sorted(plugin._plugin_manager.enabled_plugins),
            "webcams": plugin._detection.server_webcams(),
            "temperature": {"profiles": plugin._settings.global_get(["temperature", "profiles"]) or []},
        }
        if self._printer_metadata is not None:
            block["printer_metadata"] = self._printer_metadata
        return block
