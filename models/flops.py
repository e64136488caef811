"""Floating-point operations of an exported network, counted from its ONNX graph.

For benchmarks: achieved GFLOP/s = FLOPs per sample × samples per second, against the machine's
measured matmul peak. Counted per sample (batch 1) after ONNX shape inference; a multiply-add is
2 FLOPs. Counted: Conv, ConvTranspose, Gemm, MatMul (the work of these conv nets; normalisations,
activations and pooling are a few percent and left out, so the figure is a slight undercount).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _shape(value_info) -> list[int] | None:
    dims = value_info.type.tensor_type.shape.dim
    shape = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    return None if any(d is None for d in shape) else shape


def onnx_flops(onnx_path: str | Path, input_shape: list[int]) -> int:
    """FLOPs of one forward pass on an input of ``input_shape`` (batch first, usually 1)."""
    import onnx  # noqa: PLC0415 - heavy; loaded only when FLOPs are counted
    from onnx import shape_inference  # noqa: PLC0415 - heavy; loaded only when FLOPs are counted

    model = onnx.load(str(onnx_path))
    graph_input = model.graph.input[0]
    dims = graph_input.type.tensor_type.shape.dim
    if len(dims) != len(input_shape):
        raise ValueError(f"{onnx_path}: input has rank {len(dims)}, got shape {input_shape}")
    for dim, size in zip(dims, input_shape):
        dim.ClearField("dim_param")
        dim.dim_value = int(size)
    model = shape_inference.infer_shapes(model)
    shapes: dict[str, list[int]] = {}
    for info in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        shape = _shape(info)
        if shape is not None:
            shapes[info.name] = shape
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)

    total = 0
    for node in model.graph.node:
        out = shapes.get(node.output[0])
        if node.op_type in ("Conv", "ConvTranspose"):
            weight = shapes.get(node.input[1])
            if out is None or weight is None:
                raise ValueError(f"{onnx_path}: no shape for {node.op_type} {node.name}")
            # weight [C_out, C_in / groups, *kernel]: each output element costs C_in/groups × kernel MACs
            macs_per_output = int(np.prod(weight[1:]))
            total += 2 * macs_per_output * int(np.prod(out))
        elif node.op_type in ("Gemm", "MatMul"):
            a = shapes.get(node.input[0])
            if out is None or a is None:
                raise ValueError(f"{onnx_path}: no shape for {node.op_type} {node.name}")
            trans_a = any(attr.name == "transA" and attr.i for attr in node.attribute)
            k = a[-2] if trans_a else a[-1]
            total += 2 * int(k) * int(np.prod(out))
    return total
