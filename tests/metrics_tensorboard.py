#!/usr/bin/python3
"""The metrics log read by readers nobody here wrote.

    metrics_tensorboard.py TEST_METRICS

`TEST_METRICS write DIR` writes three known records; their event file is read with TensorBoard's
EventAccumulator when the tensorboard package is importable, else with TensorFlow's
summary_iterator when tensorflow is, and always with the small TFRecord/protobuf parser below
(its own bitwise CRC-32C); metrics.jsonl is read with the json module. Tags, steps and values
must be the ones written.
"""
import glob
import json
import math
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time

ODD = 'odd "tag" \\ \u00e9'
LONG = "long/" + "x" * 145
# (step, epoch, {tag: value}) as test_metrics.c's write_known() logs them.
RECORDS = [
    (0, 0, {"train/loss": 2.5, "train/lr": 0.1}),
    (100, 1, {"train/loss": 1.25, "train/lr": 1 / 3, "val/top1": 0.375}),
    (1 << 33, 2, {"train/loss": math.nan, "train/lr": math.inf, "val/top1": -0.0, ODD: 0.5, LONG: 1e-42}),
]


def f32_bits(v):
    return struct.pack("<f", v)


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def masked(crc):
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def varint(buf, i):
    v, shift = 0, 0
    while True:
        b = buf[i]
        i += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return v, i


def fields(buf):
    """(field number, wire type, value) of each field of a protobuf message."""
    i = 0
    while i < len(buf):
        key, i = varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            v, i = varint(buf, i)
        elif wire == 1:
            v, i = buf[i:i + 8], i + 8
        elif wire == 2:
            n, i = varint(buf, i)
            v, i = buf[i:i + n], i + n
        elif wire == 5:
            v, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {wire}")
        yield field, wire, v


def own_reader(path):
    """[(wall_time, step, file_version, [(tag, float32 bits)])] from the TFRecord frames."""
    data = open(path, "rb").read()
    events, i = [], 0
    while i < len(data):
        header = data[i:i + 8]
        (n,) = struct.unpack("<Q", header)
        (len_crc,) = struct.unpack("<I", data[i + 8:i + 12])
        assert len_crc == masked(crc32c(header)), f"record {len(events)}: length CRC"
        body = data[i + 12:i + 12 + n]
        (body_crc,) = struct.unpack("<I", data[i + 12 + n:i + 16 + n])
        assert len(body) == n and body_crc == masked(crc32c(body)), f"record {len(events)}: data CRC"
        i += 16 + n
        wall, step, version, values = None, 0, None, []
        for field, wire, v in fields(body):
            if (field, wire) == (1, 1):
                (wall,) = struct.unpack("<d", v)
            elif (field, wire) == (2, 0):
                step = v - (1 << 64) if v >= 1 << 63 else v
            elif (field, wire) == (3, 2):
                version = v.decode()
            elif (field, wire) == (5, 2):
                for f, w, value in fields(v):
                    assert (f, w) == (1, 2), f"Summary field {f}"
                    d = {(vf, vw): vv for vf, vw, vv in fields(value)}
                    values.append((d[(1, 2)].decode(), bytes(d[(2, 5)])))
            else:
                raise AssertionError(f"unexpected Event field {field} (wire {wire})")
        events.append((wall, step, version, values))
    return events


def check_scalars(reader, got):
    """got: {tag: [(step, float32 bits)]} from one reader."""
    want = {}
    for step, _, values in RECORDS:
        for tag, v in values.items():
            want.setdefault(tag, []).append((step, f32_bits(v)))
    if got != want:
        sys.exit(f"FAILED: {reader} read {got}, want {want}")
    print(f"{reader}: {sum(len(v) for v in got.values())} scalars of {len(got)} tags at steps "
          f"{sorted({s for v in got.values() for s, _ in v})}: as written")


def main():
    test_metrics = sys.argv[1]
    with tempfile.TemporaryDirectory(prefix="effnet-metrics-") as folder:
        t0 = time.time()
        subprocess.run([test_metrics, "write", folder], check=True)
        t1 = time.time()
        files = glob.glob(os.path.join(folder, "events.out.tfevents.*"))
        assert len(files) == 1, files
        name = os.path.basename(files[0])
        secs, host = name[len("events.out.tfevents."):].split(".", 1)
        assert int(t0) <= int(secs) <= t1 and host == socket.gethostname(), name

        events = own_reader(files[0])
        assert events[0][2] == "brain.Event:2" and not events[0][3], events[0]
        assert [e[1] for e in events[1:]] == [r[0] for r in RECORDS], [e[1] for e in events]
        assert all(int(t0) <= e[0] <= t1 for e in events), [e[0] for e in events]
        got = {}
        for _, step, _, values in events[1:]:
            for tag, bits in values:
                got.setdefault(tag, []).append((step, bits))
        check_scalars("own TFRecord/protobuf parser (Python CRC-32C)", got)

        readers = ["own parser"]
        try:
            from tensorboard.backend.event_processing import event_accumulator
        except ImportError:
            event_accumulator = None
        if event_accumulator:
            acc = event_accumulator.EventAccumulator(files[0], size_guidance={event_accumulator.SCALARS: 0})
            acc.Reload()
            got = {tag: [(s.step, f32_bits(s.value)) for s in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
            check_scalars("tensorboard EventAccumulator", got)
            readers.insert(0, "tensorboard EventAccumulator")
        else:
            try:
                import tensorflow as tf
            except ImportError:
                tf = None
            if tf:
                got = {}
                for e in tf.compat.v1.train.summary_iterator(files[0]):
                    for v in e.summary.value:
                        got.setdefault(v.tag, []).append((e.step, f32_bits(v.simple_value)))
                check_scalars("tensorflow summary_iterator", got)
                readers.insert(0, "tensorflow summary_iterator")

        lines = [json.loads(line) for line in open(os.path.join(folder, "metrics.jsonl"), encoding="utf-8")]
        assert len(lines) == len(RECORDS), lines
        for line, (step, epoch, values), event in zip(lines, RECORDS, events[1:]):
            assert list(line) == ["step", "epoch", "wall_time", *values], list(line)
            assert line["step"] == step and line["epoch"] == epoch, line
            assert abs(line["wall_time"] - event[0]) < 1e-5, (line["wall_time"], event[0])
            for tag, v in values.items():
                want = f32_bits(v) if math.isfinite(v) else None
                got_v = line[tag] if line[tag] is None else f32_bits(line[tag])
                assert got_v == want or (v == 0 and line[tag] == 0), (tag, line[tag], v)  # JSON's -0 reads as 0
        print(f"metrics.jsonl: {len(lines)} lines read by json, NaN and infinities as null: as written")
        print(f"event file read by: {' and '.join(readers)}")


if __name__ == "__main__":
    main()
