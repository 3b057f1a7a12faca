# SPDX-License-Identifier: AGPL-3.0-or-later
"""Test material for tsd-helper: small Darknet models written from scratch,
JPEG frames made with libturbojpeg (ctypes), the helper's frame protocol,
and a latency benchmark.

Darknet .weights format (what OpenCV's readNetFromDarknet reads): int32
major = 0, int32 minor = 2, int32 revision = 0, uint64 images seen, then for
every [convolutional] layer in cfg order: filters biases, and with
batch_normalize=1 filters scales, rolling means and rolling variances, then
filters x in_channels x size x size weights. All little-endian float32.

Run as a script for a latency measurement:
    python tests/helper_models.py bench [--model tiny|yolov2] [--frames N] [--helper PATH]
"""

import ctypes
import ctypes.util
import json
import math
import os
import random
import select
import struct
import subprocess
import sys
import time

# ---- Darknet models ---------------------------------------------------------


def _conv(filters, size=3, stride=1, bn=True, activation="leaky"):
    return {"type": "convolutional", "filters": filters, "size": size, "stride": stride,
            "batch_normalize": 1 if bn else 0, "pad": 1, "activation": activation}


def _cfg_text(side, layers):
    lines = ["[net]", "batch=1", "subdivisions=1", "width={}".format(side),
             "height={}".format(side), "channels=3", ""]
    for layer in layers:
        lines.append("[{}]".format(layer["type"]))
        for key, value in layer.items():
            if key == "type":
                continue
            lines.append("{}={}".format(key, value))
        lines.append("")
    return "\n".join(lines)


def _conv_shapes(layers):
    """(filters, in_channels, size, bn) for every conv layer, following the
    channel count through maxpool, route and reorg layers."""
    channels = 3
    out_channels = []
    shapes = []
    for index, layer in enumerate(layers):
        kind = layer["type"]
        if kind == "convolutional":
            shapes.append((layer["filters"], channels, layer["size"],
                           layer["batch_normalize"] == 1))
            channels = layer["filters"]
        elif kind == "route":
            refs = [int(v) for v in str(layer["layers"]).split(",")]
            channels = sum(out_channels[index + r if r < 0 else r] for r in refs)
        elif kind == "reorg":
            channels = channels * layer.get("stride", 2) ** 2
        out_channels.append(channels)
    return shapes


def _floats(values):
    return struct.pack("<{}f".format(len(values)), *values)


def _weights_bytes(layers, final_biases=None, final_weight_scale=0.05, seed=1,
                   constant=None):
    """The .weights file for layers. The last conv layer gets final_biases
    (when given) and weights scaled by final_weight_scale (0: all zero, so
    the detections do not depend on the image). constant: every weight and
    bias that value instead (fast, for big benchmark models)."""
    rng = random.Random(seed)
    shapes = _conv_shapes(layers)
    chunks = [struct.pack("<iiiQ", 0, 2, 0, 0)]
    for number, (filters, in_ch, size, bn) in enumerate(shapes):
        last = number == len(shapes) - 1
        count = filters * in_ch * size * size
        if constant is not None:
            one = struct.pack("<f", constant)
            chunks.append(one * filters)
            if bn:
                chunks.append(struct.pack("<f", 1.0) * filters)  # scales
                chunks.append(struct.pack("<f", 0.0) * filters)  # means
                chunks.append(struct.pack("<f", 1.0) * filters)  # variances
            chunks.append(one * count)
            continue
        if last and final_biases is not None:
            biases = list(final_biases)
            assert len(biases) == filters
        else:
            biases = [rng.gauss(0.0, 0.1) for _ in range(filters)]
        chunks.append(_floats(biases))
        if bn:
            chunks.append(_floats([1.0 + rng.gauss(0.0, 0.05) for _ in range(filters)]))
            chunks.append(_floats([rng.gauss(0.0, 0.05) for _ in range(filters)]))
            chunks.append(_floats([1.0 + abs(rng.gauss(0.0, 0.05)) for _ in range(filters)]))
        scale = final_weight_scale if last else math.sqrt(2.0 / (in_ch * size * size))
        chunks.append(_floats([rng.gauss(0.0, 1.0) * scale for _ in range(count)]))
    return b"".join(chunks)


