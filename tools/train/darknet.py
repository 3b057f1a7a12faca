# SPDX-License-Identifier: AGPL-3.0-or-later
"""Darknet .cfg / .weights in PyTorch, written for this project.

Reads a Darknet network description (the layer kinds Yolo-Fastest uses:
convolutional with batch norm and groups, route, shortcut, upsample, maxpool,
dropout, yolo), builds an nn.Module that computes the same function, loads
and saves the binary .weights format, and writes the .cfg back (with the
changes a one-class fine-tune needs).

.weights layout (little-endian): int32 major, minor, revision; "seen" as
uint64 when major*10+minor >= 2, else uint32; then, for every
[convolutional] in file order: with batch_normalize: beta (= conv bias),
gamma, running mean, running variance (each `filters` floats), else the
conv bias; then the kernel, filters x (channels/groups) x size x size.
"""

import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


# ---------------------------------------------------------------- the cfg

def parse_cfg(text):
    """Returns a list of sections: [{'type': 'net', 'keys': [(k, v), ...]}, ...]."""
    sections = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise ValueError("bad section line: %r" % raw)
            sections.append({"type": line[1:-1].strip(), "keys": []})
            continue
        if "=" not in line or not sections:
            raise ValueError("bad cfg line: %r" % raw)
        key, value = line.split("=", 1)
        sections[-1]["keys"].append((key.strip(), value.strip()))
    if not sections or sections[0]["type"] not in ("net", "network"):
        raise ValueError("the cfg must start with [net]")
    return sections


def get(section, key, default=None, cast=str):
    for k, v in section["keys"]:
        if k == key:
            return cast(v)
    return default


def put(section, key, value):
    for i, (k, _) in enumerate(section["keys"]):
        if k == key:
            section["keys"][i] = (key, str(value))
            return
    section["keys"].append((key, str(value)))


def ints(value):
    return [int(x) for x in value.split(",") if x.strip()]


def floats(value):
    return [float(x) for x in value.split(",") if x.strip()]


def write_cfg(sections):
    out = []
    for s in sections:
        out.append("[%s]" % s["type"])
        for k, v in s["keys"]:
            out.append("%s=%s" % (k, v))
        out.append("")
    return "\n".join(out)


def to_n_classes(sections, n_classes, yolo_thresh=None):
    """Copy of the cfg with every [yolo] head set to n_classes (and the conv
    feeding it to len(mask) * (5 + n_classes) filters)."""
    out = [{"type": s["type"], "keys": list(s["keys"])} for s in sections]
    layers = out[1:]
    for i, s in enumerate(layers):
        if s["type"] != "yolo":
            continue
        mask = ints(get(s, "mask"))
        put(s, "classes", n_classes)
        if yolo_thresh is not None:
            put(s, "thresh", yolo_thresh)
        prev = layers[i - 1]
        if prev["type"] != "convolutional":
            raise ValueError("[yolo] %d is not fed by a convolutional" % i)
        put(prev, "filters", len(mask) * (5 + n_classes))
    return out


# ---------------------------------------------------------------- the model

class Conv(nn.Module):
    def __init__(self, c_in, s):
        super().__init__()
        self.filters = get(s, "filters", 1, int)
        self.size = get(s, "size", 1, int)
        self.stride = get(s, "stride", 1, int)
        self.groups = get(s, "groups", 1, int)
        pad_flag = get(s, "pad", 0, int)
        padding = get(s, "padding", 0, int)
        if pad_flag:
            padding = self.size // 2
        self.bn = get(s, "batch_normalize", 0, int) == 1
        self.activation = get(s, "activation", "logistic")
        if self.activation not in ("leaky", "linear", "relu", "logistic"):
            raise ValueError("activation %s not supported" % self.activation)
        if c_in % self.groups or self.filters % self.groups:
            raise ValueError("groups=%d does not divide %d -> %d" % (self.groups, c_in, self.filters))
        self.conv = nn.Conv2d(c_in, self.filters, self.size, self.stride, padding,
                              groups=self.groups, bias=not self.bn)
        if self.bn:
            # OpenCV's Darknet importer normalises with eps 1e-6: the same
            # here, so that the stored statistics mean the same thing.
            self.norm = nn.BatchNorm2d(self.filters, eps=1e-6, momentum=0.03)

    def forward(self, x):
        x = self.conv(x)
        if self.bn:
            x = self.norm(x)
        if self.activation == "leaky":
            x = F.leaky_relu(x, 0.1)
        elif self.activation == "relu":
            x = F.relu(x)
        elif self.activation == "logistic":
            x = torch.sigmoid(x)
        return x


