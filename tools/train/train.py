# SPDX-License-Identifier: AGPL-3.0-or-later
"""Fine-tunes Yolo-Fastest 1.1 (COCO, 80 classes) into the one-class
"failure" detector and exports it as Darknet .cfg + .weights.

    .venv-train/bin/python tools/train/train.py --run r1            # train
    .venv-train/bin/python tools/train/train.py --run r1 --resume   # go on after a stop
    .venv-train/bin/python tools/train/train.py --run r1 --export-only --out octoprint_tsd/model

CPU only. A sample is a function of (seed, epoch, index), and every epoch
ends with a checkpoint, so a resumed run trains on the same data as an
uninterrupted one.
"""

import argparse
import json
import math
import os
import platform
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import darknet  # noqa: E402
import data  # noqa: E402
import metrics  # noqa: E402

BASE_CFG = "yolo-fastest-1.1.cfg"
BASE_WEIGHTS = "yolo-fastest-1.1.weights"


def log(fh, msg):
    line = time.strftime("%H:%M:%S ") + msg
    print(line, flush=True)
    if fh:
        fh.write(line + "\n")
        fh.flush()


# ---------------------------------------------------------------- model

def build_model(root, size):
    base_sections = darknet.parse_cfg(open(os.path.join(root, data.BASE, BASE_CFG)).read())
    base = darknet.Darknet(base_sections)
    darknet.load_weights(base, os.path.join(root, data.BASE, BASE_WEIGHTS))
    sections = darknet.to_n_classes(base_sections, 1)
    darknet.put(sections[0], "width", size)
    darknet.put(sections[0], "height", size)
    model = darknet.Darknet(sections)
    src = base.state_dict()
    dst = model.state_dict()
    for k, v in src.items():
        if dst[k].shape == v.shape:
            dst[k] = v.clone()
    # heads: keep each anchor's box and objectness rows, start the class row
    # from the mean of the 80 COCO class rows
    for i, m in enumerate(model.layers):
        if isinstance(m, darknet.Conv) and i + 1 < len(model.kinds) and model.kinds[i + 1] == "yolo":
            n_anchor = len(model.layers[i + 1].mask)
            w_src = src["layers.%d.conv.weight" % i].view(n_anchor, 85, -1)
            b_src = src["layers.%d.conv.bias" % i].view(n_anchor, 85)
            w = torch.cat([w_src[:, :5], w_src[:, 5:].mean(1, keepdim=True)], 1)
            b = torch.cat([b_src[:, :5], b_src[:, 5:].mean(1, keepdim=True)], 1)
            dst["layers.%d.conv.weight" % i] = w.reshape(dst["layers.%d.conv.weight" % i].shape)
            dst["layers.%d.conv.bias" % i] = b.reshape(-1)
    model.load_state_dict(dst)
    return model, sections


# ---------------------------------------------------------------- loss

def box_iou_wh(wh1, wh2):
    inter = torch.min(wh1[:, None, 0], wh2[None, :, 0]) * torch.min(wh1[:, None, 1], wh2[None, :, 1])
    return inter / (wh1[:, None, 0] * wh1[:, None, 1] + wh2[None, :, 0] * wh2[None, :, 1] - inter)


def xywh_to_xyxy(b):
    return torch.cat([b[..., :2] - b[..., 2:] / 2, b[..., :2] + b[..., 2:] / 2], -1)


def iou_xyxy(a, b):
    """a: N x 4, b: M x 4 -> N x M"""
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).prod(-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter + 1e-9)


