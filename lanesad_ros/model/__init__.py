"""The networks (ENet-SAD, ResNet-18/34-SAD), their losses, weights files and ONNX export.

``build_model(name, num_lanes=4, input_size=(288, 800), **options)`` is the one public way
to make a network; ``list_models()`` names the choices.
"""
from lanesad_ros.model.registry import build_model, list_models

__all__ = ["build_model", "list_models"]
