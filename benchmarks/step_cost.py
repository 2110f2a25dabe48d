"""Time a plain fine-tuning step and PtR steps side by side, in one process.

    python benchmarks/step_cost.py                       # resnet18, CPU, batch 20, 112 px
    python benchmarks/step_cost.py --arch resnet50 --device cuda --bf16 --size 224 --batch 64
    python benchmarks/step_cost.py --arch resnet50 --device cuda --bf16 --size 224 --batch 20 \
        --channels-last --compile reduce-overhead          # the GPU fast path (model.compile)
    python benchmarks/step_cost.py --arch vit_b_16       # any family preset, or
    python benchmarks/step_cost.py --arch regnet_y_400mf # any torchvision model, or
    python benchmarks/step_cost.py --arch timm:convnext_tiny.fb_in22k   # any timm model
    python benchmarks/step_cost.py --arch timm:vit_small_patch16_224 \
        --set +model.kwargs.img_size=112                   # a timm ViT at 112 px

    python benchmarks/step_cost.py --baselines --delta-attention-images 20   # + JointTrain, ...

The model is built as a run builds it (random weights), with its run's optimizer (SGD for the
paper's backbones, AdamW for the families fine-tuned with it).

Five steps are timed, interleaved round by round so drift affects all alike:
  ft         L_ce backward + SGD step
  ptr        pseudo_task_loss (head-only gradient for dL_ce/drep) + ONE backward + step
  naive      a full backward to read dL_ce/drep, then the backward of L_ce + w L_ptr + step
  measured   ptr with the telemetry of a telemetry step (what FineTuner.log_telemetry runs)
  param_bal  ptr with balance="parameters" (w from gradient norms over the backbone)
and the medians (ms/step and images/s) and ratios to ft are printed, with the PtR step's cost
when one step in --telemetry-every is a measured one (telemetry.every_n_steps, default 50).

--baselines adds the steps of the regularizers that use the source model, each on its own copy
of the model (DELTA hooks its backbone), with the project's regularizer modules:
  joint_train  + a batch of source images (1000 classes, decoded from a temporary image folder)
               through the backbone and the source head, in the same backward
  delta        + a forward of the frozen source backbone and the feature-map distance
  co_tuning    + the source head on the features and the KL to the relationship
--delta-attention-images N also times DELTA's one-off channel attention on N images.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from model_config import build_optimizer, run_config
from omegaconf import OmegaConf
from PIL import Image

from ptr_lightning.data.source_images import SourceImages
from ptr_lightning.data.transforms import Normalize
from ptr_lightning.model.backbones import build_backbone_and_head, prepare_to_run
from ptr_lightning.model.telemetry import TelemetrySettings, step_telemetry, weight_norm
from ptr_lightning.ptr import draw_targets, pseudo_task_loss, regression_loss
from ptr_lightning.regularizers import (
    DELTA,
    CoTuning,
    JointTraining,
    Regularizer,
    StepTensors,
    TrainingData,
)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--arch",
        default="resnet18",
        help="a conf/model/*.yaml name, any torchvision model, or timm:<name>",
    )
    p.add_argument("--set", nargs="*", default=[], help="more Hydra overrides of the run")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast")
    p.add_argument("--channels-last", action="store_true", help="model.channels_last")
    p.add_argument("--compile", default=None, help="model.compile: default, reduce-overhead")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--telemetry-every", type=int, default=TelemetrySettings().every_n_steps)
    p.add_argument("--baselines", action="store_true", help="+ JointTrain, DELTA, Co-Tuning")
    p.add_argument("--delta-attention-images", type=int, default=0)
    return p.parse_args()


def source_folder(root: Path, size: int, classes: int = 1000) -> Path:
    """An image folder of one random image per class, the source task of JointTrain."""
    for c in range(classes):
        (root / "train" / f"{c:04d}").mkdir(parents=True)
        pixels = torch.randint(0, 256, (size, size, 3), dtype=torch.uint8).numpy()
        Image.fromarray(pixels).save(root / "train" / f"{c:04d}" / "0.png")
    return root


def baseline_regularizers(args, model_cfg, folder: Path) -> dict[str, Regularizer]:
    source = partial(SourceImages, image_size=args.size, decode_workers=4)
    return {
        "joint_train": JointTraining(str(folder), source, batch_size=args.batch),
        "delta": DELTA(layers=list(model_cfg.feature_maps)),
        "co_tuning": CoTuning(),
    }


def baseline_step(args, model_cfg, reg: Regularizer, images, labels, autocast) -> Callable:
    """A training step of ``reg`` (with its defaults) on its own copy of the model."""
    backbone, head, source_classifier = build_backbone_and_head(model_cfg, args.classes)
    reg.attach(backbone, head, source_classifier)
    backbone, head, reg = backbone.to(images.device), head.to(images.device), reg.to(images.device)
    runtime = {"compile": args.compile, "channels_last": args.channels_last}
    prepare_to_run(backbone, head, OmegaConf.create(runtime))
    # As a resumed run: the one-off state (DELTA's attention, Co-Tuning's relationship) does not
    # change what a step costs; JointTrain decodes its source images.
    reg.on_fit_start(TrainingData(lambda: iter(()), Normalize().to(images.device), restored=True))
    params = [*backbone.parameters(), *head.parameters()]
    params += [p for p in reg.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    steps = itertools.count()

    def run():
        with autocast:
            features = backbone(images)
            logits = head(features)
            ce = F.cross_entropy(logits, labels)
            step = StepTensors(images, features, logits, labels, global_step=next(steps))
            total, _ = reg(ce, step)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()

    return run


def time_delta_attention(args, model_cfg, device) -> None:
    backbone, head, source_classifier = build_backbone_and_head(model_cfg, args.classes)
    delta = DELTA(layers=list(model_cfg.feature_maps))
    delta.attach(backbone, head, source_classifier)
    delta.to(device)
    images = torch.randn(args.delta_attention_images, 3, args.size, args.size, device=device)
    start = time.perf_counter()
    delta.fit_to_target([(images, torch.zeros(len(images)))])
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    print(
        f"  DELTA's channel attention on {len(images)} images: {seconds:.1f} s "
        f"({seconds / len(images):.2f} s per image; default regularizer.attention_images=256)"
    )


def main() -> None:
    args = parse_args()
    torch.manual_seed(0)
    device = torch.device(args.device)
    cfg = run_config(args.arch, args.size, args.set)
    backbone, head, _ = build_backbone_and_head(cfg.model, args.classes)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    backbone, head = backbone.to(device), head.to(device)
    # As a run prepares them (FineTuner's backbone and head, compiled as two graphs).
    runtime = {"compile": args.compile, "channels_last": args.channels_last}
    prepare_to_run(backbone, head, OmegaConf.create(runtime))
    backbone_params = list(backbone.parameters())
    params = backbone_params + list(head.parameters())
    optimizer = build_optimizer(cfg, params)
    images = torch.randn(args.batch, 3, args.size, args.size, device=device)
    images = images.to(memory_format=memory_format)
    labels = torch.randint(0, args.classes, (args.batch,), device=device)
    generator = torch.Generator(device=device).manual_seed(0)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)

    def forward():
        with autocast:
            features = backbone(images)
            ce = F.cross_entropy(head(features), labels)
        return features, ce

    def step(loss):
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def ft():
        step(forward()[1])

    def ptr():
        features, ce = forward()
        total, _ = pseudo_task_loss(features, ce, R=3.0, generator=generator)
        step(total)

    def measured():
        features, ce = forward()
        total, _ = pseudo_task_loss(features, ce, R=3.0, generator=generator)
        stats = step_telemetry(ce, total - ce, features, backbone_params)
        stats["head"] = weight_norm(head)
        _ = [float(value) for value in stats.values()]  # the host sync of logging
        step(total)

    def param_bal():
        features, ce = forward()
        total, _ = pseudo_task_loss(
            features,
            ce,
            R=3.0,
            generator=generator,
            balance="parameters",
            parameters=backbone_params,
        )
        step(total)

    def naive():
        features, ce = forward()
        features.retain_grad()
        ce.backward(retain_graph=True)  # a full backward just to read dL_ce/drep
        g_ce = features.grad.float().norm(dim=1).mean()
        features32 = features.float()
        ptr_loss = regression_loss(features32, draw_targets(features, 1.0, generator))
        (g,) = torch.autograd.grad(ptr_loss, features32, retain_graph=True)
        w = (g_ce / (g.norm(dim=1).mean() * 3.0)).detach()
        step(ce + w * ptr_loss)

    def timed(fn) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    steps = {"ft": ft, "ptr": ptr, "naive": naive, "measured": measured, "param_bal": param_bal}
    folder = tempfile.TemporaryDirectory()
    if args.baselines:
        regularizers = baseline_regularizers(args, cfg.model, source_folder(Path(folder.name), 32))
        for name, reg in regularizers.items():
            steps[name] = baseline_step(args, cfg.model, reg, images, labels, autocast)
    for _ in range(args.warmup):
        for fn in steps.values():
            fn()
    times = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, fn in steps.items():
            times[name].append(timed(fn))
    medians = {name: statistics.median(t) for name, t in times.items()}
    print(
        f"{args.arch} ({type(optimizer).__name__}) on {device.type}, batch {args.batch}, "
        f"{args.size}px, "
        f"bf16={args.bf16}, channels_last={args.channels_last}, compile={args.compile}, "
        f"threads={torch.get_num_threads()}, {args.rounds} rounds"
    )
    for name, median in medians.items():
        print(
            f"  {name:11s} {median * 1000:8.1f} ms/step {args.batch / median:9.1f} img/s"
            f"   x{median / medians['ft']:.3f} of ft"
        )
    n = args.telemetry_every
    amortized = medians["ptr"] + (medians["measured"] - medians["ptr"]) / n
    print(
        f"  ptr with telemetry every {n} steps: {amortized * 1000:.1f} ms/step, "
        f"x{amortized / medians['ptr']:.3f} of ptr without telemetry"
    )
    folder.cleanup()
    if args.delta_attention_images:
        time_delta_attention(args, cfg.model, device)


if __name__ == "__main__":
    main()
