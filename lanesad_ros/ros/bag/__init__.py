"""rosbag2 bags (sqlite3 or mcap) in and out, with or without a ROS distribution (``lanesad-bag``).

Built on ``rosbags`` only (no rclpy), so recorded drives can be converted and evaluated on any
machine. A bag holds camera images (sensor_msgs/Image or CompressedImage) and, optionally,
ground truth as a ``lanesad_ros/msg/LaneArray`` topic (default ``/lanes_gt``) whose header
stamps equal the images'. TuSimple-style ground truth also records its h_samples in the bag's
custom metadata so scores are exact.

Modules: ``typestore`` (names, types, BagError), ``writer`` (BagWriter, message builders),
``storage`` (sound and damaged storage files), ``reader`` (BagReader, bag_info), one converter per
source (``from_tusimple``, ``from_culane``, ``from_video``, ``synthetic``) and ``cli``.
"""