def giou_pairs(a, b):
    """elementwise GIoU of two N x 4 xyxy sets"""
    lt = torch.max(a[:, :2], b[:, :2])
    rb = torch.min(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(-1)
    union = area_a + area_b - inter + 1e-9
    iou = inter / union
    hull = (torch.max(a[:, 2:], b[:, 2:]) - torch.min(a[:, :2], b[:, :2])).clamp(min=0).prod(-1) + 1e-9
    return iou - (hull - union) / hull


def yolo_loss(model, outputs, targets, in_size, weights=(1.0, 1.0, 1.0)):
    """YOLOv3-style loss. targets: list (per image) of N x 4 tensors, xyxy
    normalised. Each box goes to the anchor (of all heads) whose shape fits
    best, plus every other anchor with shape IoU > the cfg's iou_thresh, in
    the cell holding its centre. Objectness: BCE, 1 at assigned cells, 0
    elsewhere except predictions already overlapping a box by more than
    ignore_thresh (not penalised). Box: 1 - GIoU. Class: BCE towards 1."""
    heads = model.heads()
    all_anchors = torch.tensor(heads[0].all_anchors, dtype=torch.float32) / in_size
    batch = len(targets)
    l_box = torch.zeros(())
    l_obj = torch.zeros(())
    l_cls = torch.zeros(())
    n_pos = 0
    for head, raw in zip(heads, outputs):
        b, a, h, w, _ = raw.shape
        boxes, _, _ = darknet.decode(head, raw, in_size, in_size)
        pred_xyxy = xywh_to_xyxy(boxes)
        obj_t = torch.zeros(b, a, h, w)
        obj_w = torch.ones(b, a, h, w)
        pos_idx = []
        pos_box = []
        for i, t in enumerate(targets):
            if len(t) == 0:
                continue
            with torch.no_grad():
                ious = iou_xyxy(pred_xyxy[i].reshape(-1, 4), t).max(1).values.view(a, h, w)
                obj_w[i][ious > head.ignore_thresh] = 0.0
            cxcy = (t[:, :2] + t[:, 2:]) / 2
            wh = (t[:, 2:] - t[:, :2])
            aiou = box_iou_wh(wh, all_anchors)
            best = aiou.argmax(1)
            for g in range(len(t)):
                for k, anchor in enumerate(head.mask):
                    if anchor == int(best[g]) or aiou[g, anchor] > head.iou_thresh:
                        gi = min(w - 1, int(cxcy[g, 0] * w))
                        gj = min(h - 1, int(cxcy[g, 1] * h))
                        pos_idx.append((i, k, gj, gi))
                        pos_box.append(t[g])
        if pos_idx:
            idx = torch.tensor(pos_idx)
            tb = torch.stack(pos_box)
            pb = pred_xyxy[idx[:, 0], idx[:, 1], idx[:, 2], idx[:, 3]]
            l_box = l_box + (1.0 - giou_pairs(pb, tb)).sum()
            obj_t[idx[:, 0], idx[:, 1], idx[:, 2], idx[:, 3]] = 1.0
            obj_w[idx[:, 0], idx[:, 1], idx[:, 2], idx[:, 3]] = 1.0
            cls_raw = raw[idx[:, 0], idx[:, 1], idx[:, 2], idx[:, 3], 5]
            l_cls = l_cls + F.binary_cross_entropy_with_logits(
                cls_raw, torch.ones_like(cls_raw), reduction="sum")
            n_pos += len(pos_idx)
        l_obj = l_obj + (F.binary_cross_entropy_with_logits(
            raw[..., 4], obj_t, reduction="none") * obj_w).sum()
    wb, wo, wc = weights
    total = (wb * l_box + wo * l_obj + wc * l_cls) / batch
    return total, {"box": float(l_box.detach()) / batch, "obj": float(l_obj.detach()) / batch,
                   "cls": float(l_cls.detach()) / batch, "pos": n_pos / batch}


# ---------------------------------------------------------------- data

class TrainSet(torch.utils.data.Dataset):
    def __init__(self, items, size, seed, neg_fraction):
        self.items = items
        self.size = size
        self.seed = seed
        self.n_pos = len(items)
        self.n_neg = int(round(neg_fraction * len(items)))
        self.epoch = 0

    def __len__(self):
        return self.n_pos + self.n_neg

    def __getitem__(self, index):
        rng = np.random.default_rng([self.seed, self.epoch, index])
        s = self.size
        if index < self.n_pos:
            it = self.items[index]
            fill = None
            if rng.random() < 0.5:
                fill, _ = data.make_negative(rng, self.items, s, s)
            img, boxes = data.geometric(rng, it["pixels"], it["boxes"], s, s, fill)
            if rng.random() < 0.1:
                img = data.draw_arrow(rng, img)  # arrows on positives too: not a cue
        else:
            neg, _ = data.make_negative(rng, self.items, s, s)
            img, boxes = data.geometric(rng, np.asarray(neg), np.zeros((0, 4), np.float32), s, s,
                                        None)
        img = data.photometric(rng, img)
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return x, torch.from_numpy(boxes)


def collate(batch):
    return torch.stack([b[0] for b in batch]), [b[1] for b in batch]


def to_tensor(img):
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)


# ---------------------------------------------------------------- validation

