#!/usr/bin/python3
"""Decoding parity with PIL, the decoder torchvision's ImageNet pipeline uses.

    decode_pil.py TEST_DECODE

PIL writes JPEGs (4:2:0, 4:2:2, 4:4:4, progressive, gray, CMYK) and PNGs (RGB, RGBA, L, LA,
palette with transparency, 1-bit); `TEST_DECODE decode` decodes each with effnet. Full decodes
must equal PIL's convert("RGB") and convert("L") exactly (PIL uses the same libjpeg-turbo), and
DCT-scaled decodes must equal PIL's after Image.draft at 1/2, 1/4 and 1/8.
Exits 77 (ctest: skipped) with a message when PIL or numpy is missing.
"""
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    from PIL import Image
except ImportError as e:
    print(f"SKIPPED: {e}; install Debian's python3-pil and python3-numpy")
    sys.exit(77)


def picture(w, h, seed):
    """Smooth colour gradients with noise, (h, w, 3) uint8."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    chans = [128 + 100 * np.sin(0.03 * x + 2 * c) * np.cos(0.05 * y - c) for c in range(3)]
    img = np.stack(chans, -1) + rng.uniform(-30, 30, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def effnet_decode(tool, path, folder, channels, min_size=(0, 0)):
    out = os.path.join(folder, "out.raw")
    cmd = [tool, "decode", path, out, str(channels), str(min_size[0]), str(min_size[1])]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {res.stderr.strip()}")
    w, h, c = map(int, res.stdout.split()[:3])
    px = np.fromfile(out, np.uint8).reshape(h, w, c)
    return px if c == 3 else px[..., 0]


def compare(what, got, want):
    if got.shape != want.shape:
        return f"{what}: shape {got.shape}, PIL {want.shape}"
    diff = np.abs(got.astype(int) - want.astype(int))
    if diff.max() != 0:
        return f"{what}: {np.count_nonzero(diff)} values differ from PIL's (max {diff.max()})"
    return None


def main():
    tool = sys.argv[1]
    failures, checks = [], 0
    with tempfile.TemporaryDirectory() as folder:
        rgb = Image.fromarray(picture(500, 375, 1))
        odd = Image.fromarray(picture(203, 157, 2))
        files = {
            "q90 4:2:0.jpg": (rgb, dict(quality=90)),
            "q90 4:2:2.jpg": (rgb, dict(quality=90, subsampling=1)),
            "q90 4:4:4 odd.jpg": (odd, dict(quality=90, subsampling=0)),
            "progressive odd.jpg": (odd, dict(quality=85, progressive=True)),
            "gray.jpg": (rgb.convert("L"), dict(quality=90)),
            # All four inks vary (convert("CMYK") would leave K at 0); PIL writes an Adobe marker.
            "cmyk.jpg": (Image.fromarray(np.dstack([picture(500, 375, 1), picture(500, 375, 4)[..., 0]]), "CMYK"),
                         dict(quality=90)),
            "rgb.png": (odd, {}),
            "rgba.png": (Image.fromarray(np.dstack([picture(203, 157, 2), picture(203, 157, 3)[..., 0]]), "RGBA"), {}),
            "l.png": (odd.convert("L"), {}),
            "la.png": (odd.convert("LA"), {}),
            "palette.png": (odd.quantize(37), dict(transparency=5)),
            "1bit.png": (odd.convert("1"), {}),
        }
        for name, (img, options) in files.items():
            path = os.path.join(folder, name)
            img.save(path, **options)
            for channels, mode in ((3, "RGB"), (1, "L")):
                with Image.open(path) as im:
                    want = np.asarray(im.convert(mode))
                checks += 1
                failures.append(compare(f"{name} as {mode}", effnet_decode(tool, path, folder, channels), want))
            if not name.endswith(".jpg"):
                continue
            for s in (2, 4, 8):
                with Image.open(path) as im:
                    w, h = im.size
                    im.draft("RGB", (w // s, h // s))  # DCT scaling by 1/s
                    want = np.asarray(im.convert("RGB"))
                got = effnet_decode(tool, path, folder, 3, (-(-w // s), -(-h // s)))
                checks += 1
                failures.append(compare(f"{name} at 1/{s}", got, want))
    failures = [f for f in failures if f]
    for f in failures:
        print("FAILED:", f)
    print(f"{checks} comparisons with PIL, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
