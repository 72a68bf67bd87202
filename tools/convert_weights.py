#!/usr/bin/python3
"""Converts EfficientNet weights between effnet's HDF5 and PyTorch's or Keras's files.

    convert_weights.py --from torchvision|timm IN.pth OUT.h5 [--model b0]   (for `effnet import`)
    convert_weights.py --from efficientnet_pytorch IN.pth OUT.h5 --repeats 1,2,2,3,3,4,1 [--advprop]
    convert_weights.py --from keras IN.h5 OUT.h5 [--model b0]
    convert_weights.py --to torchvision|timm|efficientnet_pytorch IN.h5 OUT.pth|OUT.h5   (for `effnet export`)

Import writes /model/<timm name> datasets in PyTorch's layout (conv weights OIHW), the names
effnet's models use, and the root attributes source, mean and std (the normalization the weights
expect of images in [0, 1], "r,g,b" as checkpoints write them) and classifier ("present" or
"absent"); with a 1000-class classifier, class_names (ImageNet's, in the standard order, from
torchvision's metadata: no download); for torchvision's presets (--model b0 ... b7), the
evaluation transform of their IMAGENET1K_V1 weights (image_size, crop_pct, interpolation); for
efficientnet_pytorch's, its ImageNet example's (crop_pct 1, bicubic) and the normalization of its
family: ImageNet's, AdvProp's (--advprop: 2x - 1) or, for the Lite models (no squeeze-excite in the
file), TF's Lite builder's (127 and 128 on 0-255). torchvision's, efficientnet_pytorch's (given the
model's repeats per stage) and Keras's names are mapped by the tables below; timm's are kept. The
model's configuration is not written here: `effnet import` loads the result into the model it
builds (checking every tensor) and saves it with the configuration.
Export reads the /model group of an effnet weights file (as `effnet export` wrote it, checked
against its model) and writes it under torchvision's or timm's names: .pth with torch.save, .h5
with one dataset per state_dict name at the root.
Run with Debian's /usr/bin/python3: h5py and numpy (python3-h5py), torch for .pth files
(python3-torch).
"""
import argparse
import os
import re
import sys

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # what torchvision's and timm's ImageNet weights expect
IMAGENET_STD = (0.229, 0.224, 0.225)
ADVPROP_MEAN, ADVPROP_STD = (0.5,) * 3, (0.5,) * 3  # efficientnet_pytorch's AdvProp weights: 2x - 1
LITE_MEAN, LITE_STD = (127 / 255,) * 3, (128 / 255,) * 3  # TF's efficientnet_lite_builder: MEAN_RGB 127, STDDEV_RGB 128

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


def depthwise_separable(expanded):
    """A block table without expansion (timm's DepthwiseSeparableConv) from the same library's table
    with it: the expansion's conv and BN go, and timm numbers the rest from 1 (bn2 -> bn1, conv_pwl
    -> conv_pw, bn3 -> bn2)."""
    renumber = {"bn2": "bn1", "conv_pwl": "conv_pw", "bn3": "bn2"}
    return {k: renumber.get(v, v) for k, v in expanded.items() if v not in ("conv_pw", "bn1")}


# efficientnet_pytorch (lukemelas/EfficientNet-PyTorch) and its Lite port (efficientnet_lite_pytorch):
# blocks numbered through the network (_blocks.N), the stem _conv_stem/_bn0, the head
# _conv_head/_bn1, the classifier _fc; inside a block, with expansion and without.
EP_FIXED = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
EP_EXPANDED = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
               "_se_reduce": "se.conv_reduce", "_se_expand": "se.conv_expand", "_project_conv": "conv_pwl",
               "_bn2": "bn3"}
EP_DEPTHWISE_SEPARABLE = depthwise_separable(EP_EXPANDED)
EP_BLOCK = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)")

# keras.applications.EfficientNetB0-B7 (keras/src/applications/efficientnet.py): layer names.
KERAS_FIXED = {"stem_conv": "conv_stem", "stem_bn": "bn1", "top_conv": "conv_head", "top_bn": "bn2",
               "predictions": "classifier"}
# Inside block<stage 1-7><a, b, ...>_<part>: with expansion, and without (stage 1's blocks have
# no expand_conv; timm's DepthwiseSeparableConv).
KERAS_EXPANDED = {"expand_conv": "conv_pw", "expand_bn": "bn1", "dwconv": "conv_dw", "bn": "bn2",
                  "se_reduce": "se.conv_reduce", "se_expand": "se.conv_expand", "project_conv": "conv_pwl",
                  "project_bn": "bn3"}
