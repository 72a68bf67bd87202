#!/usr/bin/python3
"""`effnet export --to onnx` checked by the runtimes users deploy on: EfficientNets that effnet built
and trained one step (with an EMA), their batch-norm statistics, affine parameters and biases then
randomized (so that folding has something to fold), are exported; onnx.checker accepts every file;
ONNX Runtime and OpenVINO run each file on a batch of 1 and a batch of 5; their logits must equal
effnet's own inference on the same images (test_parity: within 1e-4 of the logits' largest
magnitude). Models: B0 at 40x40; B2 at 67x67 with TF "same" padding (odd sizes at every stride-2
layer); a custom phi (0.5, at 41x41); B0 with 7 classes; a Lite scaled by phi 0.5 (relu6 as Clip, no
squeeze-excite, TF padding, at 41x41). Exports: the default (NCHW, batch norm
folded, the checkpoint's EMA), --layout nhwc, --keep-bn, --include-normalization 0-255 and 0-1,
--no-ema; the metadata (class names, configuration, normalization); and the refusals.

    export_onnx.py EFFNET TEST_PARITY

The runtimes run through tests/onnx_runtimes.py in the Python named by EFFNET_ONNX_PYTHON (default
/opt/effnet-onnx/bin/python, which scripts/install-deps.sh makes). Exits 77 (ctest: skipped) when
that Python has no onnx and onnxruntime, or this one no numpy or h5py; without openvino there,
OpenVINO alone is skipped.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

try:
    import h5py
    import numpy as np
except ImportError as e:
    print(f"SKIPPED: {e}; install Debian's python3-h5py (scripts/install-deps.sh)")
    sys.exit(77)

RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "onnx_runtimes.py")
BATCH = 5  # the batch of 5; the batch of 1 is its first image
# name, resolution, model flags of `effnet train`
MODELS = (("b0", 40, ["--model", "b0"]),
          ("b2-same", 67, ["--model", "b2", "--padding", "same", "--bn-eps", "1e-3"]),
          ("phi0.5", 41, ["--phi", "0.5"]),
          ("b0-7-classes", 33, ["--model", "b0", "--select-classes", "0-6"]),
          ("lite-phi0.5", 41, ["--phi", "0.5", "--variant", "lite"]))
# model, export flags (beside --to onnx)
EXPORTS = (("b0", []), ("b0", ["--layout", "nhwc"]), ("b0", ["--keep-bn"]),
           ("b0", ["--include-normalization", "0-255"]), ("b0", ["--no-ema"]),
           ("b2-same", []), ("b2-same", ["--keep-bn", "--layout", "nhwc", "--include-normalization", "0-1"]),
           ("phi0.5", []), ("b0-7-classes", []), ("lite-phi0.5", []))


class Checks:
    def __init__(self, effnet, checker, folder):
        self.effnet, self.checker, self.folder, self.failures = effnet, checker, folder, 0
        self.errors = {}  # (export, runtime) -> test_parity's relative error

    def check(self, ok, what):
        print(f"{'ok' if ok else 'FAILED'}: {what}")
        self.failures += not ok
        return ok

    def path(self, name):
        return os.path.join(self.folder, name)

    def effnet_run(self, *args, want=0):
        r = subprocess.run([self.effnet, *args], capture_output=True, text=True)
        if r.returncode != want:
            self.check(False, f"effnet {' '.join(args)} exited {r.returncode} (want {want}): {r.stdout}{r.stderr}")
        return r.stdout + r.stderr

    def refused(self, code, text, *args):
        out = self.effnet_run(*args, want=code)
        shown = " ".join(os.path.basename(a) if "/" in a else a for a in args)
        self.check(text in out, f"effnet {shown}: exit {code}, '{text}'")


def drop_checksums(path):
    """The file as effnet wrote it before checksums: an edited file (below) no longer matches the
    whole file's CRC-32C (its first 512 bytes), nor its datasets' and root attributes' own."""
    with h5py.File(path, "r+") as f:
        f.attrs.pop("attributes_crc32c", None)
        datasets = []  # visititems stops at the first callback returning anything but None
        f.visititems(lambda name, d: datasets.append(d) if isinstance(d, h5py.Dataset) else None)
        for d in datasets:
            d.attrs.pop("crc32c", None)
    with open(path, "r+b") as f:
        f.write(bytes(512))  # the user block: HDF5 leaves it alone