def detections(model, x, size, box_threshold, nms=0.45):
    """Per image: list of (confidence, xyxy) after threshold and NMS, as the
    helper computes them (confidence = objectness x class)."""
    model.eval()
    with torch.no_grad():
        outs = model(x)
    heads = model.heads()
    per_image = [[] for _ in range(x.shape[0])]
    all_boxes, all_conf = [], []
    for head, raw in zip(heads, outs):
        boxes, obj, cls = darknet.decode(head, raw, size, size)
        conf = obj * cls[..., 0]
        all_boxes.append(xywh_to_xyxy(boxes).reshape(x.shape[0], -1, 4))
        all_conf.append(conf.reshape(x.shape[0], -1))
    boxes = torch.cat(all_boxes, 1)
    conf = torch.cat(all_conf, 1)
    for i in range(x.shape[0]):
        keep = conf[i] > box_threshold
        c, b = conf[i][keep], boxes[i][keep]
        order = c.argsort(descending=True)
        c, b = c[order], b[order]
        chosen = []
        for j in range(len(c)):
            if all(float(iou_xyxy(b[j:j + 1], b[k:k + 1])) <= nms for k in chosen):
                chosen.append(j)
        per_image[i] = [(float(c[j]), b[j].tolist()) for j in chosen]
    return per_image


build_val = data.build_val  # torch-free, so make_eval_set.py needs no torch


def evaluate(model, positives, negatives, size, box_threshold):
    def scores(imgs):
        out = []
        for i in range(0, len(imgs), 32):
            x = torch.stack([to_tensor(im.resize((size, size), Image.BILINEAR)) for im in imgs[i:i + 32]])
            for dets in detections(model, x, size, box_threshold):
                out.append(sum(c for c, _ in dets))
        return out

    pos_p = scores([p[2] for p in positives])
    neg_p = scores([n[2] for n in negatives])
    res = {"overall": metrics.summary(pos_p, neg_p)}
    for source in (data.PD, data.S3D):
        sp = [s for s, p in zip(pos_p, positives) if p[0] == source]
        res[source] = metrics.summary(sp, neg_p)
    kinds = sorted({n[0].split("+")[0] for n in negatives})
    res["neg_mean_p"] = {k: float(np.mean([s for s, n in zip(neg_p, negatives)
                                           if n[0].split("+")[0] == k])) for k in kinds}
    res["n_pos"], res["n_neg"] = len(pos_p), len(neg_p)
    return res


def box_ap50(model, positives, size, box_threshold=0.01):
    """AP at IoU 0.5 of the boxes on the held-out positives (all sources)."""
    recs = []
    n_gt = 0
    for i in range(0, len(positives), 32):
        chunk = positives[i:i + 32]
        x = torch.stack([to_tensor(p[2].resize((size, size), Image.BILINEAR)) for p in chunk])
        for p, dets in zip(chunk, detections(model, x, size, box_threshold)):
            gt = torch.from_numpy(p[3]).float()
            n_gt += len(gt)
            used = set()
            for c, b in dets:
                ok = False
                if len(gt):
                    ious = iou_xyxy(torch.tensor([b]), gt)[0]
                    j = int(ious.argmax())
                    if float(ious[j]) >= 0.5 and j not in used:
                        used.add(j)
                        ok = True
                recs.append((c, ok))
    return metrics.average_precision(recs, n_gt)


# ---------------------------------------------------------------- export

