# SPDX-License-Identifier: AGPL-3.0-or-later
"""Turns a Blender render into the frame a real printer camera would send.

The render is clean; a Pi camera or a cheap USB webcam is not. For each
image, from a random stream seeded by (seed, index), this applies what such
cameras do: auto-exposure towards a drawn target, a white-balance cast,
vignetting, defocus or motion blur, sensor noise that grows in the dark,
greyscale for night (IR) frames and a pink cast for NoIR daylight, sometimes a
timestamp overlay, an output resolution from 640x480 to 1280x720, and JPEG
compression. It also turns the failure mask into boxes: the box of what the
camera actually sees of the failure, in output pixels.

Needs numpy and Pillow (the project's .venv has both).
"""

import io
import json
import os
import random

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# A failure whose visible part is smaller than this (fraction of the frame)
# is "hidden": not a fair positive, left out of training and evaluation.
MIN_VISIBLE_FRACTION = 0.0004


def mask_box(mask):
    """(x0, y0, x1, y1, pixels) of the non-zero pixels, or None."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1, int(len(xs))


def auto_exposure(rng, img):
    lum = img.mean(axis=2)
    median = float(np.median(lum)) + 1e-3
    target = rng.uniform(0.28, 0.55)
    gain = min(8.0, max(0.5, target / median))
    return np.clip(img * gain, 0, 1), gain


def camera_effects(rng, img, info, noise_seed):
    """img: float RGB 0..1. Returns the processed image and what was done."""
    done = {}
    img, done["gain"] = auto_exposure(rng, img)
    h, w, _ = img.shape
    wb = np.array([rng.uniform(0.85, 1.15), 1.0, rng.uniform(0.85, 1.15)])
    img = img * wb
    yy, xx = np.mgrid[0:h, 0:w]
    r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    vignette = rng.uniform(0.0, 0.35)
    img = img * (1 - vignette * r2 / 2)[..., None]
    contrast = rng.uniform(0.85, 1.2)
    img = np.clip((img - 0.5) * contrast + 0.5, 0, 1)
    ir = info.get("light") == "dark_ir"
    noir = not ir and rng.random() < 0.05
    if ir:
        grey = img.mean(axis=2, keepdims=True)
        img = np.repeat(grey, 3, axis=2) * np.array([1.0, 0.98, 1.02])
    elif noir:
        img = img * np.array([1.15, 0.85, 1.1])
    done.update(wb=[round(float(x), 3) for x in wb], vignette=round(vignette, 3), ir=ir, noir=noir)
    # Sensor noise: shot noise scales with the gain auto-exposure needed.
    sigma = rng.uniform(0.004, 0.02) * min(2.0, 0.6 + 0.3 * done["gain"])
    img = img + np.random.default_rng(noise_seed).normal(0, sigma, img.shape)
    done["noise"] = round(float(sigma), 4)
    pil = Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8))
    blur = rng.random()
    if blur < 0.25:
        pil = pil.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.4)))
        done["blur"] = "defocus"
    elif blur < 0.35:
        k = rng.choice([3, 5])
        kernel = [0] * (k * k)
        if rng.random() < 0.5:
            kernel[k * (k // 2):k * (k // 2) + k] = [1] * k
        else:
            kernel[k // 2::k] = [1] * k
        pil = pil.filter(ImageFilter.Kernel((k, k), kernel, scale=k))
        done["blur"] = "motion"
    return pil, done


def output_size(rng, w, h):
    if w * 9 == h * 16:
        return rng.choice([(640, 360), (1280, 720), (854, 480)])
    return rng.choice([(640, 480), (640, 480), (800, 600), (1024, 768)])


def overlay_timestamp(rng, pil):
    draw = ImageDraw.Draw(pil)
    text = "2026-%02d-%02d %02d:%02d:%02d" % (rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 23),
                                              rng.randint(0, 59), rng.randint(0, 59))
    x = rng.choice([8, pil.width - 160])
    y = rng.choice([6, pil.height - 18])
    draw.text((x, y), text, fill=(255, 255, 255) if rng.random() < 0.8 else (255, 255, 0))


def process(raw_dir, stem, out_images, seed, camera_key=None, out_stem=None):
    """Writes out_images/<out_stem or stem>.jpg; returns the label document.
    Frames of one sequence pass the sequence as camera_key: one camera, fresh
    noise for each out_stem."""
    out_stem = out_stem or stem
    with open(os.path.join(raw_dir, stem + ".json")) as f:
        info = json.load(f)
    rng = random.Random("%d/%s/post" % (seed, camera_key or stem))
    noise_seed = random.Random("%d/%s/%s/noise" % (seed, camera_key, out_stem)).getrandbits(32)
    render = Image.open(os.path.join(raw_dir, stem + ".png")).convert("RGB")
    img = np.asarray(render, dtype=np.float32) / 255.0
    mask_path = os.path.join(raw_dir, stem + "_mask.png")
    mask = np.asarray(Image.open(mask_path).convert("L")) if os.path.exists(mask_path) else np.zeros(img.shape[:2])
    pil, done = camera_effects(rng, img, info, noise_seed)
    w, h = pil.size
    ow, oh = output_size(rng, w, h)
    pil = pil.resize((ow, oh), Image.BILINEAR)
    if rng.random() < 0.2:
        overlay_timestamp(rng, pil)
        done["timestamp"] = True
    q = rng.randint(40, 92)
    buf = io.BytesIO()
    pil.save(buf, "JPEG", quality=q)
    path = os.path.join(out_images, out_stem + ".jpg")
    with open(path + ".tmp", "wb") as f:
        f.write(buf.getvalue())
    os.replace(path + ".tmp", path)
    done["jpeg_quality"] = q
    boxes = []
    label = "healthy"
    if info.get("failure"):
        found = mask_box(mask > 0)
        sx, sy = ow / w, oh / h
        if found and found[4] >= MIN_VISIBLE_FRACTION * w * h:
            x0, y0, x1, y1, _ = found
            boxes.append([round(x0 * sx, 1), round(y0 * sy, 1), round(x1 * sx, 1), round(y1 * sy, 1)])
            label = "failure"
        else:
            label = "hidden"
    return {
        "image": out_stem + ".jpg", "label": label, "failure": info.get("failure"), "boxes": boxes,
        "width": ow, "height": oh, "family": info["camera"]["family"], "light": info.get("light"),
        "bed": info["bed"]["kind"], "frame_style": info["frame"]["style"], "progress": info.get("progress"),
        "amount": info.get("amount"), "camera_effects": done, "index": info["index"], "seed": info["seed"],
    }