class YoloHead(nn.Module):
    """Holds a [yolo] layer's parameters; forward returns the raw map
    reshaped to (batch, anchors, rows, cols, 5 + classes)."""

    def __init__(self, c_in, s):
        super().__init__()
        self.mask = ints(get(s, "mask"))
        all_anchors = ints(get(s, "anchors"))
        pairs = [(all_anchors[2 * i], all_anchors[2 * i + 1]) for i in range(len(all_anchors) // 2)]
        self.all_anchors = pairs
        self.anchors = [pairs[m] for m in self.mask]
        self.classes = get(s, "classes", 1, int)
        self.scale_x_y = get(s, "scale_x_y", 1.0, float)
        self.ignore_thresh = get(s, "ignore_thresh", 0.5, float)
        self.iou_thresh = get(s, "iou_thresh", 1.0, float)
        if c_in != len(self.mask) * (5 + self.classes):
            raise ValueError("[yolo] expects %d channels, gets %d"
                             % (len(self.mask) * (5 + self.classes), c_in))

    def forward(self, x):
        b, _, h, w = x.shape
        return x.view(b, len(self.mask), 5 + self.classes, h, w).permute(0, 1, 3, 4, 2)


class Darknet(nn.Module):
    def __init__(self, sections):
        super().__init__()
        self.sections = sections
        net = sections[0]
        self.width = get(net, "width", 416, int)
        self.height = get(net, "height", 416, int)
        channels = get(net, "channels", 3, int)
        self.layers = nn.ModuleList()
        self.kinds = []
        self.args = []
        out_c = []
        c = channels
        for i, s in enumerate(sections[1:]):
            kind = s["type"]
            module = nn.Identity()
            arg = None
            if kind == "convolutional":
                module = Conv(c, s)
                c = module.filters
            elif kind == "maxpool":
                size = get(s, "size", 2, int)
                stride = get(s, "stride", 2, int)
                if stride != 1 or size % 2 != 1:
                    raise ValueError("only stride-1 odd-size maxpool is supported")
                arg = size
            elif kind == "route":
                refs = [r if r >= 0 else i + r for r in ints(get(s, "layers"))]
                if get(s, "groups", 1, int) != 1:
                    raise ValueError("grouped route not supported")
                arg = refs
                c = sum(out_c[r] for r in refs)
            elif kind == "shortcut":
                ref = int(get(s, "from"))
                ref = ref if ref >= 0 else i + ref
                if get(s, "activation", "linear") != "linear":
                    raise ValueError("shortcut activation must be linear")
                if out_c[ref] != c:
                    raise ValueError("shortcut channel mismatch at layer %d" % i)
                arg = ref
            elif kind == "upsample":
                arg = get(s, "stride", 2, int)
            elif kind == "dropout":
                pass  # identity at inference; regularisation is not needed here
            elif kind == "yolo":
                module = YoloHead(c, s)
            else:
                raise ValueError("layer type [%s] not supported" % kind)
            self.layers.append(module)
            self.kinds.append(kind)
            self.args.append(arg)
            out_c.append(c)

    def heads(self):
        return [m for m in self.layers if isinstance(m, YoloHead)]

    def forward(self, x):
        outs = []
        yolo = []
        for module, kind, arg in zip(self.layers, self.kinds, self.args):
            if kind == "convolutional":
                x = module(x)
            elif kind == "maxpool":
                x = F.max_pool2d(x, arg, 1, arg // 2)
            elif kind == "route":
                x = outs[arg[0]] if len(arg) == 1 else torch.cat([outs[r] for r in arg], 1)
            elif kind == "shortcut":
                x = x + outs[arg]
            elif kind == "upsample":
                x = F.interpolate(x, scale_factor=arg, mode="nearest")
            elif kind == "yolo":
                yolo.append(module(x))
            outs.append(x)
        return yolo


def decode(head, raw, in_w, in_h):
    """Raw head output -> (boxes cx, cy, w, h normalised 0..1, objectness,
    class probabilities), as OpenCV's Region layer computes them."""
    b, a, h, w, _ = raw.shape
    gy, gx = torch.meshgrid(torch.arange(h, dtype=raw.dtype), torch.arange(w, dtype=raw.dtype),
                            indexing="ij")
    anchors = torch.tensor(head.anchors, dtype=raw.dtype)
    s = head.scale_x_y
    cx = (torch.sigmoid(raw[..., 0]) * s - (s - 1) / 2 + gx) / w
    cy = (torch.sigmoid(raw[..., 1]) * s - (s - 1) / 2 + gy) / h
    bw = torch.exp(raw[..., 2].clamp(max=8)) * anchors[:, 0].view(1, a, 1, 1) / in_w
    bh = torch.exp(raw[..., 3].clamp(max=8)) * anchors[:, 1].view(1, a, 1, 1) / in_h
    obj = torch.sigmoid(raw[..., 4])
    cls = torch.sigmoid(raw[..., 5:])
    return torch.stack([cx, cy, bw, bh], -1), obj, cls


# ---------------------------------------------------------------- weights

def load_weights(model, path):
    """Loads a Darknet .weights file into a model built from the matching cfg."""
    with open(path, "rb") as f:
        data = f.read()
    major, minor, revision = struct.unpack_from("<3i", data, 0)
    off = 12 + (8 if major * 10 + minor >= 2 else 4)
    body = np.frombuffer(data, dtype="<f4", offset=off)
    pos = 0

    def take(n):
        nonlocal pos
        if pos + n > body.size:
            raise ValueError("%s is truncated" % path)
        arr = body[pos:pos + n].copy()
        pos += n
        return torch.from_numpy(arr)

    for m in model.layers:
        if not isinstance(m, Conv):
            continue
        n_out = m.filters
        shape = (n_out, m.conv.in_channels // m.groups, m.size, m.size)
        with torch.no_grad():
            if m.bn:
                m.norm.bias.copy_(take(n_out))
                m.norm.weight.copy_(take(n_out))
                m.norm.running_mean.copy_(take(n_out))
                m.norm.running_var.copy_(take(n_out))
            else:
                m.conv.bias.copy_(take(n_out))
            m.conv.weight.copy_(take(int(np.prod(shape))).view(shape))
    if pos != body.size:
        raise ValueError("%s has %d floats left over" % (path, body.size - pos))
    return major, minor, revision


def save_weights(model, path, seen=0):
    parts = [struct.pack("<3iQ", 0, 2, 5, seen)]
    for m in model.layers:
        if not isinstance(m, Conv):
            continue
        w = m.conv.weight.detach().float().cpu().numpy().astype("<f4")
        if m.bn:
            n = m.norm
            for t in (n.bias, n.weight, n.running_mean, n.running_var):
                parts.append(t.detach().float().cpu().numpy().astype("<f4").tobytes())
        else:
            parts.append(m.conv.bias.detach().float().cpu().numpy().astype("<f4").tobytes())
        parts.append(w.tobytes())
    with open(path, "wb") as f:
        f.write(b"".join(parts))
