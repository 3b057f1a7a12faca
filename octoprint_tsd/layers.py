# SPDX-License-Identifier: AGPL-3.0-or-later
"""Which layer a print is on, and how many the file has.

The server shows "layer N of M" from ``status.currentLayerHeight`` (a layer
number, whatever its name says) and ``file_metadata.obico.totalLayerCount``.
OctoPrint-Obico gets them by rewriting every upload with marker lines; we leave
the owner's files alone and apply one rule in C (native/core/layers.h) twice:
to the lines OctoPrint sends during the print, and to the file when it starts.
"""

import threading

from . import bridge

# Counting reads the whole file in C with the GIL released (about 1 s per
# 100 MB here); a larger file simply has no total.
MAX_COUNTED_BYTES = 1 << 30


class PrintLayers:
    def __init__(self, logger, file_manager):
        self._logger = logger
        self._file_manager = file_manager
        self._lock = threading.Lock()
        self._counter = None   # LayerCounter while a print runs
        self._totals = {}      # (origin, path, hash) -> layers in the file; one entry
        self._counting = None  # the key being counted

    # OctoPrint's send thread: every line sent to the printer.
    def on_sent(self, cmd):
        counter = self._counter
        if counter is not None and cmd:
            counter.feed(cmd)

    def current(self):
        """The layer the print is on; None between prints (as the original)."""
        counter = self._counter
        return counter.layer() if counter is not None else None

    def total(self, origin, path, file_hash):
        """The file's layers once counted; None before (or when it cannot be)."""
        with self._lock:
            return self._totals.get((origin, path, file_hash))

    def on_print_started(self, payload):
        if not bridge.native_available():
            return
        self._counter = bridge.new_layer_counter()
        origin, path = (payload or {}).get("origin"), (payload or {}).get("path")
        if origin != "local" or not path:
            return  # an SD card file: OctoPrint cannot read it
        try:
            file_hash = (self._file_manager.get_metadata(origin, path) or {}).get("hash")
            disk_path = self._file_manager.path_on_disk(origin, path)
        except Exception as exc:
            self._logger.debug("[layers] no file to count for %s: %s", path, exc)
            return
        key = (origin, path, file_hash)
        with self._lock:
            if key in self._totals or self._counting == key:
                return
            self._counting = key
        threading.Thread(target=self._count, args=(key, disk_path),
                         name="tsd-layers", daemon=True).start()

    def on_print_ended(self):
        self._counter = None

    def _count(self, key, disk_path):
        try:
            total = bridge.count_layers(disk_path, MAX_COUNTED_BYTES)
        except (bridge.TsdError, OSError, ValueError) as exc:
            self._logger.info("[layers] no layer count for %s: %s", key[1], exc)
            total = None
        with self._lock:
            self._counting = None
            if total is not None:
                self._totals = {key: total}
