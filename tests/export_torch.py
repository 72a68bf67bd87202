#!/usr/bin/python3
"""`effnet export`: a B0 that effnet trained (a few steps on 24 JPEGs, 8 classes, with an EMA) is
exported and loaded back with strict=True.

    export_torch.py EFFNET TEST_PARITY

Checks:
  - --to torchvision .pth: torchvision's efficientnet_b0(num_classes=8) loads it strictly, and its
    logits on random 32x32 images equal effnet's on the checkpoint (test_parity, 1e-4 relative);
  - --ema: the tensors are the checkpoint's /ema (and not its /model);
  - --to timm .h5: one dataset per name at the root, the checkpoint's /model names and values
    exactly, num_batches_tracked included (loadable strictly once renamed to torchvision's);
  - torchvision's random weights through `effnet import` and back out with `effnet export` equal
    the original state_dict;
  - a missing file, a checkpoint of the tiny net, --ema on a plain weights file and an output that
    is neither .pth nor .h5 are refused with a message that names the problem.
Exits 77 (ctest: skipped) when torch, torchvision or h5py is missing.
"""
import os
import subprocess
import sys
import tempfile

try:
    import h5py
    import numpy as np
    import torch
    import torchvision
except ImportError as e:
    print(f"SKIPPED: {e}; install Debian's python3-torchvision and python3-h5py (scripts/install-deps.sh)")
    sys.exit(77)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from convert_weights import timm_to_torchvision  # noqa: E402

CLASSES, RESOLUTION = 8, 32


class Checks:
    def __init__(self, effnet):
        self.effnet, self.failures = effnet, 0

    def check(self, ok, what):
        print(f"{'ok' if ok else 'FAILED'}: {what}")
        self.failures += not ok

    def run(self, *args, want=0):
        r = subprocess.run([self.effnet, *args], capture_output=True, text=True)
        if r.returncode != want:
            self.check(False, f"effnet {' '.join(args)} exited {r.returncode} (want {want}): {r.stdout}{r.stderr}")
        return r.stdout + r.stderr

    def refused(self, code, text, *args):
        out = self.run(*args, want=code)
        self.check(text in out, f"effnet {' '.join(a if '/' not in a else os.path.basename(a) for a in args)}: "
                   f"exit {code}, '{text}'")


def loads_strictly(state):
    """torchvision's efficientnet_b0 with `state` loaded with strict=True, or None (printed why)."""
    model = torchvision.models.efficientnet_b0(num_classes=CLASSES)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        print(e)
        return None
    return model


