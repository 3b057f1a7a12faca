# SPDX-License-Identifier: AGPL-3.0-or-later
"""The shipped detector (octoprint_tsd/model), as pip installed it.

test_loads_and_detects: always; the installed tsd-helper loads the installed
model and answers well-formed detections for JPEGs made here.
test_quality: only where the training datasets are present
(<repo>/../shared/datasets or $TSD_DATASETS): rebuilds
the held-out evaluation set and checks that the figures of MODEL_CARD.md
still hold, within a small margin.
"""

import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

from helper_models import Helper, encode_jpeg, make_jpeg, REQ_PING, RESP_DETECTIONS, RESP_PONG, request

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCE_MODEL = os.path.join(REPO, "octoprint_tsd", "model")
SHIPPED = ("failure.onnx", "helper.yaml", "MODEL_CARD.md")
AUROC_MARGIN = 0.02
RECALL5_MARGIN = 0.06


def installed_model_dir():
    import octoprint_tsd
    return os.path.join(os.path.dirname(os.path.abspath(octoprint_tsd.__file__)), "model")


def installed_helper():
    from octoprint_tsd import bridge
    return bridge.helper_path()


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def read_yaml_scalars(path):
    out = {}
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].rstrip()
            if ":" in line and not line.startswith(" "):
                k, v = line.split(":", 1)
                out[k.strip()] = v.strip()
    return out


def test_installed_files_match_checkout():
    model_dir = installed_model_dir()
    for name in SHIPPED:
        path = os.path.join(model_dir, name)
        assert os.path.isfile(path), "{} is not installed (meson.build install_subdir)".format(path)
        assert sha256(path) == sha256(os.path.join(SOURCE_MODEL, name)), \
            "installed {} differs from the checkout: run scripts/setup.sh".format(name)
    assert os.path.getsize(os.path.join(model_dir, "failure.onnx")) < 16 * 1024 * 1024


def test_config_is_the_crop_detector():
    """helper.yaml matches what tools/train/train_crops.py trains and cuts:
    a one-class crop classifier over a 3x3 grid at 192 x 192, with the
    training's normalisation."""
    config = read_yaml_scalars(os.path.join(SOURCE_MODEL, "helper.yaml"))
    assert config["model_type"] == "onnx_crops"
    assert config["model_onnx"] == "failure.onnx"
    assert config["classes"] == "[failure]"
    assert (config["input_width"], config["input_height"], config["crop_grid"]) == ("192", "192", "3")
    assert config["swap_rb"] == "true"
    assert 0.0 < float(config["box_threshold"]) < 1.0


def test_loads_and_detects(tmp_path):
    model_dir = installed_model_dir()
    config = read_yaml_scalars(os.path.join(model_dir, "helper.yaml"))
    box_threshold = float(config["box_threshold"])
    helper = Helper(installed_helper(), os.path.join(model_dir, "helper.yaml"),
                    stderr_path=str(tmp_path / "helper.stderr"))
    try:
        helper.send(request(REQ_PING, 1))
        kind, rid, _ = helper.receive(timeout=60)
        assert (kind, rid) == (RESP_PONG, 1), helper.stderr_text()
        frames = [(640, 480, make_jpeg(640, 480, seed=1)), (1280, 720, make_jpeg(1280, 720, seed=2)),
                  (320, 320, encode_jpeg(bytes(320 * 320 * 3), 320, 320))]
        for i, (w, h, jpeg) in enumerate(frames):
            kind, rid, payload = helper.detect(jpeg, request_id=10 + i, timeout=60)
            assert kind == RESP_DETECTIONS, payload
            reply = json.loads(payload)
            assert reply["id"] == 10 + i and (reply["w"], reply["h"]) == (w, h)
            assert reply["ms"] >= 0
            prev = 1.0
            for d in reply["detections"]:
                assert d["class"] == "failure"
                assert box_threshold <= d["confidence"] <= prev
                prev = d["confidence"]
                x, y, bw, bh = d["box"]
                assert all(isinstance(v, int) for v in d["box"])
                assert bw >= 0 and bh >= 0 and x + bw >= 0 and y + bh >= 0
                assert x <= w and y <= h
        # an all-black frame is no failure
        assert json.loads(payload)["detections"] == [] or \
            sum(d["confidence"] for d in json.loads(payload)["detections"]) < 0.5
    finally:
        helper.stop()
    assert helper.proc.returncode == 0, helper.stderr_text()


# ------------------------------------------------------------------ quality

def datasets_dir():
    env = os.environ.get("TSD_DATASETS")
    if env:
        return env
    return os.path.join(os.path.dirname(REPO), "shared", "datasets")


def card_figures():
    with open(os.path.join(SOURCE_MODEL, "MODEL_CARD.md")) as f:
        text = f.read()
    figures = dict(re.findall(r"^eval (auroc|recall_at_fpr1|recall_at_fpr5|images) ([0-9.]+)$",
                              text, flags=re.M))
    assert {"auroc", "recall_at_fpr5", "images"} <= set(figures), "MODEL_CARD.md lacks the eval lines"
    return {k: float(v) for k, v in figures.items()}


def load_eval_module():
    spec = importlib.util.spec_from_file_location("tsd_tools_eval", os.path.join(REPO, "tools", "eval.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quality(tmp_path, capsys):
    root = datasets_dir()
    if not os.path.isdir(root):
        pytest.skip("../shared/datasets not found: model quality test skipped")
    out = tmp_path / "evalset"
    env = dict(os.environ, TSD_DATASETS=root)
    # The training's own code builds the held-out set (numpy and Pillow from
    # requirements-dev.txt; no torch needed).
    subprocess.run([sys.executable, os.path.join(REPO, "tools", "train", "make_eval_set.py"),
                    str(out)], check=True, env=env, timeout=300)
    module = load_eval_module()
    rc = module.main([str(out), "--config", os.path.join(installed_model_dir(), "helper.yaml"),
                      "--helper", installed_helper()])
    assert rc == 0
    lines = capsys.readouterr().out
    got = {k: float(v) for k, v in re.findall(r"^eval (\w+) ([0-9.]+)$", lines, flags=re.M)}
    want = card_figures()
    assert got["unreadable"] == 0
    assert got["images"] == want["images"]
    assert got["auroc"] >= want["auroc"] - AUROC_MARGIN, (got, want)
    assert got["recall_at_fpr5"] >= want["recall_at_fpr5"] - RECALL5_MARGIN, (got, want)
