# SPDX-License-Identifier: AGPL-3.0-or-later
"""Print from the app (cloud print start): the server's passthru call
``file_downloader.download`` as the native allow-list passed it.

The file is downloaded by the native core on a C thread of its own
(``_tsd.Download``: the download rule of docs/security.md, streamed into a
temporary file under OctoPrint's upload folder through a fixed buffer, size
cap, deadline, MD5, G-code sanity); its progress and its end arrive here on
an event pump. Only then, on that pump's Python thread, the shim:

1. checks the file against what the server declared and knows (a declared
   MD5 was checked in C; the server's record of the file is updated with
   ``PATCH /api/v1/octo/g_code_files/<id>/`` and its ``num_bytes`` must match);
2. adds it to OctoPrint's storage as ``ObicoUpload/<safe name>`` (the name
   was made by the allow-list; nothing of a path from the server is used);
3. selects it with print-after-select, if the printer is still idle.

The call is answered when the outcome is known (an error ack for every
refusal: the rule, the size, the printer, the checks), or with
``{"target_path": ...}`` after ACK_WAIT_SECONDS while a long download goes
on, before the app gives up waiting (60 s). A failed, cancelled or refused
download leaves no file and does not touch the printer.
"""

import json
import os
import shutil
import threading
import time
import uuid

from . import bridge

UPLOAD_FOLDER = "ObicoUpload"
STATE_TEXT = "G-Code Downloading"
ACK_WAIT_SECONDS = 45.0         # the app stops waiting for an answer after 60 s
DOWNLOAD_TIMEOUT_MS = 30 * 60 * 1000  # the server's own pseudo-state ends after 30 min
READ_TIMEOUT_MS = 60 * 1000
MAX_LINE_BYTES = 64 * 1024      # G-code sanity: a longer "line" is not G-code
PATCH_TIMEOUT = 30.0
MIB = 1024 * 1024
DEFAULT_MAX_MB = 500
DEFAULT_FREE_MARGIN_MB = 200
TEMP_PREFIX = ".tsd-download-"


class CloudPrintError(Exception):
    """A download the plugin refuses before it starts; the text is the ack."""