KERAS_DEPTHWISE_SEPARABLE = depthwise_separable(KERAS_EXPANDED)
KERAS_BLOCK = re.compile(r"block([1-7])([a-z])_(\w+)")
KERAS_NORMALIZATION = re.compile(r"normalization(_\d+)?")  # auto-named: normalization, normalization_1, ...
# Keras variables -> PyTorch's names. Kernels change layout: conv (KH,KW,I,O) -> (O,I,KH,KW),
# depthwise (KH,KW,C,1) -> (C,1,KH,KW), dense (I,O) -> (O,I).
KERAS_VARIABLES = {"kernel": "weight", "depthwise_kernel": "weight", "bias": "bias", "gamma": "weight",
                   "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}
# Keras 3's .weights.h5 numbers a layer's variables (trainable ones first): their names by layer.
KERAS3_BN_VARIABLES = ("gamma", "beta", "moving_mean", "moving_variance")
KERAS3_NORMALIZATION_VARIABLES = ("mean", "variance", "count")
KERAS3_VARIABLES = ("kernel", "bias")
# Keras's EfficientNet(weights="imagenet") stores ImageNet's standard deviation as the
# Normalization layer's variance and divides by sqrt(stddev) once more in a Rescaling layer that
# has no weights (tensorflow/tensorflow#49930): (x - mean) / sqrt(stddev) / sqrt(stddev).
KERAS_IMAGENET_VARIANCE = IMAGENET_STD


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


def efficientnet_pytorch_to_timm(state, repeats):
    """{efficientnet_pytorch name: tensor} -> {timm name: tensor}, block N of the network going to the
    stage and index that `repeats` (the model's blocks per stage) give it; raises on a name no table
    covers or a block the model does not have."""
    starts = [sum(repeats[:s]) for s in range(len(repeats))]
    # Only a block with expansion has _expand_conv and _bn0 (a dict of buffers alone holds no conv).
    expanded = {int(m.group(1)) for m in map(EP_BLOCK.fullmatch, state) if m and m.group(2) in ("_expand_conv", "_bn0")}
    out = {}
    for name, value in state.items():
        m = EP_BLOCK.fullmatch(name)
        if m:
            n, part, leaf = int(m.group(1)), m.group(2), m.group(3)
            if n >= sum(repeats):
                raise ValueError(f"{name}: the model has {sum(repeats)} blocks (repeats {repeats}): is the file of "
                                 "another model?")
            stage = max(s for s in range(len(repeats)) if starts[s] <= n)
            table = EP_EXPANDED if n in expanded else EP_DEPTHWISE_SEPARABLE
            if part not in table:
                raise ValueError(f"no mapping for {name}")
            out[f"blocks.{stage}.{n - starts[stage]}.{table[part]}.{leaf}"] = value
            continue
        module, _, leaf = name.partition(".")
        if module not in EP_FIXED or "." in leaf:
            raise ValueError(f"no mapping for {name}: is this an efficientnet_pytorch state_dict?")
        out[f"{EP_FIXED[module]}.{leaf}"] = value
    return out


def timm_to_efficientnet_pytorch(state):
    """{timm name: tensor} -> {efficientnet_pytorch name: tensor}: the tables above, inverted, blocks
    numbered in stage order."""
    blocks = sorted({(int(n.split(".")[1]), int(n.split(".")[2])) for n in state if n.startswith("blocks.")})
    number = {block: n for n, block in enumerate(blocks)}
    expanded = {(int(n.split(".")[1]), int(n.split(".")[2])) for n in state if ".conv_pwl." in n}
    fixed = {v: k for k, v in EP_FIXED.items()}
    inverse = {with_expansion: {v: k for k, v in (EP_EXPANDED if with_expansion else EP_DEPTHWISE_SEPARABLE).items()}
               for with_expansion in (True, False)}
    out = {}
    for name, value in state.items():
        parts = name.split(".")
        if parts[0] == "blocks":
            block = (int(parts[1]), int(parts[2]))
            part = inverse[block in expanded][".".join(parts[3:-1])]
            out[f"_blocks.{number[block]}.{part}.{parts[-1]}"] = value
        elif len(parts) == 2 and parts[0] in fixed:
            out[f"{fixed[parts[0]]}.{parts[1]}"] = value
        else:
            raise ValueError(f"no mapping for {name}")
    return out


def text(value):
    """An HDF5 string (h5py gives str or bytes, by how it was written) as str."""
    return value.decode() if isinstance(value, bytes) else str(value)


def keras_layers(f, path):
    """{Keras layer name: {variable name: array}} of a Keras weights file: Keras 2's save_weights
    (and Keras 3's legacy .h5; a whole model's .h5 keeps them under /model_weights): a group per
    layer whose attribute weight_names lists its datasets, "<layer>/<variable>[:0]"; or Keras 3's
    .weights.h5: layers/<class name>/vars/<i>, the layer's name in the attribute "name" of vars
    (written since Keras 3.6)."""
    layers = {}

    def add(layer, variable, value):
        if variable in layers.setdefault(layer, {}):
            raise ValueError(f"{path}: the Keras layer {layer} appears twice")
        layers[layer][variable] = np.asarray(value)

    root = f["model_weights"] if "model_weights" in f else f
    if "layer_names" in root.attrs:
        for group in map(text, root.attrs["layer_names"]):
            for weight in map(text, root[group].attrs["weight_names"]):
                layer, variable = weight.split("/")[-2:]  # "stem_conv/kernel:0", nested models add prefixes
                add(layer, variable.split(":")[0], root[group][weight][()])
        return layers
    found = []
    f.visititems(lambda name, obj: found.append(obj) if name.split("/")[-1] == "vars" else None)
    if not found:
        raise ValueError(f"{path} is neither Keras 2's save_weights .h5 (no layer_names attribute) nor Keras 3's "
                         ".weights.h5 (no layers/*/vars groups)")
    for group in found:
        if len(group) == 0:  # a layer without variables (activation, padding, ...)
            continue
        if "name" not in group.attrs:
            raise ValueError(f"{path}: {group.name} does not record its layer's name (a .weights.h5 of Keras < 3.6); "
                             "load the model in Keras >= 3.6 and save_weights again")
        layer = text(group.attrs["name"])
        names = (KERAS3_BN_VARIABLES if layer.endswith("bn") else KERAS3_NORMALIZATION_VARIABLES
                 if KERAS_NORMALIZATION.fullmatch(layer) else KERAS3_VARIABLES)
        if len(group) > len(names):
            raise ValueError(f"{path}: the Keras layer {layer} has {len(group)} variables, more than {names}")
        for i, variable in enumerate(names[:len(group)]):
            add(layer, variable, group[str(i)][()])
    return layers


def keras_normalization(layers, path):
    """The mean and std of keras's Rescaling(1/255) + Normalization (+ the ImageNet correction)
    as effnet applies them to images in [0, 1]: (x - mean) / std."""
    names = [name for name in layers if KERAS_NORMALIZATION.fullmatch(name)]
    if len(names) != 1:
        raise ValueError(f"{path}: {len(names)} Normalization layers (want 1): is it keras.applications.EfficientNetBx?")
    variables = layers.pop(names[0])
    mean, variance = (variables[k].astype(np.float64).reshape(-1) for k in ("mean", "variance"))
    if mean.size != 3 or variance.size != 3:
        raise ValueError(f"{path}: the Normalization layer has {mean.size} means and {variance.size} variances, want 3 (RGB)")
    std = np.maximum(np.sqrt(variance), 1e-7)  # keras: (x - mean) / maximum(sqrt(variance), epsilon)
    imagenet = np.allclose(variance, KERAS_IMAGENET_VARIANCE, rtol=1e-6, atol=0)
    if imagenet:
        std *= np.sqrt(KERAS_IMAGENET_VARIANCE)
    print(f"convert_weights: keras normalization: mean {triple(mean)}, variance {triple(variance)}"
          + (" (ImageNet's stddev, which EfficientNet(weights='imagenet') divides by once more)" if imagenet else "")
          + f": std {triple(std)}")
    return mean, std


def keras_to_timm(layers, path):
    """{Keras layer: {variable: array}} (Normalization removed) -> {timm name: array}, in
    PyTorch's layout; raises on a layer or variable no table covers."""
    expanded = {m.group(1, 2) for m in map(KERAS_BLOCK.fullmatch, layers) if m and m.group(3) == "expand_conv"}
    out = {}
    for layer, variables in layers.items():
        m = KERAS_BLOCK.fullmatch(layer)
        if m:
            stage, letter, part = m.groups()
            table = KERAS_EXPANDED if (stage, letter) in expanded else KERAS_DEPTHWISE_SEPARABLE
            if part not in table:
                raise ValueError(f"{path}: no mapping for the Keras layer {layer}")
            module = f"blocks.{int(stage) - 1}.{ord(letter) - ord('a')}.{table[part]}"
        elif layer in KERAS_FIXED:
            module = KERAS_FIXED[layer]
        else:
            raise ValueError(f"{path}: no mapping for the Keras layer {layer}: is it keras.applications.EfficientNetBx?")
        for variable, value in variables.items():
            if variable not in KERAS_VARIABLES:
                raise ValueError(f"{path}: no mapping for {layer}/{variable}")
            if variable.endswith("kernel"):
                value = (value.T if value.ndim == 2 else value.transpose(2, 3, 0, 1) if layer.endswith("dwconv")
                         else value.transpose(3, 2, 0, 1))
            out[f"{module}.{KERAS_VARIABLES[variable]}"] = np.ascontiguousarray(value, dtype=np.float32)
    return out


def triple(values):
    """Three numbers as "a,b,c", each the shortest text that reads back as the same float32."""
    return ",".join(str(np.float32(v)) for v in values)


def open_h5(path, mode):
    """h5py.File(path, mode), failing with a message that names the file."""
    import h5py
    try:
        return h5py.File(path, mode)
    except OSError as e:
        raise ValueError(f"cannot open {path} as HDF5: {e}") from None


def what_file(path):
    """What a file that torch.load cannot read is, from its first bytes."""
    with open(path, "rb") as f:
        head = f.read(4096)
    if not head:
        return "it is empty"
    if any(head[at:at + 4] == b"\x89HDF" for at in (0, 512, 1024, 2048)):  # after a user block, as effnet's
        return "it is an HDF5 file (effnet's own weights need no import; Keras's: --from keras)"
    if head.startswith(b"PK\x03\x04"):
        return "it is a zip archive, but not one torch.save wrote (or a damaged one)"
    return "it is neither a zip archive (torch.save) nor a pickle"


def read_torch(path, source, repeats):
    """{timm name: array} of a PyTorch state_dict (.pth)."""
    import torch
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # tensors only, no pickled code
    except OSError:
        raise
    except Exception as e:  # foreign files raise anything from UnpicklingError to RuntimeError
        raise ValueError(f"{path} is not a PyTorch file: {what_file(path)} (torch.load: {type(e).__name__})") from None
    if isinstance(state, dict) and "state_dict" in state and not torch.is_tensor(state["state_dict"]):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"{path}: not a state_dict (a dict of tensors)")
    if source == "torchvision":
        state = torchvision_to_timm(state)
    elif source == "efficientnet_pytorch":
        if not repeats:
            raise ValueError("--from efficientnet_pytorch needs --repeats (the model's blocks per stage)")
        state = efficientnet_pytorch_to_timm(state, repeats)
    return {name: value.detach().cpu().numpy() for name, value in state.items()}


