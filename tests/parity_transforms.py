#!/usr/bin/python3
"""effnet's transforms against torchvision's on PIL images (an implementation nobody here wrote):
evaluation (Resize(size/crop_pct) + CenterCrop + ToTensor + Normalize) and training crops (the
crop and flip effnet drew, replayed with F.resized_crop / hflip) must give the same floats, for
bilinear and bicubic, RGB and gray sources and outputs, up- and downscaling; for each build of the
resampler given (the machine's, the portable one and the AVX2 one; one named *_avx2 is left out where
the CPU lacks AVX2).
usage: parity_transforms.py TRANSFORM_REF...   (exit 77: torchvision or PIL missing)"""
import os, subprocess, sys, tempfile

try:
    import numpy as np
    import torch
    from PIL import Image
    import torchvision.transforms as T
    import torchvision.transforms.functional as F
except ImportError as e:
    print(f"skipped: {e}")
    sys.exit(77)

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
INTERP = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC}
rng = np.random.default_rng(7)
failures = 0
tmp = tempfile.mkdtemp(prefix="effnet-tf-")


def image(w, h, c):
    # Smooth structure plus noise, so that resampling errors show.
    yy, xx = np.mgrid[0:h, 0:w]
    base = 127 + 100 * np.sin(xx / 3.1)[..., None] * np.cos(yy / 4.7)[..., None]
    a = base + rng.normal(0, 30, size=(h, w, c))
    return np.clip(a, 0, 255).astype(np.uint8)


def run(ref, mode, size, channels, interp, crop_pct, w, h, c, index):
    px = image(w, h, c)
    raw, out = os.path.join(tmp, "in.raw"), os.path.join(tmp, "out.f32")
    px.tofile(raw)
    res = subprocess.run([ref, mode, str(size), str(channels), interp, str(crop_pct), "5", str(index), raw, str(w), str(h),
                          str(c), out], capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"transform_ref failed: {res.stderr}")
    x, y, cw, ch, flipped = map(int, res.stdout.split())
    ours = np.fromfile(out, dtype=np.float32).reshape(size, size, channels)
    pil = Image.fromarray(px[..., 0] if c == 1 else px, "L" if c == 1 else "RGB")
    pil = pil.convert("RGB" if channels == 3 else "L")
    if mode == "eval":
        pil = T.CenterCrop(size)(T.Resize(int(size / crop_pct), interpolation=INTERP[interp])(pil))
    else:
        pil = F.resized_crop(pil, y, x, ch, cw, [size, size], interpolation=INTERP[interp])
        if flipped:
            pil = F.hflip(pil)
    want = F.normalize(F.to_tensor(pil), MEAN[:channels], STD[:channels]).permute(1, 2, 0).numpy()
    err = float(np.abs(ours - want).max())
    what = f"{os.path.basename(ref)}: {mode} {w}x{h}x{c} -> {size}x{size}x{channels} {interp} crop_pct {crop_pct} (crop {cw}x{ch}+{x}+{y} flip {flipped})"
    ok = err <= 1e-6
    print(f"{'ok' if ok else 'FAILED'}  {what}: max |diff| {err:.2e}")
    return 0 if ok else 1


cases = [
    ("eval", 224, 3, "bicubic", 0.875, 500, 375, 3),
    ("eval", 224, 3, "bilinear", 0.875, 375, 500, 3),
    ("eval", 64, 3, "bicubic", 1.0, 28, 28, 1),     # a Fashion-MNIST image upscaled, gray replicated
    ("eval", 32, 1, "bilinear", 0.9, 57, 41, 3),    # colour to luma
    ("eval", 300, 3, "bicubic", 0.875, 301, 299, 3),
    ("eval", 224, 3, "bicubic", 1.0, 227, 224, 3),     # a centre offset of round(1.5) = 2
]
with open("/proc/cpuinfo") as f:
    avx2 = " avx2" in f.read()
for ref in sys.argv[1:]:
    if ref.endswith("_avx2") and not avx2:
        print(f"left out (no AVX2 on this CPU): {ref}")
        continue
    rng = np.random.default_rng(7)
    for i, case in enumerate(cases):
        failures += run(ref, *case, index=i)
    for i in range(12):  # training crops: random sizes, positions and flips
        interp = "bicubic" if i % 2 else "bilinear"
        size, channels = 96 if i % 3 else 224, 1 if i % 5 == 2 else 3
        w, h = int(rng.integers(40, 400)), int(rng.integers(40, 400))
        failures += run(ref, "train", size, channels, interp, 0.875, w, h, 3 if i % 4 else 1, index=100 + i)
print(f"{failures} failed")
sys.exit(1 if failures else 0)
