# SPDX-License-Identifier: AGPL-3.0-or-later
"""What this printer's owner has marked as fine: learned false alarms.

When the owner says a flagged print looks fine, the detections that fired
are remembered: where they were (the box, as a fraction of the frame), which
camera saw them, and what they looked like (the helper's appearance
signature of the crop, "sig"). Later detections by the same camera at the
same place that look the same are dropped before the decision logic sees
them, so a cable, a logo or a spool that the detector mistakes for a failure
stops pausing prints on this printer, while a failure elsewhere in the frame,
or one that changes how that place looks, still counts.

Bounded (MAX_ENTRIES, the oldest forgotten first), persisted as one small
JSON file in the plugin's data folder (written atomically), and forgotten
on request ("forget what this printer learned" in the settings). A missing
file is an empty memory; an unreadable one is reported and replaced by an
empty memory, never fatal. Detections without a signature (models without a
"signature" output) are never suppressed: place alone is not enough.
"""

import json
import math
import os
import threading

MAX_ENTRIES = 64
MIN_OVERLAP = 0.5       # IoU with the remembered box
MIN_SIMILARITY = 0.9    # cosine of the signatures
FORMAT_VERSION = 1
SIGNATURE_MAX_DIMS = 256


def write_json_file(path, doc):
    """Replaces path with doc as JSON, all or nothing: written beside it,
    synced, then renamed over it. On an error (a full disk) the old file
    stays as it was, the partial copy is removed, and OSError propagates."""
    tmp = path + ".tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(doc, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class LearnedError(Exception):
    """The stored memory could not be read (the memory is then empty)."""


def _box(detection, width, height):
    """(x0, y0, x1, y1) as fractions of the frame, or None."""
    try:
        x, y, w, h = (float(v) for v in detection["box"])
    except (KeyError, TypeError, ValueError):
        return None
    if width <= 0 or height <= 0 or w <= 0 or h <= 0:
        return None
    return (x / width, y / height, (x + w) / width, (y + h) / height)


def _unit(vector):
    """The signature scaled to length 1, or None if it is unusable."""
    try:
        values = [float(v) for v in vector]
    except (TypeError, ValueError):
        return None
    if not values or len(values) > SIGNATURE_MAX_DIMS or not all(math.isfinite(v) for v in values):
        return None
    norm = math.sqrt(sum(v * v for v in values))
    if norm <= 1e-9:
        return None
    return [v / norm for v in values]


def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _cosine(a, b):
    if len(a) != len(b):
        return -1.0
    return sum(x * y for x, y in zip(a, b))


class LearnedScene:
    """The memory of one printer (all its cameras). Thread-safe."""

    def __init__(self, path=None):
        self._path = path
        self._lock = threading.Lock()
        self._entries = []  # dicts: camera, box (4 fractions), sig (unit vector)
        self._save_error = None  # why the file is behind the memory in use

    # ---- persistence -------------------------------------------------------------

    def load(self):
        """Reads the file; raises LearnedError (memory left empty) when it is
        unreadable. A missing file is an empty memory."""
        if not self._path:
            return
        try:
            with open(self._path, encoding="utf-8") as handle:
                doc = json.load(handle)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            raise LearnedError("cannot read {}: {}".format(os.path.basename(self._path), exc))
        entries = self._parse(doc)
        with self._lock:
            self._entries = entries

    @staticmethod
    def _parse(doc):
        if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION:
            raise LearnedError("unknown format (version {!r})".format(
                doc.get("version") if isinstance(doc, dict) else None))
        raw = doc.get("entries")
        if not isinstance(raw, list):
            raise LearnedError("no entry list")
        entries = []
        for item in raw[-MAX_ENTRIES:]:
            if not isinstance(item, dict):
                raise LearnedError("an entry is not an object")
            camera = item.get("camera")
            box = item.get("box")
            sig = _unit(item.get("sig"))
            if (not isinstance(camera, str) or len(camera) > 512 or not isinstance(box, list)
                    or len(box) != 4 or sig is None):
                raise LearnedError("an entry is malformed")
            try:
                box = [float(v) for v in box]
            except (TypeError, ValueError):
                raise LearnedError("an entry's box is not numbers")
            if not all(0.0 <= v <= 1.0 for v in box) or box[2] <= box[0] or box[3] <= box[1]:
                raise LearnedError("an entry's box is out of range")
            entries.append({"camera": camera, "box": box, "sig": sig})
        return entries

    def _save_locked(self):
        if not self._path:
            return
        doc = {"version": FORMAT_VERSION,
               "entries": [{"camera": e["camera"], "box": [round(v, 5) for v in e["box"]],
                            "sig": [round(v, 5) for v in e["sig"]]} for e in self._entries]}
        try:
            write_json_file(self._path, doc)
        except OSError as exc:
            self._save_error = "could not save {}: {}".format(os.path.basename(self._path), exc)
            raise
        self._save_error = None

    def save_error(self):
        """Why the file is behind what is in use (a save failed), or None."""
        with self._lock:
            return self._save_error

    def save_if_behind(self):
        """Saves again after a failed save (space may have come back);
        returns save_error()."""
        with self._lock:
            if self._save_error is not None:
                try:
                    self._save_locked()
                except OSError:
                    pass
            return self._save_error

    # ---- use -----------------------------------------------------------------------

    def count(self):
        with self._lock:
            return len(self._entries)

    def learn(self, camera, detections, width, height):
        """Remembers these detections (of a frame the owner calls fine).
        Returns how many were remembered; saves the file when they are new or
        it is behind (OSError propagates, the memory in use keeps them)."""
        added = 0
        with self._lock:
            for d in detections:
                box = _box(d, width, height)
                sig = _unit(d.get("sig")) if isinstance(d, dict) else None
                if box is None or sig is None:
                    continue
                if any(e["camera"] == camera and _iou(e["box"], box) >= 0.9
                       and _cosine(e["sig"], sig) >= 0.99 for e in self._entries):
                    continue  # already known
                self._entries.append({"camera": camera, "box": list(box), "sig": sig})
                added += 1
            del self._entries[:-MAX_ENTRIES]
            if added or self._save_error is not None:
                self._save_locked()
        return added

    def filter(self, camera, detections, width, height):
        """(detections to keep, how many were suppressed)."""
        with self._lock:
            entries = [e for e in self._entries if e["camera"] == camera]
        if not entries:
            return list(detections), 0
        kept = []
        for d in detections:
            box = _box(d, width, height)
            sig = _unit(d.get("sig")) if isinstance(d, dict) else None
            if box is not None and sig is not None and any(
                    _iou(e["box"], box) >= MIN_OVERLAP and _cosine(e["sig"], sig) >= MIN_SIMILARITY
                    for e in entries):
                continue
            kept.append(d)
        return kept, len(detections) - len(kept)

    def forget(self):
        """Forgets everything (and removes the file). Returns how many."""
        with self._lock:
            gone = len(self._entries)
            self._entries = []
            self._save_error = None  # nothing is kept that the file lacks
            if self._path:
                try:
                    os.remove(self._path)
                except FileNotFoundError:
                    pass
        return gone
