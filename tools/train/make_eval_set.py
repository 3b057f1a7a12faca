# SPDX-License-Identifier: AGPL-3.0-or-later
"""Writes the held-out evaluation folder for `make eval DATA=<dir>`:

    <out>/positives/<source>/<file>     the held-out images (splits/val.txt), copied
    <out>/negatives/<kind>/<name>.jpg   negatives training never saw: crops of the
                                        held-out images with no labelled box, and
                                        synthetic ones from a seed stream training
                                        does not use (JPEG quality 95)

These are exactly the validation images of tools/train/train.py (same split,
same seed). Never commit the output (the images are dataset material).

    .venv-train/bin/python tools/train/make_eval_set.py /tmp/tsd-eval
"""

import argparse
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import data  # noqa: E402


def read_split(path):
    seed = None
    names = set()
    with open(path) as f:
        for line in f:
            if line.startswith("#"):
                if "seed" in line:
                    seed = int(line.split("seed", 1)[1].split(":")[0].strip())
                continue
            source, _group, name = line.rstrip("\n").split("\t")
            names.add((source, name))
    return seed, names


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--datasets", help="default: <repo>/../shared/datasets or $TSD_DATASETS")
    ap.add_argument("--split", default=os.path.join(HERE, "splits", "val.txt"))
    ap.add_argument("--synth", type=int, default=200, help="synthetic negatives (as in training)")
    ap.add_argument("--size", type=int, default=320)
    args = ap.parse_args(argv)

    root = data.datasets_dir(args.datasets)
    seed, wanted = read_split(args.split)
    items = [it for it in data.load_items(root) if (it["source"], it["name"]) in wanted]
    if len(items) != len(wanted):
        sys.exit("make_eval_set: %d of the %d held-out files are missing under %s"
                 % (len(wanted) - len(items), len(wanted), root))
    items.sort(key=lambda it: (it["source"], it["name"]))
    data.load_pixels(items)
    positives, negatives = data.build_val(items, seed, args.synth, args.size)
    os.makedirs(args.out, exist_ok=True)
    for it in items:
        d = os.path.join(args.out, "positives", it["source"])
        os.makedirs(d, exist_ok=True)
        shutil.copyfile(it["path"], os.path.join(d, it["name"]))
    for kind, name, img in negatives:
        d = os.path.join(args.out, "negatives", kind.split("+")[0])
        os.makedirs(d, exist_ok=True)
        base = name[:-4] if name.lower().endswith(".jpg") else name
        img.convert("RGB").save(os.path.join(d, base + ".jpg"), "JPEG", quality=95)
    print("make_eval_set: %d positives, %d negatives in %s (seed %d)"
          % (len(positives), len(negatives), args.out, seed))


if __name__ == "__main__":
    main()
