# SPDX-License-Identifier: AGPL-3.0-or-later
"""End-to-end evaluation of the shipped detector: `make eval DATA=<dir>`.

DATA holds positives/ (failures) and negatives/ (no failure), searched
recursively for .jpg/.jpeg/.png. Every image goes through the installed
tsd-helper with the shipped model (octoprint_tsd/model/helper.yaml) and is
scored with the per-frame score p that native/core/decide.c uses: the sum of
the confidences of the helper's detections. Prints

    eval auroc <v>
    eval recall_at_fpr1 <v>
    eval recall_at_fpr5 <v>
    eval images <n>
    eval unreadable <n>

Images that cannot be read (not decodable by the helper; PNG when neither
Pillow nor OpenCV is importable here) are counted as unreadable, never
silently dropped. --by-folder adds the same figures per first-level folder
under positives/ (each against all negatives).

Frames reach the helper the way the plugin sends them: through the native
supervisor (_tsd.Detector); p comes from the native decision logic.
"""

import argparse
import io
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(HERE, "train"))

import metrics  # noqa: E402  (plain Python, no numpy)

DEFAULT_CONFIG = os.path.join(REPO, "octoprint_tsd", "model", "helper.yaml")
EXTENSIONS = (".jpg", ".jpeg", ".png")

class Unreadable(Exception):
    """The image could not be decoded (by us or by the helper)."""


class NativeClient:
    """The plugin's own path: ``_tsd.Detector`` (the native supervisor that
    runs tsd-helper, as the plugin does) for detections, ``_tsd.Decider`` for
    the score p."""

    def __init__(self, config, helper=None):
        from octoprint_tsd import bridge

        self._bridge = bridge
        self._detector = bridge.new_detector(helper or bridge.helper_path(), config,
                                             start_timeout_ms=120000, deadline_ms=60000)
        self._detector.ping()  # returns once the model is loaded; raises if it cannot be

    def detect(self, jpeg):
        """The helper's reply as a dict: {'w', 'h', 'ms', 'detections': [...]}."""
        try:
            return json.loads(self._detector.detect(jpeg))
        except self._bridge.HelperError as exc:
            if getattr(exc, "code", "") == "refused":  # an image the helper cannot decode
                raise Unreadable(str(exc))
            raise

    def score(self, detections):
        """p as native/core/decide.c computes it for a frame (bending factor 1,
        every detection): a fresh decider's first frame."""
        decider = self._bridge.new_decider()
        return decider.add_frame([float(d["confidence"]) for d in detections])["p"]

    def pid(self):
        return self._detector.health()["pid"]

    def close(self):
        self._detector.stop()


def make_client(config=DEFAULT_CONFIG, helper=None):
    """The one place that decides how frames reach the detector."""
    return NativeClient(config, helper)


def score_jpeg(client, jpeg_bytes):
    """Per-frame score p: the sum of the confidences of the detections, as
    the plugin's decision logic computes it."""
    reply = client.detect(jpeg_bytes)
    return float(client.score(reply.get("detections", [])))


def png_to_jpeg(path):
    """JPEG (quality 95) bytes of a PNG, with Pillow or OpenCV if importable."""
    try:
        from PIL import Image
    except ImportError:
        Image = None
    if Image is not None:
        try:
            with Image.open(path) as im:
                buf = io.BytesIO()
                im.convert("RGB").save(buf, "JPEG", quality=95)
                return buf.getvalue()
        except Exception as e:  # noqa: BLE001 - any decoding failure is "unreadable"
            raise Unreadable(str(e))
    try:
        import cv2
    except ImportError:
        raise Unreadable("PNG needs Pillow or OpenCV in this Python; neither is installed")
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise Unreadable("cv2 cannot read it")
    ok, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise Unreadable("cv2 cannot encode it")
    return enc.tobytes()


def image_jpeg(path):
    if path.lower().endswith(".png"):
        return png_to_jpeg(path)
    with open(path, "rb") as f:
        return f.read()


def list_images(folder):
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            if name.lower().endswith(EXTENSIONS):
                out.append(os.path.join(dirpath, name))
    return out


def score_folder(client, folder, unreadable):
    scores = []
    for path in list_images(folder):
        try:
            scores.append((path, score_jpeg(client, image_jpeg(path))))
        except (Unreadable, OSError) as e:
            unreadable.append((path, str(e)))
    return scores


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", help="folder with positives/ and negatives/")
    ap.add_argument("--config", default=DEFAULT_CONFIG)
    ap.add_argument("--helper", default=None, help="default: the installed package's tsd-helper")
    ap.add_argument("--by-folder", action="store_true")
    ap.add_argument("--scores", help="write every image's score to this TSV file")
    args = ap.parse_args(argv)
    pos_dir = os.path.join(args.data, "positives")
    neg_dir = os.path.join(args.data, "negatives")
    for d in (pos_dir, neg_dir):
        if not os.path.isdir(d):
            print("eval: %s is missing" % d, file=sys.stderr)
            return 2
    client = make_client(args.config, args.helper)
    unreadable = []
    try:
        pos = score_folder(client, pos_dir, unreadable)
        neg = score_folder(client, neg_dir, unreadable)
    finally:
        client.close()
    for path, why in unreadable:
        print("eval: unreadable %s: %s" % (path, why), file=sys.stderr)
    p = [s for _, s in pos]
    n = [s for _, s in neg]
    res = metrics.summary(p, n)
    print("eval auroc %.4f" % res["auroc"])
    print("eval recall_at_fpr1 %.4f" % res["recall_at_fpr1"])
    print("eval recall_at_fpr5 %.4f" % res["recall_at_fpr5"])
    print("eval images %d" % (len(p) + len(n)))
    print("eval unreadable %d" % len(unreadable))
    if args.by_folder:
        groups = {}
        for path, s in pos:
            rel = os.path.relpath(path, pos_dir).split(os.sep)
            groups.setdefault(rel[0] if len(rel) > 1 else ".", []).append(s)
        for name in sorted(groups):
            r = metrics.summary(groups[name], n)
            print("eval folder %s positives %d auroc %.4f recall_at_fpr1 %.4f recall_at_fpr5 %.4f" % (
                name, len(groups[name]), r["auroc"], r["recall_at_fpr1"], r["recall_at_fpr5"]))
        kinds = {}
        for path, s in neg:
            kinds.setdefault(os.path.relpath(path, neg_dir).split(os.sep)[0], []).append(s)
        for name in sorted(kinds):
            v = sorted(kinds[name])
            print("eval negatives %s n %d mean_p %.4f max_p %.4f" % (
                name, len(v), sum(v) / len(v), v[-1]))
    if args.scores:
        with open(args.scores, "w") as f:
            for label, rows in (("positive", pos), ("negative", neg)):
                for path, s in rows:
                    f.write("%s\t%.6f\t%s\n" % (label, s, path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
