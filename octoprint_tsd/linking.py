# SPDX-License-Identifier: AGPL-3.0-or-later
"""The printer's link to its server as the plugin runs it: the stored token,
the :class:`~.remote.Remote` that uses it, linking with a code, unlinking,
and noticing a token file that the CLI changed while OctoPrint runs.

The token itself stays in the native token store and in the Remote; what
this module keeps for the UI (``info``) never holds it.

:class:`Linking` is the link's one life-cycle owner. Starting, stopping,
linking, unlinking and the token-file watcher each run whole under one lock,
the Remote's own start and stop included, and move ``phase`` through
idle → starting → running → stopping → idle (closed at shutdown, for good).
So they cannot interleave: a Remote is never started after another request
took it over, and never left running without an owner.
"""

import json
import os
import threading

from . import bridge, remote_access
from .link import LinkError, verify_code
from .remote import Remote

TOKEN_FILE = "tsd-token"  # and its temporary copies, tsd-token.tmp-* (native/core/tok.h)
# Where and as what the printer was linked, without the token: it goes into
# OctoPrint's backups, so that a restored OctoPrint knows it was linked and
# says why it no longer is.
LINK_RECORD_FILE = "linked.json"
TOKEN_WATCH_SECONDS = 3.0
UNLINKED = {"state": "unlinked", "detail": ""}
# The server answered the stored token with "Invalid or Inactive Token" (the
# printer was deleted or re-linked there): said so in the CLI, the status
# API and the settings page, and kept in the link record for the CLI.
REFUSED = "refused by the server \u2014 link again"

PHASE_IDLE = "idle"          # no Remote
PHASE_STARTING = "starting"
PHASE_RUNNING = "running"    # self.remote is the one Remote (connected or retrying)
PHASE_STOPPING = "stopping"
PHASE_CLOSED = "closed"      # OctoPrint shuts down: nothing starts any more


