#!/usr/bin/python3
"""A training checkpoint is readable with h5py and its tensors load into PyTorch with a dict
comprehension: a B0 trained a few steps on Fashion-MNIST is loaded from /model and from /ema
({name: torch.as_tensor(v[()]) for name, v in f["model"].items()}, timm's names) into
torchvision's efficientnet_b0 (through the timm -> torchvision name table of
tools/convert_weights.py, strict=True), and evaluated there with torchvision's transforms: top-1
and loss equal `effnet eval`'s on the same test split, and the pooled features equal `effnet
features`'.
usage: checkpoint_torch.py EFFNET   (exit 77: torch, torchvision, h5py or Fashion-MNIST missing)"""
import os, re, subprocess, sys, tempfile

try:
    import h5py
    import numpy as np
    import torch
    import torchvision
    import torchvision.transforms as T
except ImportError as e:
    print(f"skipped: {e}")
    sys.exit(77)
FMNIST = "/usr/share/datasets/fashion-mnist"
if not os.path.exists(f"{FMNIST}/t10k-images-idx3-ubyte.gz"):
    print("skipped: no Fashion-MNIST")
    sys.exit(77)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from convert_weights import timm_to_torchvision  # noqa: E402

effnet = sys.argv[1]
tmp = tempfile.mkdtemp(prefix="effnet-ckpt-torch-")
run = subprocess.run([effnet, "train", "--model", "b0", "--image-size", "32", "--limit", "256", "--val-limit", "100",
                      "--batch", "32", "--epochs", "1", "--ema", "0.9", "--lr", "0.1", "--bn-momentum", "0.9", "--out", tmp],
                     capture_output=True, text=True)
if run.returncode:
    sys.exit(f"effnet train failed: {run.stderr}")
path = os.path.join(tmp, "best.h5")
f = h5py.File(path, "r")
size, mean, std = int(f.attrs["image_size"]), [float(x) for x in f.attrs["mean"].split(",")], \
    [float(x) for x in f.attrs["std"].split(",")]

import gzip  # noqa: E402
with gzip.open(f"{FMNIST}/t10k-images-idx3-ubyte.gz") as g:
    images = np.frombuffer(g.read(), np.uint8, offset=16).reshape(-1, 28, 28)
with gzip.open(f"{FMNIST}/t10k-labels-idx1-ubyte.gz") as g:
    labels = torch.as_tensor(np.frombuffer(g.read(), np.uint8, offset=8).astype(np.int64))
from PIL import Image  # noqa: E402
tf = T.Compose([T.Resize(size, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(size), T.ToTensor(),
                T.Normalize(mean[:1], std[:1])])
x = torch.stack([tf(Image.fromarray(im)) for im in images])
# effnet's figures first: torch's idle OpenMP threads would spin beside effnet's.
ours = {group: subprocess.run([effnet, "eval", path] + flag, capture_output=True, text=True).stdout
        for group, flag in (("model", ["--no-ema"]), ("ema", []))}
failures = 0
for group in ("model", "ema"):
    state = {name: torch.as_tensor(v[()]) for name, v in f[group].items()}  # the dict comprehension
    model = torchvision.models.efficientnet_b0(num_classes=10)
    model.features[0][0] = torch.nn.Conv2d(1, 32, 3, 2, 1, bias=False)  # Fashion-MNIST is gray
    model.load_state_dict(timm_to_torchvision(state), strict=True)
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(x[i:i + 500]) for i in range(0, len(x), 500)])
    top1 = (logits.argmax(1) == labels).double().mean().item()
    loss = torch.nn.functional.cross_entropy(logits.double(), labels).item()
    out = ours[group]
    m = re.search(r"top-1 ([0-9.]+)%.*loss ([0-9.]+)", out)
    ours_top1, ours_loss = float(m.group(1)), float(m.group(2))
    # The printed figures round to 0.01% and 1e-4; an image whose two best logits tie within
    # float error may go either way.
    ok = abs(ours_top1 - 100 * top1) <= 0.025 and abs(ours_loss - loss) <= 1e-4 * max(1, loss)
    print(f"{'ok' if ok else 'FAILED'}  /{group}: torchvision top-1 {100 * top1:.2f}% loss {loss:.4f}; effnet eval: {out.strip()}")
    failures += not ok
# `effnet features`: the pooled features (the classifier's input) of the first 500 test images
# through the checkpoint's EMA weights equal torchvision's avgpool output of the same model.
feat = os.path.join(tmp, "features.h5")
run = subprocess.run([effnet, "features", path, "--split", "test", "--limit", "500", "--out", feat], capture_output=True, text=True)
if run.returncode:
    print(f"FAILED  effnet features: {run.stderr.strip()}")
    failures += 1
else:
    with torch.no_grad():
        want = model.avgpool(model.features(x[:500])).flatten(1).numpy()  # model: the /ema one, last in the loop
    with h5py.File(feat, "r") as h:
        got, got_labels = h["test/features"][()], h["test/labels"][()]
    err = float(np.abs(got - want).max() / np.abs(want).max()) if got.shape == want.shape else float("inf")
    ok = err <= 1e-4 and np.array_equal(got_labels, labels[:500].numpy())
    print(f"{'ok' if ok else 'FAILED'}  effnet features {got.shape}: max difference from torchvision {err:.2e} of the largest")
    failures += not ok
subprocess.run(["rm", "-rf", tmp])
sys.exit(1 if failures else 0)
