"""rosbag2 bags (sqlite3 or mcap) in and out, with or without a ROS distribution (``lanesad-bag``).

Built on ``rosbags`` only (no rclpy), so recorded drives can be converted and evaluated on any
machine. A bag holds camera images (sensor_msgs/Image or CompressedImage) and, optionally,
ground truth as a ``lanesad_ros/msg/LaneArray`` topic (default ``/lanes_gt``) whose header
stamps equal the images'. Ground truth keeps the label's exact points and empty lanes, and the
bag's custom metadata each frame's h_samples and category, so a bag scores exactly like its
label file; how the frame times were obtained is recorded too (``lanesad_ros.timing``).

Modules: ``typestore`` (names, types, BagError), ``writer`` (BagWriter, message builders),
``ground_truth`` (how ground truth is stored), ``matching`` (frames <-> ground truth when stamps
tie), ``storage`` (sound and damaged storage files), ``reader`` (BagReader, bag_info), one
converter per source (``from_tusimple``, ``from_culane``, ``from_video``, ``synthetic``) and ``cli``.
"""
