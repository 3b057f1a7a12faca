# SPDX-License-Identifier: AGPL-3.0-or-later
"""Writes an evaluation folder for `make eval DATA=<dir>` (tools/eval.py)
from the validation part of the synthetic stills and, where the datasets are
present, the held-out real images:

    <out>/positives/synth-failure/      synthetic failures of the validation split
    <out>/positives/real-<set>/         the held-out real failure photos (splits/val.txt)
    <out>/negatives/synth-healthy/      synthetic healthy frames of the validation split
    <out>/negatives/synth-healthy-held-out-camera/
                                        synthetic healthy frames from the camera family
                                        that training never sees (assets.HELD_OUT_FAMILIES)

The split is train_crops.py's (validation: the held-out camera family and
every tenth index). Files are symbolic links to the generated images and to
the datasets, never copies.

    .venv/bin/python tools/synth/make_eval_set.py build/synth/stills build/eval-synth
    make eval DATA=build/eval-synth   # add --by-folder through tools/eval.py for each group
"""

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import assets  # noqa: E402


def synthetic_split(label):
    """"val" or "train": the rule train_crops.py uses."""
    held_out = label["family"] in assets.HELD_OUT_FAMILIES
    return "val" if held_out or label["index"] % 10 == 0 else "train"


def link(src, folder, name):
    os.makedirs(folder, exist_ok=True)
    dst = os.path.join(folder, name)
    if os.path.lexists(dst):
        os.remove(dst)
    os.symlink(os.path.abspath(src), dst)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stills", help="tools/synth output folder (with manifest.jsonl)")
    ap.add_argument("out")
    ap.add_argument("--datasets", default=os.environ.get("TSD_DATASETS",
                                                         os.path.join(os.path.dirname(REPO), "shared", "datasets")))
    args = ap.parse_args(argv)
    counts = {}
    with open(os.path.join(args.stills, "manifest.jsonl")) as f:
        for line in f:
            label = json.loads(line)
            if label["label"] == "hidden" or synthetic_split(label) != "val":
                continue
            if label["label"] == "failure":
                group = "positives/synth-failure"
            elif label["family"] in assets.HELD_OUT_FAMILIES:
                group = "negatives/synth-healthy-held-out-camera"
            else:
                group = "negatives/synth-healthy"
            link(os.path.join(args.stills, "images", label["image"]), os.path.join(args.out, group), label["image"])
            counts[group] = counts.get(group, 0) + 1
    split = os.path.join(REPO, "tools", "train", "splits", "val.txt")
    if os.path.isdir(args.datasets):
        with open(split) as f:
            for line in f:
                if line.startswith("#"):
                    continue
                source, _group, name = line.rstrip("\n").split("\t")
                path = os.path.join(args.datasets, source, "train", "images", name)
                if not os.path.exists(path):
                    path = os.path.join(args.datasets, source, "train", name)
                group = "positives/real-" + source
                link(path, os.path.join(args.out, group), name)
                counts[group] = counts.get(group, 0) + 1
    else:
        print("make_eval_set: no datasets at %s: synthetic images only" % args.datasets, file=sys.stderr)
    for group in sorted(counts):
        print("make_eval_set: %s %d" % (group, counts[group]))


if __name__ == "__main__":
    main()
