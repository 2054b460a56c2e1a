"""Training throughput (images/s) of ENet-SAD: one optimisation step (forward with SAD
attention, SAD loss, backward, Adam/SGD step) on a fixed synthetic batch, eager PyTorch.

Measures the network step only (data loading runs in DataLoader workers in real runs).
Sizes: the shipped default's 144x400 and the paper's TuSimple 368x640 (and CULane 288x800
with --all). CPU always; CUDA (fp32 and AMP fp16) when available.

    .venv/bin/python benchmarks/bench_train.py [--batch 8] [--steps 5] [--threads N] [--all]
"""
from __future__ import annotations

import argparse
import platform
import time

import torch

from lanesad_ros.model import build_model
from lanesad_ros.model.losses import SADLoss


def bench(size: tuple[int, int], batch: int, steps: int, device: str, amp: bool, sad: bool = True) -> float:
    """Median seconds per training step after two warm-up steps."""
    torch.manual_seed(0)
    model = build_model("enet_sad", num_lanes=4, input_size=size).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    loss_fn = SADLoss()
    x = torch.randn(batch, 3, *size, device=device)
    seg = torch.randint(0, 5, (batch, *size), device=device)
    exist = torch.randint(0, 2, (batch, 4), device=device).float()
    times = []
    for i in range(steps + 2):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(device_type=device, dtype=torch.float16, enabled=amp):
            out = model(x, with_attention=sad)
        loss, _ = loss_fn(out, seg, exist, use_sad=sad)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--all", action="store_true", help="also 288x800")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [(144, 400), (368, 640)] + ([(288, 800)] if args.all else [])
    configs = [("cpu", False)]
    if torch.cuda.is_available():
        configs += [("cuda", False), ("cuda", True)]
    print(f"# bench_train: ENet-SAD training step, batch {args.batch}, torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} CPU threads"
          + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""))
    print("| device | precision | input | s/step | images/s | vs cpu fp32 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for size in sizes:
        base = None
        for device, amp in configs:
            sec = bench(size, args.batch, args.steps, device, amp)
            base = base or sec
            print(f"| {device} | {'amp-fp16' if amp else 'fp32'} | {size[0]}x{size[1]} | {sec:.3f} | "
                  f"{args.batch / sec:.1f} | {base / sec:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
