#!/usr/bin/python3
"""Parity with torchvision's EfficientNet, an implementation nobody here wrote.

    parity_torchvision.py EFFNET TEST_PARITY

For B0 and B2: random torchvision weights (BN affine and running statistics randomized too) go
through `effnet import`; torchvision computes, on one random batch, inference logits,
training-mode logits (batch statistics, dropout and stochastic depth off), the cross-entropy
loss, every parameter's gradient and the updated BN running statistics; test_parity (C)
computes the same with effnet and compares.
Exits 77 (ctest: skipped) with a message when torch, torchvision or h5py is missing.
"""
import os
import subprocess
import sys
import tempfile

try:
    import h5py
    import torch
    import torchvision
except ImportError as e:
    print(f"SKIPPED: {e}; install Debian's python3-torchvision and python3-h5py (scripts/install-deps.sh)")
    sys.exit(77)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from convert_weights import timm_to_torchvision, torchvision_to_timm  # noqa: E402


def randomize_bn(model):
    """Every batch norm's affine parameters and running statistics drawn at random (a mapping that
    swaps two of them then changes the outputs)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)


LABELS = torch.tensor([3, 917])


def training_step(model, images, to_timm):
    """Training-mode logits, the loss on LABELS, every parameter's gradient and the running
    statistics after the step's update, under timm's names (to_timm renames)."""
    model.train()
    logits = model(images)
    loss = torch.nn.functional.cross_entropy(logits, LABELS)
    loss.backward()
    grads = to_timm({k: p.grad for k, p in model.named_parameters()})
    running = to_timm({k: b for k, b in model.named_buffers() if ".running_" in k})  # after one update
    return logits.detach(), loss.detach(), grads, running


def write_reference(path, images, logits_eval, step=None):
    """The file test_parity reads: images (NHWC) and inference logits, and a training_step's results."""
    with h5py.File(path, "w") as f:
        f.attrs["batch"], f.attrs["resolution"] = images.shape[0], images.shape[2]
        f["images"] = images.permute(0, 2, 3, 1).numpy()  # NHWC
        f["logits_eval"] = logits_eval.numpy()
        if step:
            logits, loss, grads, running = step
            f["labels"], f["logits_train"], f["loss"] = LABELS.numpy(), logits.numpy(), loss.numpy()
            for k, g in grads.items():  # in effnet's layout: conv weights (O,KH,KW,I)
                f[f"grads/{k}"] = (g.permute(0, 2, 3, 1) if g.dim() == 4 else g).numpy()
            for k, b in running.items():
                f[f"running/{k}"] = b.numpy()


def reference(name, resolution, folder):
    torch.manual_seed(0)
    model = getattr(torchvision.models, "efficientnet_" + name)()
    randomize_bn(model)
    torch.save(model.state_dict(), f"{folder}/weights.pth")
    images = torch.randn(2, 3, resolution, resolution)
    model.eval()
    with torch.no_grad():
        logits_eval = model(images)
    model.classifier[0].p = 0.0
    for m in model.modules():
        if isinstance(m, torchvision.ops.StochasticDepth):
            m.p = 0.0
    write_reference(f"{folder}/reference.h5", images, logits_eval, training_step(model, images, torchvision_to_timm))


def loads_back_into_torchvision(name, folder):
    """effnet's file, read with h5py and a dict comprehension, loads into torchvision with strict
    checking (num_batches_tracked included) and equals the weights it came from."""
    with h5py.File(f"{folder}/weights.h5", "r") as f:
        state = {k: torch.as_tensor(v[()]) for k, v in f["model"].items()}
        saved_as = f.attrs["model"]
    model = getattr(torchvision.models, "efficientnet_" + name)()
    model.load_state_dict(timm_to_torchvision(state), strict=True)
    original = torch.load(f"{folder}/weights.pth")
    same = all(torch.equal(original[k], v) for k, v in model.state_dict().items() if "num_batches" not in k)
    print(f"{name}: effnet's HDF5 ({saved_as}) loads back into torchvision strictly: {'equal' if same else 'DIFFERENT'}")
    return same


def timm_import_agrees(effnet, name, folder):
    """The same weights under timm's names, imported with --from timm, give the same file."""
    torch.save(torchvision_to_timm(torch.load(f"{folder}/weights.pth")), f"{folder}/timm.pth")
    subprocess.run([effnet, "import", "--from", "timm", "--model", name, f"{folder}/timm.pth", f"{folder}/timm.h5"],
                   check=True)
    with h5py.File(f"{folder}/weights.h5", "r") as a, h5py.File(f"{folder}/timm.h5", "r") as b:
        same = sorted(a["model"]) == sorted(b["model"]) and all(
            (a["model"][k][()] == b["model"][k][()]).all() for k in a["model"])
    print(f"{name}: import --from timm gives the same weights as --from torchvision: {'yes' if same else 'NO'}")
    return same


def main():
    effnet, checker = sys.argv[1], sys.argv[2]
    torch.set_num_threads(2)
    failed = 0
    for name, resolution in (("b0", 224), ("b2", 260)):
        with tempfile.TemporaryDirectory() as folder:
            reference(name, resolution, folder)
            subprocess.run([effnet, "import", "--from", "torchvision", "--model", name, f"{folder}/weights.pth",
                            f"{folder}/weights.h5"], check=True)
            failed |= not loads_back_into_torchvision(name, folder)
            failed |= not timm_import_agrees(effnet, name, folder)
            failed |= subprocess.run([checker, f"{folder}/weights.h5", f"{folder}/reference.h5"]).returncode != 0
    print("parity with torchvision:", "FAILED" if failed else "ok")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
