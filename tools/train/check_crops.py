# SPDX-License-Identifier: AGPL-3.0-or-later
"""Checks an exported crop detector: the same JPEG through the real
tsd-helper (OpenCV 4.6 DNN, model_type onnx_crops) and through training's
own pipeline (train_crops.cut + the PyTorch backbone and head) must give the
same score for every crop.

    .venv-train/bin/python tools/train/check_crops.py --model octoprint_tsd/model \
        --helper build/test/helper/tsd-helper --backbone <wheel> \
        --head build/train-crops/<run>/head.pt --image a.jpg --image b.jpg

The helper runs with box_threshold 0 and nms_threshold 1 so that it reports
every crop. Exits non-zero when a score differs by more than --tolerance
(the two decode and resize the same pixels, but libjpeg-turbo versions and
OpenCV's fixed-point resize differ by a grey level here and there, which a
trained head turns into a few hundredths), or when the two disagree about a
detection (one side above the shipped box threshold, the other below it, by
more than the tolerance).
"""

import argparse
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import mobilenet  # noqa: E402
import train_crops  # noqa: E402


def helper_detect(proc, request_id, jpeg):
    """One frame over the helper protocol (helper/README.md)."""
    proc.stdin.write(struct.pack("<4sBBHII", b"TSDF", 1, 1, 0, request_id, len(jpeg)) + jpeg)
    proc.stdin.flush()
    head = proc.stdout.read(16)
    magic, _version, kind, _zero, rid, length = struct.unpack("<4sBBHII", head)
    payload = json.loads(proc.stdout.read(length))
    if magic != b"TSDR" or rid != request_id or kind != 1:
        raise SystemExit("check_crops: helper answered %r" % payload)
    return payload


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--helper", required=True)
    ap.add_argument("--backbone", required=True)
    ap.add_argument("--head", required=True)
    ap.add_argument("--image", action="append", required=True)
    ap.add_argument("--tolerance", type=float, default=0.03)
    args = ap.parse_args(argv)
    backbone, _ = mobilenet.load_backbone(args.backbone)
    tail_path = os.path.join(os.path.dirname(args.head), "tail.pt")
    if os.path.exists(tail_path):  # a --tune-from run: its fine-tuned end of the backbone
        train_crops.load_tuned_tail(backbone, tail_path)
    head = mobilenet.Head()
    head.load_state_dict(torch.load(args.head, weights_only=False)["head"])
    head.eval()
    worst = 0.0
    worst_sig = 1.0
    disagreements = 0
    shipped_threshold = float(re.search(r"^box_threshold:\s*([0-9.]+)", open(
        os.path.join(args.model, "helper.yaml")).read(), flags=re.M).group(1))
    projection, offset = signature_weights(os.path.join(args.model, "failure.onnx"))
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(os.path.join(args.model, "failure.onnx"), tmp)
        text = open(os.path.join(args.model, "helper.yaml")).read()
        text = re.sub(r"^box_threshold:.*$", "box_threshold: 0", text, flags=re.M)
        text = re.sub(r"^nms_threshold:.*$", "nms_threshold: 1", text, flags=re.M)
        with open(os.path.join(tmp, "helper.yaml"), "w") as f:
            f.write(text)
        proc = subprocess.Popen([args.helper, "--config", os.path.join(tmp, "helper.yaml")],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            for n, path in enumerate(args.image):
                with open(path, "rb") as f:
                    reply = helper_detect(proc, n + 1, f.read())
                crops = train_crops.grid()
                with torch.no_grad():
                    feats = backbone(mobilenet.normalise(train_crops.cut(path, crops)))
                    mine = torch.sigmoid(head(feats)).numpy()
                w, h = reply["w"], reply["h"]
                theirs = {}
                their_sigs = {}
                for d in reply["detections"]:
                    bx, by, bw, bh = d["box"]
                    key = (round(bx / w, 2), round(by / h, 2), round(bw / w, 2))
                    theirs[key] = d["confidence"]
                    if "sig" in d:
                        their_sigs[key] = np.array(d["sig"], dtype=np.float64)
                if projection is not None:
                    sigs = feats.numpy().astype(np.float64) @ projection.T + offset
                    for c, mine_sig in zip(crops, sigs):
                        other = their_sigs.get((round(c[0], 2), round(c[1], 2), round(c[2] - c[0], 2)))
                        cos = -1.0 if other is None else float(
                            other @ mine_sig / (np.linalg.norm(other) * np.linalg.norm(mine_sig) + 1e-12))
                        worst_sig = min(worst_sig, cos)
                for c, s in zip(crops, mine):
                    other = theirs.get((round(c[0], 2), round(c[1], 2), round(c[2] - c[0], 2)))
                    diff = abs(float(s) - other) if other is not None else 1.0
                    worst = max(worst, diff)
                    if other is not None and (other > shipped_threshold) != (float(s) > shipped_threshold) and \
                            min(abs(other - shipped_threshold), abs(float(s) - shipped_threshold)) > args.tolerance:
                        disagreements += 1
                    if diff > args.tolerance:
                        print("  crop %s: helper %s, pytorch %.4f" % ([round(v, 3) for v in c], other, float(s)))
                print("check_crops: %s: %d crops, helper max %.4f, pytorch max %.4f, %.1f ms in the helper"
                      % (os.path.basename(path), len(crops), max(theirs.values(), default=0.0),
                         float(mine.max()), reply["ms"]))
        finally:
            proc.stdin.close()
            proc.wait(timeout=30)
    print("check_crops: worst score difference %.4f (tolerance %.4f); %d detection(s) decided differently "
          "at box threshold %.2f" % (worst, args.tolerance, disagreements, shipped_threshold))
    if projection is not None:
        print("check_crops: lowest signature cosine %.5f (helper vs pytorch, want > 0.99)" % worst_sig)
    ok = worst <= args.tolerance and disagreements == 0 and (projection is None or worst_sig > 0.99)
    return 0 if ok else 1


def signature_weights(onnx_path):
    """(projection [D x 1280], offset [D]) of the model's "signature" Gemm,
    or (None, None) when it has none."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(onnx_path)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Gemm" and list(node.output) == ["signature"]:
            return inits[node.input[1]].astype(np.float64), inits[node.input[2]].astype(np.float64)
    return None, None


if __name__ == "__main__":
    sys.exit(main())
