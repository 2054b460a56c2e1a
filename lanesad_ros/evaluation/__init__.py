"""Scoring and reporting of lane detection over a drive, ROS-free: the part of ``lanesad-eval`` that
needs no bag reader and no node.

``scoring`` (per-frame results, TuSimple / CULane scores per model, latency statistics, the
metrics dict), ``plots`` (matplotlib figures) and ``report`` (metrics.json, report.md, overlay
video). Reading bags, replaying them over ROS and the CLI live in ``lanesad_ros.ros.evaluate``
and ``lanesad_ros.ros.eval_cli``.
"""