def logit(p):
    return math.log(p / (1.0 - p))


# The tiny model: 64x64 input, a 2x2 grid, two anchors of 32x32 and 64x64
# input pixels, one class. With final_weight_scale=0 its output does not
# depend on the image: anchor 0 of every cell gives a 32x32 box centred in
# the cell with confidence TINY_CONFIDENCE (objectness * class, both set by
# the biases), anchor 1 a confidence of TINY_LOW_CONFIDENCE (below 0.08).
TINY_SIDE = 64
TINY_OBJECTNESS = 0.9
TINY_CLASS = 0.8
TINY_CONFIDENCE = TINY_OBJECTNESS * TINY_CLASS
TINY_LOW_CONFIDENCE = 0.2 * 0.3


def tiny_layers(classes=1):
    anchors = 2
    return [
        _conv(8, stride=2),      # 32x32
        {"type": "maxpool", "size": 2, "stride": 2},  # 16x16
        _conv(16, stride=2),     # 8x8
        {"type": "maxpool", "size": 2, "stride": 2},  # 4x4
        _conv(16, stride=2),     # 2x2
        _conv(anchors * (5 + classes), size=1, bn=False, activation="linear"),
        # thresh: OpenCV zeroes class scores at or below it (default 0.2).
        {"type": "yolo", "mask": "0,1", "anchors": "32,32, 64,64", "classes": classes,
         "num": anchors, "thresh": 0.01},
    ]


def tiny_final_biases(classes=1):
    biases = []
    for objectness, cls in ((TINY_OBJECTNESS, TINY_CLASS), (0.2, 0.3)):
        biases += [0.0, 0.0, 0.0, 0.0, logit(objectness)] + [logit(cls)] * classes
    return biases


def write_tiny_model(directory, deterministic=True, seed=1, classes=1):
    """Writes tiny.cfg and tiny.weights; returns their paths."""
    layers = tiny_layers(classes)
    cfg = os.path.join(directory, "tiny.cfg")
    weights = os.path.join(directory, "tiny.weights")
    with open(cfg, "w") as f:
        f.write(_cfg_text(TINY_SIDE, layers))
    with open(weights, "wb") as f:
        f.write(_weights_bytes(layers, final_biases=tiny_final_biases(classes),
                               final_weight_scale=0.0 if deterministic else 0.5, seed=seed))
    return cfg, weights


def yolov2_layers(classes=1):
    """The layer shapes of Darknet's yolov2.cfg (Darknet-19 with the
    passthrough layer, 5 anchors, [region] output)."""
    c = _conv
    layers = [
        c(32), {"type": "maxpool", "size": 2, "stride": 2},
        c(64), {"type": "maxpool", "size": 2, "stride": 2},
        c(128), c(64, 1), c(128), {"type": "maxpool", "size": 2, "stride": 2},
        c(256), c(128, 1), c(256), {"type": "maxpool", "size": 2, "stride": 2},
        c(512), c(256, 1), c(512), c(256, 1), c(512), {"type": "maxpool", "size": 2, "stride": 2},
        c(1024), c(512, 1), c(1024), c(512, 1), c(1024),
        c(1024), c(1024),
        {"type": "route", "layers": -9},
        c(64, 1),
        {"type": "reorg", "stride": 2},
        {"type": "route", "layers": "-1,-4"},
        c(1024),
        c(5 * (5 + classes), 1, bn=False, activation="linear"),
        {"type": "region", "anchors": "0.57273,0.677385, 1.87446,2.06253, 3.33843,5.47434, "
                                      "7.88282,3.52778, 9.77052,9.16828",
         "bias_match": 1, "classes": classes, "coords": 4, "num": 5, "softmax": 1,
         "thresh": 0.001},
    ]
    return layers


