# SPDX-License-Identifier: AGPL-3.0-or-later
"""Training material: the two labelled sets, the split by source, the
augmentation, and the negatives this project makes itself (the datasets hold
failed prints only).

Everything random here takes an explicit numpy Generator, so a sample is a
function of (seed, epoch, index) and a resumed run sees the same data.
"""

import glob
import hashlib
import io
import json
import math
import os
import re

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

PD = "print-failures-pd"
S3D = "spaghetti-3d-ccby"
BASE = "yolo-fastest-1.1"
STORE = 416  # images are kept in memory at STORE x STORE (both sets are square)


def datasets_dir(explicit=None):
    """<repo>/../shared/datasets, or $TSD_DATASETS, or the explicit path."""
    if explicit:
        return explicit
    env = os.environ.get("TSD_DATASETS")
    if env:
        return env
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.join(os.path.dirname(repo), "shared", "datasets")


def sha256sums_digest(root):
    """SHA-256 of each folder's SHA256SUMS file (which lists every data file)."""
    out = {}
    for name in (BASE, PD, S3D):
        with open(os.path.join(root, name, "SHA256SUMS"), "rb") as f:
            out[name] = hashlib.sha256(f.read()).hexdigest()
    return out


# ---------------------------------------------------------------- items

def stem_of(name):
    return os.path.basename(name).split(".rf.", 1)[0]


