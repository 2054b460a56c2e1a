"""ROS 2 glue: message conversion (convert), the lane detector node (node), bags (bag/, replay),
and lanesad-eval's bag-reading, replaying half (evaluate, eval_cli).

Importing this package imports nothing from ROS; each module pulls in what it needs, so
bag tools built on ``rosbags`` run on machines without rclpy.
"""
