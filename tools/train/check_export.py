# SPDX-License-Identifier: AGPL-3.0-or-later
"""Checks an exported model against this project's PyTorch reading of it:

1. failure.weights read back by darknet.py equals the training checkpoint
   (when --checkpoint is given): the writer round-trips;
2. the same JPEG through the real tsd-helper (OpenCV 4.6 DNN) and through
   darknet.py gives the same detections (confidence and box), at a low
   threshold so that there is something to compare.

    .venv-train/bin/python tools/train/check_export.py --model octoprint_tsd/model \
        --helper .venv/lib/python3.11/site-packages/octoprint_tsd/tsd-helper \
        --image some.jpg [--checkpoint tools/train/runs/<run>/last.pt]
"""

import argparse
import io
import os
import re
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import darknet  # noqa: E402
import train  # noqa: E402
import eval as model_eval  # noqa: E402  (tools/eval.py)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(os.path.dirname(os.path.dirname(HERE)),
                                                    "octoprint_tsd", "model"))
    ap.add_argument("--helper", required=True)
    ap.add_argument("--image", action="append", required=True)
    ap.add_argument("--checkpoint")
    ap.add_argument("--threshold", type=float, default=0.02)
    args = ap.parse_args()

    cfg_text = open(os.path.join(args.model, "failure.cfg")).read()
    sections = darknet.parse_cfg(cfg_text)
    size = darknet.get(sections[0], "width", 320, int)
    model = darknet.Darknet(sections)
    darknet.load_weights(model, os.path.join(args.model, "failure.weights"))
    model.eval()
    if args.checkpoint:
        ck = torch.load(args.checkpoint, weights_only=False)["model"]
        worst = max(float((ck[k].float() - v.float()).abs().max()) for k, v in model.state_dict().items()
                    if not k.endswith("num_batches_tracked"))
        print("check: weights round trip, max |difference| %.3g" % worst)
        assert worst == 0.0

    worst_conf = 0.0
    worst_box = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        # the same model with a low threshold so that weak boxes are compared too
        shutil.copy(os.path.join(args.model, "failure.weights"), tmp)
        with open(os.path.join(tmp, "failure.cfg"), "w") as f:
            f.write(re.sub(r"^thresh=.*$", "thresh=%g" % args.threshold, cfg_text, flags=re.M))
        yaml = open(os.path.join(args.model, "helper.yaml")).read()
        yaml = re.sub(r"^box_threshold:.*$", "box_threshold: %g" % args.threshold, yaml, flags=re.M)
        with open(os.path.join(tmp, "helper.yaml"), "w") as f:
            f.write(yaml)
        client = model_eval.make_client(os.path.join(tmp, "helper.yaml"), args.helper)
        try:
            for path in args.image:
                img = Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR)
                buf = io.BytesIO()
                img.save(buf, "JPEG", quality=98, subsampling=0)
                jpeg = buf.getvalue()
                decoded = Image.open(io.BytesIO(jpeg)).convert("RGB")
                reply = client.detect(jpeg)
                x = train.to_tensor(decoded)[None]
                mine = train.detections(model, x, size, args.threshold)[0]
                theirs = reply["detections"]
                print("check: %s: helper %d detections (p %.4f), pytorch %d (p %.4f)" % (
                    os.path.basename(path), len(theirs), sum(d["confidence"] for d in theirs),
                    len(mine), sum(c for c, _ in mine)))
                for d in theirs[:5]:
                    bx, by, bw, bh = d["box"]
                    hb = np.array([bx, by, bx + bw, by + bh], dtype=np.float64) / size
                    best = min(mine, key=lambda m: np.abs(np.array(m[1]) - hb).sum()) if mine else None
                    if best is None:
                        worst_conf = max(worst_conf, d["confidence"])
                        continue
                    dc = abs(best[0] - d["confidence"])
                    db = float(np.abs(np.array(best[1]) - hb).max() * size)
                    worst_conf = max(worst_conf, dc)
                    worst_box = max(worst_box, db)
                    print("  helper %.4f %s | pytorch %.4f %s" % (
                        d["confidence"], d["box"], best[0],
                        [round(v * size) for v in (best[1][0], best[1][1], best[1][2] - best[1][0],
                                                   best[1][3] - best[1][1])]))
        finally:
            client.close()
    print("check: worst confidence difference %.4f, worst box corner difference %.1f px"
          % (worst_conf, worst_box))


if __name__ == "__main__":
    main()