def torchvision_logits(checker, pth, checkpoint, folder, c):
    """torchvision's efficientnet_b0 with the exported weights, against effnet's checkpoint."""
    model = loads_strictly(torch.load(pth))
    c.check(model is not None, f"torchvision's efficientnet_b0(num_classes={CLASSES}) loads {os.path.basename(pth)} strictly")
    if model is None:
        return
    model.eval()
    images = torch.randn(2, 3, RESOLUTION, RESOLUTION, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits32 = model(images)
        logits = model.double()(images.double())  # the exact logits, to within float64
    # One epoch of 6 steps with --bn-momentum 0.9 leaves running statistics far from the batch's:
    # the logits reach 1e4 and f32 rounding alone moves them by up to 1e-4 of that, torch's own
    # included. effnet must come as close to the exact logits as 4x torch's own f32 error (and
    # 1e-4 at least); a wrong export is off by far more.
    torch_error = ((logits32.double() - logits).abs().max() / logits.abs().max()).item()
    print(f"torch's own f32 logits: relative error {torch_error:.3g} against float64")
    ref = os.path.join(folder, "reference.h5")
    with h5py.File(ref, "w") as f:
        f.attrs["batch"], f.attrs["resolution"] = 2, RESOLUTION
        f.attrs["tolerance_eval"] = max(1e-4, 4 * torch_error)
        f["images"] = images.permute(0, 2, 3, 1).numpy()  # NHWC
        f["logits_eval"] = logits.float().numpy()
    r = subprocess.run([checker, checkpoint, ref], capture_output=True, text=True)
    print(r.stdout.strip(), r.stderr.strip())
    c.check(r.returncode == 0, "torchvision's logits with the export equal effnet's with the checkpoint")


def main():
    effnet, checker = sys.argv[1], sys.argv[2]
    torch.set_num_threads(2)
    c = Checks(effnet)
    with tempfile.TemporaryDirectory() as folder:
        path = lambda name: os.path.join(folder, name)  # noqa: E731
        c.run("bench-data", "--cache", path("jpegs"), "--images", "24", "--batch", "4")
        train = ["train", "--data", path("jpegs"), "--image-size", str(RESOLUTION), "--epochs", "1", "--batch", "4"]
        c.run(*train, "--model", "b0", "--ema", "0.5", "--bn-momentum", "0.9", "--out", path("b0"))
        c.run(*train, "--out", path("tiny"))
        checkpoint = path("b0/best.h5")

        print(c.run("export", "--to", "torchvision", checkpoint, path("b0.pth")).strip())
        torchvision_logits(checker, path("b0.pth"), checkpoint, folder, c)

        c.run("export", "--to", "torchvision", "--ema", checkpoint, path("ema.pth"))
        ema = torch.load(path("ema.pth"))
        with h5py.File(checkpoint, "r") as f:
            want = timm_to_torchvision({k: v[()] for k, v in f["ema"].items()})
            model = timm_to_torchvision({k: v[()] for k, v in f["model"].items()})
        same = sorted(ema) == sorted(want) and all(np.array_equal(ema[k].numpy(), want[k]) for k in want)
        differs = any(not np.array_equal(ema[k].numpy(), model[k]) for k in want if "num_batches" not in k)
        c.check(same and differs, f"--ema: {len(ema)} tensors equal the checkpoint's /ema (and differ from /model: {differs})")

        print(c.run("export", "--to", "timm", checkpoint, path("timm.h5")).strip())
        with h5py.File(path("timm.h5"), "r") as out, h5py.File(checkpoint, "r") as f:
            state = {k: v[()] for k, v in out.items()}
            same = sorted(state) == sorted(f["model"]) and all(
                np.array_equal(state[k], f["model"][k][()]) and state[k].dtype == f["model"][k].dtype for k in state)
        nbt = sum(k.endswith("num_batches_tracked") for k in state)
        loads = loads_strictly(timm_to_torchvision({k: torch.as_tensor(v) for k, v in state.items()}))
        c.check(same and nbt == 49 and loads is not None, f"--to timm .h5: {len(state)} datasets at the root ({nbt} num_batches_tracked) "
                "equal the checkpoint's /model and load strictly")

        # torchvision -> effnet -> torchvision gives back the same state_dict.
        torch.manual_seed(1)
        original = torchvision.models.efficientnet_b0().state_dict()
        torch.save(original, path("tv.pth"))
        c.run("import", "--from", "torchvision", "--model", "b0", path("tv.pth"), path("tv.h5"))
        c.run("export", "--to", "torchvision", path("tv.h5"), path("back.pth"))
        back = torch.load(path("back.pth"))
        same = sorted(back) == sorted(original) and all(torch.equal(back[k], original[k]) for k in original
                                                        if "num_batches" not in k)
        c.check(same, f"torchvision -> import -> export: the {len(original)} tensors come back equal")

        c.refused(1, "cannot open /nonexistent.h5", "export", "--to", "torchvision", "/nonexistent.h5", path("x.pth"))
        c.refused(1, "is a checkpoint of the tiny net", "export", "--to", "timm", path("tiny/best.h5"), path("x.h5"))
        c.refused(1, "is a weights file, not a training checkpoint: it holds no EMA (drop --ema)", "export", "--to",
                  "torchvision", "--ema", path("tv.h5"), path("x.pth"))
        c.refused(2, "the output must end in .pth (torch.save) or .h5", "export", "--to", "timm", checkpoint, path("x.pt"))
        c.refused(2, "needs --to torchvision|timm", "export", "--to", "keras", checkpoint, path("x.h5"))
        c.check(not os.path.exists(path("x.pth")) and not os.path.exists(path("x.h5")), "refused exports wrote nothing")
    print("export:", "FAILED" if c.failures else "ok")
    sys.exit(1 if c.failures else 0)


if __name__ == "__main__":
    main()
