"""Pure-Python install of lanesad_ros (pip install -e .), for machines without ROS.

The ROS build (colcon / ament_cmake) uses CMakeLists.txt; this file serves training
clusters and the pip path, and installs the same console scripts.
"""
from setuptools import find_packages, setup

setup(
    name="lanesad_ros",
    version="0.1.0",
    description="Lane detection with Self Attention Distillation (ENet-SAD, ResNet-SAD) for ROS 2",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["lanesad_ros", "lanesad_ros.*"]),
    package_data={"lanesad_ros.weights": ["*.safetensors", "*.json"]},
    install_requires=[
        "filelock",
        "numpy",
        "opencv-python-headless",
        "pyyaml",
        "safetensors",
        "torch",
        "tqdm",
    ],
    extras_require={
        "eval": ["matplotlib", "rosbags", "rosbags-image", "onnx", "onnxruntime", "tensorboard"],
    },
    entry_points={
        "console_scripts": [
            "lanesad-train = lanesad_ros.training.cli:main",
            "lanesad-eval = lanesad_ros.ros.eval_cli:console_main",
            "lanesad-bag = lanesad_ros.ros.bag.cli:main",
            "lane_detector = lanesad_ros.ros.entry:lane_detector",
            "lane_detector_lifecycle = lanesad_ros.ros.entry:lane_detector_lifecycle",
        ]
    },
)