def export(model, sections, out_dir, box_threshold, size):
    os.makedirs(out_dir, exist_ok=True)
    secs = darknet.to_n_classes(sections, 1, yolo_thresh=box_threshold)
    net = secs[0]
    for k, v in (("batch", 1), ("subdivisions", 1), ("width", size), ("height", size)):
        darknet.put(net, k, v)
    header = ("# The Spaghetti Detective: one-class \"failure\" detector fine-tuned from\n"
              "# Yolo-Fastest 1.1 (dog-qiuqiu, public domain) by tools/train/train.py.\n"
              "# [yolo] thresh= is kept no higher than helper.yaml's box_threshold.\n\n")
    with open(os.path.join(out_dir, "failure.cfg"), "w") as f:
        f.write(header + darknet.write_cfg(secs))
    darknet.save_weights(model, os.path.join(out_dir, "failure.weights"))


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", help="default: <repo>/../shared/datasets or $TSD_DATASETS")
    ap.add_argument("--run", default="r1")
    ap.add_argument("--runs-dir", default=os.path.join(HERE, "runs"))
    ap.add_argument("--seed", type=int, default=20261123)
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--neg-fraction", type=float, default=0.4)
    ap.add_argument("--box-threshold", type=float, default=0.1)
    ap.add_argument("--val-synth", type=int, default=200)
    ap.add_argument("--val-every", type=int, default=2, help="validate every N epochs (and the last)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--export-only", action="store_true")
    ap.add_argument("--out", help="export the final model here (failure.cfg, failure.weights)")
    ap.add_argument("--max-minutes", type=float, default=0,
                    help="stop (after a checkpoint) once this much wall time has passed")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    root = data.datasets_dir(args.datasets)
    run_dir = os.path.join(args.runs_dir, args.run)
    os.makedirs(run_dir, exist_ok=True)
    logs_dir = os.path.join(HERE, "logs")
    os.makedirs(logs_dir, exist_ok=True)
    fh = open(os.path.join(logs_dir, args.run + ".log"), "a")
    log(fh, "start: %s" % " ".join(sys.argv))
    log(fh, "python %s torch %s numpy %s, %s, threads %d" % (
        platform.python_version(), torch.__version__, np.__version__, platform.machine(), args.threads))
    sums = data.sha256sums_digest(root)
    for k, v in sums.items():
        log(fh, "sha256(%s/SHA256SUMS) = %s" % (k, v))

    t0 = time.time()
    items = data.load_items(root)
    data.load_pixels(items)
    joined = data.merge_near_duplicates(items)
    train_items, val_items = data.split(items, args.seed)
    log(fh, "data: %d images, %d boxes; %d groups after %d near-duplicate joins; train %d, val %d "
        "(loaded in %.0f s)" % (len(items), sum(len(i["boxes"]) for i in items),
                                len({i["group"] for i in items}), joined, len(train_items),
                                len(val_items), time.time() - t0))
    for source in (data.PD, data.S3D):
        log(fh, "  %s: train %d images / %d groups, val %d images / %d groups" % (
            source, sum(i["source"] == source for i in train_items),
            len({i["group"] for i in train_items if i["source"] == source}),
            sum(i["source"] == source for i in val_items),
            len({i["group"] for i in val_items if i["source"] == source})))
    splits_dir = os.path.join(HERE, "splits")
    os.makedirs(splits_dir, exist_ok=True)
    for name, part in (("train", train_items), ("val", val_items)):
        with open(os.path.join(splits_dir, name + ".txt"), "w") as f:
            f.write("# %s split, seed %d: source<TAB>group<TAB>file\n" % (name, args.seed))
            for it in sorted(part, key=lambda i: (i["source"], i["group"], i["name"])):
                f.write("%s\t%s\t%s\n" % (it["source"], it["group"], it["name"]))

    model, sections = build_model(root, args.size)
    positives, negatives = build_val(val_items, args.seed, args.val_synth, args.size)
    log(fh, "val: %d positives, %d negatives" % (len(positives), len(negatives)))

    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (decay if n.endswith("conv.weight") else no_decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 5e-4},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)
    train_set = TrainSet(train_items, args.size, args.seed, args.neg_fraction)
    steps_per_epoch = math.ceil(len(train_set) / args.batch)
    total_steps = steps_per_epoch * args.epochs
    warmup = steps_per_epoch

    def lr_at(step):
        if step < warmup:
            return args.lr * (0.1 + 0.9 * step / warmup)
        t = (step - warmup) / max(1, total_steps - warmup)
        return args.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t)))

    start_epoch = 0
    ckpt_path = os.path.join(run_dir, "last.pt")
    history = []
    if args.resume or args.export_only:
        ck = torch.load(ckpt_path, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        start_epoch = ck["epoch"] + 1
        history = ck.get("history", [])
        log(fh, "resumed from %s after epoch %d" % (ckpt_path, ck["epoch"]))
    else:
        res = evaluate(model, positives, negatives, args.size, args.box_threshold)
        log(fh, "epoch -1 (COCO head, before training) val %s" % json.dumps(res["overall"]))

    if not args.export_only:
        loader_gen = torch.Generator()
        loader_gen.manual_seed(args.seed)
        for epoch in range(start_epoch, args.epochs):
            te = time.time()
            train_set.epoch = epoch
            order = torch.from_numpy(np.random.default_rng([args.seed, epoch, 7]).permutation(len(train_set)))
            loader = torch.utils.data.DataLoader(
                torch.utils.data.Subset(train_set, order.tolist()), batch_size=args.batch,
                shuffle=False, num_workers=args.workers, collate_fn=collate,
                persistent_workers=False, drop_last=False)
            model.train()
            sums_l = {"loss": 0.0, "box": 0.0, "obj": 0.0, "cls": 0.0, "pos": 0.0}
            n = 0
            for step_in, (x, targets) in enumerate(loader):
                step = epoch * steps_per_epoch + step_in
                for g in opt.param_groups:
                    g["lr"] = lr_at(step)
                outs = model(x)
                loss, parts = yolo_loss(model, outs, targets, args.size)
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
                opt.step()
                sums_l["loss"] += float(loss)
                for k in ("box", "obj", "cls", "pos"):
                    sums_l[k] += parts[k]
                n += 1
            train_time = time.time() - te
            rec = {"epoch": epoch, "lr": lr_at(step), "train_s": round(train_time, 1),
                   **{k: round(v / max(1, n), 4) for k, v in sums_l.items()}}
            if (epoch + 1) % args.val_every and epoch + 1 != args.epochs:
                history.append(rec)
                log(fh, "epoch %d/%d lr %.5f loss %.3f (box %.3f obj %.3f cls %.3f, %.1f pos/img) "
                    "train %.0f s" % (epoch, args.epochs, rec["lr"], rec["loss"], rec["box"],
                                      rec["obj"], rec["cls"], rec["pos"], train_time))
                torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "epoch": epoch,
                            "history": history, "args": vars(args)}, ckpt_path + ".tmp")
                os.replace(ckpt_path + ".tmp", ckpt_path)
                continue
            res = evaluate(model, positives, negatives, args.size, args.box_threshold)
            rec = {"epoch": epoch, "lr": lr_at(step), "train_s": round(train_time, 1),
                   "epoch_s": round(time.time() - te, 1),
                   **{k: round(v / max(1, n), 4) for k, v in sums_l.items()}, "val": res}
            history.append(rec)
            log(fh, "epoch %d/%d lr %.5f loss %.3f (box %.3f obj %.3f cls %.3f, %.1f pos/img) "
                "train %.0f s, epoch %.0f s | val auroc %.4f r@fpr1 %.3f r@fpr5 %.3f | "
                "pd %.4f s3d %.4f | neg mean p %s" % (
                    epoch, args.epochs, rec["lr"], rec["loss"], rec["box"], rec["obj"], rec["cls"],
                    rec["pos"], train_time, rec["epoch_s"], res["overall"]["auroc"],
                    res["overall"]["recall_at_fpr1"], res["overall"]["recall_at_fpr5"],
                    res[data.PD]["auroc"], res[data.S3D]["auroc"],
                    json.dumps({k: round(v, 3) for k, v in res["neg_mean_p"].items()})))
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "epoch": epoch,
                        "history": history, "args": vars(args)}, ckpt_path + ".tmp")
            os.replace(ckpt_path + ".tmp", ckpt_path)
            if args.max_minutes and (time.time() - t0) / 60 > args.max_minutes and epoch + 1 < args.epochs:
                log(fh, "stopping after epoch %d: --max-minutes %.0f reached (resume with --resume)"
                    % (epoch, args.max_minutes))
                return

    # final figures at several box thresholds, and the box-level AP
    final = {}
    for thr in (0.05, 0.1, 0.15, 0.2, 0.25, 0.3):
        final[str(thr)] = evaluate(model, positives, negatives, args.size, thr)
        r = final[str(thr)]
        log(fh, "final box_threshold %.2f: overall %s | pd %s | s3d %s | neg mean p %s" % (
            thr, json.dumps(r["overall"]), json.dumps(r[data.PD]), json.dumps(r[data.S3D]),
            json.dumps({k: round(v, 3) for k, v in r["neg_mean_p"].items()})))
    ap50 = box_ap50(model, positives, args.size)
    log(fh, "final box AP@0.5 on held-out positives: %.4f" % ap50)
    with open(os.path.join(run_dir, "final.json"), "w") as f:
        json.dump({"by_threshold": final, "box_ap50": ap50, "sha256sums": sums,
                   "args": vars(args)}, f, indent=1)
    if args.out:
        export(model, sections, args.out, args.box_threshold, args.size)
        log(fh, "exported to %s (box_threshold %.2f)" % (args.out, args.box_threshold))
    log(fh, "done")


if __name__ == "__main__":
    main()
