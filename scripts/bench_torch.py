#!/usr/bin/python3
"""torchvision's EfficientNet timed as `effnet bench` times ours, for side-by-side runs.

    bench_torch.py MODEL [--mode train|infer] [--batch N] [--warmup N] [--iters N] [--threads N]

channels_last; inference under no_grad in eval mode; a training step is forward + backward in
train mode (dropout and stochastic depth on) with the same label-smoothed cross-entropy, then
the same SGD update (momentum 0.9, weight decay 1e-4). Prints the same two lines as effnet bench.
"""
import argparse
import resource
import statistics
import time

import torch
import torchvision

RESOLUTION = {"b0": 224, "b1": 240, "b2": 260, "b3": 300, "b4": 380, "b5": 456, "b6": 528, "b7": 600}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", choices=sorted(RESOLUTION))
    ap.add_argument("--mode", choices=["train", "infer"], default="train")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    r = RESOLUTION[a.model]
    model = getattr(torchvision.models, "efficientnet_" + a.model)().to(memory_format=torch.channels_last)
    x = torch.randn(a.batch, 3, r, r).to(memory_format=torch.channels_last)
    y = torch.arange(a.batch) % 1000
    training = a.mode == "train"
    model.train(training)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=1e-4)
    times = []
    for i in range(a.warmup + a.iters):
        t0 = time.perf_counter()
        if training:
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x), y, label_smoothing=0.1).backward()
            optimizer.step()
        else:
            with torch.no_grad():
                model(x)
        if i >= a.warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    median, p99 = statistics.median(times), times[min(len(times) - 1, round((len(times) - 1) * 0.99))]
    params = sum(p.numel() for p in model.parameters()) * 4 * (2 if training else 1) / 2**20
    print(f"torchvision {a.model} {r}x{r} batch {a.batch} {'train step' if training else 'inference'}, "
          f"{torch.get_num_threads()} threads: median {median:.1f} ms, p99 {p99:.1f} ms, {a.batch * 1e3 / median:.1f} images/s")
    print(f"  memory: parameters {params:.1f} MiB, peak resident "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MiB (torch {torch.__version__})")


if __name__ == "__main__":
    main()
