#!/usr/bin/python3
"""Exits 0 when two effnet checkpoints hold the same tensors bit for bit (every dataset of every
group) and the same root attributes (but the run's argument list and the digest that covers it),
else prints the differences.
usage: compare_checkpoints.py A.h5 B.h5   (exit 77 when h5py or numpy is missing)"""
import sys

try:
    import h5py
    import numpy as np
except ImportError as e:
    print(f"skipped: {e}")
    sys.exit(77)

a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
names = []
a.visit(lambda n: names.append(n) if isinstance(a[n], h5py.Dataset) else None)
other = []
b.visit(lambda n: other.append(n) if isinstance(b[n], h5py.Dataset) else None)
bad = sorted(set(names) ^ set(other))
bad += [n for n in names if n in b and not np.array_equal(a[n][()], b[n][()])]
bad += ["attribute " + k for k in set(a.attrs) | set(b.attrs)
        if k not in ("train_args", "attributes_crc32c")  # the digest covers the arguments
        and (k not in a.attrs or k not in b.attrs or not np.array_equal(a.attrs[k], b.attrs[k]))]
print(f"{len(names)} datasets compared, {len(bad)} differences" + (": " + ", ".join(bad[:8]) if bad else ""))
sys.exit(1 if bad else 0)
