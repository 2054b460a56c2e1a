"""ONNX export: ONNX Runtime reproduces the PyTorch inference outputs, with a dynamic batch."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lanesad_ros.model import build_model
from lanesad_ros.model.export import export_graphs, export_onnx

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


def _session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name,size", [("enet_sad", (288, 800)), ("enet_sad", (64, 128)), ("resnet18_sad", (64, 128))])
def test_onnx_runtime_matches_pytorch(tmp_path, name, size):
    torch.manual_seed(0)
    model = build_model(name, input_size=size)
    # Non-trivial BatchNorm statistics, so the comparison covers them too.
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    model.eval()
    path = export_onnx(model, tmp_path / f"{name}.onnx")
    session = _session(path)
    for batch in (1, 3):
        x = torch.randn(batch, 3, *size)
        with torch.no_grad():
            seg, exist = model(x)
        seg_ort, exist_ort = session.run(["seg_logits", "exist_prob"], {"image": x.numpy()})
        assert seg_ort.shape == tuple(seg.shape) and exist_ort.shape == tuple(exist.shape)
        np.testing.assert_allclose(seg_ort, seg.numpy(), atol=1e-4, rtol=0)
        np.testing.assert_allclose(exist_ort, exist.numpy(), atol=1e-4, rtol=0)


def test_graph_interface_and_opset(tmp_path):
    model = build_model("enet_sad", input_size=(64, 128)).train()
    path = export_onnx(model, tmp_path / "sub" / "enet.onnx", opset=18)
    assert model.training  # mode restored
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    assert [i.name for i in graph.graph.input] == ["image"]
    assert [o.name for o in graph.graph.output] == ["seg_logits", "exist_prob"]
    dims = graph.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 64, 128]
    assert max(op.version for op in graph.opset_import if op.domain in ("", "ai.onnx")) == 18
    assert [p.name for p in path.parent.iterdir()] == ["enet.onnx"]  # no temp files left


def test_old_opset_rejected(tmp_path):
    with pytest.raises(ValueError, match="opset"):
        export_onnx(build_model("enet_sad", input_size=(64, 128)), tmp_path / "x.onnx", opset=13)


def test_export_is_synced_before_its_rename(tmp_path, synced_renames):
    """Issue 21 item 5: ONNX writes renamed without syncing first (an empty graph after a power cut)."""
    model = build_model("enet_sad", num_lanes=4, input_size=(64, 160))
    export_graphs(model, tmp_path / "plain.onnx", tmp_path / "rewritten.onnx")
    assert synced_renames(tmp_path / "plain.onnx") and synced_renames(tmp_path / "rewritten.onnx")
