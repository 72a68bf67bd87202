#!/usr/bin/python3
"""A linear probe on `effnet features`' output: multinomial logistic regression (L-BFGS, a small L2
penalty) on the training features, top-1 on the test features.

    linear_probe.py FEATURES.h5 [TEST_FEATURES.h5] [--per-class N] [--l2 F]

The training features come from /train of the first file, the test features from /test of the
last (one file when `effnet features` wrote both splits).

--per-class N trains on the first N training images of each class, the images `effnet train
--per-class N` takes. Needs Debian's python3-torch and python3-h5py.
"""
import argparse

import h5py
import torch


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("features", nargs="+", help="/train from the first, /test from the last")
    ap.add_argument("--per-class", type=int, default=0, help="the first N training images of each class (0: all)")
    ap.add_argument("--l2", type=float, default=1e-4, help="penalty on the squared weights")
    args = ap.parse_args()
    torch.manual_seed(0)
    with h5py.File(args.features[0], "r") as f:
        x, y = (torch.as_tensor(f[f"train/{k}"][()]) for k in ("features", "labels"))
    with h5py.File(args.features[-1], "r") as f:
        xt, yt = (torch.as_tensor(f[f"test/{k}"][()]) for k in ("features", "labels"))
    y, yt = y.long(), yt.long()
    if args.per_class:
        keep = torch.cat([torch.nonzero(y == c).flatten()[:args.per_class] for c in range(int(y.max()) + 1)]).sort()
        x, y = x[keep.values], y[keep.values]
    mean, std = x.mean(0), x.std(0) + 1e-6  # standardized features: one penalty suits every dimension
    x, xt = (x - mean) / std, (xt - mean) / std
    probe = torch.nn.Linear(x.shape[1], int(y.max()) + 1)
    opt = torch.optim.LBFGS(probe.parameters(), max_iter=500, line_search_fn="strong_wolfe")

    def step():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(probe(x), y) + args.l2 * probe.weight.square().sum()
        loss.backward()
        return loss

    opt.step(step)
    with torch.no_grad():
        top1 = (probe(xt).argmax(1) == yt).float().mean().item()
    print(f"linear probe: {len(y)} training images, {x.shape[1]} features, L2 {args.l2:g}: "
          f"top-1 {100 * top1:.2f}% on {len(yt)} test images")


if __name__ == "__main__":
    main()
