#!/usr/bin/python3
"""torchvision's input pipeline timed as `effnet bench-data` times ours, on the same ImageFolder:
ImageFolder + PIL + the same transforms, a DataLoader with --threads worker processes (one torch
thread each), normalized float batches; one pass after two untimed batches.

    bench_data_torch.py DIR [--transform eval|train|train-aa|all] [--threads N] [--batch N] [--size N]

train-aa uses torchvision's AutoAugment (the paper's ImageNet policy), whose ops cost what the
official EfficientNet policy's cost; effnet applies the latter.
"""
import argparse
import time

import torch
import torchvision
import torchvision.transforms as T

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def pipeline(name, size):
    bicubic = T.InterpolationMode.BICUBIC
    if name == "eval":
        steps = [T.Resize(int(size / 0.875), interpolation=bicubic), T.CenterCrop(size)]
    else:
        steps = [T.RandomResizedCrop(size, interpolation=bicubic), T.RandomHorizontalFlip()]
        if name == "train-aa":
            steps.append(T.AutoAugment(T.AutoAugmentPolicy.IMAGENET))
    return T.Compose(steps + [T.ToTensor(), T.Normalize(MEAN, STD)])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--transform", default="all", choices=["eval", "train", "train-aa", "all"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=224)
    a = ap.parse_args()
    for name in ["eval", "train", "train-aa"] if a.transform == "all" else [a.transform]:
        data = torchvision.datasets.ImageFolder(a.dir, pipeline(name, a.size))
        loader = torch.utils.data.DataLoader(data, batch_size=a.batch, shuffle=name != "eval", drop_last=True,
                                             num_workers=a.threads)
        images, t0 = 0, 0.0
        for i, (x, _) in enumerate(loader):
            if i == 2:
                t0, images = time.perf_counter(), 0
            images += x.shape[0]
        secs = time.perf_counter() - t0
        print(f"torchvision {name:8s} {a.threads} workers: {images} images in {secs:.2f} s, {images / secs:.1f} images/s "
              f"({images / secs / max(a.threads, 1):.1f} per worker)  [PIL {__import__('PIL').__version__}, "
              f"torchvision {torchvision.__version__}]")


if __name__ == "__main__":
    main()