class Linking:
    def __init__(self, plugin):
        self._plugin = plugin
        # Held for a whole life-cycle step; re-entrant, since linking
        # reconnects through the plugin's start_remote().
        self._lifecycle = threading.RLock()
        self.phase = PHASE_IDLE
        self.remote = None            # the running Remote, while linked
        self.info = {"linked": False}  # what the UI may show of the link
        self.state = dict(UNLINKED)    # the link's state while no Remote runs
        self._token_signature = None
        self._record_lock = threading.Lock()  # the refusal: info and the link record

    def folder(self):
        return self._plugin.get_plugin_data_folder()

    def _transport_options(self):
        """How the server may be reached (the admin's settings)."""
        settings = self._plugin._settings
        return {"ca_file": settings.get(["ca_file"]) or None,
                "allow_cleartext_lan": bool(settings.get_boolean(["allow_cleartext_lan"]))}

    # ---- the Remote ----

    def start(self):
        """(Re)connects to the server with the stored token, if there is one."""
        with self._lifecycle:
            if self.phase == PHASE_CLOSED:
                return False
            record, error = bridge.load_token(self.folder())
            if record is None and error is None:
                error = self._token_missing()
            # What the UI may show of the link: never the token itself.
            self.info = (
                {"linked": True, "server": record["server"], "printer_name": record["name"]}
                if record else {"linked": False, "error": error}
            )
            if record and self.read_link_record().get("refused"):
                self._refused()  # until the server accepts this token again
            self._stop_remote()
            if record is None:
                if error:
                    self._plugin._logger.error("[token] %s; the printer is treated as unlinked", error)
                self.state = {"state": "unlinked", "detail": error or ""}
                return False
            self.phase = PHASE_STARTING
            remote = Remote(self._plugin, self._plugin._logger, modes=self._plugin._pause_sequence.modes,
                            layers=self._plugin._print_layers)
            self.remote = remote
            try:
                return remote.start(
                    record["server"],
                    record["token"],
                    allow_raw_gcode=bool(self._plugin._settings.get_boolean(["allow_raw_gcode"])),
                    **self._transport_options(),
                    # OctoPrint remote access (the server's tunnel).
                    **remote_access.tunnel_options(self._plugin),
                )
            finally:
                # A Remote that could not start keeps its error for the status.
                self.phase = PHASE_RUNNING

    def stop(self):
        with self._lifecycle:
            self._stop_remote()

    def close(self):
        """OctoPrint shuts down: stop, and start nothing any more."""
        with self._lifecycle:
            self._stop_remote()
            self.phase = PHASE_CLOSED

    def _stop_remote(self):
        """With _lifecycle held."""
        remote, self.remote = self.remote, None
        if remote is None:
            return
        if self.phase != PHASE_CLOSED:
            self.phase = PHASE_STOPPING
        try:
            remote.stop()
        finally:
            if self.phase != PHASE_CLOSED:
                self.phase = PHASE_IDLE

    def on_remote_state(self, state, detail):
        """The running Remote's state changed (its event thread)."""
        self.state = {"state": state, "detail": detail}
        # Not under _lifecycle: stopping the Remote waits for this thread.
        if state == "unauthorized" and not self.info.get("refused"):
            with self._record_lock:
                self._plugin._logger.error("[link] the server refused this printer's token: %s", REFUSED)
                self._refused()
                self._write_link_record(self.info.get("server"), self.info.get("printer_name"), refused=True)
        elif state == "connected" and self.info.get("refused"):
            with self._record_lock:
                self.info = {"linked": True, "server": self.info.get("server"),
                             "printer_name": self.info.get("printer_name")}
                self._write_link_record(self.info["server"], self.info["printer_name"])

    def _refused(self):
        self.info = {"linked": False, "refused": True, "server": self.info.get("server"),
                     "printer_name": self.info.get("printer_name"), "error": REFUSED}

    def status(self):
        """The link's state for the status document."""
        remote = self.remote
        return remote.info() if remote is not None else self.state

    # ---- linking and unlinking ----

    def link_with_code(self, code, server_url=None, reconnect=True):
        """Verifies a code with the server, stores the token, reconnects
        (the CLI does not: the running OctoPrint notices the new token)."""
        plugin = self._plugin
        settings = plugin._settings
        # The server's answer is awaited outside the lock; storing the token
        # and reconnecting are one step, so the token-file watcher never sees
        # a new token before this link has started it.
        result = verify_code(server_url or settings.get(["server_url"]), code, **self._transport_options())
        with self._lifecycle:
            error = bridge.save_token(self.folder(), result["server"], result["token"], result["name"])
            if error:
                raise LinkError("storage", "The token could not be stored: {}".format(error))
            self._write_link_record(result["server"], result["name"])
            # The endpoint is saved only after a successful verification.
            settings.set(["server_url"], result["server"])
            settings.save()
            plugin._logger.info("[link] linked to %s as %r", result["server"], result["name"])
            if reconnect:
                plugin.start_remote()
                self.remember_token_file()
        discovery = plugin._discovery
        if discovery is not None:
            # Outside the lock: discovery's own thread may be waiting for it
            # in this very method.
            discovery.stop()  # linked: nothing to announce any more
        return result

    def unlink(self):
        with self._lifecycle:
            self._stop_remote()
            error = bridge.delete_token(self.folder())
            self._remove_link_record()
            self.state = dict(UNLINKED)
            self.info = {"linked": False}
            self.remember_token_file()
        if error:
            self._plugin._logger.error("[link] could not delete the token: %s", error)
        else:
            self._plugin._logger.info("[link] unlinked")
        return error

    # ---- backups: the token never goes into one ----

    def backup_excludes(self, excludes, *args, **kwargs):
        """OctoPrint's ``octoprint.plugin.backup.additional_excludes`` hook:
        the token file and any temporary copy of it (names relative to the
        plugin's data folder). A restored backup comes up unlinked."""
        names = {TOKEN_FILE}
        try:
            names.update(name for name in os.listdir(self.folder()) if name.startswith(TOKEN_FILE))
        except OSError:
            pass  # no data folder yet: nothing but the name to exclude
        return sorted(names)

    def _link_record_path(self):
        return os.path.join(self.folder(), LINK_RECORD_FILE)

    def _write_link_record(self, server, name, refused=False):
        from octoprint.util import atomic_write

        record = {"server": server, "name": name}
        if refused:
            record["refused"] = True
        try:
            with atomic_write(self._link_record_path(), mode="w") as handle:
                json.dump(record, handle)
        except OSError as exc:
            self._plugin._logger.warning("[link] could not write %s: %s", LINK_RECORD_FILE, exc)

    def _remove_link_record(self):
        try:
            os.remove(self._link_record_path())
        except FileNotFoundError:
            pass
        except OSError as exc:
            self._plugin._logger.warning("[link] could not remove %s: %s", LINK_RECORD_FILE, exc)

    def read_link_record(self):
        """The link record ({} when there is none or it is unreadable)."""
        try:
            with open(self._link_record_path(), encoding="utf-8") as handle:
                record = json.load(handle)
        except (OSError, ValueError):
            return {}
        return record if isinstance(record, dict) else {}

    def _token_missing(self):
        """Why there is no token although the printer was linked (a restored
        backup, or a token file deleted by hand), or None."""
        try:
            with open(self._link_record_path(), encoding="utf-8") as handle:
                record = json.load(handle)
            server, name = str(record["server"]), record.get("name") or "printer"
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            server, name = "a server", "printer"
        return ("this printer was linked to {} as \"{}\", but its token is not here: tokens are never "
                "put in OctoPrint backups. If this OctoPrint was restored from a backup, link the "
                "printer again".format(server, name))

    # ---- a token file changed by the CLI ----

    def _token_file_signature(self):
        try:
            info = os.stat(os.path.join(self.folder(), TOKEN_FILE))
        except OSError:
            return None
        return (info.st_ino, info.st_mtime_ns, info.st_size)

    def remember_token_file(self):
        self._token_signature = self._token_file_signature()

    def watch_token_file(self, stopping):
        """Picks up a link or unlink made by the CLI while OctoPrint runs,
        until the event ``stopping`` is set."""
        while not stopping.wait(TOKEN_WATCH_SECONDS):
            with self._lifecycle:
                if stopping.is_set():
                    return
                signature = self._token_file_signature()
                if signature == self._token_signature:
                    continue
                self._token_signature = signature
                self._plugin._logger.info("[link] the stored token changed, reconnecting")
                if signature is None:
                    self._stop_remote()
                    self.state = dict(UNLINKED)
                else:
                    self._plugin.start_remote()