def randomize(checkpoint):
    """Random BN statistics, BN affine parameters and biases in the checkpoint's /model and /ema
    (different draws): folding then changes every convolution, and the EMA differs from /model."""
    rng = np.random.default_rng(7)
    with h5py.File(checkpoint, "r+") as f:
        for group in ("model", "ema"):
            for name, d in f[group].items():
                if name.endswith("running_mean") or name.endswith(".bias"):
                    d[...] = rng.uniform(-0.2, 0.2, d.shape)
                elif name.endswith("running_var") or re.search(r"(^|\.)bn\d\.weight$", name):
                    d[...] = rng.uniform(0.5, 1.5, d.shape)
    drop_checksums(checkpoint)


def as_model(checkpoint, group, out):
    """A copy of the checkpoint whose /model holds its `group`: what test_parity loads."""
    shutil.copy(checkpoint, out)
    with h5py.File(out, "r+") as f:
        for name, d in f[group].items():
            f["model"][name][...] = d[()]
    drop_checksums(out)


def train(c, data, name, resolution, flags):
    """A checkpoint of `name` after one step with an EMA, randomized; its class names."""
    out = c.path(name)
    c.effnet_run("train", "--data", data, "--image-size", str(resolution), "--epochs", "1", "--batch", "4",
                 "--ema", "0.5", "--stop-after", "1", "--threads", "2", "--out", out, *flags)
    checkpoint = os.path.join(out, "ckpt-000000000001.h5")
    randomize(checkpoint)
    with open(os.path.join(out, "classes.txt")) as f:
        return checkpoint, f.read().split()


def check_export(c, python, model, checkpoint, classes, resolution, flags, tiny=False):
    label = " ".join([model, *flags]) or model
    out = c.path(re.sub(r"[^\w.-]", "_", label) + ".onnx")
    print(c.effnet_run("export", "--to", "onnx", *flags, checkpoint, out).strip())
    if not os.path.exists(out):
        return None
    with h5py.File(checkpoint, "r") as f:
        mean, std = (np.array([float(x) for x in f.attrs[k].split(",")], dtype=np.float32) for k in ("mean", "std"))
    pixels = np.random.default_rng(1).uniform(0, 1, (BATCH, resolution, resolution, 3)).astype(np.float32)
    normalized = (pixels - mean) / std
    scale = {"0-255": 255, "0-1": 1}.get(flags[flags.index("--include-normalization") + 1]) \
        if "--include-normalization" in flags else None
    fed = pixels * scale if scale else normalized
    np.save(c.path("images.npy"), fed if "nhwc" in flags else fed.transpose(0, 3, 1, 2))
    r = subprocess.run([python, RUNNER, out, c.path("images.npy"), out],
                       capture_output=True, text=True)
    if not c.check(r.returncode == 0, f"{label}: onnx.checker accepts the file and the runtimes run it"):
        print(r.stdout, r.stderr)
        return None
    info = json.loads(r.stdout.strip().splitlines()[-1])
    meta = info["metadata"]
    config = json.loads(meta["config"]) if not tiny else {}
    c.check(json.loads(meta["class_names"]) == classes and (tiny or config["num_classes"] == len(classes)) and
            (tiny or config["resolution"] == resolution) and meta["mean"] and meta["std"] and info["opset"] >= 17 and
            info["input"][0] == "N", f"{label}: opset {info['opset']}, batch dimension '{info['input'][0]}', metadata "
            f"(model {meta.get('model', '-')}, {len(classes)} class names, mean {meta['mean']}, std {meta['std']})")
    bn = info["ops"].count("BatchNormalization")
    c.check((bn > 0) == ("--keep-bn" in flags), f"{label}: {bn} BatchNormalization nodes")
    weights = checkpoint
    with h5py.File(checkpoint, "r") as f:
        has_ema = "ema" in f
    if "--no-ema" not in flags and has_ema:
        weights = c.path("ema-as-model.h5")
        as_model(checkpoint, "ema", weights)
    for runtime in info["runtimes"]:
        logits = np.load(f"{out}.{runtime}.npy")
        ref = c.path("reference.h5")
        with h5py.File(ref, "w") as f:
            f.attrs["batch"], f.attrs["resolution"] = 1 + BATCH, resolution
            f["images"] = np.concatenate([normalized[:1], normalized])
            f["logits_eval"] = logits
        p = subprocess.run([c.checker, weights, ref], capture_output=True, text=True)
        m = re.search(r"inference logits relative error (\S+)", p.stdout)
        c.errors[(label, runtime)] = float(m.group(1)) if m else float("nan")
        failure = "" if p.returncode == 0 else "\n" + p.stdout + p.stderr
        c.check(p.returncode == 0, f"{label}: {runtime}'s logits (batch 1 and 5, scale {np.abs(logits).max():.3g}) "
                f"equal effnet's: relative error {m.group(1) if m else '?'}{failure}")
    return info


