#!/usr/bin/python3
"""`effnet import --from keras` without Keras: weights files in Keras's layouts, written here with
h5py from random weights of keras.applications.EfficientNetB0 (10 classes), against a numpy
re-implementation of that Keras model's function.

    keras_import.py EFFNET TEST_PARITY

The layer names, shapes and the function follow keras/src/applications/efficientnet.py: Rescaling
(1/255), Normalization (x - mean) / sqrt(variance), ZeroPadding2D(correct_pad) before every
stride-2 convolution and "same" padding elsewhere, BatchNormalization(epsilon=1e-3), swish. Checks:
  - a Keras 2 save_weights file and a Keras 3 .weights.h5 of the same weights import to the same
    tensors, each equal to its Keras array after the layout change (names by this file's own
    table), with padding same, BN eps 1e-3, momentum 0.01 and the normalization as mean and std;
  - on 72x72 images (odd and even sizes at the stride-2 layers), effnet's logits on images
    normalized by the recorded mean and std equal the numpy model's on the same images in
    [0, 255] (test_parity, within 1e-4 relative), for a random Normalization and for ImageNet's
    as Keras's weights="imagenet" files hold it (variance = ImageNet's stddev, corrected);
  - a _notop file (no predictions layer) is refused, or with --no-classifier imported with
    classifier = "absent"; a Keras 3 file without layer names and a non-HDF5 file are refused.
Exits 77 (ctest: skipped) when numpy or h5py is missing.
"""
import math
import os
import subprocess
import sys
import tempfile

try:
    import h5py
    import numpy as np
except ImportError as e:
    print(f"SKIPPED: {e}; install Debian's python3-h5py (scripts/install-deps.sh)")
    sys.exit(77)

CLASSES, RESOLUTION, BATCH = 10, 72, 2
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
# keras's DEFAULT_BLOCKS_ARGS: kernel, repeats, filters in, filters out, expand ratio, stride.
STAGES = [(3, 1, 32, 16, 1, 1), (3, 2, 16, 24, 6, 2), (5, 2, 24, 40, 6, 2), (3, 3, 40, 80, 6, 2),
          (5, 3, 80, 112, 6, 1), (5, 4, 112, 192, 6, 2), (3, 1, 192, 320, 6, 1)]


def blocks():
    """B0's blocks as keras builds them: (name prefix, kernel, stride, filters in, out, expand,
    timm prefix)."""
    for s, (kernel, repeats, fin, fout, expand, stride) in enumerate(STAGES):
        for j in range(repeats):
            yield (f"block{s + 1}{chr(ord('a') + j)}_", kernel, stride if j == 0 else 1, fin if j == 0 else fout, fout,
                   expand, f"blocks.{s}.{j}")


