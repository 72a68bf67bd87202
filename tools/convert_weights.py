#!/usr/bin/python3
"""Converts EfficientNet B-series weights from a PyTorch state_dict into effnet's HDF5 layout.

    convert_weights.py --from torchvision|timm IN.pth OUT.h5

Writes /model/<timm name> datasets in PyTorch's layout (conv weights OIHW), the names effnet's
models use. torchvision's names are mapped by the tables below; timm's are kept. The model's
configuration is not written here: `effnet import` loads the result into the model it builds
(checking every tensor) and saves it with the configuration. Run with Debian's /usr/bin/python3
(python3-torch, python3-h5py).
"""
import argparse
import re
import sys

# torchvision efficientnet_b*: features.0 is the stem, features.1-7 the stages, features.8 the
# head; classifier.1 the linear layer.
FIXED = [
    (r"features\.0\.0\.weight", "conv_stem.weight"),
    (r"features\.0\.1\.(\w+)", r"bn1.\1"),
    (r"features\.8\.0\.weight", "conv_head.weight"),
    (r"features\.8\.1\.(\w+)", r"bn2.\1"),
    (r"classifier\.1\.(\w+)", r"classifier.\1"),
]
# Inside an MBConv block (features.S.I.block.<part>): with expansion (four parts) and without
# (three parts, timm's DepthwiseSeparableConv).
EXPANDED = {"0.0": "conv_pw", "0.1": "bn1", "1.0": "conv_dw", "1.1": "bn2",
            "2.fc1": "se.conv_reduce", "2.fc2": "se.conv_expand", "3.0": "conv_pwl", "3.1": "bn3"}
DEPTHWISE_SEPARABLE = {"0.0": "conv_dw", "0.1": "bn1", "1.fc1": "se.conv_reduce", "1.fc2": "se.conv_expand",
                       "2.0": "conv_pw", "2.1": "bn2"}
BLOCK = re.compile(r"features\.([1-7])\.(\d+)\.block\.(\d+\.(?:\d+|fc1|fc2))\.(\w+)")


def torchvision_to_timm(state):
    """{torchvision name: tensor} -> {timm name: tensor}; raises on a name no table covers."""
    expanded = {m.group(1, 2) for m in map(BLOCK.fullmatch, state) if m and m.group(3).startswith("3.")}
    out = {}
    for name, value in state.items():
        m = BLOCK.fullmatch(name)
        if m:
            stage, index, part, leaf = m.groups()
            table = EXPANDED if (stage, index) in expanded else DEPTHWISE_SEPARABLE
            if part not in table:
                raise ValueError(f"no mapping for {name}")
            out[f"blocks.{int(stage) - 1}.{index}.{table[part]}.{leaf}"] = value
            continue
        for pattern, repl in FIXED:
            if re.fullmatch(pattern, name):
                out[re.sub(pattern, repl, name)] = value
                break
        else:
            raise ValueError(f"no mapping for {name}: is this a torchvision efficientnet_b* state_dict?")
    return out


def timm_to_torchvision(state):
    """{timm name: tensor} -> {torchvision name: tensor}: the tables above, inverted."""
    expanded = {name.split(".")[1:3][0] + "." + name.split(".")[2] for name in state if ".conv_pwl." in name}
    inverse_fixed = {"conv_stem.weight": "features.0.0.weight", "conv_head.weight": "features.8.0.weight"}
    out = {}
    for name, value in state.items():
        parts = name.split(".")
        if parts[0] == "blocks":
            stage, index = parts[1], parts[2]
            table = EXPANDED if f"{stage}.{index}" in expanded else DEPTHWISE_SEPARABLE
            module, leaf = ".".join(parts[3:-1]), parts[-1]
            part = {v: k for k, v in table.items()}[module]
            out[f"features.{int(stage) + 1}.{index}.block.{part}.{leaf}"] = value
        elif name in inverse_fixed:
            out[inverse_fixed[name]] = value
        elif parts[0] in ("bn1", "bn2"):
            out[f"features.{0 if parts[0] == 'bn1' else 8}.1.{parts[1]}"] = value
        elif parts[0] == "classifier":
            out[f"classifier.1.{parts[1]}"] = value
        else:
            raise ValueError(f"no mapping for {name}")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="source", choices=["torchvision", "timm"], required=True)
    ap.add_argument("input")
    ap.add_argument("output")
    args = ap.parse_args()
    import h5py
    import torch
    state = torch.load(args.input, map_location="cpu", weights_only=True)  # tensors only, no pickled code
    if isinstance(state, dict) and "state_dict" in state and not torch.is_tensor(state["state_dict"]):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        sys.exit(f"{args.input}: not a state_dict (a dict of tensors)")
    if args.source == "torchvision":
        state = torchvision_to_timm(state)
    with h5py.File(args.output, "w") as f:
        f.attrs["format"] = "effnet"  # the /model layout of effnet's weights, without a configuration
        f.attrs["format_version"] = 1
        group = f.create_group("model")
        for name, value in state.items():
            group.create_dataset(name, data=value.detach().cpu().numpy())
    print(f"convert_weights: {len(state)} tensors from {args.input} ({args.source}) to {args.output}")


if __name__ == "__main__":
    try:
        main()
    except ValueError as e:
        sys.exit(f"convert_weights: {e}")
