"""lanesad_ros: lane detection with Self Attention Distillation networks for ROS 2.

The pure core (model, data, postprocessing, metrics, training, evaluation) imports no ROS;
``lanesad_ros.ros`` holds the thin ROS glue. Importing this package imports neither rclpy
nor torch.
"""
# The generated message module (lanesad_ros.msg) is installed by the CMake build into
# another site-packages folder; extend_path lets both halves live under one name.
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
__version__ = "0.1.0"