class Weights:
    """Random weights of the Keras model: keras[layer][variable] in Keras's layout (variables in
    the order Keras 3 numbers them), and timm[name] the same in PyTorch's layout under timm's
    names, each derived on its own (einsum), not with the converter's code."""

    def __init__(self, rng, mean, variance):
        self.rng, self.keras, self.timm = rng, {}, {}
        self.keras["normalization"] = {"mean": np.float32(mean), "variance": np.float32(variance),
                                       "count": np.int64(0)}
        self.conv("stem_conv", "conv_stem", 3, 3, 32)
        self.bn("stem_bn", "bn1", 32)
        for name, kernel, _, fin, fout, expand, timm in blocks():
            mid = fin * expand
            if expand != 1:
                self.conv(name + "expand_conv", timm + ".conv_pw", 1, fin, mid)
                self.bn(name + "expand_bn", timm + ".bn1", mid)
            w = self.normal((kernel, kernel, mid, 1), 2 / (kernel * kernel))  # Keras: (KH,KW,C,1)
            self.keras[name + "dwconv"] = {"depthwise_kernel": w}
            self.timm[timm + ".conv_dw.weight"] = np.einsum("hwc->chw", w[..., 0])[:, None]
            self.bn(name + "bn", timm + (".bn2" if expand != 1 else ".bn1"), mid)
            self.conv(name + "se_reduce", timm + ".se.conv_reduce", 1, mid, max(1, fin // 4), bias=True)
            self.conv(name + "se_expand", timm + ".se.conv_expand", 1, max(1, fin // 4), mid, bias=True)
            pw, pw_bn = (timm + ".conv_pwl", timm + ".bn3") if expand != 1 else (timm + ".conv_pw", timm + ".bn2")
            self.conv(name + "project_conv", pw, 1, mid, fout)
            self.bn(name + "project_bn", pw_bn, fout)
        self.conv("top_conv", "conv_head", 1, 320, 1280)
        self.bn("top_bn", "bn2", 1280)
        w, b = self.normal((1280, CLASSES), 1 / 1280), self.uniform(CLASSES, -0.2, 0.2)
        self.keras["predictions"] = {"kernel": w, "bias": b}
        self.timm["classifier.weight"], self.timm["classifier.bias"] = np.einsum("io->oi", w), b

    def normal(self, shape, variance):
        return (self.rng.standard_normal(shape) * math.sqrt(variance)).astype(np.float32)

    def uniform(self, n, lo, hi):
        return self.rng.uniform(lo, hi, n).astype(np.float32)

    def conv(self, layer, module, k, cin, cout, bias=False):
        w = self.normal((k, k, cin, cout), 2 / (k * k * cin))  # Keras: (KH,KW,I,O)
        self.keras[layer] = {"kernel": w}
        self.timm[module + ".weight"] = np.einsum("hwio->oihw", w)
        if bias:
            self.keras[layer]["bias"] = self.timm[module + ".bias"] = self.uniform(cout, -0.2, 0.2)

    def bn(self, layer, module, c):
        v = [self.uniform(c, 0.5, 1.5), self.uniform(c, -0.2, 0.2), self.uniform(c, -0.2, 0.2), self.uniform(c, 0.5, 1.5)]
        self.keras[layer] = dict(zip(("gamma", "beta", "moving_mean", "moving_variance"), v))
        for leaf, value in zip(("weight", "bias", "running_mean", "running_var"), v):
            self.timm[f"{module}.{leaf}"] = value


def write_keras2(weights, path, skip=()):
    """As Keras 2's model.save_weights(path.h5): a group per layer (weightless ones too), its
    attribute weight_names, datasets <layer>/<layer>/<variable>:0."""
    with h5py.File(path, "w") as f:
        names = ["input_1", "rescaling", *[n for n in weights.keras if n not in skip], "stem_activation"]
        f.attrs["layer_names"] = np.array([n.encode() for n in names])
        f.attrs["backend"], f.attrs["keras_version"] = b"tensorflow", b"2.13.1"
        for name in names:
            variables = weights.keras.get(name, {})
            g = f.create_group(name)
            g.attrs["weight_names"] = np.array([f"{name}/{v}:0".encode() for v in variables])
            for v, value in variables.items():
                g.create_dataset(f"{name}/{v}:0", data=value)


def write_keras3(weights, path, named=True):
    """As Keras 3's model.save_weights(path.weights.h5): layers/<class name, numbered>/vars/<i>,
    the layer's name in vars' attribute "name" (Keras >= 3.6)."""
    count = {}
    with h5py.File(path, "w") as f:
        f.create_group("vars")
        for name in ["rescaling", *weights.keras]:
            variables = weights.keras.get(name, {})
            kind = ("normalization" if name == "normalization" else "batch_normalization" if name.endswith("bn")
                    else "depthwise_conv2d" if name.endswith("dwconv") else "dense" if name == "predictions"
                    else "rescaling" if name == "rescaling" else "conv2d")
            group = kind if kind not in count else f"{kind}_{count[kind]}"
            count[kind] = count.get(kind, 0) + 1
            g = f.create_group(f"layers/{group}/vars")
            if named:
                g.attrs["name"] = name
            for i, value in enumerate(variables.values()):
                g.create_dataset(str(i), data=value)


def keras_forward(weights, images, imagenet):
    """The Keras model's logits (float64) on images (N,H,W,3) in [0, 255]."""
    k = {layer: {v: a.astype(np.float64) for v, a in variables.items()} for layer, variables in weights.keras.items()}
    swish = lambda x: x / (1 + np.exp(-x))  # noqa: E731

    def bn(x, layer):
        p = k[layer]
        return (x - p["moving_mean"]) / np.sqrt(p["moving_variance"] + 1e-3) * p["gamma"] + p["beta"]

    def pad(x, kernel, stride):  # ZeroPadding2D(correct_pad) before stride 2, "same" at stride 1
        if stride == 1:
            return np.pad(x, ((0, 0), (kernel // 2,) * 2, (kernel // 2,) * 2, (0, 0)))
        h, w = x.shape[1:3]
        return np.pad(x, ((0, 0), (kernel // 2 - (1 - h % 2), kernel // 2), (kernel // 2 - (1 - w % 2), kernel // 2),
                          (0, 0)))

    def conv(x, w, stride=1, depthwise=False):  # w (KH,KW,I,O) or depthwise (KH,KW,C,1); x padded
        kh, kw = w.shape[:2]
        oh, ow = (x.shape[1] - kh) // stride + 1, (x.shape[2] - kw) // stride + 1
        out = 0
        for i in range(kh):
            for j in range(kw):
                patch = x[:, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride]
                out = out + (patch * w[i, j, :, 0] if depthwise else patch @ w[i, j])
        return out

    norm = k["normalization"]
    x = (images / 255 - norm["mean"]) / np.maximum(np.sqrt(norm["variance"]), 1e-7)
    if imagenet:  # EfficientNet(weights="imagenet") adds Rescaling(1 / sqrt(stddev))
        x = x / np.sqrt(IMAGENET_STD)
    x = swish(bn(conv(pad(x, 3, 2), k["stem_conv"]["kernel"], 2), "stem_bn"))
    for name, kernel, stride, fin, fout, expand, _ in blocks():
        inputs = x
        if expand != 1:
            x = swish(bn(conv(x, k[name + "expand_conv"]["kernel"]), name + "expand_bn"))
        x = swish(bn(conv(pad(x, kernel, stride), k[name + "dwconv"]["depthwise_kernel"], stride, True), name + "bn"))
        se = x.mean(axis=(1, 2), keepdims=True)
        se = swish(conv(se, k[name + "se_reduce"]["kernel"]) + k[name + "se_reduce"]["bias"])
        se = 1 / (1 + np.exp(-(conv(se, k[name + "se_expand"]["kernel"]) + k[name + "se_expand"]["bias"])))
        x = bn(conv(x * se, k[name + "project_conv"]["kernel"]), name + "project_bn")
        if stride == 1 and fin == fout:
            x = x + inputs
    x = swish(bn(conv(x, k["top_conv"]["kernel"]), "top_bn")).mean(axis=(1, 2))
    return x @ k["predictions"]["kernel"] + k["predictions"]["bias"]


class Checks:
    def __init__(self, effnet, folder):
        self.effnet, self.folder, self.failures = effnet, folder, 0

    def check(self, ok, what):
        print(f"{'ok' if ok else 'FAILED'}: {what}")
        self.failures += not ok

    def run(self, *args):
        r = subprocess.run([self.effnet, *args], capture_output=True, text=True)
        return r.returncode, r.stdout + r.stderr

    def imported(self, keras_file, out, *flags):
        code, output = self.run("import", "--from", "keras", "--model", "b0", "--classes", str(CLASSES), *flags,
                                keras_file, out)
        print(output.strip())
        self.check(code == 0, f"effnet import --from keras {os.path.basename(keras_file)}")
        return code == 0

    def same_tensors(self, out, weights, what):
        """Every tensor of effnet's file equals the one derived here; nothing missing or extra."""
        with h5py.File(out, "r") as f:
            have = {k: v[()] for k, v in f["model"].items() if not k.endswith("num_batches_tracked")}
        wrong = [k for k in weights.timm if k not in have or have[k].shape != weights.timm[k].shape
                 or not np.array_equal(have[k], weights.timm[k])]
        extra = sorted(set(have) - set(weights.timm))
        self.check(not wrong and not extra, f"{what}: {len(have)} tensors equal the Keras arrays after the layout change"
                   + (f"; differ or missing: {wrong[:5]}" if wrong else "") + (f"; unexpected: {extra[:5]}" if extra else ""))

    def attributes(self, out, mean, std, classifier="present"):
        with h5py.File(out, "r") as f:
            a = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        got_mean, got_std = ([float(x) for x in a[k].split(",")] for k in ("mean", "std"))
        ok = (a["source"] == "keras" and a["padding"] == "same" and abs(a["bn_eps"] - 1e-3) < 1e-9
              and abs(a["bn_momentum"] - 0.01) < 1e-9 and a["classifier"] == classifier
              and np.allclose(got_mean, mean, rtol=1e-6, atol=0) and np.allclose(got_std, std, rtol=1e-6, atol=0))
        self.check(ok, f"attributes: source {a['source']}, padding {a['padding']}, BN eps {a['bn_eps']:.3g} momentum "
                   f"{a['bn_momentum']:.3g}, mean {a['mean']}, std {a['std']} (want {np.float32(std)}), "
                   f"classifier {a['classifier']}")
        return np.array(got_mean), np.array(got_std)

    def logits(self, checker, out, weights, imagenet, rng):
        """effnet's logits, on images normalized by the file's mean and std, against the numpy model."""
        images = rng.uniform(0, 1, (BATCH, RESOLUTION, RESOLUTION, 3))
        with h5py.File(out, "r") as f:
            mean, std = (np.array([float(x) for x in f.attrs[k].split(",")]) for k in ("mean", "std"))
        ref = os.path.join(self.folder, "reference.h5")
        with h5py.File(ref, "w") as f:
            f.attrs["batch"], f.attrs["resolution"] = BATCH, RESOLUTION
            f["images"] = ((images - mean) / std).astype(np.float32)
            f["logits_eval"] = keras_forward(weights, images * 255, imagenet).astype(np.float32)
        r = subprocess.run([checker, out, ref], capture_output=True, text=True)
        print(r.stdout.strip(), r.stderr.strip())
        self.check(r.returncode == 0, f"logits of effnet and the numpy Keras model agree ({'ImageNet' if imagenet else 'random'}"
                   " normalization)")


def main():
    effnet, checker = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        c = Checks(effnet, folder)
        path = lambda name: os.path.join(folder, name)  # noqa: E731
        # Random weights and normalization, in both layouts.
        mean, variance = rng.uniform(0.3, 0.6, 3), rng.uniform(0.04, 0.09, 3)
        w = Weights(rng, mean, variance)
        write_keras2(w, path("k2.h5"))
        write_keras3(w, path("k3.weights.h5"))
        if c.imported(path("k2.h5"), path("k2-effnet.h5")):
            c.same_tensors(path("k2-effnet.h5"), w, "Keras 2 layout")
            c.attributes(path("k2-effnet.h5"), np.float32(mean), np.sqrt(np.float32(variance).astype(np.float64)))
            c.logits(checker, path("k2-effnet.h5"), w, False, rng)
        if c.imported(path("k3.weights.h5"), path("k3-effnet.h5")):
            c.same_tensors(path("k3-effnet.h5"), w, "Keras 3 layout")
            c.attributes(path("k3-effnet.h5"), np.float32(mean), np.sqrt(np.float32(variance).astype(np.float64)))
        # The normalization of Keras's ImageNet files: ImageNet's mean, its stddev as the variance.
        imagenet = Weights(rng, IMAGENET_MEAN, IMAGENET_STD)
        write_keras2(imagenet, path("imagenet.h5"))
        if c.imported(path("imagenet.h5"), path("imagenet-effnet.h5")):
            c.attributes(path("imagenet-effnet.h5"), np.float32(IMAGENET_MEAN), IMAGENET_STD)
            c.logits(checker, path("imagenet-effnet.h5"), imagenet, True, rng)
        # A _notop file: refused, or imported without its classifier.
        write_keras2(w, path("notop.h5"), skip=("predictions",))
        code, output = c.run("import", "--from", "keras", "--model", "b0", path("notop.h5"), path("never.h5"))
        c.check(code == 1 and "has no classifier" in output and "--no-classifier" in output and not os.path.exists(
            path("never.h5")), f"a _notop file without --no-classifier: exit {code}, {output.strip().splitlines()[-2:]}")
        if c.imported(path("notop.h5"), path("notop-effnet.h5"), "--no-classifier"):
            c.attributes(path("notop-effnet.h5"), np.float32(mean), np.sqrt(np.float32(variance).astype(np.float64)),
                         classifier="absent")
            with h5py.File(path("notop-effnet.h5"), "r") as f, h5py.File(path("k2-effnet.h5"), "r") as full:
                rest = [k for k in full["model"] if not k.startswith("classifier.")]
                same = all(np.array_equal(f["model"][k][()], full["model"][k][()]) for k in rest)
                cw = f["model"]["classifier.weight"][()]
                c.check(same and cw.shape == (CLASSES, 1280) and np.abs(cw).max() > 0,
                        f"--no-classifier: the {len(rest)} other tensors as imported from the full file, the classifier "
                        f"initialized (max |w| {np.abs(cw).max():.3g})")
        # Files it cannot read say why.
        write_keras3(w, path("unnamed.weights.h5"), named=False)
        for name, want in (("unnamed.weights.h5", "Keras < 3.6"), ("k2.h5.txt", "cannot open")):
            if name.endswith(".txt"):
                with open(path(name), "w") as f:
                    f.write("not HDF5\n")
            code, output = c.run("import", "--from", "keras", "--model", "b0", path(name), path("never.h5"))
            c.check(code == 1 and want in output, f"{name}: exit {code}, '{want}' in: {output.strip().splitlines()[0]}")
    print("keras import:", "FAILED" if c.failures else "ok")
    sys.exit(1 if c.failures else 0)


if __name__ == "__main__":
    main()