def group_of(source, stem):
    if source == PD:
        m = re.match(r"Capture-d-ecran--(\d+)-", stem)
        if m:
            return "pd:capture-%d" % (int(m.group(1)) // 20)
        return "pd:" + stem
    norm = stem
    while norm.endswith("_cropped_jpg") or "_cropped_cropped" in norm:
        norm = norm.replace("_cropped_cropped", "_cropped").replace("_cropped_jpg", "_jpg")
    return "s3d:" + norm


def load_items(root):
    """[{'source', 'name', 'path', 'group', 'boxes' (N x 4 normalised x0 y0 x1 y1)}]"""
    items = []
    for path in sorted(glob.glob(os.path.join(root, PD, "train", "images", "*.jpg"))):
        name = os.path.basename(path)
        label = os.path.join(root, PD, "train", "labels", name[:-4] + ".txt")
        boxes = []
        with open(label) as f:
            for line in f:
                parts = line.split()
                if len(parts) != 5:
                    continue
                cx, cy, w, h = (float(x) for x in parts[1:])
                boxes.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
        items.append({"source": PD, "name": name, "path": path,
                      "group": group_of(PD, stem_of(name)), "boxes": boxes})
    with open(os.path.join(root, S3D, "train", "_annotations.coco.json")) as f:
        coco = json.load(f)
    by_image = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    for im in sorted(coco["images"], key=lambda x: x["file_name"]):
        w, h = float(im["width"]), float(im["height"])
        boxes = []
        for a in by_image.get(im["id"], []):
            if a["category_id"] not in (1, 2):  # spaghetti, stringing -> failure
                continue
            x, y, bw, bh = a["bbox"]
            boxes.append([x / w, y / h, (x + bw) / w, (y + bh) / h])
        name = im["file_name"]
        items.append({"source": S3D, "name": name, "path": os.path.join(root, S3D, "train", name),
                      "group": group_of(S3D, stem_of(name)), "boxes": boxes})
    for it in items:
        b = np.clip(np.array(it["boxes"], dtype=np.float32).reshape(-1, 4), 0, 1)
        keep = (b[:, 2] - b[:, 0] > 1e-3) & (b[:, 3] - b[:, 1] > 1e-3)
        it["boxes"] = b[keep]
    return items


def dhash(img):
    g = np.asarray(img.convert("L").resize((9, 8), Image.BILINEAR), dtype=np.int16)
    bits = (g[:, 1:] > g[:, :-1]).flatten()
    return np.packbits(bits)


def load_pixels(items):
    """Decodes every image once, at STORE x STORE, and its difference hash."""
    for it in items:
        with Image.open(it["path"]) as im:
            im = im.convert("RGB")
            it["hash"] = dhash(im)
            if im.size != (STORE, STORE):
                im = im.resize((STORE, STORE), Image.BILINEAR)
            it["pixels"] = np.asarray(im, dtype=np.uint8)


def merge_near_duplicates(items, max_bits=5):
    """Joins the groups of images whose dHash differ in <= max_bits bits
    (near-copies under different names)."""
    hashes = np.stack([it["hash"] for it in items])
    bits = np.unpackbits(hashes, axis=1).astype(np.uint8)
    parent = {}

    def find(g):
        while parent.get(g, g) != g:
            g = parent[g]
        return g

    joined = 0
    for i in range(len(items)):
        d = np.count_nonzero(bits[i + 1:] != bits[i], axis=1)
        for j in np.nonzero(d <= max_bits)[0] + i + 1:
            a, b = find(items[i]["group"]), find(items[int(j)]["group"])
            if a != b:
                parent[max(a, b)] = min(a, b)
                joined += 1
    for it in items:
        it["group"] = find(it["group"])
    return joined


def split(items, seed, val_fraction=0.2):
    """Hold out val_fraction of the images of each source, whole groups at a
    time, groups drawn in a seeded order."""
    rng = np.random.default_rng(seed)
    val_groups = set()
    for source in (PD, S3D):
        groups = sorted({it["group"] for it in items if it["source"] == source})
        size = {g: 0 for g in groups}
        for it in items:
            if it["source"] == source:
                size[it["group"]] += 1
        total = sum(size.values())
        order = [groups[i] for i in rng.permutation(len(groups))]
        taken = 0
        for g in order:
            if taken >= val_fraction * total:
                break
            if g in val_groups or taken + size[g] > 1.15 * val_fraction * total:
                continue
            val_groups.add(g)
            taken += size[g]
    train = [it for it in items if it["group"] not in val_groups]
    val = [it for it in items if it["group"] in val_groups]
    return train, val


# ---------------------------------------------------------------- drawing

FILAMENT = [(230, 230, 230), (30, 30, 30), (200, 40, 40), (40, 90, 200), (250, 140, 20),
            (60, 170, 70), (240, 210, 40), (150, 150, 155), (120, 60, 160), (250, 250, 240),
            (90, 60, 40), (255, 105, 180)]
BEDS = [(25, 25, 28), (40, 40, 45), (150, 115, 55), (170, 135, 70), (60, 80, 150),
        (180, 180, 185), (90, 90, 95), (15, 20, 35), (200, 190, 160)]


def _jit(rng, color, amount=25):
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in color)


def draw_arrow(rng, img):
    """An annotation arrow (as drawn on some Spaghetti 3D images), anywhere."""
    d = ImageDraw.Draw(img)
    w, h = img.size
    color = [(255, 0, 0), (255, 230, 0), (0, 220, 0), (255, 255, 255), (255, 0, 255),
             (0, 120, 255)][rng.integers(6)]
    x1, y1 = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h
    ang = rng.uniform(0, 2 * math.pi)
    length = rng.uniform(0.12, 0.4) * min(w, h)
    x0, y0 = x1 - length * math.cos(ang), y1 - length * math.sin(ang)
    lw = max(2, int(rng.uniform(0.008, 0.025) * min(w, h)))
    d.line([(x0, y0), (x1, y1)], fill=color, width=lw)
    head = lw * rng.uniform(2.5, 4.5)
    for s in (-1, 1):
        a = ang + math.pi + s * 0.5
        d.line([(x1, y1), (x1 + head * math.cos(a), y1 + head * math.sin(a))], fill=color, width=lw)
    if rng.random() < 0.3:  # or a circle around something
        r = rng.uniform(0.05, 0.15) * min(w, h)
        d.ellipse([x1 - r, y1 - r, x1 + r, y1 + r], outline=color, width=lw)
    return img


