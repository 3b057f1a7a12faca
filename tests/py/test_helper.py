# SPDX-License-Identifier: AGPL-3.0-or-later
"""tsd-helper as the plugin runs it: --config FILE, frames on stdin/stdout.

The helper comes from $TSD_HELPER, else from the installed package
(bridge.helper_path()). The models are tiny Darknet networks written by
tests/helper_models.py, so every test runs in well under a second of
inference."""

import json
import os
import struct
import subprocess

import pytest

import helper_models as hm

# Enough for the helper to start, load a tiny model and answer.
TIMEOUT = 60.0


@pytest.fixture(scope="module")
def helper_bin():
    path = os.environ.get("TSD_HELPER")
    if not path:
        from octoprint_tsd import bridge

        path = bridge.helper_path()
    assert os.path.isfile(path) and os.access(path, os.X_OK), (
        "tsd-helper not found at {} (set TSD_HELPER or reinstall the package)".format(path))
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    base = tmp_path_factory.mktemp("helper-models")
    fixed = base / "fixed"
    noisy = base / "noisy"
    fixed.mkdir()
    noisy.mkdir()
    fixed_cfg, fixed_weights = hm.write_tiny_model(str(fixed), deterministic=True)
    noisy_cfg, noisy_weights = hm.write_tiny_model(str(noisy), deterministic=False, seed=7)
    return {
        "dir": base,
        "fixed": (fixed_cfg, fixed_weights),
        "noisy": (noisy_cfg, noisy_weights),
    }


def config(models, tmp_path, which="fixed", name="helper.yaml", **extra):
    cfg, weights = models[which]
    return hm.write_config(str(tmp_path / name), cfg, weights, hm.TINY_SIDE, **extra)


@pytest.fixture
def start(helper_bin, tmp_path):
    started = []

    def _start(config_path):
        helper = hm.Helper(helper_bin, config_path,
                           str(tmp_path / "stderr-{}.log".format(len(started))))
        started.append(helper)
        return helper

    yield _start
    for helper in started:
        helper.stop()


def detections(kind, request_id, payload, expect_id):
    assert kind == hm.RESP_DETECTIONS, payload
    assert request_id == expect_id
    text = payload.decode("ascii")
    assert " " not in text and "\n" not in text  # compact
    reply = json.loads(text)
    assert list(reply) == ["id", "ms", "w", "h", "detections"]
    assert reply["id"] == expect_id
    assert isinstance(reply["ms"], (int, float)) and 0 <= reply["ms"] < 10000
    return reply


def error_reply(kind, request_id, payload, expect_id):
    assert kind == hm.RESP_ERROR, payload
    assert request_id == expect_id
    reply = json.loads(payload)
    assert list(reply) == ["id", "error"]
    assert reply["id"] == expect_id and reply["error"]
    return reply["error"]


def check_well_formed(reply, width, height, max_detections=100):
    assert reply["w"] == width and reply["h"] == height
    found = reply["detections"]
    assert len(found) <= max_detections
    confidences = [d["confidence"] for d in found]
    assert confidences == sorted(confidences, reverse=True)
    for d in found:
        assert list(d) == ["class", "confidence", "box"]
        assert d["class"] == "failure"
        assert 0.08 < d["confidence"] <= 1.0
        x, y, w, h = d["box"]
        assert all(isinstance(v, int) for v in d["box"])
        assert 0 <= x and 0 <= y and w >= 0 and h >= 0
        assert x + w <= width and y + h <= height


# ---- command line -----------------------------------------------------------


def test_version_and_self_check_still_work(helper_bin):
    out = subprocess.run([helper_bin, "--version"], capture_output=True, text=True,
                         timeout=TIMEOUT)
    assert out.returncode == 0 and out.stdout.startswith("tsd-helper ")
    out = subprocess.run([helper_bin, "--self-check"], capture_output=True, text=True,
                         timeout=TIMEOUT)
    assert out.returncode == 0 and "self-check ok" in out.stdout
    out = subprocess.run([helper_bin, "--config"], capture_output=True, text=True,
                         timeout=TIMEOUT)
    assert out.returncode == 2 and "usage" in out.stderr


# ---- serving ----------------------------------------------------------------


