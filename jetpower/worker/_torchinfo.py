"""Layer descriptions of torch leaf modules in the TensorRT engine inspector's JSON shape.

Keys follow ``IEngineInspector`` output (detailed verbosity) where a torch module has the same
notion: ``Name``, ``LayerType`` (here the module's class), ``Inputs``/``Outputs`` (``Name``,
``Location``, ``Dimensions``, ``Format/Datatype``), ``ParameterType``, and for convolutions
``Kernel``, ``PrePadding``, ``PostPadding``, ``Stride``, ``Dilation``, ``OutMaps``, ``Groups``,
``Weights``/``Bias`` ({``Type``, ``Count``}); for pooling ``PoolingType``, ``WindowSize``,
``PrePadding``, ``PostPadding``, ``Stride``.
"""

from __future__ import annotations

from typing import Any

_DT = {"float32": ("FP32", "Float"), "float16": ("FP16", "Half"), "bfloat16": ("BF16", "BFloat16")}


def _dt_name(t: Any) -> str:
    return str(t.dtype).removeprefix("torch.")


def tensor_entry(name: str, t: Any) -> dict[str, Any]:
    fmt = _DT.get(_dt_name(t), (_dt_name(t).upper(), ""))[0]
    return {
        "Name": name,
        "Location": "Device" if t.device.type == "cuda" else "Host",
        "Dimensions": list(t.shape),
        "Format/Datatype": f"Row major linear {fmt} format",
    }


def _pair(v: Any, n: int = 2) -> list[int]:
    if isinstance(v, tuple | list):
        return [int(x) for x in v]
    return [int(v)] * n


def _weights(p: Any) -> dict[str, Any]:
    if p is None:
        return {"Type": "Float", "Count": 0}
    return {"Type": _DT.get(_dt_name(p), ("", _dt_name(p)))[1], "Count": int(p.numel())}


def _conv(mod: Any) -> dict[str, Any]:
    nd = len(mod.kernel_size)
    d: dict[str, Any] = {"ParameterType": "Convolution", "Kernel": list(mod.kernel_size)}
    if isinstance(mod.padding, str):
        d["PaddingMode"] = "kSAME_UPPER" if mod.padding == "same" else "kEXPLICIT_ROUND_DOWN"
        pads = [0] * nd if mod.padding == "valid" else [(k - 1) // 2 for k in mod.kernel_size]
    else:
        d["PaddingMode"] = "kEXPLICIT_ROUND_DOWN"
        pads = _pair(mod.padding, nd)
    d |= {
        "PrePadding": pads,
        "PostPadding": pads,
        "Stride": _pair(mod.stride, nd),
        "Dilation": _pair(mod.dilation, nd),
        "OutMaps": int(mod.out_channels),
        "Groups": int(mod.groups),
        "Weights": _weights(mod.weight),
        "Bias": _weights(mod.bias),
        "HasBias": int(mod.bias is not None),
    }
    return d


def _pool(mod: Any, kind: str, ins: list[Any], outs: list[Any]) -> dict[str, Any]:
    cls = type(mod).__name__
    if cls.startswith("Adaptive"):
        in_hw = list(ins[0].shape[2:]) if ins else []
        out_hw = list(outs[0].shape[2:]) if outs else []
        stride = [i // max(o, 1) for i, o in zip(in_hw, out_hw, strict=False)]
        window = [i - (o - 1) * s for i, o, s in zip(in_hw, out_hw, stride, strict=False)]
        pads = [0] * len(window)
    else:
        nd = len(ins[0].shape) - 2 if ins else 2
        window = _pair(mod.kernel_size, nd)
        stride = _pair(mod.stride if mod.stride is not None else mod.kernel_size, nd)
        pads = _pair(mod.padding, nd)
    return {
        "ParameterType": "Pooling",
        "PoolingType": kind,
        "WindowSize": window,
        "PaddingMode": "kEXPLICIT_ROUND_DOWN",
        "PrePadding": pads,
        "PostPadding": pads,
        "Stride": stride,
    }


def layer_entry(
    name: str,
    *,
    mod: Any,
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
    in_tensors: list[Any],
    out_tensors: list[Any],
) -> dict[str, Any]:
    """One ``Layers`` entry for a call of leaf module ``mod``."""
    cls = type(mod).__name__
    d: dict[str, Any] = {"Name": name, "LayerType": cls, "Inputs": inputs, "Outputs": outputs}
    if cls.startswith(("Conv", "LazyConv")) and hasattr(mod, "kernel_size"):
        d |= _conv(mod)
    elif "MaxPool" in cls:
        d |= _pool(mod, "MAX", in_tensors, out_tensors)
    elif "AvgPool" in cls:
        d |= _pool(mod, "AVERAGE", in_tensors, out_tensors)
    elif cls == "Linear":
        d |= {
            "ParameterType": "FullyConnected",
            "OutMaps": int(mod.out_features),
            "Weights": _weights(mod.weight),
            "Bias": _weights(mod.bias),
            "HasBias": int(mod.bias is not None),
        }
    elif cls in {"ReLU", "ReLU6", "SiLU", "GELU", "Hardswish", "Hardsigmoid", "Sigmoid", "Tanh"}:
        d |= {"ParameterType": "Activation", "Activation": cls.upper()}
    elif cls.startswith("BatchNorm"):
        d |= {"ParameterType": "Scale", "Weights": _weights(mod.weight)}
    else:
        d["ParameterType"] = cls
    d |= {"Origin": "TORCH_MODULE", "Metadata": ""}
    return d