def render_good_print(rng, w, h):
    """A plain bed with zero to three solid printed blocks: no spaghetti."""
    wall = _jit(rng, [(200, 200, 200), (60, 60, 60), (120, 110, 100), (20, 20, 20),
                      (230, 225, 210)][rng.integers(5)], 30)
    img = Image.new("RGB", (w, h), wall)
    d = ImageDraw.Draw(img)
    horizon = rng.uniform(0.05, 0.55) * h
    bed = _jit(rng, BEDS[rng.integers(len(BEDS))])
    inset = rng.uniform(0.0, 0.3) * w
    d.polygon([(inset, horizon), (w - inset, horizon), (w * 1.1, h), (-w * 0.1, h)], fill=bed)
    if rng.random() < 0.5:  # bed edge / clips / frame
        d.line([(inset, horizon), (w - inset, horizon)], fill=_jit(rng, (80, 80, 80), 60),
               width=int(rng.integers(2, 8)))
    if rng.random() < 0.4:  # printer frame uprights
        fc = _jit(rng, (40, 40, 40), 30)
        for x in (rng.uniform(0, 0.12) * w, rng.uniform(0.88, 1.0) * w):
            d.rectangle([x - 0.03 * w, 0, x + 0.03 * w, h], fill=fc)
    for _ in range(int(rng.integers(0, 4))):
        col = _jit(rng, FILAMENT[rng.integers(len(FILAMENT))], 20)
        bw = rng.uniform(0.06, 0.35) * w
        bh = rng.uniform(0.05, 0.35) * h
        x0 = rng.uniform(0.05 * w, 0.95 * w - bw)
        y1 = rng.uniform(max(horizon + 0.1 * h, bh + 1), h * 0.98)
        y0 = y1 - bh
        depth = rng.uniform(0.0, 0.4) * bh
        top = tuple(int(min(255, c * 1.2 + 10)) for c in col)
        side = tuple(int(c * 0.75) for c in col)
        if rng.random() < 0.3:  # cylinder-ish
            d.rectangle([x0, y0, x0 + bw, y1], fill=side)
            d.ellipse([x0, y0 - depth / 2, x0 + bw, y0 + depth / 2], fill=top)
        else:
            d.polygon([(x0, y0), (x0 + bw, y0), (x0 + bw + depth * 0.6, y0 - depth),
                       (x0 + depth * 0.6, y0 - depth)], fill=top)
            d.rectangle([x0, y0, x0 + bw, y1], fill=col)
            d.polygon([(x0 + bw, y0), (x0 + bw + depth * 0.6, y0 - depth),
                       (x0 + bw + depth * 0.6, y1 - depth), (x0 + bw, y1)], fill=side)
        if rng.random() < 0.6:  # layer lines
            step = rng.uniform(2, 5)
            y = y0 + step
            lc = tuple(int(c * 0.9) for c in col)
            while y < y1:
                d.line([(x0, y), (x0 + bw, y)], fill=lc, width=1)
                y += step
    if rng.random() < 0.5:  # hot end / print head above the bed
        hx = rng.uniform(0.2, 0.8) * w
        hy = rng.uniform(0.0, 0.4) * h
        hc = _jit(rng, [(30, 30, 30), (200, 200, 200), (200, 60, 20)][rng.integers(3)], 20)
        d.rectangle([hx - 0.1 * w, hy - 0.12 * h, hx + 0.1 * w, hy], fill=hc)
        d.polygon([(hx - 0.02 * w, hy), (hx + 0.02 * w, hy), (hx, hy + 0.04 * h)],
                  fill=(180, 150, 60))
    arr = np.asarray(img, dtype=np.float32)
    # lighting gradient and sensor noise
    gy = np.linspace(rng.uniform(0.6, 1.1), rng.uniform(0.7, 1.2), h, dtype=np.float32)[:, None, None]
    gx = np.linspace(rng.uniform(0.7, 1.1), rng.uniform(0.7, 1.1), w, dtype=np.float32)[None, :, None]
    arr = arr * gy * gx + rng.normal(0, rng.uniform(1, 8), arr.shape).astype(np.float32)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    return img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.5)))