def max_download_bytes(folder, max_mb, margin_mb):
    """The largest file the download may write: the owner's cap, and never
    more than the free space in folder less the margin."""
    usage = shutil.disk_usage(folder)
    room = usage.free - int(margin_mb) * MIB
    if room <= 0:
        raise CloudPrintError("not enough free space for a download: {} MB free, {} MB kept "
                              "free".format(usage.free // MIB, int(margin_mb)))
    return min(int(max_mb) * MIB, room)


class CloudPrint:
    def __init__(self, plugin, remote, logger):
        self._plugin = plugin
        self._remote = remote
        self._logger = logger
        self._lock = threading.Lock()
        self._job = None       # the download in progress
        self.last = None       # how the last one ended, for the tab

    # ---- the passthru call ----------------------------------------------------

    def start(self, ref, params, server_host, allow_cleartext_lan, ca_file):
        """Starts the download of params (id, url, filename, safe_name) and
        answers ref when the outcome is known. Raises CloudPrintError (the
        caller acks it) when it cannot start."""
        plugin = self._plugin
        printer = plugin._printer
        # OctoPrint's own state, not a status text: connected, idle, no job.
        if not printer.is_operational() or not printer.is_ready() or printer.is_printing() \
                or printer.is_paused():
            raise CloudPrintError("Printer busy: a download needs an operational, idle printer")
        settings = plugin._settings
        folder = settings.global_get_basefolder("uploads")
        max_bytes = max_download_bytes(folder, settings.get_int(["cloud_print_max_mb"]) or DEFAULT_MAX_MB,
                                       settings.get_int(["cloud_print_free_margin_mb"]) or 0)
        with self._lock:
            if self._job is not None:
                raise CloudPrintError("a download is already running")
            temp = os.path.join(folder, "{}{}.part".format(TEMP_PREFIX, uuid.uuid4().hex))
            try:
                download = bridge.new_download(
                    params["url"], temp, max_bytes, server_host=server_host,
                    allow_cleartext_lan=allow_cleartext_lan, ca_file=ca_file or None,
                    total_timeout_ms=DOWNLOAD_TIMEOUT_MS, read_timeout_ms=READ_TIMEOUT_MS,
                    max_line=MAX_LINE_BYTES)
            except bridge.GrabError as exc:
                raise CloudPrintError("download refused: {}".format(exc))
            job = {
                "ref": ref, "id": params["id"], "filename": params["filename"],
                "target_path": UPLOAD_FOLDER + "/" + params["safe_name"], "temp": temp,
                "download": download, "bytes": 0, "expected": 0, "started": time.monotonic(),
                "acked": False, "max_bytes": max_bytes,
            }
            self._job = job
        self._logger.info("[cloudprint] downloading %r for the server (file %s, at most %d MB)",
                          params["filename"], params["id"], max_bytes // MIB)
        job["pump"] = bridge.EventPump(
            download.next_event, download.close,
            lambda kind, payload: self._on_event(job, kind, payload),
            self._logger, name="tsd-cloudprint")
        job["pump"].start()
        self._remote.boost()

    def cancel(self, why="cancelled"):
        job = self._job
        if job is not None:
            self._logger.info("[cloudprint] cancelling the download: %s", why)
            job["download"].cancel()

    def stop(self):
        """Cancels a download and waits for its thread (plugin shutdown)."""
        job = self._job
        if job is not None:
            job["download"].cancel()
            job["pump"].stop()

    # ---- what others see ----------------------------------------------------------

    def active(self):
        return self._job is not None

    def progress(self):
        """{bytes, expected, percent} of the download in progress, or None."""
        job = self._job
        if job is None:
            return None
        expected = job["expected"]
        percent = int(job["bytes"] * 100 / expected) if expected else None
        return {"bytes": job["bytes"], "expected": expected or None, "percent": percent}

    def info(self):
        job = self._job
        current = None
        if job is not None:
            current = dict(self.progress(), filename=job["filename"], target_path=job["target_path"])
        return {"downloading": current, "last": self.last}

    # ---- the download's events (its pump's thread) ---------------------------------

    def _on_event(self, job, kind, payload):
        body = json.loads(payload.decode("utf-8", "replace") or "{}")
        if kind == bridge.DOWNLOAD_EVENT_PROGRESS:
            job["bytes"], job["expected"] = body["bytes"], body["expected"]
            self._plugin.on_cloud_print_progress(self.info())
            if not job["acked"] and time.monotonic() - job["started"] > ACK_WAIT_SECONDS:
                # The app would give up: it hears that the download runs.
                job["acked"] = True
                self._remote.ack(job["ref"], ret={"target_path": job["target_path"]})
            return
        try:
            if kind == bridge.DOWNLOAD_EVENT_DONE:
                job["bytes"] = body["bytes"]
                self._finish(job, body)
            else:
                self._fail(job, "the download failed ({}): {}".format(body.get("code"), body.get("error")))
        finally:
            self._remove(job["temp"])
            with self._lock:
                self._job = None
            # The pump thread is this one: close the queue, do not join.
            job["pump"].stop()
            self._remote.boost()
            self._plugin.on_cloud_print_progress(self.info())

    def _finish(self, job, result):
        plugin = self._plugin
        printer = plugin._printer
        try:
            if not printer.is_operational() or printer.is_printing() or printer.is_paused():
                raise CloudPrintError("the printer is no longer idle; the file was not kept")
            path = self._store(job)
            try:
                self._record_with_server(job, path)
                printer.select_file(path, False, printAfterSelect=True)
            except Exception:
                plugin._file_manager.remove_file("local", path)
                raise
        except Exception as exc:
            self._fail(job, str(exc))
            return
        self._logger.info("[cloudprint] %s: %d bytes, MD5 %s%s; printing", path, result["bytes"],
                          result["md5"], " (as declared)" if result["md5_declared"] else "")
        self.last = {"filename": job["filename"], "path": path, "bytes": result["bytes"],
                     "md5": result["md5"], "error": None}
        self._ack_once(job, ret={"target_path": path})

    def _store(self, job):
        """Adds the verified file to OctoPrint's storage (moved, not copied)."""
        from octoprint.filemanager.util import DiskFileWrapper

        manager = self._plugin._file_manager
        manager.add_folder("local", UPLOAD_FOLDER, ignore_existing=True)
        return manager.add_file("local", job["target_path"],
                                DiskFileWrapper(os.path.basename(job["target_path"]), job["temp"]),
                                allow_overwrite=True, display=job["filename"])

    def _record_with_server(self, job, path):
        """PATCH g_code_files/<id>/ with the signature the print-start upsert
        will send (remote.py), so the print links to this file; the server's
        record must be of a file of the size received."""
        metadata = self._plugin._file_manager.get_metadata("local", path) or {}
        fields = {"safe_filename": os.path.basename(path)}
        if metadata.get("hash"):
            fields["agent_signature"] = "md5:" + metadata["hash"]
        response = self._remote.request("PATCH", "/api/v1/octo/g_code_files/{}/".format(job["id"]),
                                        fields, PATCH_TIMEOUT)
        if response is None or response.status_code != 200:
            self._logger.warning("[cloudprint] the server did not update its file record: %s",
                                 "not linked" if response is None else "HTTP %s" % response.status_code)
            return
        try:
            num_bytes = response.json().get("num_bytes")
        except ValueError:
            num_bytes = None
        if isinstance(num_bytes, int) and num_bytes > 0 and num_bytes != job["bytes"]:
            raise CloudPrintError("the server's file has {} bytes, {} were received".format(
                num_bytes, job["bytes"]))

    def _fail(self, job, error):
        self._logger.warning("[cloudprint] %r not printed: %s", job["filename"], error)
        self.last = {"filename": job["filename"], "path": None, "bytes": job["bytes"],
                     "md5": None, "error": error}
        if not self._ack_once(job, error=error):
            self._plugin.on_cloud_print_failed(job["filename"], error)

    def _ack_once(self, job, ret=None, error=None):
        """Answers the call if nobody has yet; False when it was answered."""
        if job["acked"]:
            return False
        job["acked"] = True
        self._remote.ack(job["ref"], ret=ret, error=error)
        return True

    def _remove(self, path):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            self._logger.warning("[cloudprint] could not remove %s: %s", path, exc)
