"""The FID Inception network: InceptionV3 as TTUR's TensorFlow graph defines it, with the weights pytorch-fid ported.

The architecture follows pytorch-fid's `fid_inception_v3` (torchvision's Inception3 with the TF patches: average pools
that ignore padding, a max pool in the last block), with torchvision's parameter names so the state dict
`pt_inception-2015-12-05-6726825d.pth` loads strictly. Features are the 2048-d pool3 activations. Samples reach it
as clean-fid's `legacy_pytorch` mode feeds it: model-range [-1, 1] -> [0, 255] floats (grey replicated to RGB),
`F.interpolate(bilinear, align_corners=False)` to 299x299, clipped to [0, 255], then x/255 * 2 - 1.

Weights (found by weights.py) are read with `torch.load(weights_only=True)`: tensors only, nothing unpickled.
torch-fidelity's extractor is deliberately not used: its loader unpickles (weights_only=False), it always resizes the
TF1 way rather than legacy_pytorch's, and it needs torchvision. torchmetrics computes FID/KID on these features.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from trainers.metrics.declared import INCEPTION_WEIGHTS
from trainers.metrics.weights import TTUR_SHA256_PREFIX, InceptionWeightsMissing, find_weights, sha256_of

__all__ = ["INCEPTION_WEIGHTS", "TTUR_SHA256_PREFIX", "InceptionWeightsMissing", "FIDInceptionV3", "find_weights",
           "legacy_pytorch_resize", "load_inception", "sha256_of"]
INPUT_SIZE = 299
NUM_FEATURES = 2048


def _conv(cin: int, cout: int, kernel, stride=1, padding=0) -> "BasicConv2d":
    return BasicConv2d(cin, cout, kernel_size=kernel, stride=stride, padding=padding)


class BasicConv2d(nn.Module):
    def __init__(self, cin: int, cout: int, **kwargs) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _tf_avg_pool(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)  # TF ignores the padding


class InceptionA(nn.Module):
    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = _conv(cin, 64, 1)
        self.branch5x5_1, self.branch5x5_2 = _conv(cin, 48, 1), _conv(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _conv(cin, 64, 1)
        self.branch3x3dbl_2, self.branch3x3dbl_3 = _conv(64, 96, 3, padding=1), _conv(96, 96, 3, padding=1)
        self.branch_pool = _conv(cin, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_tf_avg_pool(x)),
        ], 1)


class InceptionB(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = _conv(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = _conv(cin, 64, 1)
        self.branch3x3dbl_2, self.branch3x3dbl_3 = _conv(64, 96, 3, padding=1), _conv(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, kernel_size=3, stride=2),
        ], 1)


class InceptionC(nn.Module):
    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        row = {"kernel": (1, 7), "padding": (0, 3)}
        col = {"kernel": (7, 1), "padding": (3, 0)}
        self.branch1x1 = _conv(cin, 192, 1)
        self.branch7x7_1, self.branch7x7_2 = _conv(cin, c7, 1), _conv(c7, c7, **row)
        self.branch7x7_3 = _conv(c7, 192, **col)
        self.branch7x7dbl_1, self.branch7x7dbl_2 = _conv(cin, c7, 1), _conv(c7, c7, **col)
        self.branch7x7dbl_3, self.branch7x7dbl_4 = _conv(c7, c7, **row), _conv(c7, c7, **col)
        self.branch7x7dbl_5 = _conv(c7, 192, **row)
        self.branch_pool = _conv(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dbl = self.branch7x7dbl_3(self.branch7x7dbl_2(self.branch7x7dbl_1(x)))
        return torch.cat([
            self.branch1x1(x),
            self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
            self.branch7x7dbl_5(self.branch7x7dbl_4(dbl)),
            self.branch_pool(_tf_avg_pool(x)),
        ], 1)


class InceptionD(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1, self.branch3x3_2 = _conv(cin, 192, 1), _conv(192, 320, 3, stride=2)
        self.branch7x7x3_1, self.branch7x7x3_2 = _conv(cin, 192, 1), _conv(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3, self.branch7x7x3_4 = _conv(192, 192, (7, 1), padding=(3, 0)), _conv(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7x3_2(self.branch7x7x3_1(x))
        return torch.cat([
            self.branch3x3_2(self.branch3x3_1(x)),
            self.branch7x7x3_4(self.branch7x7x3_3(b7)),
            F.max_pool2d(x, kernel_size=3, stride=2),
        ], 1)


class InceptionE(nn.Module):
    """`max_pool`: the FID graph's last block pools with max, not average (pytorch-fid's FIDInceptionE_2)."""

    def __init__(self, cin: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = _conv(cin, 320, 1)
        self.branch3x3_1 = _conv(cin, 384, 1)
        self.branch3x3_2a, self.branch3x3_2b = _conv(384, 384, (1, 3), padding=(0, 1)), _conv(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1, self.branch3x3dbl_2 = _conv(cin, 448, 1), _conv(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _conv(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _conv(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else _tf_avg_pool(x)
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(b3), self.branch3x3_2b(b3),
            self.branch3x3dbl_3a(dbl), self.branch3x3dbl_3b(dbl),
            self.branch_pool(pooled),
        ], 1)


class FIDInceptionV3(nn.Module):
    """(N, 3, 299, 299) in [-1, 1] -> (N, 2048) pool3 features. `fc` exists only so the state dict loads strictly."""

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = _conv(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _conv(32, 32, 3)
        self.Conv2d_2b_3x3 = _conv(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _conv(64, 80, 1)
        self.Conv2d_4a_3x3 = _conv(80, 192, 3)
        self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = InceptionA(192, 32), InceptionA(256, 64), InceptionA(288, 64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b, self.Mixed_6c = InceptionC(768, 128), InceptionC(768, 160)
        self.Mixed_6d, self.Mixed_6e = InceptionC(768, 160), InceptionC(768, 192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b, self.Mixed_7c = InceptionE(1280, max_pool=False), InceptionE(2048, max_pool=True)
        self.fc = nn.Linear(2048, 1008)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), kernel_size=3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)


def legacy_pytorch_resize(x: torch.Tensor) -> torch.Tensor:
    """Model-range images (N, C, H, W) -> the network's input, as clean-fid's legacy_pytorch mode prepares them."""
    x = (x.float() + 1.0) * 127.5  # [0, 255] floats, not quantised (clean-fid scores a generator's output as is)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)  # grey -> RGB by replication, as PIL's convert("RGB")
    x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False).clamp(0.0, 255.0)
    return x / 255.0 * 2.0 - 1.0  # pytorch-fid's normalize_input


def load_inception(path: Path) -> FIDInceptionV3:
    """Build the network and load `path` strictly (tensors only); a file of another shape is a one-line error."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refuses anything but tensors and plain containers
        raise ValueError(f"{path}: not a readable Inception state dict ({type(exc).__name__}: {exc})") from None
    net = FIDInceptionV3()
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict of tensors, got {type(state).__name__}")
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if "\n" in str(exc) else str(exc)
        raise ValueError(f"{path}: not {INCEPTION_WEIGHTS}'s layout ({first})") from None
    return net.eval().requires_grad_(False)
