"""Throughput of the data path, next to the model step it feeds.

    python benchmarks/data_path.py                          # CPU: decode, augment, step
    python benchmarks/data_path.py --device cuda --arch resnet50 --bf16

Synthetic JPEGs of a typical size (500x375) are written to a temporary folder, then timed:
  decode    JPEG -> letterboxed uint8 250x250, once per image at setup (threads)
  augment   TrainAugment (random crop 224, scale, rotation, flip) on batches on the device
  ten-crop  TenCrop on batches on the device
  step      one PtR training step of the model on 224x224 batches
in images per second. Decoding happens once per run; augmentation every epoch.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from model_config import run_config
from PIL import Image

from ptr_lightning.data.images import decode_all
from ptr_lightning.data.transforms import TenCrop, TrainAugment
from ptr_lightning.model.backbones import build_backbone_and_head
from ptr_lightning.ptr import pseudo_task_loss


def write_jpegs(folder: Path, n: int) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        # smooth noise compresses like a photograph, unlike white noise
        small = rng.integers(0, 256, size=(47, 63, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((500, 375), Image.Resampling.BILINEAR)
        path = folder / f"{i:05d}.jpg"
        img.save(path, quality=90)
        paths.append(path)
    return paths


def rate(fn, items: int, repeats: int, device: torch.device) -> float:
    fn()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return items * repeats / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--workers", type=int, default=4, help="decode threads")
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--device", default="cpu")
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--bf16", action="store_true")
    args = p.parse_args()
    device = torch.device(args.device)

    with tempfile.TemporaryDirectory() as tmp:
        paths = write_jpegs(Path(tmp), args.images)
        start = time.perf_counter()
        images, _ = decode_all(paths, size=250, num_workers=args.workers)
        decode = len(paths) / (time.perf_counter() - start)

    batch = images[: args.batch].to(device)
    augment, ten_crop = TrainAugment().to(device), TenCrop().to(device)
    aug_rate = rate(lambda: augment(batch), args.batch, 10, device)
    crop_rate = rate(lambda: ten_crop(batch), args.batch, 10, device)

    backbone, head, _ = build_backbone_and_head(run_config(args.arch, 224).model, 100)
    backbone, head = backbone.to(device), head.to(device)
    params = [*backbone.parameters(), *head.parameters()]
    optimizer = torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    inputs = augment(batch)
    labels = torch.randint(0, 100, (args.batch,), device=device)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            features = backbone(inputs)
            ce = F.cross_entropy(head(features), labels)
        total, _ = pseudo_task_loss(features, ce, R=3.0)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()

    step_rate = rate(step, args.batch, 3 if device.type == "cpu" else 20, device)
    print(f"data path on {device.type} ({torch.get_num_threads()} threads), batch {args.batch}:")
    print(f"  decode + letterbox  {decode:8.1f} images/s  ({args.workers} threads, once per run)")
    print(f"  train augmentation  {aug_rate:8.1f} images/s")
    print(f"  ten-crop            {crop_rate:8.1f} images/s")
    print(f"  {args.arch} PtR step {step_rate:8.1f} images/s  (bf16={args.bf16})")


if __name__ == "__main__":
    main()