def refusals(c, checkpoint):
    """What cannot be exported, or is asked wrongly, is refused with a message and writes nothing."""
    out = c.path("refused.onnx")
    c.refused(2, "needs an input .h5 and an output .onnx", "export", "--to", "onnx", checkpoint, c.path("x.pth"))
    c.refused(2, "--layout must be nchw or nhwc", "export", "--to", "onnx", "--layout", "nhcw", checkpoint, out)
    c.refused(2, "--include-normalization must be 0-1 or 0-255, not '255'", "export", "--to", "onnx",
              "--include-normalization", "255", checkpoint, out)
    c.refused(1, "cannot open /nonexistent.h5", "export", "--to", "onnx", "/nonexistent.h5", out)
    c.refused(2, "--layout, --keep-bn, --include-normalization and --image-size are for --to onnx", "export", "--to",
              "timm", "--keep-bn", checkpoint, c.path("x.pth"))
    # A weights file as older imports wrote it: no normalization recorded.
    bare = c.path("no-normalization.h5")
    shutil.copy(checkpoint, bare)
    with h5py.File(bare, "r+") as f:
        for k in ("mean", "std", "arch", "classes", "channels", "class_names", "image_size", "image_channels", "crop_pct",
                  "interpolation", "step"):
            del f.attrs[k]
    drop_checksums(bare)
    c.refused(1, "records no normalization (mean, std) to include", "export", "--to", "onnx", "--include-normalization",
              "0-1", bare, out)
    c.refused(1, "cannot create", "export", "--to", "onnx", checkpoint, "/nonexistent/folder/x.onnx")
    c.check(not os.path.exists(out) and not [n for n in os.listdir(c.folder) if ".tmp." in n],
            "refused exports wrote nothing, not even a temporary file")


def main():
    effnet, checker = sys.argv[1], sys.argv[2]
    python = os.environ.get("EFFNET_ONNX_PYTHON", "/opt/effnet-onnx/bin/python")
    with tempfile.TemporaryDirectory() as folder:
        c = Checks(effnet, checker, folder)
        data = c.path("jpegs")
        c.effnet_run("bench-data", "--cache", data, "--images", "16", "--batch", "4")
        trained = {name: (*train(c, data, name, res, flags), res) for name, res, flags in MODELS}
        c.effnet_run("train", "--data", data, "--image-size", "32", "--epochs", "1", "--batch", "4",
                     "--stop-after", "1", "--out", c.path("tiny"))
        refusals(c, trained["b0"][0])
        if subprocess.run([python, "-c", "import onnx, onnxruntime"], capture_output=True).returncode:
            print(f"SKIPPED: {python} cannot import onnx and onnxruntime; run scripts/install-deps.sh (it makes "
                  "/opt/effnet-onnx) or set EFFNET_ONNX_PYTHON to a Python that can")
            sys.exit(1 if c.failures else 77)
        for model, flags in EXPORTS:
            check_export(c, python, model, *trained[model], flags)
        with open(c.path("tiny/classes.txt")) as f:  # the tiny net exports too (its checkpoint has no EMA)
            check_export(c, python, "tiny", c.path("tiny/ckpt-000000000001.h5"), f.read().split(), 32, [], tiny=True)
        # The default takes the EMA: its logits differ from --no-ema's (which test_parity checked on /model).
        ema, raw = (np.load(c.path(f"{n}.onnx.onnxruntime.npy")) for n in ("b0", "b0_--no-ema"))
        c.check(np.abs(ema - raw).max() > 1e-3 * np.abs(raw).max(), "the default export is the EMA, not /model")
        runtimes = sorted({r for _, r in c.errors})
        print(f"\nrelative errors against effnet's logits:\n{'export':<60}" + "".join(f"{r:>13}" for r in runtimes))
        for label in dict.fromkeys(label for label, _ in c.errors):
            print(f"{label:<60}" + "".join(f"{c.errors.get((label, r), float('nan')):>13.3g}" for r in runtimes))
    print("export onnx:", "FAILED" if c.failures else "ok")
    sys.exit(1 if c.failures else 0)


if __name__ == "__main__":
    main()
