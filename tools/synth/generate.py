# SPDX-License-Identifier: AGPL-3.0-or-later
"""Generates the synthetic printer-camera data set (see tools/synth/README.md).

    .venv/bin/python tools/synth/generate.py --out build/synth/images --count 4000
    .venv/bin/python tools/synth/generate.py --out build/synth/sequences --sequences --count 120

Renders with Debian's Blender (scene.py) in chunks, then makes each render a
camera frame (post.py). Everything follows from --seed: the same command
gives the same images. Resumable: a rendered image (its .json) or a finished
frame (its label) is never made again, so after an interruption the same
command continues. Prints a progress line per chunk.

Output (image mode):   <out>/images/NNNNNN.jpg, <out>/labels/NNNNNN.json,
                       <out>/manifest.jsonl (every label), <out>/raw/ (renders)
Output (sequences):    <out>/seq/NNNNNN/FFF.jpg + FFF.json, sequence.json
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import assets  # noqa: E402
import post  # noqa: E402

DEFAULT_SEED = 20261207


def blender_command(blender, raw, seed, first, count, samples, sequence, frames):
    cmd = [blender, "-b", "--factory-startup", "-noaudio", "--python-exit-code", "1", "-P", os.path.join(HERE, "scene.py"), "--",
           "--out", raw, "--seed", str(seed), "--first", str(first), "--count", str(count),
           "--samples", str(samples)]
    if sequence:
        cmd += ["--sequence", "--frames", str(frames)]
    return cmd


def run_blender(cmd, log_path):
    with open(log_path, "a") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise SystemExit("synth: blender failed (exit %d); see %s" % (proc.returncode, log_path))


def post_images(raw, out, seed, first, count):
    images = os.path.join(out, "images")
    labels = os.path.join(out, "labels")
    os.makedirs(images, exist_ok=True)
    os.makedirs(labels, exist_ok=True)
    for index in range(first, first + count):
        stem = "%06d" % index
        label_path = os.path.join(labels, stem + ".json")
        if os.path.exists(label_path) or not os.path.exists(os.path.join(raw, stem + ".json")):
            continue
        label = post.process(raw, stem, images, seed)
        write_json(label_path, label)


def post_sequences(raw, out, seed, first, count, variants):
    """Each rendered keyframe becomes `variants` consecutive frames (fresh
    sensor noise and compression each), so a sequence of K keyframes is a
    print of K * variants frames at the plugin's frame interval."""
    for index in range(first, first + count):
        seq = "%06d" % index
        raw_seq = os.path.join(raw, seq)
        done_path = os.path.join(out, "seq", seq, "sequence.json")
        if os.path.exists(done_path) or not os.path.exists(os.path.join(raw_seq, "sequence.json")):
            continue
        out_seq = os.path.join(out, "seq", seq)
        os.makedirs(out_seq, exist_ok=True)
        with open(os.path.join(raw_seq, "sequence.json")) as f:
            meta = json.load(f)
        frames = []
        for key in range(meta["frames"]):
            for v in range(variants):
                out_stem = "%04d" % (key * variants + v)
                label = post.process(raw_seq, "%03d" % key, out_seq, seed, camera_key="seq" + seq,
                                     out_stem=out_stem)
                label["keyframe"] = key
                frames.append(label)
        meta["variants"] = variants
        meta["onset_frame"] = None if meta["onset"] is None else meta["onset"] * variants
        meta["frame_labels"] = [f["label"] for f in frames]
        meta["failure"] = next((f["failure"] for f in frames if f["failure"]), None)
        meta["family"] = frames[0]["family"]
        write_json(done_path, meta)


def write_json(path, doc):
    with open(path + ".tmp", "w") as f:
        json.dump(doc, f, sort_keys=True)
    os.replace(path + ".tmp", path)


def write_manifest(out):
    labels = os.path.join(out, "labels")
    counts = {}
    with open(os.path.join(out, "manifest.jsonl.tmp"), "w") as f:
        for name in sorted(os.listdir(labels)):
            if name.endswith(".json"):
                with open(os.path.join(labels, name)) as g:
                    label = json.load(g)
                counts[label["label"]] = counts.get(label["label"], 0) + 1
                f.write(json.dumps(label, sort_keys=True) + "\n")
    os.replace(os.path.join(out, "manifest.jsonl.tmp"), os.path.join(out, "manifest.jsonl"))
    return counts


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--count", type=int, required=True, help="images (or sequences) in all")
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--chunk", type=int, default=20, help="images per Blender process")
    ap.add_argument("--samples", type=int, default=16, help="Cycles samples per pixel")
    ap.add_argument("--sequences", action="store_true", help="render whole prints")
    ap.add_argument("--frames", type=int, default=24, help="rendered keyframes per sequence")
    ap.add_argument("--variants", type=int, default=6, help="frames made from each keyframe")
    ap.add_argument("--blender", default=shutil.which("blender") or "blender")
    ap.add_argument("--keep-raw", action="store_true", help="keep the renders after post-processing")
    args = ap.parse_args(argv)
    assets.check()
    if not shutil.which(args.blender):
        raise SystemExit("synth: no blender; install Debian's blender package")
    raw = os.path.join(args.out, "raw")
    os.makedirs(raw, exist_ok=True)
    log_path = os.path.join(args.out, "blender.log")
    chunk = max(1, args.chunk if not args.sequences else 1)
    started = time.monotonic()
    made = 0
    last = args.first + args.count
    for first in range(args.first, last, chunk):
        count = min(chunk, last - first)
        if args.sequences:
            done = all(os.path.exists(os.path.join(args.out, "seq", "%06d" % i, "sequence.json"))
                       for i in range(first, first + count))
        else:
            done = all(os.path.exists(os.path.join(args.out, "labels", "%06d.json" % i))
                       for i in range(first, first + count))
        if done:
            continue
        t0 = time.monotonic()
        run_blender(blender_command(args.blender, raw, args.seed, first, count, args.samples,
                                    args.sequences, args.frames), log_path)
        if args.sequences:
            post_sequences(raw, args.out, args.seed, first, count, args.variants)
        else:
            post_images(raw, args.out, args.seed, first, count)
        made += count
        per = (time.monotonic() - t0) / count
        remaining = last - first - count
        print("synth: %d/%d done (%.1f s each, about %.0f min left)"
              % (first + count - args.first, args.count, per, per * remaining / 60), flush=True)
        if not args.keep_raw and not args.sequences:
            for index in range(first, first + count):
                for suffix in (".png", "_mask.png"):
                    path = os.path.join(raw, "%06d%s" % (index, suffix))
                    if os.path.exists(path):
                        os.remove(path)
    if not args.sequences:
        counts = write_manifest(args.out)
        print("synth: %s in %s (%.0f min this run)" % (
            ", ".join("%d %s" % (n, k) for k, n in sorted(counts.items())), args.out,
            (time.monotonic() - started) / 60))


if __name__ == "__main__":
    main()