def unboxed_crop(rng, pixels, boxes, min_side=0.3, tries=40):
    """A crop of the image that no labelled box overlaps by more than 3 % of
    the box's area, or None. pixels: H x W x 3; boxes normalised."""
    h, w = pixels.shape[:2]
    for _ in range(tries):
        cw = rng.uniform(min_side, 0.7)
        ch = float(np.clip(cw * np.exp(rng.uniform(-0.4, 0.4)), min_side, 0.9))
        x0 = rng.uniform(0, 1 - cw)
        y0 = rng.uniform(0, 1 - ch)
        x1, y1 = x0 + cw, y0 + ch
        ok = True
        for b in boxes:
            iw = max(0.0, min(x1, b[2]) - max(x0, b[0]))
            ih = max(0.0, min(y1, b[3]) - max(y0, b[1]))
            area = max(1e-6, (b[2] - b[0]) * (b[3] - b[1]))
            if iw * ih > 0.03 * area:
                ok = False
                break
        if ok:
            return Image.fromarray(pixels[int(y0 * h):int(y1 * h), int(x0 * w):int(x1 * w)])
    return None


def make_negative(rng, items, w, h):
    """One negative image (PIL) of size w x h, and which kind it is."""
    r = rng.random()
    kind = "scene"
    img = None
    if r < 0.35:
        kind = "unboxed"
        for _ in range(5):
            it = items[rng.integers(len(items))]
            img = unboxed_crop(rng, it["pixels"], it["boxes"])
            if img is not None:
                img = img.resize((w, h), Image.BILINEAR)
                break
    elif r < 0.5:
        kind = "blurred"
        it = items[rng.integers(len(items))]
        img = Image.fromarray(it["pixels"]).resize((w, h), Image.BILINEAR)
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(8, 30) * w / 320))
    elif r < 0.57:
        kind = "flat"
        base = np.array(_jit(rng, BEDS[rng.integers(len(BEDS))], 60), dtype=np.float32)
        arr = np.broadcast_to(base, (h, w, 3)) + rng.normal(0, rng.uniform(0, 10), (h, w, 3))
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    if img is None:
        kind = "scene"
        img = render_good_print(rng, w, h)
    if rng.random() < 0.35:
        img = draw_arrow(rng, img)
        kind += "+arrow"
    return img, kind


# ---------------------------------------------------------------- augmentation

def photometric(rng, img):
    arr = np.asarray(img, dtype=np.float32)
    if rng.random() < 0.1:
        g = arr.mean(axis=2, keepdims=True)  # IR / night camera
        arr = np.repeat(g, 3, axis=2)
    else:
        sat = rng.uniform(0.4, 1.5)
        g = arr.mean(axis=2, keepdims=True)
        arr = g + (arr - g) * sat
        arr = arr * rng.uniform(0.85, 1.15, size=3).astype(np.float32)  # white balance
    contrast = rng.uniform(0.6, 1.4)
    bright = rng.uniform(0.5, 1.4)
    m = arr.mean()
    arr = ((arr - m) * contrast + m) * bright
    if rng.random() < 0.25:
        arr = arr + rng.normal(0, rng.uniform(2, 10), arr.shape).astype(np.float32)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.0)))
    if rng.random() < 0.5:
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=int(rng.integers(20, 96)))
        buf.seek(0)
        img = Image.open(buf).convert("RGB")
    return img


