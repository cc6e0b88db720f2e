"""Export five common CNN / transformer architectures from PyTorch to ONNX (random weights, batch 1).

    pip install torch==2.13.0 onnxscript      # the CPU wheel; torchvision is not needed (nor wanted)
    python benchmarks/export_torch_models.py --out /tmp/torch_models [--opset 17] [--models mbv3,vit]
    python benchmarks/bench_models.py --onnx /tmp/torch_models/*.onnx --threads 1,2 --runs 20

Architectures the nine models of the onnx package do not cover, written out here (torchvision would
pull CUDA wheels): MobileNetV3-Large (HardSwish, squeeze-excite with HardSigmoid gates), EfficientNet-B0
(SiLU = Sigmoid + Mul, 5x5 depthwise, SE with Sigmoid gates), ResNeXt-50 32x4d (grouped 3x3
convolutions), ShuffleNetV2 1.0x (channel split / concat / shuffle) and ViT-Tiny/16 (LayerNorm,
multi-head attention, GELU exported in its Erf form). BatchNorm statistics are randomized so that
folding them matters. Exported with the TorchScript exporter (dynamo=False) at `--opset`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

try:
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError:  # pragma: no cover - documented requirement
    raise SystemExit("this script needs PyTorch: pip install torch==2.13.0 onnxscript") from None


def cbr(i: int, o: int, k: int = 3, s: int = 1, g: int = 1, act: type[nn.Module] | None = nn.ReLU) -> nn.Sequential:
    """Conv (no bias) + BatchNorm + activation."""
    return nn.Sequential(nn.Conv2d(i, o, k, s, k // 2, groups=g, bias=False), nn.BatchNorm2d(o),
                         act() if act else nn.Identity())  # fmt: skip


class SqueezeExcite(nn.Module):
    def __init__(self, c: int, act: type[nn.Module], gate: type[nn.Module]) -> None:
        super().__init__()
        mid = max(8, c // 4)
        self.f1, self.f2, self.act, self.gate = nn.Conv2d(c, mid, 1), nn.Conv2d(mid, c, 1), act(), gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.f2(self.act(self.f1(F.adaptive_avg_pool2d(x, 1)))))


class InvertedResidual(nn.Module):
    """MobileNetV2/V3 / EfficientNet block: expand 1x1, depthwise kxk, optional SE, project 1x1."""

    def __init__(self, i: int, e: int, o: int, k: int, s: int, se: bool, act: type[nn.Module]) -> None:
        super().__init__()
        layers: list[nn.Module] = [cbr(i, e, 1, act=act)] if e != i else []
        layers.append(cbr(e, e, k, s, g=e, act=act))
        if se:
            silu = act is nn.SiLU
            layers.append(SqueezeExcite(e, nn.SiLU if silu else nn.ReLU, nn.Sigmoid if silu else nn.Hardsigmoid))
        layers.append(cbr(e, o, 1, act=None))
        self.block, self.residual = nn.Sequential(*layers), s == 1 and i == o

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


def mobilenet_v3_large() -> nn.Module:
    cfg = [(16, 16, 16, 3, 1, 0, 0), (16, 64, 24, 3, 2, 0, 0), (24, 72, 24, 3, 1, 0, 0), (24, 72, 40, 5, 2, 1, 0),
           (40, 120, 40, 5, 1, 1, 0), (40, 120, 40, 5, 1, 1, 0), (40, 240, 80, 3, 2, 0, 1), (80, 200, 80, 3, 1, 0, 1),
           (80, 184, 80, 3, 1, 0, 1), (80, 184, 80, 3, 1, 0, 1), (80, 480, 112, 3, 1, 1, 1),
           (112, 672, 112, 3, 1, 1, 1), (112, 672, 160, 5, 2, 1, 1), (160, 960, 160, 5, 1, 1, 1),
           (160, 960, 160, 5, 1, 1, 1)]  # fmt: skip
    layers: list[nn.Module] = [cbr(3, 16, 3, 2, act=nn.Hardswish)]
    for i, e, o, k, s, se, hs in cfg:
        layers.append(InvertedResidual(i, e, o, k, s, bool(se), nn.Hardswish if hs else nn.ReLU))
    layers += [cbr(160, 960, 1, act=nn.Hardswish), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(960, 1280),
               nn.Hardswish(), nn.Linear(1280, 1000)]  # fmt: skip
    return nn.Sequential(*layers)


def efficientnet_b0() -> nn.Module:
    cfg = [(1, 16, 1, 3, 1), (6, 24, 2, 3, 2), (6, 40, 2, 5, 2), (6, 80, 3, 3, 2), (6, 112, 3, 5, 1),
           (6, 192, 4, 5, 2), (6, 320, 1, 3, 1)]  # fmt: skip
    layers: list[nn.Module] = [cbr(3, 32, 3, 2, act=nn.SiLU)]
    c = 32
    for t, o, n, k, s in cfg:
        for j in range(n):
            layers.append(InvertedResidual(c, c * t, o, k, s if j == 0 else 1, True, nn.SiLU))
            c = o
    layers += [cbr(c, 1280, 1, act=nn.SiLU), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1280, 1000)]
    return nn.Sequential(*layers)


class ResNeXtBlock(nn.Module):
    def __init__(self, i: int, width: int, o: int, s: int, groups: int) -> None:
        super().__init__()
        self.body = nn.Sequential(cbr(i, width, 1), cbr(width, width, 3, s, g=groups), cbr(width, o, 1, act=None))
        self.shortcut = cbr(i, o, 1, s, act=None) if (s != 1 or i != o) else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


def resnext50_32x4d() -> nn.Module:
    layers: list[nn.Module] = [cbr(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1)]
    c = 64
    for width, o, n, s in [(128, 256, 3, 1), (256, 512, 4, 2), (512, 1024, 6, 2), (1024, 2048, 3, 2)]:
        for j in range(n):
            layers.append(ResNeXtBlock(c, width, o, s if j == 0 else 1, 32))
            c = o
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2048, 1000)]
    return nn.Sequential(*layers)


class ShuffleBlock(nn.Module):
    def __init__(self, i: int, o: int, s: int) -> None:
        super().__init__()
        b_in, b_out = (i if s == 2 else i // 2), o // 2
        self.s = s
        self.branch = nn.Sequential(cbr(b_in, b_out, 1), cbr(b_out, b_out, 3, s, g=b_out, act=None), cbr(b_out, b_out, 1))
        self.left = nn.Sequential(cbr(i, i, 3, 2, g=i, act=None), cbr(i, b_out, 1)) if s == 2 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.left is None:
            a, b = x.chunk(2, 1)
            out = torch.cat([a, self.branch(b)], 1)
        else:
            out = torch.cat([self.left(x), self.branch(x)], 1)
        n, c, h, w = out.shape
        return out.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)


def shufflenet_v2() -> nn.Module:
    layers: list[nn.Module] = [cbr(3, 24, 3, 2), nn.MaxPool2d(3, 2, 1)]
    c = 24
    for o, n in [(116, 4), (232, 8), (464, 4)]:
        for j in range(n):
            layers.append(ShuffleBlock(c, o, 2 if j == 0 else 1))
            c = o
    layers += [cbr(c, 1024, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1024, 1000)]
    return nn.Sequential(*layers)


class EncoderBlock(nn.Module):
    def __init__(self, d: int = 192, heads: int = 3) -> None:
        super().__init__()
        self.n1, self.n2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.n1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.n2(x))


class ViT(nn.Module):
    def __init__(self, d: int = 192, depth: int = 12) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, d, 16, 16)
        self.cls = nn.Parameter(torch.randn(1, 1, d))
        self.pos = nn.Parameter(torch.randn(1, 197, d) * 0.02)
        self.blocks = nn.Sequential(*[EncoderBlock(d) for _ in range(depth)])
        self.norm, self.head = nn.LayerNorm(d), nn.Linear(d, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        return self.head(self.norm(self.blocks(x))[:, 0])


MODELS: dict[str, Callable[[], nn.Module]] = {
    "mobilenet_v3_large": mobilenet_v3_large, "efficientnet_b0": efficientnet_b0,
    "resnext50_32x4d": resnext50_32x4d, "shufflenet_v2": shufflenet_v2, "vit_tiny": ViT,
}  # fmt: skip


def randomize_batchnorm(model: nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for mod in model.modules():
        if isinstance(mod, nn.BatchNorm2d):
            c = mod.num_features
            mod.running_mean.copy_(torch.rand(c, generator=gen) * 0.2 - 0.1)
            mod.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            mod.weight.data.copy_(torch.rand(c, generator=gen) + 0.5)
            mod.bias.data.copy_(torch.rand(c, generator=gen) * 0.2 - 0.1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="directory for <name>.onnx")
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {', '.join(MODELS)}")
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}")
    args.out.mkdir(parents=True, exist_ok=True)
    for name in names:
        torch.manual_seed(args.seed)
        model = MODELS[name]().eval()
        with torch.no_grad():
            randomize_batchnorm(model, args.seed)
            path = args.out / f"{name}.onnx"
            torch.onnx.export(model, (torch.randn(1, 3, 224, 224),), str(path), opset_version=args.opset,
                              input_names=["x"], output_names=["logits"], dynamo=False)  # fmt: skip
        print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
