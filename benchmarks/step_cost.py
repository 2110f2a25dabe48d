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
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from model_config import build_optimizer, run_config
from omegaconf import OmegaConf

from ptr_lightning.model.backbones import build_backbone_and_head, prepare_to_run
from ptr_lightning.model.telemetry import TelemetrySettings, step_telemetry, weight_norm
from ptr_lightning.ptr import draw_targets, pseudo_task_loss, regression_loss


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
    return p.parse_args()


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
            f"  {name:9s} {median * 1000:8.1f} ms/step {args.batch / median:9.1f} img/s"
            f"   x{median / medians['ft']:.3f} of ft"
        )
    n = args.telemetry_every
    amortized = medians["ptr"] + (medians["measured"] - medians["ptr"]) / n
    print(
        f"  ptr with telemetry every {n} steps: {amortized * 1000:.1f} ms/step, "
        f"x{amortized / medians['ptr']:.3f} of ptr without telemetry"
    )


if __name__ == "__main__":
    main()
