"""Lane metrics shared by training, bag evaluation and the demo (pure core, no ROS, no torch)."""
from lanesad_ros.metrics.bdd100k import BDDScorer, pixel_scores
from lanesad_ros.metrics.culane import CULaneScorer
from lanesad_ros.metrics.tusimple import TuSimpleScorer, frame_scores

__all__ = ["BDDScorer", "CULaneScorer", "TuSimpleScorer", "frame_scores", "pixel_scores"]
