#!/usr/bin/env python3
"""effnet's softmax cross-entropy against soft targets (Mixup's and CutMix's) matches PyTorch's
F.cross_entropy with probability targets (timm's SoftTargetCrossEntropy), loss and gradient, on
mixed smoothed one-hots (rows summing to 1) and on arbitrary non-negative rows.
usage: soft_ce_torch.py SOFT_CE_RUN   (exit 77 without torch)"""
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError:
    print("skipped: no torch/numpy")
    sys.exit(77)

run = sys.argv[1]
rng = np.random.default_rng(5)
failed = 0


def check(name, z, t):
    global failed
    n, k = z.shape
    with tempfile.TemporaryDirectory() as d:
        np.concatenate([z.ravel(), t.ravel()]).astype(np.float32).tofile(os.path.join(d, "in"))
        subprocess.run([run, os.path.join(d, "in"), os.path.join(d, "out"), str(n), str(k)], check=True)
        out = np.fromfile(os.path.join(d, "out"), dtype=np.float32)
    zt = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    loss = F.cross_entropy(zt, torch.tensor(t, dtype=torch.float64))
    loss.backward()
    want_loss, want_grad = loss.item(), zt.grad.numpy().ravel()
    e_loss = abs(out[0] - want_loss) / abs(want_loss)
    e_grad = np.abs(out[1:] - want_grad).max() / np.abs(want_grad).max()
    i = int(np.abs(out[1:] - want_grad).argmax())
    ok = e_loss < 1e-6 and e_grad < 1e-5
    failed += not ok
    print(f"{'ok' if ok else 'FAILED'}: {name}: loss {out[0]:.7f} vs torch {want_loss:.7f} (rel {e_loss:.1e}); "
          f"gradient rel {e_grad:.1e}, worst [{i}] {out[1 + i]:.7g} vs {want_grad[i]:.7g}")


n, k = 37, 10
z = (rng.standard_normal((n, k)) * 3).astype(np.float32)
y, lam, s = rng.integers(0, k, n), 0.63, 0.1
onehot = lambda c: np.full((n, k), s / k) + (1 - s) * np.eye(k)[c]
check("mixed smoothed one-hots (lambda 0.63, smoothing 0.1)", z, (lam * onehot(y) + (1 - lam) * onehot(y[::-1])))
check("arbitrary non-negative rows (not summing to 1)", z, rng.uniform(0, 1, (n, k)))
z = (rng.standard_normal((5, 1000)) * 5).astype(np.float32)
check("1000 classes, Dirichlet rows", z, rng.dirichlet(np.full(1000, 0.1), 5))
sys.exit(1 if failed else 0)
