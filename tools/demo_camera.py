"""Regenerate the demo camera model: demo/udacity/camera_info.yaml and node parameters demo/udacity/lane_detector.yaml.

    python tools/demo_camera.py [--data ../shared/data] [--frames 10]

Intrinsics and distortion: OpenCV chessboard calibration (9x6 inner corners) of the 20 views
in ``<data>/udacity/camera_cal`` (the camera of the bundled clip; three views lack a full
board; files of 1281x721 are cropped to 1280x720 from the origin, which leaves K unchanged).
Mounting: pitch and yaw from the vanishing point of the ego lane's two boundaries in the
first ``--frames`` frames of the bundled clip (straight road near the car), height from the
ego lane's width taken as 3.66 m (12 ft US Interstate lane), roll taken as zero
(``lanesad_ros.camera.mounting_from_straight_lanes``). The boundaries are the shipped
detector's LEFT / RIGHT lanes between rows 440 and 650 (below: the bonnet).

Needs the chessboards (not bundled); the outputs are committed, so the demo itself does not.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import cv2
import numpy as np
import yaml

from lanesad_ros.camera import calibrate_chessboard, mounting_from_straight_lanes
from lanesad_ros.detector import Detector
from lanesad_ros.fileio import write_text_atomic
from lanesad_ros.lanes import LaneSlot

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "demo" / "udacity"
NEAR_ROWS = (440.0, 650.0)  # straight road near the car, above the bonnet (1280x720 frames)


def ego_pairs(video: Path, frames: int, detector: Detector) -> list[tuple[np.ndarray, np.ndarray]]:
    cap = cv2.VideoCapture(str(video))
    pairs = []
    try:
        for _ in range(frames):
            ok, bgr = cap.read()
            if not ok:
                break
            lanes = {lane.slot: lane.image_points for lane in detector.detect(bgr).lanes}
            if LaneSlot.LEFT in lanes and LaneSlot.RIGHT in lanes:
                near = [p[(p[:, 1] >= NEAR_ROWS[0]) & (p[:, 1] <= NEAR_ROWS[1])]
                        for p in (lanes[LaneSlot.LEFT], lanes[LaneSlot.RIGHT])]
                pairs.append((near[0], near[1]))
    finally:
        cap.release()
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="demo_camera", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"), help="shared data folder")
    parser.add_argument("--frames", type=int, default=10, help="first frames of the clip used for the mounting")
    args = parser.parse_args(argv)
    files = sorted((Path(args.data) / "udacity" / "camera_cal").glob("calibration*.jpg"))
    if len(files) < 3:
        parser.error(f"no chessboard views in {Path(args.data) / 'udacity' / 'camera_cal'}")
    images = [cv2.imread(str(f))[:720, :1280] for f in files]
    camera, rms = calibrate_chessboard(images, pattern=(9, 6), detect_scale=0.5)
    info = camera.to_yaml_dict(camera_name="udacity_project_video")
    header = (f"# Udacity 'project_video' camera, 1280x720: cv2.calibrateCamera on {len(files)} chessboard views\n"
              f"# (9x6 inner corners, udacity/camera_cal), RMS reprojection error {rms:.3f} px.\n"
              "# Written by tools/demo_camera.py; format: ROS camera_calibration / camera_info_manager.\n")
    write_text_atomic(DEMO / "camera_info.yaml", header + yaml.safe_dump(info, sort_keys=False))

    detector = Detector.from_weights(device="cpu")
    pairs = ego_pairs(DEMO / "project_video_clip.mp4", args.frames, detector)
    mounting, details = mounting_from_straight_lanes(camera, pairs, lane_width_m=3.66)
    pitch_deg, yaw_deg = np.asarray(details["pitch_deg"]), np.asarray(details["yaw_deg"])
    heights = np.asarray(details["height_m"])
    summary = (f"# Mounting estimated by tools/demo_camera.py from the first {args.frames} frames of the clip\n"
               f"# ({details['frames']} with both ego boundaries): vanishing point of the ego boundaries at\n"
               f"# ({details['vanishing_point_px'][0]:.1f}, {details['vanishing_point_px'][1]:.1f}) undistorted px ->\n"
               f"# pitch {math.degrees(mounting.pitch_rad):.2f} deg "
               f"(frames {pitch_deg.min():.2f}..{pitch_deg.max():.2f}), "
               f"yaw {math.degrees(mounting.yaw_rad):.2f} deg ({yaw_deg.min():.2f}..{yaw_deg.max():.2f}),\n"
               f"# height {mounting.height_m:.2f} m ({heights.min():.2f}..{heights.max():.2f}) from a 3.66 m "
               "(12 ft US Interstate) ego lane; roll assumed 0.\n")
    # The intrinsics as node parameters too (camera_info.yaml is for a camera driver's
    # camera_info_manager, whose CameraInfo the node reads with camera_info_topic).
    # Keyed /**/lane_detector like config/lane_detector.yaml: it applies in any namespace.
    params = {"/**/lane_detector": {"ros__parameters": {
        "fx": float(camera.K[0, 0]), "fy": float(camera.K[1, 1]),
        "cx": float(camera.K[0, 2]), "cy": float(camera.K[1, 2]),
        "dist": [float(d) for d in camera.dist],
        "image_width": camera.width, "image_height": camera.height,
        "camera_height": round(mounting.height_m, 3),
        "pitch": round(mounting.pitch_rad, 5),
        "yaw": round(mounting.yaw_rad, 5),
        "roll": 0.0,
        "ground_frame_id": "base_link",
    }}}
    intro = ("# lane_detector parameters for the bundled Udacity clip (make demo):\n"
             "#   lane_detector --ros-args --params-file demo/udacity/lane_detector.yaml\n"
             "# Intrinsics: those of camera_info.yaml (chessboard calibration).\n")
    write_text_atomic(DEMO / "lane_detector.yaml", intro + summary + yaml.safe_dump(params, sort_keys=False))
    print(f"camera: fx {camera.K[0, 0]:.1f} fy {camera.K[1, 1]:.1f} cx {camera.K[0, 2]:.1f} cy {camera.K[1, 2]:.1f} "
          f"k1 {camera.dist[0]:.3f}, RMS {rms:.3f} px")
    print(summary, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
