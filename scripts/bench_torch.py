#!/usr/bin/python3
"""torchvision's EfficientNet timed as `effnet bench` times ours, for side-by-side runs.

    bench_torch.py MODEL [--mode train|infer] [--batch N] [--warmup N] [--iters N] [--threads N]
                   [--resolution N] [--device cpu|cuda] [--precision f32|tf32|bf16|f16] [--compile]
                   [--configs PRECISION:MODE,...]

channels_last; inference under no_grad in eval mode; a training step is forward + backward in
train mode (dropout and stochastic depth on) with the same label-smoothed cross-entropy, then
the same SGD update (momentum 0.9, weight decay 1e-4). bf16 and f16 run under autocast (f16 with a
GradScaler when training); tf32 allows TF32 matrix products and convolutions; --compile wraps
the model in torch.compile where this torch has it. Prints the same two lines as effnet bench.
--configs runs several (precision, mode) pairs one after the other in this one process (one
import of torch, one CUDA context), each with a fresh model and peak-memory count, in the order
given: tests/gpu/check.sh asks for all four at once.
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
    ap.add_argument("--resolution", type=int, default=0, help="0: the model's own")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--precision", choices=["f32", "tf32", "bf16", "f16"], default="f32")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--configs", default="", help="precision:mode pairs, comma-separated (overrides the two flags)")
    a = ap.parse_args()
    configs = [c.split(":") for c in a.configs.split(",")] if a.configs else [(a.precision, a.mode)]
    for precision, mode in configs:
        if precision not in ("f32", "tf32", "bf16", "f16") or mode not in ("train", "infer"):
            raise SystemExit(f"bench_torch.py: --configs: '{precision}:{mode}' is not PRECISION:MODE")
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_torch.py: --device cuda, but this torch sees no GPU")
    for precision, mode in configs:
        a.precision, a.mode = precision, mode
        run(a)


def run(a):
    """One configuration: a fresh model, warm-up, timed steps, the two lines."""
    if a.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = a.precision == "tf32"
        torch.backends.cudnn.benchmark = True
        torch.cuda.reset_peak_memory_stats()
    r = a.resolution or RESOLUTION[a.model]
    model = getattr(torchvision.models, "efficientnet_" + a.model)().to(a.device, memory_format=torch.channels_last)
    x = torch.randn(a.batch, 3, r, r, device=a.device).to(memory_format=torch.channels_last)
    y = torch.arange(a.batch, device=a.device) % 1000
    training = a.mode == "train"
    model.train(training)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=1e-4)
    forward = model
    if a.compile:
        if not hasattr(torch, "compile"):
            raise SystemExit(f"bench_torch.py: --compile needs torch 2 (this is {torch.__version__})")
        forward = torch.compile(model)
    half = {"bf16": torch.bfloat16, "f16": torch.float16}.get(a.precision)
    if half is not None and a.device == "cpu" and half is torch.float16:
        raise SystemExit("bench_torch.py: f16 autocast is for --device cuda")
    scaler = torch.cuda.amp.GradScaler() if half is torch.float16 and training else None

    def autocast():
        return torch.autocast(a.device, dtype=half, enabled=half is not None)

    def sync():
        if a.device == "cuda":
            torch.cuda.synchronize()

    times = []
    for i in range(a.warmup + a.iters):
        sync()
        t0 = time.perf_counter()
        if training:
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                loss = torch.nn.functional.cross_entropy(forward(x), y, label_smoothing=0.1)
            if scaler:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
        else:
            with torch.no_grad(), autocast():
                forward(x)
        sync()
        if i >= a.warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    median, p99 = statistics.median(times), times[min(len(times) - 1, round((len(times) - 1) * 0.99))]
    params = sum(p.numel() for p in model.parameters()) * 4 * (3 if training else 1) / 2**20
    where = (f"{torch.cuda.get_device_name()}, {a.precision}" if a.device == "cuda" else f"{torch.get_num_threads()} threads") + \
        (", compiled" if a.compile else "")
    print(f"torchvision {a.model} {r}x{r} batch {a.batch} {'train step' if training else 'inference'}, "
          f"{where}: median {median:.1f} ms, p99 {p99:.1f} ms, {a.batch * 1e3 / median:.1f} images/s")
    peak = (f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.1f} MiB" if a.device == "cuda" else
            f"peak resident {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MiB")
    print(f"  memory: parameters{' + gradients + momentum' if training else ''} {params:.1f} MiB, {peak} "
          f"(torch {torch.__version__})", flush=True)


if __name__ == "__main__":
    main()
