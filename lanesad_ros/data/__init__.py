"""Labelled road frames: dataset loaders, the synthetic scene generator, augmentation.

Importing this package does not import torch; ``LaneSegDataset`` (torch) is loaded on
first access.
"""
from lanesad_ros.data.frames import DataError, LabelledFrame, assign_slots, read_image
from lanesad_ros.data.synthetic import SceneGenerator
from lanesad_ros.data.tusimple import read_tusimple_labels, write_tusimple_labels

__all__ = ["DataError", "LabelledFrame", "assign_slots", "read_image", "SceneGenerator",
           "read_tusimple_labels", "write_tusimple_labels", "LaneSegDataset", "AugmentConfig"]


def __getattr__(name):
    if name == "LaneSegDataset":
        from lanesad_ros.data.dataset import LaneSegDataset
        return LaneSegDataset
    if name == "AugmentConfig":
        from lanesad_ros.data.augment import AugmentConfig
        return AugmentConfig
    raise AttributeError(name)
