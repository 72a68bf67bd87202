#!/usr/bin/python3
"""Weights are weights: files from `effnet import` go straight into predict, eval and features,
as checkpoints do, and give the reference's answers on real photographs.

    weights_commands.py EFFNET

- torchvision's B0 (random weights, its batch norms' statistics taken from six photos so that its
  outputs depend on the image, the classifier scaled up so that the top classes stand apart) imported with --from torchvision: `effnet predict` prints, under
  ImageNet's class names that the import recorded, the five classes torchvision ranks first with
  its own evaluation transform (weights.transforms()), and their probabilities to the printed
  0.01%; the same weights under timm's names (--from timm) print the same.
- `effnet eval` on an ImageFolder of 1000 class folders (in the weights' class order; a filler
  image in each, the photos in classes chosen by torchvision's ranking) at --image-size 64
  --crop-pct 0.875 gives torchvision's top-1, top-5 and mean cross-entropy on the same files.
- `effnet features` writes each photo's pooled features, torchvision's to 1e-4.
- A Keras EfficientNetB0 weights file with 1000 classes (written as tests/keras_import.py writes
  them): the import records the class names, and predict's top class is the numpy Keras model's.
Exits 77 (ctest: skipped) with a message where torch, torchvision, h5py or the photos are missing.
"""
import math
import os
import re
import subprocess
import sys
import tempfile

try:
    import h5py
    import numpy as np
    import torch
    import torchvision
    from PIL import Image
except ImportError as e:
    print(f"SKIPPED: {e}; install Debian's python3-torchvision, python3-h5py and python3-pil (scripts/install-deps.sh)")
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
sys.path.insert(0, HERE)
from convert_weights import torchvision_to_timm  # noqa: E402
import keras_import  # noqa: E402

PHOTOS = os.environ.get("EFFNET_PHOTOS", "/opt/effnet-photos")
NAMES = ("chelsea.png", "coffee.png", "rocket.jpg")
CALIBRATION = NAMES + ("astronaut.png", "motorcycle_left.png", "hubble_deep_field.jpg")


class Checks:
    def __init__(self, effnet):
        self.effnet, self.failures = effnet, 0

    def check(self, ok, what):
        print(("ok: " if ok else "FAILED: ") + what)
        self.failures += not ok

    def run(self, *args):
        r = subprocess.run([self.effnet, *args], capture_output=True, text=True)
        if r.returncode:
            print(r.stdout + r.stderr)
        return r.returncode, r.stdout


def torchvision_b0(photos):
    """torchvision's B0 with random weights and the batch norms' statistics taken from the photos
    (so that its outputs depend on the image), the classifier scaled up."""
    torch.manual_seed(1)
    model = torchvision.models.efficientnet_b0()
    transform = torchvision.models.EfficientNet_B0_Weights.IMAGENET1K_V1.transforms()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = 1.0  # the running statistics become the batch's
        model.train()
        model(torch.stack([transform(Image.open(p).convert("RGB")) for p in photos]))
        model.classifier[1].weight.mul_(40)
    return model.eval()


def top5(logits):
    p = torch.softmax(logits.double(), dim=-1)
    values, index = p.topk(5)
    return [(100 * v.item(), i.item()) for v, i in zip(values, index)]


def predicted(output):
    """{image: [(percent, name), ...]} from `effnet predict`'s lines."""
    out, image = {}, None
    for line in output.splitlines():
        if line.endswith(":") and not line.startswith(" "):
            image = line[:-1]
            out[image] = []
        elif image and (m := re.match(r"\s+([\d.]+)%\s+(.*)$", line)):
            out[image].append((float(m.group(1)), m.group(2)))
    return out


def same_ranking(c, what, got, want, names):
    """The printed classes and percentages against the reference's; neighbours within 1e-4 of each
    other may come in either order."""
    ok = len(got) == 5
    for r in range(min(5, len(got))):
        tied = any(abs(want[r][0] - want[s][0]) < 1e-4 for s in (r - 1, r + 1) if 0 <= s < 5)
        ok &= (got[r][1] == names[want[r][1]] or tied) and abs(got[r][0] - want[r][0]) <= 0.011
    c.check(ok, f"{what}: effnet {got[:2]}... torchvision {[(round(p, 2), names[i]) for p, i in want[:2]]}...")