def geometric(rng, pixels, boxes, out_w, out_h, fill_img=None):
    """Random zoom in (crop) / zoom out (small object in a larger frame,
    letterbox bars), aspect change and flip; the result is stretched to
    out_w x out_h as the helper does. Returns (PIL image, boxes normalised)."""
    img = Image.fromarray(pixels)
    W, H = img.size
    r = math.exp(rng.uniform(math.log(0.6), math.log(1.7)))  # aspect of the window
    mode = rng.random()
    if mode < 0.45:  # zoom in
        a = rng.uniform(0.35, 1.0)
        cw = min(1.0, math.sqrt(a * r))
        ch = min(1.0, math.sqrt(a / r))
        x0 = rng.uniform(0, 1 - cw)
        y0 = rng.uniform(0, 1 - ch)
        win = (x0, y0, cw, ch)
    elif mode < 0.8:  # zoom out
        f = rng.uniform(1.1, 2.6)
        cw = max(1.0, f * math.sqrt(r))
        ch = max(1.0, f / math.sqrt(r))
        win = (-rng.uniform(0, cw - 1), -rng.uniform(0, ch - 1), cw, ch)
    else:
        win = (0.0, 0.0, 1.0, 1.0)
    x0, y0, cw, ch = win
    # the source image, placed in the output frame
    sx, sy = out_w / cw, out_h / ch  # output pixels per unit of source
    ox, oy = -x0 * sx, -y0 * sy
    if cw > 1 or ch > 1:
        kind = rng.random()
        if kind < 0.35 or fill_img is None:
            canvas = Image.new("RGB", (out_w, out_h), (0, 0, 0))
        elif kind < 0.55:
            canvas = Image.new("RGB", (out_w, out_h), tuple(int(c) for c in rng.integers(0, 256, 3)))
        else:
            canvas = fill_img.resize((out_w, out_h), Image.BILINEAR)
        pw, ph = max(1, int(round(sx))), max(1, int(round(sy)))
        canvas.paste(img.resize((pw, ph), Image.BILINEAR), (int(round(ox)), int(round(oy))))
        out = canvas
    else:
        out = img.resize((out_w, out_h), Image.BILINEAR,
                         box=(x0 * W, y0 * H, (x0 + cw) * W, (y0 + ch) * H))
    b = boxes.copy()
    if len(b):
        area0 = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        b[:, [0, 2]] = (b[:, [0, 2]] - x0) / cw
        b[:, [1, 3]] = (b[:, [1, 3]] - y0) / ch
        vis = np.clip(b, 0, 1)
        area1 = (vis[:, 2] - vis[:, 0]) * (vis[:, 3] - vis[:, 1])
        scale = 1.0 / (cw * ch)
        keep = (area1 > 0.3 * area0 * scale) & ((vis[:, 2] - vis[:, 0]) * out_w > 3) & \
               ((vis[:, 3] - vis[:, 1]) * out_h > 3)
        b = vis[keep]
    if rng.random() < 0.5:
        out = out.transpose(Image.FLIP_LEFT_RIGHT)
        if len(b):
            b = np.stack([1 - b[:, 2], b[:, 1], 1 - b[:, 0], b[:, 3]], 1)
    return out, b.astype(np.float32)


def build_val(val_items, seed, n_synth, size):
    """The fixed validation material: held-out positives, and negatives that
    training never sees (unboxed crops of the held-out images, and synthetic
    negatives from a separate seed stream). Used by make_eval_set too."""
    rng = np.random.default_rng([seed, 999_999])
    positives = [(it["source"], it["name"], Image.fromarray(it["pixels"]), it["boxes"])
                 for it in val_items]
    negatives = []
    for it in val_items:
        if rng.random() < 0.5:
            crop = unboxed_crop(rng, it["pixels"], it["boxes"])
            if crop is not None:
                negatives.append(("unboxed", "unboxed-" + it["name"], crop))
    k = 0
    while k < n_synth:
        img, kind = make_negative(rng, val_items, size, size)
        if kind.startswith("unboxed"):
            continue
        negatives.append((kind, "synth-%03d-%s" % (k, kind), img))
        k += 1
    return positives, negatives
