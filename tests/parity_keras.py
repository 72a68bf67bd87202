#!/usr/bin/python3
"""Parity with Keras's own EfficientNet: keras.applications.EfficientNetB0 (72x72) and B2 (67x67,
odd sizes at the stride-2 layers), 10 classes, random weights with BN statistics, biases and the
Normalization layer randomized too, saved by Keras (Keras 3: .weights.h5 and the legacy .h5 of
model.save; Keras 2: save_weights .h5), go through `effnet import --from keras`; Keras's logits on
images in [0, 255] must equal effnet's on the same images normalized by the mean and std the
import recorded (test_parity, within 1e-4 relative), and every format must import to the same
tensors.

    parity_keras.py EFFNET TEST_PARITY

Keras runs in the Python named by EFFNET_KERAS_PYTHON (default: /usr/bin/python3), for example a
virtual environment made by
    python3 -m venv /opt/keras && /opt/keras/bin/pip install keras "jax[cpu]"
with KERAS_BACKEND=jax unless set otherwise. Exits 77 (ctest: skipped) when that Python has no
Keras, or this one no numpy or h5py.
"""
import os
import subprocess
import sys
import tempfile

MODELS = (("b0", 72), ("b2", 67))
CLASSES, BATCH = 10, 2


def reference(folder, name, resolution):
    """Runs in Keras's Python: writes weights-*.h5 and keras.h5 (images in [0, 1], Keras's logits)."""
    import h5py
    import keras
    import numpy as np
    rng = np.random.default_rng(0)
    model = getattr(keras.applications, f"EfficientNet{name.upper()}")(
        weights=None, input_shape=(resolution, resolution, 3), classes=CLASSES, classifier_activation=None)
    for layer in model.layers:
        values = layer.get_weights()
        if isinstance(layer, keras.layers.BatchNormalization):
            c = values[0].shape
            values = [rng.uniform(0.5, 1.5, c), rng.uniform(-0.2, 0.2, c), rng.uniform(-0.2, 0.2, c), rng.uniform(0.5, 1.5, c)]
        elif isinstance(layer, keras.layers.Normalization):
            values = [rng.uniform(0.3, 0.6, 3), rng.uniform(0.04, 0.09, 3), values[2]]
        elif len(values) == 2:  # a convolution or dense layer with a bias (zeros as initialized)
            values[1] = rng.uniform(-0.2, 0.2, values[1].shape)
        layer.set_weights([np.asarray(v, dtype=w.dtype) for v, w in zip(values, layer.get_weights())])
    if keras.__version__.startswith("2."):
        model.save_weights(os.path.join(folder, "weights-keras2.h5"))
    else:
        model.save_weights(os.path.join(folder, "weights-keras3.weights.h5"))
        model.save(os.path.join(folder, "weights-legacy.h5"))  # Keras 2's layout, under /model_weights
    # Keras's function of the file as Keras loads it (set_weights leaves Normalization's cached
    # mean and variance stale until the layer reloads them).
    model.load_weights(os.path.join(folder, sorted(n for n in os.listdir(folder) if n.startswith("weights-"))[0]))
    images = rng.uniform(0, 1, (BATCH, resolution, resolution, 3)).astype(np.float32)
    logits = keras.ops.convert_to_numpy(model(images * 255, training=False))
    with h5py.File(os.path.join(folder, "keras.h5"), "w") as f:
        f["images"], f["logits"] = images, logits
    print(f"keras {keras.__version__} ({keras.backend.backend()}): EfficientNet{name.upper()} at {resolution}x{resolution}")


def compare(effnet, checker, folder, name, resolution):
    """Imports every weights file Keras wrote; returns the number of failed checks."""
    import h5py
    import numpy as np
    with h5py.File(os.path.join(folder, "keras.h5"), "r") as f:
        images, logits = f["images"][()], f["logits"][()]
    failures, tensors = 0, []
    for weights in sorted(n for n in os.listdir(folder) if n.startswith("weights-")):
        out = os.path.join(folder, f"effnet-{weights}")
        r = subprocess.run([effnet, "import", "--from", "keras", "--model", name, "--classes", str(CLASSES),
                            os.path.join(folder, weights), out], capture_output=True, text=True)
        print(r.stdout.strip(), r.stderr.strip())
        if r.returncode:
            print(f"FAILED: effnet import of Keras's {weights}")
            failures += 1
            continue
        with h5py.File(out, "r") as f:
            mean, std = (np.array([float(x) for x in f.attrs[k].split(",")]) for k in ("mean", "std"))
            tensors.append({k: v[()] for k, v in f["model"].items()})
        ref = os.path.join(folder, "reference.h5")
        with h5py.File(ref, "w") as f:
            f.attrs["batch"], f.attrs["resolution"] = BATCH, resolution
            f["images"] = ((images - mean) / std).astype(np.float32)
            f["logits_eval"] = logits
        r = subprocess.run([checker, out, ref], capture_output=True, text=True)
        print(r.stdout.strip(), r.stderr.strip())
        print(f"{'ok' if r.returncode == 0 else 'FAILED'}: {name} {resolution}x{resolution} from Keras's {weights}: "
              "logits as Keras's")
        failures += r.returncode != 0
    same = all(sorted(t) == sorted(tensors[0]) and all(np.array_equal(t[k], tensors[0][k]) for k in t) for t in tensors)
    print(f"{'ok' if same else 'FAILED'}: {name}: the {len(tensors)} formats import to the same tensors")
    return failures + (not same)


def main():
    if sys.argv[1] == "--reference":
        reference(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    try:
        import h5py  # noqa: F401
        import numpy  # noqa: F401
    except ImportError as e:
        print(f"SKIPPED: {e}; install Debian's python3-h5py (scripts/install-deps.sh)")
        sys.exit(77)
    effnet, checker = sys.argv[1], sys.argv[2]
    python = os.environ.get("EFFNET_KERAS_PYTHON", "/usr/bin/python3")
    os.environ.setdefault("KERAS_BACKEND", "jax")  # for Keras's Python, run below
    if subprocess.run([python, "-c", "import keras, h5py, numpy"], capture_output=True).returncode:
        print(f"SKIPPED: {python} cannot import keras (with h5py and numpy); set EFFNET_KERAS_PYTHON to a Python that "
              "can, e.g. python3 -m venv /opt/keras && /opt/keras/bin/pip install keras 'jax[cpu]'")
        sys.exit(77)
    failures = 0
    for name, resolution in MODELS:
        with tempfile.TemporaryDirectory() as folder:
            r = subprocess.run([python, os.path.abspath(__file__), "--reference", folder, name, str(resolution)])
            if r.returncode:
                print(f"FAILED: Keras's {name} reference (exit {r.returncode})")
                failures += 1
                continue
            failures += compare(effnet, checker, folder, name, resolution)
    print("parity with keras:", "FAILED" if failures else "ok")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
