"""Shipped default weights (a safetensors file + its metadata JSON) live in this folder."""
from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent
DEFAULT_WEIGHTS_NAME = "enet_sad_default.safetensors"


def default_weights_path() -> Path:
    """Path of the weights the node and tools load when none are named."""
    return WEIGHTS_DIR / DEFAULT_WEIGHTS_NAME