def imagenet_names():
    """ImageNet-1k's class names in the standard (WordNet id) order, from torchvision's metadata,
    or None where torchvision is not installed."""
    try:
        import torchvision
    except ImportError:
        return None
    return torchvision.models.EfficientNet_B0_Weights.IMAGENET1K_V1.meta["categories"]


def torchvision_eval(model):
    """{image_size, crop_pct, interpolation} of torchvision's IMAGENET1K_V1 weights for efficientnet_<model>,
    crop_pct such that floor(image_size / crop_pct) is the resize torchvision uses; None when unknown."""
    import math
    try:
        import torchvision
        weights = getattr(torchvision.models, f"EfficientNet_{model.upper()}_Weights").IMAGENET1K_V1
    except (ImportError, AttributeError):
        return None
    t = weights.transforms()
    crop, resize = t.crop_size[0], t.resize_size[0]
    pct = crop / resize
    while math.floor(crop / pct) < resize:  # crop / (crop / resize) may round below resize
        pct = np.nextafter(pct, 0)
    return {"image_size": crop, "crop_pct": float(pct),
            "interpolation": "bilinear" if "BILINEAR" in str(t.interpolation) else "bicubic"}


def efficientnet_pytorch_normalization(state, advprop):
    """The mean and std of efficientnet_pytorch's weights: the Lite models' (they alone have no
    squeeze-excite), AdvProp's, or ImageNet's."""
    lite = not any(".se." in name for name in state)
    if lite and advprop:
        raise ValueError("--advprop: efficientnet_pytorch's AdvProp weights are B0-B8, and this file is a Lite "
                         "model (no squeeze-excite)")
    return (LITE_MEAN, LITE_STD) if lite else (ADVPROP_MEAN, ADVPROP_STD) if advprop else (IMAGENET_MEAN, IMAGENET_STD)


