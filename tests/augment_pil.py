#!/usr/bin/python3
"""PIL parity of the augmentation ops (data/augment.c), an implementation nobody here wrote.

    augment_pil.py TEST_AUGMENT

PIL 9.4 computes every op but Cutout (its centre comes from Philox; test_augment checks it by
hand) on random and structured RGB and gray images at many arguments, negative ones and the
extremes of the official level mappings included; `TEST_AUGMENT --pil` reads the cases on stdin
and requires every pixel to be equal. SolarizeAdd is no PIL op: its reference is the official
definition as a PIL point table.
Exits 77 (ctest: skipped) with a message when PIL or numpy is missing.
"""
import subprocess
import sys

try:
    import numpy as np
    from PIL import Image, ImageEnhance, ImageOps
except ImportError as e:
    print(f"SKIPPED: {e}; install Debian's python3-pil and python3-numpy")
    sys.exit(77)


def images():
    """(name, PIL image, ops) covering full-range noise, narrow smooth ranges, few values, a
    constant channel, images too small for the 3x3 smoothing filter (ops None: all of them), and
    one so tall that PIL's affine transform leaves its 16.16 fixed point for double."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64]
    smooth = np.stack([60 + xx + yy // 2, 90 + (xx * yy) % 50, 200 - yy], -1) + rng.integers(0, 6, (64, 64, 3))
    few = rng.choice(np.array([10, 20, 200], np.uint8), (4, 5, 3))
    flat = rng.integers(0, 256, (5, 6, 3))
    flat[..., 1] = 77
    tall = rng.integers(0, 256, (33000, 3, 3), np.uint8)
    return [
        ("noise 37x23", Image.fromarray(rng.integers(0, 256, (23, 37, 3), np.uint8), "RGB"), None),
        ("smooth 64x64", Image.fromarray(smooth.astype(np.uint8), "RGB"), None),
        ("gray 37x23", Image.fromarray(rng.integers(30, 180, (23, 37), np.uint8), "L"), None),
        ("few values 5x4", Image.fromarray(few, "RGB"), None),
        ("flat green 6x5", Image.fromarray(flat.astype(np.uint8), "RGB"), None),
        ("thin 2x7", Image.fromarray(rng.integers(0, 256, (7, 2, 3), np.uint8), "RGB"), None),
        ("tall 3x33000", Image.fromarray(tall, "RGB"), {"Rotate": [0.5, -3], "ShearY": [0.3, -0.27, 0.9999999], "ShearX": [0.3]}),
        ("tall gray 2x66001", Image.fromarray(rng.integers(0, 256, (66001, 2), np.uint8), "L"), {"Rotate": [90, -90, 270, -270, 180]}),
    ]


def fill(im):
    return (128,) * len(im.getbands()) if len(im.getbands()) > 1 else 128


def affine(data):
    return lambda im, a: im.transform(im.size, Image.AFFINE, data(a), Image.NEAREST, fillcolor=fill(im))


def solarize_add(im, a):
    lut = [min(255, max(0, i + int(a))) if i < 128 else i for i in range(256)]
    return im.point(lut * len(im.getbands()))


FACTORS = [0.0, 0.1, 0.28, 0.5, 1.0, 1.36, 1.72, 1.9, 5.5]
GEOMETRY = [0, 3, -3, 9, 24, -24, 27, 30, -30, 90, -90, 180, 270, 45.5, -0.001, 360, 1e6]
GEOMETRY += list(np.random.default_rng(1).uniform(-30, 30, 20))
SHEARS = [0.0, 0.03, 0.09, -0.09, 0.27, -0.27, 0.3, -0.3, 0.9, -0.9, 0.9999999, -0.9999999]
SHIFTS = [0, 1, -1, 3.5, -2.25, 0.4999999, -1.4999999, 10, 30, -30, 100, -100, 225, 250, 300]
OPS = {
    "AutoContrast": ([0], lambda im, a: ImageOps.autocontrast(im)),
    "Equalize": ([0], lambda im, a: ImageOps.equalize(im)),
    "Invert": ([0], lambda im, a: ImageOps.invert(im)),
    "Posterize": ([0, 1, 2, 3, 4, 6, 7, 8], lambda im, a: ImageOps.posterize(im, int(a))),
    "Solarize": ([0, 1, 25, 76, 128, 204, 255, 256, 768], lambda im, a: ImageOps.solarize(im, a)),
    "SolarizeAdd": ([0, 11, 33, 110, 252, 330, -20], solarize_add),
    "Color": (FACTORS, lambda im, a: ImageEnhance.Color(im).enhance(a)),
    "Contrast": (FACTORS, lambda im, a: ImageEnhance.Contrast(im).enhance(a)),
    "Brightness": (FACTORS, lambda im, a: ImageEnhance.Brightness(im).enhance(a)),
    "Sharpness": (FACTORS, lambda im, a: ImageEnhance.Sharpness(im).enhance(a)),
    "Rotate": (GEOMETRY, lambda im, a: im.rotate(a, Image.NEAREST, fillcolor=fill(im))),
    "ShearX": (SHEARS + [2000.0], affine(lambda s: (1, s, 0, 0, 1, 0))),
    "ShearY": (SHEARS + [-2000.0], affine(lambda s: (1, 0, 0, s, 1, 0))),
    "TranslateX": (SHIFTS + [40000], affine(lambda t: (1, 0, t, 0, 1, 0))),
    "TranslateY": (SHIFTS, affine(lambda t: (1, 0, 0, 0, 1, t))),
}


def main():
    cases = bytearray()
    count = 0
    for label, im, only in images():
        for name, (args, op) in OPS.items():
            for a in args if only is None else only.get(name, []):
                a = float(np.float32(a))  # the C side takes a float: give PIL the same value
                out = op(im, a)
                assert out.mode == im.mode and out.size == im.size
                cases += f"{name} {a.hex()} {im.width} {im.height} {len(im.getbands())} {label}\n".encode()
                cases += im.tobytes() + out.tobytes()
                count += 1
    print(f"{count} cases from PIL {Image.__version__}", flush=True)
    return subprocess.run([sys.argv[1], "--pil"], input=bytes(cases)).returncode


if __name__ == "__main__":
    sys.exit(main())
