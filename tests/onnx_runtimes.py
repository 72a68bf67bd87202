#!/usr/bin/env python3
"""The runtimes' half of tests/export_onnx.py, run in the Python that has them (EFFNET_ONNX_PYTHON,
/opt/effnet-onnx/bin/python): onnx.checker (full check) on an exported model, then ONNX Runtime and,
where it is installed, OpenVINO on a batch of 1 (the first image) and the whole batch from the file.

    onnx_runtimes.py MODEL.onnx IMAGES.npy OUT_PREFIX

Writes OUT_PREFIX.<runtime>.npy (the logits of the 1 + N rows) and prints one JSON line: the
runtimes that ran, the metadata, the operators, the opset and the input's dimensions.
"""
import json
import sys

import numpy as np
import onnx
import onnxruntime


def main():
    path, images_path, out_prefix = sys.argv[1:4]
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    images = np.load(images_path)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    runs = {"onnxruntime": lambda x: session.run(["logits"], {"images": x})[0]}
    try:
        import openvino
        # f32 as effnet computes: OpenVINO's CPU default is bf16 where the CPU has it (AVX512_BF16, AMX).
        compiled = openvino.Core().compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        runs["openvino"] = lambda x: compiled(x)[compiled.output(0)]
    except ImportError:
        pass
    for name, run in runs.items():
        np.save(f"{out_prefix}.{name}.npy", np.concatenate([run(images[:1]), run(images)]))
    print(json.dumps({"runtimes": sorted(runs), "metadata": {p.key: p.value for p in model.metadata_props},
                      "ops": [n.op_type for n in model.graph.node], "opset": model.opset_import[0].version,
                      "input": [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]}))


if __name__ == "__main__":
    main()