def import_weights(source, path, out, model, repeats, advprop):
    if advprop and source != "efficientnet_pytorch":
        raise ValueError("--advprop is for --from efficientnet_pytorch")
    evaluation = None
    if source == "keras":
        with open_h5(path, "r") as f:
            layers = keras_layers(f, path)
        mean, std = keras_normalization(layers, path)
        state = keras_to_timm(layers, path)
    elif source == "efficientnet_pytorch":
        state = read_torch(path, source, repeats)
        mean, std = efficientnet_pytorch_normalization(state, advprop)
        evaluation = {"crop_pct": 1.0, "interpolation": "bicubic"}  # examples/imagenet/main.py: Resize, CenterCrop
    else:
        state, mean, std = read_torch(path, source, repeats), IMAGENET_MEAN, IMAGENET_STD
        if source == "torchvision" and model:
            evaluation = torchvision_eval(model)
    classifier = "present" if "classifier.weight" in state else "absent"
    names = imagenet_names() if classifier == "present" and state["classifier.weight"].shape[0] == 1000 else None
    with open_h5(out, "w") as f:
        f.attrs["format"] = "effnet"  # the /model layout of effnet's weights, without a configuration
        f.attrs["format_version"] = 1
        f.attrs["source"] = source
        f.attrs["mean"], f.attrs["std"] = triple(mean), triple(std)
        f.attrs["classifier"] = classifier
        if names:
            f.attrs["class_names"] = "".join(name + "\n" for name in names)
        for key, value in (evaluation or {}).items():
            f.attrs[key] = value
        group = f.create_group("model")
        for name, value in state.items():
            group.create_dataset(name, data=value)
    print(f"convert_weights: {len(state)} tensors from {path} ({source}) to {out}"
          + ("" if classifier == "present" else "; no classifier in the file"))


