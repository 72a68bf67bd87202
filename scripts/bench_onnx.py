#!/usr/bin/python3
"""ONNX Runtime or OpenVINO timed as `effnet bench` times effnet's inference, for
scripts/bench_anchors.sh (run it in the Python that has them: /opt/effnet-onnx/bin/python).

    bench_onnx.py MODEL.onnx --runtime onnxruntime|openvino [--batch N] [--warmup N] [--iters N]
                  [--threads N]

Random images of the model's input shape, one synchronous run per timed step, the given thread
count (0: the runtime's default, one per core). OpenVINO runs in f32, as effnet does, and also at
its own default precision where that differs (bf16 on CPUs with AVX512_BF16 or AMX). Prints one
line per configuration in effnet bench's words, with the process's peak resident memory so far.
"""
import argparse
import resource
import statistics
import time

import numpy as np


def timed(name, run, images, a):
    for _ in range(a.warmup):
        run(images)
    times = []
    for _ in range(a.iters):
        t0 = time.perf_counter()
        run(images)
        times.append(time.perf_counter() - t0)
    times.sort()
    median, p99 = statistics.median(times), times[min(len(times) - 1, int(0.99 * len(times)))]
    threads = f"{a.threads} threads" if a.threads else "default threads"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{name} batch {a.batch} inference, cpu, {threads}: median {median * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms, "
          f"{a.batch / median:.1f} images/s, peak resident {rss:.1f} MiB", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--runtime", choices=["onnxruntime", "openvino"], required=True)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()

    if a.runtime == "onnxruntime":
        import onnxruntime
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = a.threads, 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        session = onnxruntime.InferenceSession(a.model, options, providers=["CPUExecutionProvider"])
        shape = session.get_inputs()[0].shape
        images = np.random.default_rng(0).standard_normal((a.batch, *shape[1:])).astype(np.float32)
        timed(f"onnxruntime {onnxruntime.__version__}", lambda x: session.run(["logits"], {"images": x}), images, a)
        return
    try:
        import openvino
    except ImportError:
        print("openvino: not installed in this Python (scripts/install-deps.sh installs it where it can)")
        return
    core = openvino.Core()
    config = {"NUM_STREAMS": 1, **({"INFERENCE_NUM_THREADS": a.threads} if a.threads else {})}
    default = core.get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
    for precision in ["f32"] + ([default] if default != "f32" else []):
        compiled = core.compile_model(a.model, "CPU", {**config, "INFERENCE_PRECISION_HINT": precision})
        request = compiled.create_infer_request()
        shape = compiled.inputs[0].get_partial_shape()
        images = np.random.default_rng(0).standard_normal((a.batch, *[d.get_length() for d in list(shape)[1:]]))
        suffix = "" if precision == "f32" else " (its default precision here)"
        timed(f"openvino {openvino.__version__.split('-')[0]} {precision}{suffix}", request.infer,
              images.astype(np.float32), a)


if __name__ == "__main__":
    main()