def test_ping_pong(models, tmp_path, start):
    helper = start(config(models, tmp_path))
    helper.send(hm.request(hm.REQ_PING, 42))
    assert helper.receive(TIMEOUT) == (hm.RESP_PONG, 42, b"")
    helper.send(hm.request(hm.REQ_PING, 0xFFFFFFFF, b"ignored payload"))
    assert helper.receive(TIMEOUT) == (hm.RESP_PONG, 0xFFFFFFFF, b"")
    assert "ready" in helper.stderr_text()


def test_detection_round_trip_known_output(models, tmp_path, start):
    """The fixed model gives, whatever the image, one 32x32 box per cell of
    its 2x2 grid (input 64x64) with confidence 0.9 * 0.8; its second anchor
    (0.2 * 0.3 = 0.06) is under the 0.08 threshold. Boxes come back in the
    JPEG's own pixels."""
    helper = start(config(models, tmp_path))
    for request_id, (width, height) in enumerate([(640, 480), (64, 64), (1280, 720),
                                                  (40, 30)], start=1):
        reply = detections(*helper.detect(hm.make_jpeg(width, height, seed=request_id),
                                          request_id, TIMEOUT), request_id)
        check_well_formed(reply, width, height)
        found = reply["detections"]
        assert len(found) == 4, found
        for d in found:
            assert d["confidence"] == pytest.approx(hm.TINY_CONFIDENCE, abs=1e-4)
        half_w, half_h = width / 2, height / 2
        boxes = sorted(tuple(d["box"]) for d in found)
        expected = sorted((round(cx * half_w), round(cy * half_h),
                           round((cx + 1) * half_w) - round(cx * half_w),
                           round((cy + 1) * half_h) - round(cy * half_h))
                          for cx in (0, 1) for cy in (0, 1))
        for got, want in zip(boxes, expected):
            assert all(abs(g - w) <= 1 for g, w in zip(got, want)), (boxes, expected)


def test_threshold_and_max_detections(models, tmp_path, start):
    # A lower threshold lets the second anchor (0.06) through. Its 64x64
    # boxes, clipped to the image, overlap each other: side by side IoU 0.5,
    # diagonally 0.29, and each strong 32x32 box 0.44. So NMS at 0.6 keeps
    # all 8 boxes, and at 0.45 drops the 2 weak boxes that overlap a
    # stronger weak neighbour by 0.5.
    low = start(config(models, tmp_path, name="low.yaml", box_threshold=0.05,
                       nms_threshold=0.6))
    reply = detections(*low.detect(hm.make_jpeg(64, 64), 1, TIMEOUT), 1)
    confidences = sorted(d["confidence"] for d in reply["detections"])
    assert len(confidences) == 8
    assert confidences[0] == pytest.approx(hm.TINY_LOW_CONFIDENCE, abs=1e-4)
    nms = start(config(models, tmp_path, name="nms.yaml", box_threshold=0.05))
    reply = detections(*nms.detect(hm.make_jpeg(64, 64), 1, TIMEOUT), 1)
    confidences = sorted(d["confidence"] for d in reply["detections"])
    assert confidences == [pytest.approx(hm.TINY_LOW_CONFIDENCE, abs=1e-4)] * 2 + [
        pytest.approx(hm.TINY_CONFIDENCE, abs=1e-4)] * 4
    # max_detections keeps the strongest.
    capped = start(config(models, tmp_path, name="capped.yaml", box_threshold=0.05,
                          max_detections=2))
    reply = detections(*capped.detect(hm.make_jpeg(64, 64), 2, TIMEOUT), 2)
    assert [d["confidence"] for d in reply["detections"]] == [
        pytest.approx(hm.TINY_CONFIDENCE, abs=1e-4)] * 2
    # A threshold above every confidence: an empty list.
    none = start(config(models, tmp_path, name="none.yaml", box_threshold=0.9))
    reply = detections(*none.detect(hm.make_jpeg(64, 64), 3, TIMEOUT), 3)
    assert reply["detections"] == []


def test_random_model_output_is_well_formed(models, tmp_path, start):
    helper = start(config(models, tmp_path, "noisy"))
    seen_any = False
    for request_id in range(1, 9):
        width, height = (320, 240) if request_id % 2 else (200, 150)
        reply = detections(*helper.detect(hm.make_jpeg(width, height, seed=request_id),
                                          request_id, TIMEOUT), request_id)
        check_well_formed(reply, width, height)
        seen_any |= bool(reply["detections"])
    assert seen_any