def export_weights(target, path, out):
    with open_h5(path, "r") as f:
        state = {name: value[()] for name, value in f["model"].items()}
    if target == "torchvision":
        state = timm_to_torchvision(state)
    elif target == "efficientnet_pytorch":
        state = timm_to_efficientnet_pytorch(state)
    partial = f"{out}.partial.{os.getpid()}"
    if out.endswith(".pth"):
        import torch
        torch.save({name: torch.as_tensor(value) for name, value in state.items()}, partial)
    else:
        with open_h5(partial, "w") as f:
            for name, value in state.items():
                f.create_dataset(name, data=value)
    os.replace(partial, out)
    print(f"convert_weights: {len(state)} tensors from {path} to {out} ({target}'s names)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    direction = ap.add_mutually_exclusive_group(required=True)
    direction.add_argument("--from", dest="source", choices=["torchvision", "timm", "efficientnet_pytorch", "keras"])
    direction.add_argument("--to", dest="target", choices=["torchvision", "timm", "efficientnet_pytorch"])
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--model", help="import: the preset asked for (b0 ... b7), for torchvision's evaluation transform")
    ap.add_argument("--repeats", type=lambda text: [int(r) for r in text.split(",")],
                    help="import: the model's blocks per stage (efficientnet_pytorch numbers them through the network)")
    ap.add_argument("--advprop", action="store_true", help="import: efficientnet_pytorch's AdvProp weights (2x - 1)")
    args = ap.parse_args()
    if args.source:
        import_weights(args.source, args.input, args.output, args.model, args.repeats, args.advprop)
    elif args.output.endswith((".pth", ".h5")):
        export_weights(args.target, args.input, args.output)
    else:
        sys.exit(f"convert_weights: {args.output}: the output must end in .pth (torch.save) or .h5")


if __name__ == "__main__":
    try:
        main()
    except (ValueError, KeyError, OSError) as e:
        sys.exit(f"convert_weights: {e}")