def eval_reference(model, files, labels, size, crop):
    """torchvision's top-1, top-5 and mean cross-entropy with its evaluation transform at `size`."""
    t = torchvision.transforms
    tf = t.Compose([t.Resize(int(math.floor(size / crop)), interpolation=t.InterpolationMode.BICUBIC), t.CenterCrop(size),
                    t.ToTensor(), t.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    top1 = top5 = 0
    loss = 0.0
    with torch.no_grad():
        for i in range(0, len(files), 100):
            x = torch.stack([tf(Image.open(f).convert("RGB")) for f in files[i:i + 100]])
            y = torch.tensor(labels[i:i + 100])
            logits = model(x).double()
            loss += torch.nn.functional.cross_entropy(logits, y, reduction="sum").item()
            rank = (logits > logits.gather(1, y[:, None])).sum(1)
            top1 += (rank == 0).sum().item()
            top5 += (rank < 5).sum().item()
    n = len(files)
    return 100 * top1 / n, 100 * top5 / n, loss / n


def test_torchvision(c, folder, photos):
    model = torchvision_b0([os.path.join(PHOTOS, n) for n in CALIBRATION])
    weights = torchvision.models.EfficientNet_B0_Weights.IMAGENET1K_V1
    names = weights.meta["categories"]
    torch.save(model.state_dict(), f"{folder}/torchvision.pth")
    torch.save(torchvision_to_timm(model.state_dict()), f"{folder}/timm.pth")
    for source in ("torchvision", "timm"):
        code, _ = c.run("import", "--from", source, "--model", "b0", f"{folder}/{source}.pth", f"{folder}/{source}.h5")
        c.check(code == 0, f"import --from {source}")
    with h5py.File(f"{folder}/torchvision.h5", "r") as f:
        recorded = f.attrs["class_names"].splitlines()
        c.check(recorded == names and f.attrs["image_size"] == 224 and abs(f.attrs["crop_pct"] - 224 / 256) < 1e-12,
                f"the import records ImageNet's 1000 names ({recorded[281]}) and torchvision's 224/256 crop")
    # predict: torchvision's top five with its own transform, for both imports.
    with torch.no_grad():
        want = {p: top5(model(weights.transforms()(Image.open(p).convert("RGB"))[None])[0]) for p in photos}
    for source in ("torchvision", "timm"):
        code, out = c.run("predict", f"{folder}/{source}.h5", *photos)
        got = predicted(out)
        for p in photos:
            same_ranking(c, f"predict ({source} import) {os.path.basename(p)}", got.get(p, []), want[p], names)
    # eval: 1000 class folders in ImageNet's order, a filler in each; the photos at ranks 0, 2, 30.
    root = f"{folder}/imagefolder"
    Image.fromarray(np.tile(np.arange(16, dtype=np.uint8)[:, None, None] * 16, (1, 16, 3))).save(f"{folder}/filler.png")
    files, labels = [], []
    for k in range(1000):
        os.makedirs(f"{root}/n{k:04d}")
        os.link(f"{folder}/filler.png", f"{root}/n{k:04d}/filler.png")
    for p, rank in zip(photos, (0, 2, 30)):
        with torch.no_grad():
            x = weights.transforms()(Image.open(p).convert("RGB"))[None]
            label = model(x)[0].argsort(descending=True)[rank].item()
        os.link(p, f"{root}/n{label:04d}/{os.path.basename(p)}")
    for k in range(1000):  # ImageFolder's order: the classes, each folder's files sorted
        for name in sorted(os.listdir(f"{root}/n{k:04d}")):
            files.append(f"{root}/n{k:04d}/{name}")
            labels.append(k)
    ref = eval_reference(model, files, labels, 64, 0.875)
    code, out = c.run("eval", f"{folder}/torchvision.h5", "--data", root, "--image-size", "64", "--crop-pct", "0.875",
                      "--batch", "50")
    m = re.search(r"(\d+) images: top-1 ([\d.]+)%\s+top-5 ([\d.]+)%\s+loss ([\d.]+)", out)
    got = (float(m.group(2)), float(m.group(3)), float(m.group(4))) if m else None
    c.check(m is not None and int(m.group(1)) == len(files) and abs(got[0] - ref[0]) < 0.006 and
            abs(got[1] - ref[1]) < 0.006 and abs(got[2] - ref[2]) <= 1e-4 * ref[2] + 5e-5,
            f"eval on {len(files)} images: effnet {got}, torchvision ({ref[0]:.2f}, {ref[1]:.2f}, {ref[2]:.4f})")
    # features of the photos (the evaluation transform at the model's 224).
    only = f"{folder}/photos.csv"
    with open(only, "w") as f:
        f.writelines(f"{p},{i}\n" for i, p in enumerate(photos))
    with open(f"{folder}/classes.txt", "w") as f:
        f.writelines(f"photo{i}\n" for i in range(len(photos)))
    code, _ = c.run("features", f"{folder}/torchvision.h5", "--data", only, "--split", "test", "--out", f"{folder}/feat.h5")
    with torch.no_grad():
        x = torch.stack([weights.transforms()(Image.open(p).convert("RGB")) for p in photos])
        want_features = model.avgpool(model.features(x)).flatten(1).numpy()
    with h5py.File(f"{folder}/feat.h5", "r") as f:
        have = f["test/features"][()] if code == 0 else np.zeros(1)
    err = np.abs(have - want_features).max() / np.abs(want_features).max() if have.shape == want_features.shape else 1
    c.check(code == 0 and err <= 1e-4, f"features of {len(photos)} photos: {have.shape}, relative error {err:.2g}")


def test_keras(c, folder, photos):
    keras_import.CLASSES = 1000
    rng = np.random.default_rng(3)
    w = keras_import.Weights(rng, keras_import.IMAGENET_MEAN, keras_import.IMAGENET_STD)
    w.keras["predictions"]["kernel"] *= 40  # the top class stands apart
    keras_import.write_keras2(w, f"{folder}/keras.h5")
    code, _ = c.run("import", "--from", "keras", "--model", "b0", f"{folder}/keras.h5", f"{folder}/keras-effnet.h5")
    c.check(code == 0, "import --from keras (1000 classes)")
    names = torchvision.models.EfficientNet_B0_Weights.IMAGENET1K_V1.meta["categories"]
    code, out = c.run("predict", f"{folder}/keras-effnet.h5", photos[0], "--top-k", "1")
    got = predicted(out).get(photos[0], [])
    # The numpy Keras model on the same pixels (effnet's evaluation transform, as torchvision's).
    t = torchvision.transforms
    tf = t.Compose([t.Resize(256, interpolation=t.InterpolationMode.BICUBIC), t.CenterCrop(224)])
    pixels = np.asarray(tf(Image.open(photos[0]).convert("RGB")), dtype=np.float64)[None]
    logits = keras_import.keras_forward(w, pixels, True)[0]
    c.check(len(got) == 1 and got[0][1] == names[int(np.argmax(logits))],
            f"predict (Keras import): {got}, the numpy Keras model's top class {names[int(np.argmax(logits))]}")


def main():
    effnet = sys.argv[1]
    photos = [os.path.join(PHOTOS, n) for n in NAMES]
    if not all(os.path.exists(os.path.join(PHOTOS, n)) for n in CALIBRATION):
        print(f"SKIPPED: no photos in {PHOTOS} (scripts/install-deps.sh puts scikit-image's samples there)")
        sys.exit(77)
    torch.set_num_threads(2)
    c = Checks(effnet)
    with tempfile.TemporaryDirectory() as folder:
        test_torchvision(c, folder, photos)
        test_keras(c, folder, photos)
    print("weights commands:", "FAILED" if c.failures else "ok")
    sys.exit(1 if c.failures else 0)


if __name__ == "__main__":
    main()
