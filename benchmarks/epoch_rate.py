"""Images per second of whole training epochs (data included) against the model step alone.

    python benchmarks/epoch_rate.py                                   # resnet18, CPU, tiny
    python benchmarks/epoch_rate.py --arch resnet50 --device cuda --bf16 --channels-last \
        --size 250 --crop 224 --batch 20 --images 4000 --compile reduce-overhead

The run is the project's own: the LightningModule built from the Hydra configs (model=<arch>,
random weights), the real Trainer with this project's callbacks off, and the on-device training
augmentation (TrainAugment) on letterboxed uint8 images held in memory, as the archive data
sets are after decoding. Per method (FT, and PtR with its pseudo-task on from the first step):
  epoch  images/s over whole epochs after the first (which absorbs compilation and warm-up)
  step   images/s of the same module's training step on one resident, augmented batch
and their ratio (the issue's goal: epoch >= 0.9 x step).
"""

from __future__ import annotations

import argparse
import statistics
import time

import lightning as L
import torch
from model_config import run_config
from torch.utils.data import DataLoader

from ptr_lightning.data.base import DecodedImages, InMemoryDataModule
from ptr_lightning.data.transforms import CentreCrop, TrainAugment
from ptr_lightning.run.build import build_module


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--arch",
        default="resnet18",
        help="a conf/model/*.yaml name, any torchvision model, or timm:<name>",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--size", type=int, default=40, help="letterboxed image side (paper: 250)")
    p.add_argument("--crop", type=int, default=32, help="training crop (paper: 224)")
    p.add_argument("--images", type=int, default=200, help="training images per epoch")
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--epochs", type=int, default=3, help="the first one is warm-up")
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", default=None, help="model.compile: default, reduce-overhead")
    p.add_argument("--steps", type=int, default=20, help="timed model steps")
    return p.parse_args()


class SyntheticImages(InMemoryDataModule):
    """Random uint8 letterboxed images, augmented on the device like the archive data sets."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(
            name="synthetic", batch_size=args.batch, eval_batch_size=args.batch, num_workers=0
        )
        generator = torch.Generator().manual_seed(0)
        images = torch.randint(
            0, 256, (args.images, 3, args.size, args.size), dtype=torch.uint8, generator=generator
        )
        labels = torch.randint(0, args.classes, (args.images,), generator=generator)
        self.train_dataset = DecodedImages(images, labels)
        self.val_dataset = self.test_dataset = DecodedImages(
            images[: args.batch], labels[: args.batch]
        )
        self.class_names = [str(c) for c in range(args.classes)]
        self.train_transform = TrainAugment(crop=args.crop)
        self.val_transform = self.test_transform = CentreCrop(args.crop)

    def val_dataloader(self) -> DataLoader:  # not timed
        return self._loader(self.val_dataset, train=False)


class EpochTimer(L.Callback):
    def __init__(self, device: torch.device) -> None:
        self.device, self.seconds = device, []

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._sync()
        self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._sync()
        self.seconds.append(time.perf_counter() - self.started)


def config(args: argparse.Namespace, regularizer: str):
    overrides = [
        f"regularizer={regularizer}",
        f"model.channels_last={str(args.channels_last).lower()}",
        f"model.compile={args.compile or 'null'}",
        "paths.output_dir=/tmp/unused",
    ]
    if regularizer == "ptr":  # on from the first step: no feature mean measured before it
        overrides.append("regularizer.m_mode=absolute")
    return run_config(args.arch, args.crop, overrides)


def measure(args: argparse.Namespace, regularizer: str) -> tuple[float, float]:
    device = torch.device(args.device)
    datamodule = SyntheticImages(args)
    module = build_module(config(args, regularizer), datamodule)
    module.regularizer.switch(True, epoch=0)  # PtR on from the first step (FT: always on)
    timer = EpochTimer(device)
    trainer = L.Trainer(
        accelerator=device.type,
        devices=1,
        max_epochs=args.epochs,
        precision="bf16-mixed" if args.bf16 else "32-true",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[timer],
    )
    trainer.fit(module, datamodule=datamodule)
    epoch_rate = args.images / statistics.median(timer.seconds[1:] or timer.seconds)

    # The same module's step on one resident batch: no loader, no augmentation.
    images, labels = next(iter(datamodule.train_dataloader()))
    batch = (module.train_transform.to(device)(images.to(device)), labels.to(device))
    optimizer = module.optimizers()
    times = []
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)
    for i in range(args.steps + 3):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        with autocast:
            features, logits = module(batch[0])
            ce = torch.nn.functional.cross_entropy(logits, batch[1])
            total, _ = module.regularizer(ce, _step(batch, features, logits))
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 3:
            times.append(time.perf_counter() - started)
    return epoch_rate, args.batch / statistics.median(times)


def _step(batch, features, logits):
    from ptr_lightning.regularizers import StepTensors

    return StepTensors(batch[0], features, logits, batch[1])


def main() -> None:
    args = parse_args()
    L.seed_everything(0, verbose=False)
    print(
        f"{args.arch} on {args.device}, batch {args.batch}, {args.size}px -> {args.crop}px crops, "
        f"bf16={args.bf16}, channels_last={args.channels_last}, compile={args.compile}, "
        f"{args.images} images x {args.epochs} epochs"
    )
    for name, regularizer in (("ft", "none"), ("ptr", "ptr")):
        epoch, step = measure(args, regularizer)
        print(
            f"  {name:4s} epoch {epoch:9.1f} img/s   step {step:9.1f} img/s   "
            f"epoch/step {epoch / step:.2f}"
        )


if __name__ == "__main__":
    main()
