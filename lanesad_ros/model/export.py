"""Export of the inference graph to ONNX: input "image" [N, 3, H, W] -> "seg_logits", "exist_prob".

:func:`export_onnx` writes the graph as PyTorch's exporter makes it; :func:`pool_indices_as_arithmetic`
rewrites ENet's indices-returning pools into plain arithmetic (same outputs, much faster on CPU
runtimes); :func:`export_graphs` writes both atomically under names that say what they hold.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

from lanesad_ros.backends.cache import ONNX_OPSET
from lanesad_ros.fileio import atomic_path


class _InferenceGraph(torch.nn.Module):
    """The plain forward (no attention outputs) as a module with exactly two outputs."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor):
        seg_logits, exist_prob = self.model(image)
        return seg_logits, exist_prob


def export_onnx(model: torch.nn.Module, path: str | os.PathLike, opset: int = ONNX_OPSET) -> Path:
    """Write the model's inference graph at its configured input size to ``path`` atomically.

    The batch dimension is dynamic; height and width are fixed to ``model.input_size``.
    Uses the TorchScript-based exporter (``dynamo=False``), which handles every op these
    networks use (ENet's unpooling is a ScatterElements) in one self-contained file.
    The model is exported in eval mode and left in the mode it came in. Returns the path.
    """
    if opset < 17:
        raise ValueError(f"opset must be >= 17, got {opset}")
    path = Path(path)
    height, width = model.input_size
    device = next(model.parameters()).device
    dummy = torch.zeros(1, 3, height, width, device=device)
    was_training = model.training
    model.eval()
    try:
        with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
            # The shape checks in forward are constant for a fixed-size trace; nothing to report.
            warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message="Constant folding")
            warnings.simplefilter("ignore", category=DeprecationWarning)
            torch.onnx.export(
                _InferenceGraph(model), (dummy,), tmp, dynamo=False, opset_version=opset,
                input_names=["image"], output_names=["seg_logits", "exist_prob"],
                dynamic_axes={"image": {0: "batch"}, "seg_logits": {0: "batch"}, "exist_prob": {0: "batch"}},
            )
    finally:
        model.train(was_training)
    return path


def pool_indices_as_arithmetic(model):
    """Rewrite an ONNX graph so that no MaxPool returns Indices; returns a new ModelProto.

    The PyTorch exporter writes ``max_pool2d(..., return_indices=True)`` (ENet's encoder, whose
    indices the decoder unpools with) as a 2x2/stride-2 MaxPool with Indices, minus a 1x1 MaxPool's
    Indices for each plane's offset. OpenVINO runs an indices-returning MaxPool with a reference
    kernel that took ~80% of ENet-SAD's CPU time at 288x800. The indices are cheap to compute
    instead: the window's top-left flat index plus the offset of the first maximum in row-major
    order (the element PyTorch and ONNX pick on ties). Other MaxPools are left as they are.
    """
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    nodes, consts = [], {}

    def const(values) -> str:
        array = np.asarray(values, dtype=np.int64)
        key = f"lanesad_const_{'s' if array.ndim == 0 else ''}{'_'.join(str(int(v)) for v in array.ravel())}"
        consts.setdefault(key, numpy_helper.from_array(array, key))
        return key

    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        window = (list(attrs.get("kernel_shape", [])), list(attrs.get("strides", [1, 1])))
        if (node.op_type != "MaxPool" or len(node.output) < 2 or not node.output[1]
                or window not in (([2, 2], [2, 2]), ([1, 1], [1, 1])) or any(attrs.get("pads", []))
                or any(d != 1 for d in attrs.get("dilations", [])) or attrs.get("storage_order", 0)
                or attrs.get("ceil_mode", 0)):
            nodes.append(node)
            continue
        x, (y, indices) = node.input[0], node.output[:2]
        prefix = f"{node.name or y}/indices"
        k = window[0][0]

        def op(op_type, inputs, name, prefix=prefix, **kwargs):
            nodes.append(helper.make_node(op_type, inputs, [f"{prefix}/{name}"], name=f"{prefix}/{name}", **kwargs))
            return f"{prefix}/{name}"

        shape = op("Shape", [x], "shape")
        nc_shape = op("Slice", [shape, const([0]), const([2])], "nc_shape")
        h = op("Slice", [shape, const([2]), const([3])], "h")
        w = op("Slice", [shape, const([3]), const([4])], "w")
        h_out, w_out = op("Div", [h, const([k])], "h_out"), op("Div", [w, const([k])], "w_out")
        # Flat index of each window's top-left element: ((n*C + c)*H + k*i)*W + k*j.
        planes = op("Range", [const(0), op("ReduceProd", [nc_shape], "nc", keepdims=0), const(1)], "planes")
        planes = op("Mul", [planes, op("Mul", [h, w], "hw")], "plane_starts")
        planes = op("Reshape", [planes, op("Concat", [nc_shape, const([1, 1])], "nc11", axis=0)], "plane_starts_4d")
        rows = op("Range", [const(0), op("Squeeze", [h_out], "h_out_scalar"), const(1)], "rows")
        rows = op("Mul", [rows, op("Mul", [w, const([k])], "row_step")], "row_starts")
        rows = op("Unsqueeze", [rows, const([1])], "row_starts_2d")
        cols = op("Range", [const(0), op("Squeeze", [w_out], "w_out_scalar"), const(1)], "cols")
        cols = op("Mul", [cols, const([k])], "col_starts")
        base = op("Add", [op("Add", [planes, rows], "plane_row_starts"), cols], "window_starts")
        if k == 1:
            nodes.append(helper.make_node("Identity", [base], [indices], name=f"{prefix}/out"))
            nodes.append(helper.make_node("Identity", [x], [y], name=node.name))
            continue
        nodes.append(helper.make_node("MaxPool", [x], [y], name=node.name, kernel_shape=[2, 2], strides=[2, 2]))
        ends = op("Concat", [op("Mul", [h_out, const([2])], "h_even"), op("Mul", [w_out, const([2])], "w_even")],
                  "even_ends", axis=0)
        hits = [op("Equal", [op("Slice", [x, const(start), ends, const([2, 3]), const([2, 2])], f"window_{name}"), y],
                   f"is_max_{name}")
                for name, start in (("top_left", [0, 0]), ("top_right", [0, 1]), ("bottom_left", [1, 0]))]
        offset = op("Where", [hits[2], w, op("Add", [w, const([1])], "w_plus_1")], "offset_bottom")
        offset = op("Where", [hits[1], const([1]), offset], "offset_top_right")
        offset = op("Where", [hits[0], const([0]), offset], "offset")
        nodes.append(helper.make_node("Add", [base, offset], [indices], name=f"{prefix}/out"))
    del rewritten.graph.node[:]
    rewritten.graph.node.extend(nodes)
    rewritten.graph.initializer.extend(consts.values())
    return rewritten


def export_graphs(model: torch.nn.Module, plain: Path, rewritten: Path | None = None, opset: int = ONNX_OPSET) -> None:
    """Write the exported graph to ``plain`` and, when given, the :func:`pool_indices_as_arithmetic`
    rewrite of it to ``rewritten`` (both atomically). The model must be in fp32."""
    if next(model.parameters()).dtype != torch.float32:
        raise ValueError("ONNX export needs the fp32 model")
    if not plain.is_file():
        export_onnx(model, plain, opset=opset)
    if rewritten is not None and not rewritten.is_file():
        graph = pool_indices_as_arithmetic(onnx.load(str(plain)))
        with atomic_path(rewritten) as tmp:
            onnx.save(graph, str(tmp))