def write_yolov2_model(directory, side=416, classes=1):
    layers = yolov2_layers(classes)
    cfg = os.path.join(directory, "yolov2.cfg")
    weights = os.path.join(directory, "yolov2.weights")
    with open(cfg, "w") as f:
        f.write(_cfg_text(side, layers))
    with open(weights, "wb") as f:
        f.write(_weights_bytes(layers, constant=0.001))
    return cfg, weights


def _write_config_fields(path, fields):
    """A helper configuration: one `key: value` line a field (JSON values are
    valid YAML flow scalars and sequences)."""
    with open(path, "w") as f:
        for key, value in fields.items():
            f.write("{}: {}\n".format(key, json.dumps(value)))
    return path


def write_config(path, cfg, weights, side, classes=("failure",), **extra):
    """A helper configuration (YAML) for a Darknet model."""
    fields = {
        "model_type": "darknet",
        "model_cfg": cfg,
        "model_weights": weights,
        "input_width": side,
        "input_height": side,
        "classes": list(classes),
    }
    fields.update(extra)
    return _write_config_fields(path, fields)


# ---- a colour model: deterministic detections that follow the picture ----------
#
# For end-to-end tests: a 64x64 network that reports one detection in each
# cell of a 4x4 grid holding strongly red pixels. Layer 1 (1x1 conv) computes
# redness = R - (G + B) / 2 - 0.3 per pixel (inputs scaled to 0..1), a 16x16
# max pool takes each cell's reddest pixel, and the last 1x1 conv turns that
# into the cell's objectness logit 25 * redness - 2 (class logit 10): about
# 0.999 for a red cell, under 0.01 for a grey one. The anchors are one cell
# wide, so the boxes of two cells never overlap and NMS keeps them all:
# p (the sum of confidences) is about the number of red cells.
COLOR_SIDE = 64
COLOR_GRID = 4