def test_pipelined_requests_answered_in_order(models, tmp_path, start):
    helper = start(config(models, tmp_path))
    jpeg = hm.make_jpeg(160, 120)
    stream = b"".join(hm.request(hm.REQ_JPEG if i % 3 else hm.REQ_PING, 100 + i, jpeg if i % 3
                                 else b"") for i in range(30))
    helper.send(stream)
    for i in range(30):
        kind, request_id, payload = helper.receive(TIMEOUT)
        assert request_id == 100 + i
        assert kind == (hm.RESP_DETECTIONS if i % 3 else hm.RESP_PONG), payload


def test_bad_frames_get_errors_and_the_helper_keeps_serving(models, tmp_path, start):
    helper = start(config(models, tmp_path))
    jpeg = hm.make_jpeg(320, 240)
    bad = [
        (jpeg[: len(jpeg) // 2], "truncated"),         # cut in the middle
        (b"\x00garbage bytes, not a JPEG" * 10, "not a JPEG"),
        (b"\xff\xd8" + os.urandom(2000) + b"\xff\xd9", "JPEG"),  # SOI/EOI, noise inside
        (b"", "empty"),
        (b"\xff\xd8\xff\xd9", "JPEG"),
    ]
    for request_id, (payload, words) in enumerate(bad, start=1):
        message = error_reply(*helper.detect(payload, request_id, TIMEOUT), request_id)
        assert words.lower() in message.lower(), message
    helper.send(hm.request(9, 77, b"abc"))
    message = error_reply(*helper.receive(TIMEOUT), 77)
    assert "unknown request type 9" in message
    reply = detections(*helper.detect(jpeg, 99, TIMEOUT), 99)
    check_well_formed(reply, 320, 240)
    assert len(reply["detections"]) == 4
    helper.send(hm.request(hm.REQ_PING, 100))
    assert helper.receive(TIMEOUT) == (hm.RESP_PONG, 100, b"")
    assert helper.proc.poll() is None


def test_oversized_frame_is_refused_and_skipped(models, tmp_path, start):
    helper = start(config(models, tmp_path, max_frame_bytes=4096))
    small = hm.make_jpeg(64, 48)
    assert len(small) < 4096
    big = b"\xff\xd8" + b"\x5a" * 300000 + b"\xff\xd9"
    # The oversized payload looks like frames inside, to prove it is skipped
    # and never parsed.
    decoy = hm.request(hm.REQ_PING, 555) * (len(big) // 16)
    helper.send(hm.request(hm.REQ_JPEG, 1, big))
    message = error_reply(*helper.receive(TIMEOUT), 1)
    assert "max_frame_bytes" in message and "300004" in message
    helper.send(hm.request(hm.REQ_JPEG, 2, decoy))
    error_reply(*helper.receive(TIMEOUT), 2)
    reply = detections(*helper.detect(small, 3, TIMEOUT), 3)
    check_well_formed(reply, 64, 48)
    helper.send(hm.request(hm.REQ_PING, 4))
    assert helper.receive(TIMEOUT) == (hm.RESP_PONG, 4, b"")
    # A frame of exactly the limit is accepted.
    exact = small + b"\x00" * (4096 - len(small))  # padding after EOI is allowed up to 16 B
    kind, request_id, payload = helper.detect(exact, 5, TIMEOUT)
    assert request_id == 5 and kind in (hm.RESP_DETECTIONS, hm.RESP_ERROR)
    assert b"max_frame_bytes" not in payload


@pytest.mark.parametrize("garbage", [
    b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    hm.request(hm.REQ_PING, 1, version=2),
    hm.request(hm.REQ_PING, 1, reserved=7),
    hm.request(hm.REQ_PING, 1, magic=b"TSDR"),
], ids=["text", "version", "reserved", "response-magic"])
def test_garbage_framing_exits_3(models, tmp_path, start, garbage):
    helper = start(config(models, tmp_path))
    helper.send(hm.request(hm.REQ_PING, 5))
    assert helper.receive(TIMEOUT) == (hm.RESP_PONG, 5, b"")
    helper.send(garbage)
    error_reply(*helper.receive(TIMEOUT), 0)
    assert helper.wait(TIMEOUT) == 3
    assert "bad framing" in helper.stderr_text()


def test_truncated_frame_at_eof_exits_3(models, tmp_path, start):
    helper = start(config(models, tmp_path))
    helper.send(hm.request(hm.REQ_JPEG, 1, b"x" * 100)[:60])
    helper.close_stdin()
    error_reply(*helper.receive(TIMEOUT), 0)
    assert helper.wait(TIMEOUT) == 3


def test_eof_exits_0(models, tmp_path, start):
    helper = start(config(models, tmp_path))
    helper.close_stdin()
    assert helper.wait(TIMEOUT) == 0
    helper = start(config(models, tmp_path))
    reply = detections(*helper.detect(hm.make_jpeg(64, 64), 1, TIMEOUT), 1)
    assert len(reply["detections"]) == 4
    helper.close_stdin()
    assert helper.wait(TIMEOUT) == 0
    assert helper.proc.stdout.read() == b""  # nothing but frames, nothing after


def sanitized(path):
    """True for a helper built with -Dsanitize=true (ASan's quarantine makes
    RSS grow by design)."""
    with open(path, "rb") as f:
        return b"__asan_init" in f.read()


def test_rss_is_flat_over_200_frames(helper_bin, models, tmp_path, start):
    if sanitized(helper_bin):
        pytest.skip("RSS is not meaningful under AddressSanitizer")
    helper = start(config(models, tmp_path, "noisy"))
    jpegs = [hm.make_jpeg(640, 480, seed=i) for i in range(4)]
    for i in range(20):  # warm-up: buffers reach their steady size
        detections(*helper.detect(jpegs[i % 4], i, TIMEOUT), i)
    before = helper.rss_kb()
    for i in range(200):
        detections(*helper.detect(jpegs[i % 4], 1000 + i, TIMEOUT), 1000 + i)
    after = helper.rss_kb()
    assert after - before < 4096, (before, after)


# ---- configuration and model errors: exit status 2 --------------------------


def run_config(helper_bin, path):
    out = subprocess.run([helper_bin, "--config", str(path)], stdin=subprocess.DEVNULL,
                         capture_output=True, timeout=TIMEOUT)
    return out.returncode, out.stderr.decode("utf-8", "replace"), out.stdout


def write(path, text):
    path.write_text(text)
    return path


def test_config_errors_exit_2_naming_the_field(helper_bin, models, tmp_path):
    cfg, weights = models["fixed"]
    good = ("model_type: darknet\nmodel_cfg: {}\nmodel_weights: {}\ninput_width: 64\n"
            "input_height: 64\nclasses: [failure]\n").format(cfg, weights)
    cases = {
        "not yaml": ("model_type: darknet\n  oops: [\n", "YAML error"),
        "list at top": ("- a\n- b\n", "mapping"),
        "empty": ("", "mapping"),
        "missing width": (good.replace("input_width: 64\n", ""), "'input_width'"),
        "bad width": (good.replace("input_width: 64", "input_width: wide"), "'input_width'"),
        "width too small": (good.replace("input_width: 64", "input_width: 2"),
                            "'input_width'"),
        "unknown field": (good + "box_treshold: 0.1\n", "'box_treshold'"),
        "twice": (good + "input_height: 64\n", "'input_height'"),
        "bad type": (good.replace("darknet", "caffe"), "'model_type'"),
        "missing weights field": (good.replace("model_weights: {}\n".format(weights), ""),
                                  "'model_weights'"),
        "onnx without file": (good.replace("darknet", "onnx"), "'model_onnx'"),
        "classes not list": (good.replace("[failure]", "failure"), "'classes'"),
        "no classes": (good.replace("[failure]", "[]"), "'classes'"),
        "mean of 2": (good + "mean: [1, 2]\n", "'mean'"),
        "threshold": (good + "box_threshold: 1.5\n", "'box_threshold'"),
        "nms nan": (good + "nms_threshold: .nan\n", "'nms_threshold'"),
        "swap": (good + "swap_rb: maybe\n", "'swap_rb'"),
        "threads": (good + "threads: 0\n", "'threads'"),
        "frame bytes": (good + "max_frame_bytes: 10\n", "'max_frame_bytes'"),
        "score": (good + "score: best\n", "'score'"),
    }
    for name, (text, words) in cases.items():
        path = write(tmp_path / "bad.yaml", text)
        code, err, out = run_config(helper_bin, path)
        assert code == 2, (name, code, err)
        assert words in err, (name, err)
        assert out == b"", name
    code, err, _ = run_config(helper_bin, tmp_path / "missing.yaml")
    assert code == 2 and "missing.yaml" in err
    code, _, _ = run_config(helper_bin, write(tmp_path / "ok.yaml", good))
    assert code == 0  # EOF right away


def test_bad_model_files_exit_2(helper_bin, models, tmp_path):
    cfg, weights = models["fixed"]
    with open(weights, "rb") as f:
        weight_bytes = f.read()
    truncated = tmp_path / "truncated.weights"
    truncated.write_bytes(weight_bytes[:-4])
    garbage_cfg = write(tmp_path / "garbage.cfg", "this is not\n[a darknet\ncfg=\n")
    empty = tmp_path / "empty.weights"
    empty.write_bytes(b"")
    cases = [
        (cfg, str(tmp_path / "nope.weights"), {}, "model_weights"),
        (str(tmp_path / "nope.cfg"), weights, {}, "model_cfg"),
        (cfg, str(empty), {}, "model_weights"),
        (cfg, str(truncated), {}, "truncated"),
        (str(garbage_cfg), weights, {}, "model"),
        (cfg, weights, {"classes": ["failure", "other"]}, "columns"),
    ]
    for number, (model_cfg, model_weights, extra, words) in enumerate(cases):
        fields = {"classes": ["failure"]}
        fields.update(extra)
        path = hm.write_config(str(tmp_path / "c{}.yaml".format(number)), model_cfg,
                               model_weights, hm.TINY_SIDE, **fields)
        code, err, out = run_config(helper_bin, path)
        assert code == 2, (number, code, err)
        assert words in err, (number, err)
        assert out == b""


def test_relative_model_paths_follow_the_config(helper_bin, models, tmp_path, start):
    cfg, weights = models["fixed"]
    directory = os.path.dirname(cfg)
    path = os.path.join(directory, "relative.yaml")
    hm.write_config(path, os.path.basename(cfg), os.path.basename(weights), hm.TINY_SIDE)
    helper = start(path)
    helper.send(hm.request(hm.REQ_PING, 1))
    assert helper.receive(TIMEOUT) == (hm.RESP_PONG, 1, b"")


def test_protocol_header_layout():
    # The layout the plugin's native code must produce, spelled out.
    frame = hm.request(hm.REQ_JPEG, 0x01020304, b"abc")
    assert frame == b"TSDF\x01\x01\x00\x00\x04\x03\x02\x01\x03\x00\x00\x00abc"
    assert struct.calcsize("<4sBBHII") == 16


def test_onnx_model(helper_bin, tmp_path, start):
    """A YOLOv5-style ONNX output ([1, N, 5 + classes], boxes in input
    pixels, confidence = objectness * class): four identical rows, of which
    NMS keeps one."""
    onnx = hm.write_tiny_onnx(str(tmp_path))
    helper = start(hm.write_onnx_config(str(tmp_path / "onnx.yaml"), onnx, hm.ONNX_SIDE))
    reply = detections(*helper.detect(hm.make_jpeg(640, 480), 1, TIMEOUT), 1)
    check_well_formed(reply, 640, 480)
    cx, cy, w, h, objectness, cls = hm.ONNX_ROW
    assert len(reply["detections"]) == 1
    found = reply["detections"][0]
    assert found["confidence"] == pytest.approx(objectness * cls, abs=1e-4)
    scale_x, scale_y = 640 / hm.ONNX_SIDE, 480 / hm.ONNX_SIDE
    assert found["box"] == [round((cx - w / 2) * scale_x), round((cy - h / 2) * scale_y),
                            round(w * scale_x), round(h * scale_y)]
    # score: class takes the class column alone.
    helper = start(hm.write_onnx_config(str(tmp_path / "class.yaml"), onnx, hm.ONNX_SIDE,
                                        score="class"))
    reply = detections(*helper.detect(hm.make_jpeg(64, 64), 2, TIMEOUT), 2)
    assert reply["detections"][0]["confidence"] == pytest.approx(cls, abs=1e-4)
    # Two classes do not match the model's 6 columns.
    code, err, _ = run_config(helper_bin, hm.write_onnx_config(
        str(tmp_path / "two.yaml"), onnx, hm.ONNX_SIDE, classes=["a", "b"]))
    assert code == 2 and "columns" in err
    # A file that is not ONNX.
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07garbage" * 10)
    code, err, _ = run_config(helper_bin, hm.write_onnx_config(
        str(tmp_path / "junk.yaml"), str(junk), hm.ONNX_SIDE))
    assert code == 2 and "model" in err


def crop_boxes(width, height, n=3):
    """The crops of helper/infer.h, in pixels: the frame, then the grid."""
    def bound(k, size):
        return int(k * size / (n + 1) + 0.5)
    boxes = [[0, 0, width, height]]
    for j in range(n):
        for i in range(n):
            x0, y0 = bound(i, width), bound(j, height)
            boxes.append([x0, y0, bound(i + 2, width) - x0, bound(j + 2, height) - y0])
    return boxes


def test_onnx_crops_scores_every_crop(helper_bin, tmp_path, start):
    """model_type onnx_crops: the frame and a 3x3 grid of half-size cells are
    scored in one batch; the crops holding the red strands are detections,
    with the crop as the box, and the others are not."""
    onnx = hm.write_crops_onnx(str(tmp_path))
    helper = start(hm.write_crops_config(str(tmp_path / "crops.yaml"), onnx))
    # Red strands only in the top-left cell of color_scene's 4x4 grid.
    width, height = 320, 240
    pixels = bytearray(hm.color_scene(width, height))
    strands = hm.color_scene(width, height, red_cells=16, seed=3)
    for y in range(height // 4):
        row = y * width * 3
        pixels[row:row + width // 4 * 3] = strands[row:row + width // 4 * 3]
    reply = detections(*helper.detect(hm.encode_jpeg(bytes(pixels), width, height), 1, TIMEOUT), 1)
    check_well_formed(reply, width, height)
    found = sorted(d["box"] for d in reply["detections"])
    crops = crop_boxes(width, height)
    # The whole frame and the one cell over the top-left quarter hold it.
    assert found == sorted([crops[0], crops[1]])
    assert all(d["confidence"] > 0.9 for d in reply["detections"])
    # A frame with no strand: nothing.
    reply = detections(*helper.detect(hm.encode_jpeg(hm.color_scene(width, height), width, height), 2,
                                      TIMEOUT), 2)
    assert reply["detections"] == []


def test_onnx_crops_config_errors(helper_bin, tmp_path):
    onnx = hm.write_crops_onnx(str(tmp_path))
    for name, extra, words in (
            ("two.yaml", {"classes": ["a", "b"]}, "one class"),
            ("grid.yaml", {"crop_grid": 9}, "crop_grid"),
            ("zero.yaml", {"crop_grid": 0}, "crop_grid")):
        code, err, _ = run_config(helper_bin, hm.write_crops_config(str(tmp_path / name), onnx, **extra))
        assert code == 2 and words in err, err
    # crop_grid belongs to onnx_crops only.
    code, err, _ = run_config(helper_bin, hm.write_onnx_config(
        str(tmp_path / "onnx.yaml"), onnx, hm.CROPS_SIDE, crop_grid=3))
    assert code == 2 and "crop_grid" in err, err


def test_onnx_crops_signatures(helper_bin, tmp_path, start):
    """A crop model with a "signature" output: every detection carries its
    crop's signature ("sig", 32 numbers); the same crop gives the same one,
    a crop that looks different a different one."""
    onnx = hm.write_crops_onnx(str(tmp_path), signature=True)
    helper = start(hm.write_crops_config(str(tmp_path / "sig.yaml"), onnx))
    width, height = 320, 240
    calm = hm.encode_jpeg(hm.learn_scene(width, height), width, height)
    failing = hm.encode_jpeg(hm.learn_scene(width, height, strands=True), width, height)
    first = detections(*helper.detect(calm, 1, TIMEOUT), 1)["detections"]
    again = detections(*helper.detect(calm, 2, TIMEOUT), 2)["detections"]
    both = detections(*helper.detect(failing, 3, TIMEOUT), 3)["detections"]
    crops = crop_boxes(width, height)
    # The red object fires the frame and the top-left cell; the strands add
    # the bottom-right cells.
    assert sorted(d["box"] for d in first) == sorted([crops[0], crops[1]])
    assert crops[9] in [d["box"] for d in both]
    for d in first + both:
        assert len(d["sig"]) == hm.CROPS_SIGNATURE_DIMS
        assert all(isinstance(v, (int, float)) for v in d["sig"])
    assert [d["sig"] for d in first] == [d["sig"] for d in again]
    cell = {tuple(d["box"]): d["sig"] for d in both}
    assert cell[tuple(crops[9])] != cell[tuple(crops[1])]