def color_layers():
    return [
        _conv(1, size=1, bn=False, activation="linear"),
        {"type": "maxpool", "size": COLOR_SIDE // COLOR_GRID, "stride": COLOR_SIDE // COLOR_GRID},
        _conv(6, size=1, bn=False, activation="linear"),
        {"type": "yolo", "mask": "0", "anchors": "16,16", "classes": 1, "num": 1,
         "thresh": 0.01},
    ]


def write_color_model(directory):
    """Writes color.cfg, color.weights and color.yaml; returns the YAML path."""
    layers = color_layers()
    cfg = os.path.join(directory, "color.cfg")
    weights = os.path.join(directory, "color.weights")
    with open(cfg, "w") as f:
        f.write(_cfg_text(COLOR_SIDE, layers).replace("pad=1\n", "pad=0\n"))
    chunks = [struct.pack("<iiiQ", 0, 2, 0, 0)]
    # conv 1: one filter over R, G, B (the helper swaps to RGB for Darknet)
    chunks.append(_floats([-0.3]))
    chunks.append(_floats([1.0, -0.5, -0.5]))
    # conv 2: x, y, w, h, objectness, class from the cell's redness
    chunks.append(_floats([0.0, 0.0, 0.0, 0.0, -2.0, 10.0]))
    chunks.append(_floats([0.0, 0.0, 0.0, 0.0, 25.0, 0.0]))
    with open(weights, "wb") as f:
        f.write(b"".join(chunks))
    return write_config(os.path.join(directory, "color.yaml"), cfg, weights, COLOR_SIDE)


def color_scene(width, height, red_cells=0, seed=0):
    """A BGR picture: a grey bed and a blue block; with red_cells > 0, red
    strands in that many cells of the 4x4 grid (the "failure")."""
    rng = random.Random(seed)
    img = bytearray(width * height * 3)
    for y in range(height):
        shade = 60 + 40 * y // max(1, height - 1)
        img[y * width * 3:(y + 1) * width * 3] = bytes([shade, shade, shade]) * width
    bx0, bx1, by0, by1 = width * 3 // 8, width * 5 // 8, height // 2, height * 3 // 4
    for y in range(by0, by1):
        img[(y * width + bx0) * 3:(y * width + bx1) * 3] = bytes([200, 90, 40]) * (bx1 - bx0)
    cells = list(range(COLOR_GRID * COLOR_GRID))
    rng.shuffle(cells)
    cw, ch = width // COLOR_GRID, height // COLOR_GRID
    for cell in cells[:red_cells]:
        cx, cy = (cell % COLOR_GRID) * cw, (cell // COLOR_GRID) * ch
        x, y = cx + cw // 2, cy + ch // 2
        for _ in range(cw * 2):
            x = min(cx + cw - 3, max(cx + 2, x + rng.choice((-2, -1, 0, 1, 2))))
            y = min(cy + ch - 3, max(cy + 2, y + rng.choice((-2, -1, 0, 1, 2))))
            for dy in (0, 1):
                for dx in (0, 1):
                    o = ((y + dy) * width + x + dx) * 3
                    img[o:o + 3] = bytes([20, 20, 230])
    return bytes(img)


def write_scene_frames(directory, scenes, width, height, frames):
    """print/ and spaghetti/ folders of JPEGs for tests/webcam_sim.py
    --frames: scenes maps each folder to render(index) -> BGR pixels."""
    for scene, render in scenes.items():
        folder = os.path.join(directory, scene)
        os.makedirs(folder, exist_ok=True)
        for index in range(frames):
            with open(os.path.join(folder, "{:03d}.jpg".format(index)), "wb") as f:
                f.write(encode_jpeg(render(index), width, height))
    return directory


def write_color_frames(directory, width=320, height=240, frames=8, red_cells=10):
    """color_scene() frames: none in print/, red_cells in spaghetti/."""
    return write_scene_frames(directory, {
        "print": lambda index: color_scene(width, height, 0, seed=index),
        "spaghetti": lambda index: color_scene(width, height, red_cells, seed=index),
    }, width, height, frames)


# ---- a tiny ONNX model (protobuf written by hand) ------------------------------


def _varint(value):
    value &= (1 << 64) - 1  # negative int64 as two's complement
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field_varint(number, value):
    return _varint(number << 3) + _varint(value)


def _field_bytes(number, data):
    if isinstance(data, str):
        data = data.encode()
    return _varint((number << 3) | 2) + _varint(len(data)) + data


def _onnx_tensor(name, dims, data_type, raw):
    # TensorProto: dims 1, data_type 2, name 8, raw_data 9 (FLOAT 1, INT64 7)
    return (b"".join(_field_varint(1, d) for d in dims) + _field_varint(2, data_type)
            + _field_bytes(8, name) + _field_bytes(9, raw))


def _onnx_value_info(name, dims):
    # ValueInfoProto{name 1, type 2: TypeProto{tensor_type 1: {elem_type 1, shape 2}}}
    shape = b"".join(_field_bytes(1, _field_varint(1, d)) for d in dims)
    tensor_type = _field_varint(1, 1) + _field_bytes(2, shape)
    return _field_bytes(1, name) + _field_bytes(2, _field_bytes(1, tensor_type))


def _onnx_ints_attribute(name, values):
    # AttributeProto: name 1, ints 8, type 20 (INTS = 7)
    return (_field_bytes(1, name) + b"".join(_field_varint(8, v) for v in values)
            + _field_varint(20, 7))


def _onnx_node(op_type, inputs, outputs, name, attributes=()):
    # NodeProto: input 1, output 2, name 3, op_type 4, attribute 5
    return (b"".join(_field_bytes(1, i) for i in inputs)
            + b"".join(_field_bytes(2, o) for o in outputs) + _field_bytes(3, name)
            + _field_bytes(4, op_type) + b"".join(_field_bytes(5, a) for a in attributes))


# What the tiny ONNX model outputs for every row, whatever the image: a
# YOLOv5-style [1, 4, 6] tensor of (cx, cy, w, h) in input pixels of its
# 64x64 input, objectness and one raw class probability.
ONNX_SIDE = 64
ONNX_ROW = (32.0, 32.0, 32.0, 16.0, 0.9, 0.5)


def write_tiny_onnx(directory):
    """Conv 32x32 stride 32 with zero weights and ONNX_ROW as biases ->
    [1, 6, 2, 2] -> Reshape [1, 6, 4] -> Transpose -> [1, 4, 6]."""
    channels = len(ONNX_ROW)
    weights = _onnx_tensor("W", [channels, 3, 32, 32], 1,
                           bytes(4 * channels * 3 * 32 * 32))
    biases = _onnx_tensor("B", [channels], 1, _floats(list(ONNX_ROW)))
    shape = _onnx_tensor("shape", [3], 7, struct.pack("<3q", 1, channels, -1))
    nodes = [
        _onnx_node("Conv", ["images", "W", "B"], ["conv"], "conv0",
                   [_onnx_ints_attribute("kernel_shape", [32, 32]),
                    _onnx_ints_attribute("strides", [32, 32])]),
        _onnx_node("Reshape", ["conv", "shape"], ["flat"], "reshape0"),
        _onnx_node("Transpose", ["flat"], ["output"], "transpose0",
                   [_onnx_ints_attribute("perm", [0, 2, 1])]),
    ]
    # GraphProto: node 1, name 2, initializer 5, input 11, output 12
    graph = (b"".join(_field_bytes(1, n) for n in nodes) + _field_bytes(2, "tiny")
             + _field_bytes(5, weights) + _field_bytes(5, biases) + _field_bytes(5, shape)
             + _field_bytes(11, _onnx_value_info("images", [1, 3, ONNX_SIDE, ONNX_SIDE]))
             + _field_bytes(12, _onnx_value_info("output", [1, 4, channels])))
    return _write_onnx_model(directory, "tiny.onnx", graph, opset=11)


def _write_onnx_model(directory, filename, graph, opset):
    """Wraps a GraphProto into a ModelProto and writes it; returns the path."""
    # ModelProto: ir_version 1, producer_name 2, graph 7, opset_import 8
    model = (_field_varint(1, 7) + _field_bytes(2, "tsd-tests") + _field_bytes(7, graph)
             + _field_bytes(8, _field_bytes(1, "") + _field_varint(2, opset)))
    path = os.path.join(directory, filename)
    with open(path, "wb") as f:
        f.write(model)
    return path


# The crop colour model: a crop's score is sigmoid(CROPS_GAIN * (max redness
# - CROPS_FLOOR)) over its pixels (redness = R - G/2 - B/2 of the RGB input in
# 0..1), so crops holding the red strands of color_scene() score near 1 and
# the rest near 0. Input CROPS_SIDE x CROPS_SIDE, any batch size.
CROPS_SIDE = 64
CROPS_GAIN = 30.0
CROPS_FLOOR = 0.2


CROPS_SIGNATURE_DIMS = 32  # helper/infer.h INFER_SIGNATURE_DIMS


def write_crops_onnx(directory, signature=False):
    """A crop classifier for model_type onnx_crops: image [N, 3, S, S] ->
    Conv 1x1 (redness) -> GlobalMaxPool -> Flatten -> Sigmoid -> score [N, 1].
    With signature=True also signature [N, 32]: 32 fixed colour mixtures of
    the crop (Conv 1x1 -> Relu -> GlobalAveragePool -> Flatten), so that
    crops that look alike have alike signatures."""
    weights = _onnx_tensor("W", [1, 3, 1, 1], 1, _floats([CROPS_GAIN, -CROPS_GAIN / 2, -CROPS_GAIN / 2]))
    biases = _onnx_tensor("B", [1], 1, _floats([-CROPS_GAIN * CROPS_FLOOR]))
    nodes = [
        _onnx_node("Conv", ["image", "W", "B"], ["red"], "conv0",
                   [_onnx_ints_attribute("kernel_shape", [1, 1])]),
        _onnx_node("GlobalMaxPool", ["red"], ["pooled"], "pool0"),
        _onnx_node("Flatten", ["pooled"], ["flat"], "flatten0"),
        _onnx_node("Sigmoid", ["flat"], ["score"], "sigmoid0"),
    ]
    tensors = [weights, biases]
    outputs = [_onnx_value_info("score", [1, 1])]
    if signature:
        rng = random.Random(20261207)
        dims = CROPS_SIGNATURE_DIMS
        tensors.append(_onnx_tensor("SW", [dims, 3, 1, 1], 1, _floats([rng.uniform(-1, 1) for _ in range(dims * 3)])))
        tensors.append(_onnx_tensor("SB", [dims], 1, _floats([rng.uniform(0, 0.5) for _ in range(dims)])))
        nodes += [
            _onnx_node("Conv", ["image", "SW", "SB"], ["mix"], "conv1",
                       [_onnx_ints_attribute("kernel_shape", [1, 1])]),
            _onnx_node("Relu", ["mix"], ["mix_relu"], "relu1"),
            _onnx_node("GlobalAveragePool", ["mix_relu"], ["mix_pooled"], "pool1"),
            _onnx_node("Flatten", ["mix_pooled"], ["signature"], "flatten1"),
        ]
        outputs.append(_onnx_value_info("signature", [1, dims]))
    graph = (b"".join(_field_bytes(1, n) for n in nodes) + _field_bytes(2, "crops")
             + b"".join(_field_bytes(5, t) for t in tensors)
             + _field_bytes(11, _onnx_value_info("image", [1, 3, CROPS_SIDE, CROPS_SIDE]))
             + b"".join(_field_bytes(12, o) for o in outputs))
    return _write_onnx_model(directory, "crops.onnx", graph, opset=10)


def write_crops_config(path, onnx, **extra):
    fields = {
        "model_type": "onnx_crops",
        "model_onnx": onnx,
        "input_width": CROPS_SIDE,
        "input_height": CROPS_SIDE,
        "classes": ["failure"],
        "box_threshold": 0.5,
        "nms_threshold": 1.0,
    }
    fields.update(extra)
    return _write_config_fields(path, fields)


def learn_scene(width, height, obj=True, strands=False, seed=0):
    """A BGR picture for "learning this printer": color_scene's bed and
    block; with obj=True a red object that never moves in the top-left
    (something the detector mistakes for a failure); with strands=True red
    strands in the bottom-right quarter (a real failure elsewhere)."""
    img = bytearray(color_scene(width, height))
    if obj:
        x0, x1, y0, y1 = width // 16, width // 6, height // 12, height // 5
        for y in range(y0, y1):
            img[(y * width + x0) * 3:(y * width + x1) * 3] = bytes([30, 30, 220]) * (x1 - x0)
    if strands:
        red = color_scene(width, height, red_cells=COLOR_GRID * COLOR_GRID, seed=seed)
        for y in range(height * 5 // 8, height):
            row = (y * width + width * 5 // 8) * 3
            end = (y + 1) * width * 3
            img[row:end] = red[row:end]
    return bytes(img)


def write_learn_frames(directory, print_scene, spaghetti_scene, width=320, height=240, frames=4):
    """learn_scene() frames, each folder's given as a dict of its keyword
    arguments."""
    return write_scene_frames(directory, {
        "print": lambda index: learn_scene(width, height, seed=index, **print_scene),
        "spaghetti": lambda index: learn_scene(width, height, seed=index, **spaghetti_scene),
    }, width, height, frames)


def write_onnx_config(path, onnx, side, classes=("failure",), **extra):
    fields = {
        "model_type": "onnx",
        "model_onnx": onnx,
        "input_width": side,
        "input_height": side,
        "classes": list(classes),
    }
    fields.update(extra)
    return _write_config_fields(path, fields)


# ---- JPEG frames ------------------------------------------------------------

TJPF_BGR = 1
TJSAMP_420 = 2

_tj = None


def _turbojpeg():
    global _tj
    if _tj is None:
        lib = ctypes.CDLL(ctypes.util.find_library("turbojpeg") or "libturbojpeg.so.0")
        lib.tjInitCompress.restype = ctypes.c_void_p
        lib.tjInitCompress.argtypes = []
        lib.tjCompress2.restype = ctypes.c_int
        lib.tjCompress2.argtypes = [
            ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.c_int,
            ctypes.c_int, ctypes.POINTER(ctypes.POINTER(ctypes.c_ubyte)),
            ctypes.POINTER(ctypes.c_ulong), ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.tjFree.restype = None
        lib.tjFree.argtypes = [ctypes.POINTER(ctypes.c_ubyte)]
        lib.tjDestroy.restype = ctypes.c_int
        lib.tjDestroy.argtypes = [ctypes.c_void_p]
        lib.tjGetErrorStr2.restype = ctypes.c_char_p
        lib.tjGetErrorStr2.argtypes = [ctypes.c_void_p]
        _tj = lib
    return _tj


def encode_jpeg(bgr, width, height, quality=85):
    """JPEG bytes of a packed BGR image (width * height * 3 bytes)."""
    assert len(bgr) == width * height * 3
    lib = _turbojpeg()
    handle = lib.tjInitCompress()
    if not handle:
        raise RuntimeError("tjInitCompress failed")
    out = ctypes.POINTER(ctypes.c_ubyte)()
    size = ctypes.c_ulong(0)
    try:
        rc = lib.tjCompress2(handle, bytes(bgr), width, width * 3, height, TJPF_BGR,
                             ctypes.byref(out), ctypes.byref(size), TJSAMP_420, quality, 0)
        if rc != 0:
            raise RuntimeError("tjCompress2: " + lib.tjGetErrorStr2(handle).decode())
        return ctypes.string_at(out, size.value)
    finally:
        if out:
            lib.tjFree(out)
        lib.tjDestroy(handle)


def sample_image(width, height, seed=0):
    """A BGR test picture: gradients plus a few bright rectangles."""
    rng = random.Random(seed)
    row_cache = []
    for y in range(height):
        row = bytearray(width * 3)
        for x in range(width):
            row[3 * x] = (x * 255 // max(1, width - 1)) & 0xFF
            row[3 * x + 1] = (y * 255 // max(1, height - 1)) & 0xFF
            row[3 * x + 2] = ((x + y + seed * 37) * 3) & 0xFF
        row_cache.append(row)
    for _ in range(3):
        x0, y0 = rng.randrange(width), rng.randrange(height)
        x1, y1 = min(width, x0 + width // 4), min(height, y0 + height // 4)
        for y in range(y0, y1):
            row_cache[y][3 * x0:3 * x1] = bytes([250, 250, 250]) * (x1 - x0)
    return bytes(b"".join(row_cache))


def make_jpeg(width, height, seed=0, quality=85):
    return encode_jpeg(sample_image(width, height, seed), width, height, quality)


# ---- the frame protocol -------------------------------------------------------

REQUEST_MAGIC = b"TSDF"
RESPONSE_MAGIC = b"TSDR"
REQ_JPEG = 1
REQ_PING = 2
RESP_DETECTIONS = 1
RESP_PONG = 2
RESP_ERROR = 3
HEADER = struct.Struct("<4sBBHII")


def request(kind, request_id, payload=b"", magic=REQUEST_MAGIC, version=1, reserved=0,
            length=None):
    if length is None:
        length = len(payload)
    return HEADER.pack(magic, version, kind, reserved, request_id, length) + payload


def reply_without_timing(reply):
    """A detections reply (dict) without its id and time: what two runs on
    the same frame with the same model must agree on."""
    return {k: v for k, v in reply.items() if k not in ("ms", "id")}


class Helper:
    """A running tsd-helper --config with a small client for its protocol."""

    def __init__(self, helper, config, stderr_path=None):
        self.stderr_path = stderr_path
        self._stderr = open(stderr_path, "wb") if stderr_path else subprocess.DEVNULL
        self.proc = subprocess.Popen([helper, "--config", config], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._stderr)
        self._buffer = b""

    def send(self, data):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def _read_exact(self, count, timeout):
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while len(self._buffer) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no response from the helper in {} s".format(timeout))
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                raise EOFError("the helper closed stdout")
            self._buffer += chunk
        data, self._buffer = self._buffer[:count], self._buffer[count:]
        return data

    def receive(self, timeout=30.0):
        """(type, id, payload bytes) of the next response."""
        magic, version, kind, reserved, request_id, length = HEADER.unpack(
            self._read_exact(HEADER.size, timeout))
        assert magic == RESPONSE_MAGIC, magic
        assert version == 1 and reserved == 0
        payload = self._read_exact(length, timeout) if length else b""
        return kind, request_id, payload

    def detect(self, jpeg, request_id=1, timeout=30.0):
        self.send(request(REQ_JPEG, request_id, jpeg))
        return self.receive(timeout)

    def rss_kb(self):
        with open("/proc/{}/status".format(self.proc.pid)) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def close_stdin(self):
        self.proc.stdin.close()

    def wait(self, timeout=30.0):
        return self.proc.wait(timeout)

    def stderr_text(self):
        if not self.stderr_path:
            return ""
        with open(self.stderr_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._stderr is not subprocess.DEVNULL:
            self._stderr.close()


# ---- benchmark ----------------------------------------------------------------


def _default_helper():
    if os.environ.get("TSD_HELPER"):
        return os.environ["TSD_HELPER"]
    from octoprint_tsd import bridge
    return bridge.helper_path()


def bench(argv):
    import argparse
    import statistics
    import tempfile

    parser = argparse.ArgumentParser(description="tsd-helper per-frame latency")
    parser.add_argument("--model", choices=["tiny", "yolov2"], default="tiny")
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--helper", default=None)
    args = parser.parse_args(argv)
    helper = args.helper or _default_helper()
    with tempfile.TemporaryDirectory() as tmp:
        if args.model == "tiny":
            cfg, weights = write_tiny_model(tmp, deterministic=False)
            side = TINY_SIDE
        else:
            side = 416
            cfg, weights = write_yolov2_model(tmp, side)
        config = write_config(os.path.join(tmp, "helper.yaml"), cfg, weights, side,
                              threads=args.threads)
        jpeg = make_jpeg(args.width, args.height)
        helper_proc = Helper(helper, config, os.path.join(tmp, "stderr.log"))
        try:
            started = time.monotonic()
            helper_proc.send(request(REQ_PING, 1))
            assert helper_proc.receive(timeout=300)[0] == RESP_PONG
            load_s = time.monotonic() - started
            inner, outer = [], []
            for i in range(args.frames + 3):
                t0 = time.monotonic()
                kind, _, payload = helper_proc.detect(jpeg, i + 2, timeout=300)
                t1 = time.monotonic()
                assert kind == RESP_DETECTIONS, payload
                if i >= 3:  # warm-up frames left out
                    inner.append(json.loads(payload)["ms"])
                    outer.append((t1 - t0) * 1000.0)
            print("model {} (input {}x{}), frame {}x{} ({} bytes), {} threads, load {:.2f} s"
                  .format(args.model, side, side, args.width, args.height, len(jpeg),
                          args.threads, load_s))
            print("  helper ms (decode+infer): median {:.2f}  min {:.2f}  max {:.2f}".format(
                statistics.median(inner), min(inner), max(inner)))
            print("  round trip ms:            median {:.2f}  min {:.2f}  max {:.2f}".format(
                statistics.median(outer), min(outer), max(outer)))
            print("  RSS {} kB".format(helper_proc.rss_kb()))
        finally:
            helper_proc.stop()


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "bench":
        bench(sys.argv[2:])
    else:
        print(__doc__)
