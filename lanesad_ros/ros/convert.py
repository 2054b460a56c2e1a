"""ROS messages <-> numpy/core types; the one place that knows image encodings.

Works on rclpy messages and on ``rosbags`` dataclasses alike: inputs are read by field
name only (duck typing), so bag tools and the node share the conversion.

Images go through one numpy + OpenCV path on every platform instead of cv_bridge: it is
a zero-copy view for bgr8, honours ``step`` (padded rows), reads rosbags messages that
cv_bridge rejects, and the ROS 2 cv_bridge is not installable from PyPI, so this is the
path the tests exercise everywhere.

Message types (sensor_msgs, geometry_msgs, lanesad_ros.msg, ...) are imported inside the
functions that build messages, so ``image_msg_to_bgr`` and ``lane_array_to_detections``
also work where only ``rosbags`` is installed.
"""
from __future__ import annotations

import functools
import re
from typing import Any

import cv2
import numpy as np

from lanesad_ros.lanes import Lane, LaneDetections, LaneSlot
from lanesad_ros.overlay import SLOT_COLORS


class ImageConversionError(ValueError):
    """An image message that cannot be turned into a BGR array; the message says why.

    ``kind`` buckets the problem for diagnostics: unsupported_encoding, zero_size,
    bad_layout (data shorter than height*step, step too small, odd width), corrupt_image,
    too_large, bad_input (the array handed to an encoder).
    """

    def __init__(self, message: str, kind: str = "bad_input") -> None:
        super().__init__(message)
        self.kind = kind


# encoding -> (bytes per pixel, OpenCV code to BGR, OpenCV code from BGR); None = no-op.
# ROS "yuv422" is UYVY byte order, "yuv422_yuy2" is YUYV (sensor_msgs/image_encodings.h).
_ENCODINGS: dict[str, tuple[int, int | None, int | None]] = {
    "bgr8": (3, None, None),
    "8uc3": (3, None, None),
    "rgb8": (3, cv2.COLOR_RGB2BGR, cv2.COLOR_BGR2RGB),
    "mono8": (1, cv2.COLOR_GRAY2BGR, cv2.COLOR_BGR2GRAY),
    "8uc1": (1, cv2.COLOR_GRAY2BGR, cv2.COLOR_BGR2GRAY),
    "bgra8": (4, cv2.COLOR_BGRA2BGR, cv2.COLOR_BGR2BGRA),
    "8uc4": (4, cv2.COLOR_BGRA2BGR, cv2.COLOR_BGR2BGRA),
    "rgba8": (4, cv2.COLOR_RGBA2BGR, cv2.COLOR_BGR2RGBA),
    "yuv422": (2, cv2.COLOR_YUV2BGR_UYVY, cv2.COLOR_BGR2YUV_UYVY),
    "uyvy": (2, cv2.COLOR_YUV2BGR_UYVY, cv2.COLOR_BGR2YUV_UYVY),
    "yuv422_yuy2": (2, cv2.COLOR_YUV2BGR_YUY2, cv2.COLOR_BGR2YUV_YUY2),
    "yuyv": (2, cv2.COLOR_YUV2BGR_YUY2, cv2.COLOR_BGR2YUV_YUY2),
}
# Input-only encodings, converted as cv_bridge's cvtColor(msg, "bgr8") does (vision_opencv
# cv_bridge/src/cv_bridge.cpp, getConversionCodes / toCvCopyImpl): the colour conversion first,
# at the source depth, then 16-bit values scaled to 8 bits by 255/65535 (rounded, saturated).
# cv_bridge's Bayer mapping: ROS names the 2x2 pattern from the top-left pixel, OpenCV from the
# second row's second and third pixels, so bayer_rggb -> COLOR_BayerBG2BGR and so on.
# encoding -> (channels, bytes per channel, OpenCV code to BGR or None)
_INPUT_ONLY: dict[str, tuple[int, int, int | None]] = {
    "bayer_rggb8": (1, 1, cv2.COLOR_BayerBG2BGR),
    "bayer_bggr8": (1, 1, cv2.COLOR_BayerRG2BGR),
    "bayer_gbrg8": (1, 1, cv2.COLOR_BayerGR2BGR),
    "bayer_grbg8": (1, 1, cv2.COLOR_BayerGB2BGR),
    "bayer_rggb16": (1, 2, cv2.COLOR_BayerBG2BGR),
    "bayer_bggr16": (1, 2, cv2.COLOR_BayerRG2BGR),
    "bayer_gbrg16": (1, 2, cv2.COLOR_BayerGR2BGR),
    "bayer_grbg16": (1, 2, cv2.COLOR_BayerGB2BGR),
    "mono16": (1, 2, cv2.COLOR_GRAY2BGR),
    "bgr16": (3, 2, None),
    "rgb16": (3, 2, cv2.COLOR_RGB2BGR),
    "bgra16": (4, 2, cv2.COLOR_BGRA2BGR),
    "rgba16": (4, 2, cv2.COLOR_RGBA2BGR),
}
SUPPORTED_ENCODINGS = tuple(_ENCODINGS) + tuple(_INPUT_ONLY)
# Generic OpenCV-type encodings other than 8UC1/3/4 are depth maps, disparities or float
# images (sensor_msgs/image_encodings.h: 16UC1 and 32FC1 are the depth encodings): refused by name.
_DEPTH_OR_FLOAT = re.compile(r"^(8s|16u|16s|32s|32f|64f)c[1-4]$")

_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"



def _slot_rgba(slot: LaneSlot) -> tuple[float, float, float, float]:
    """RViz colour of a slot: the debug overlay's colour, so both views agree."""
    b, g, r = SLOT_COLORS.get(slot, SLOT_COLORS[LaneSlot.UNKNOWN])
    return r / 255.0, g / 255.0, b / 255.0, 1.0


def _as_bytes_array(data: Any) -> np.ndarray:
    """Message ``data`` (bytes, array.array('B'), numpy uint8, list) as a flat uint8 array, no copy when possible."""
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError):
        return np.asarray(data, dtype=np.uint8).reshape(-1)


def is_compressed(msg: Any) -> bool:
    """True for a CompressedImage (has ``format``), False for a raw Image."""
    return hasattr(msg, "format") and not hasattr(msg, "encoding")


def image_msg_to_bgr(msg: Any, max_pixels: int | None = None) -> np.ndarray:
    """sensor_msgs Image or CompressedImage -> HxWx3 uint8 BGR array.

    The result may share memory with ``msg.data`` (bgr8 without row padding): copy it
    before drawing on it. ``max_pixels`` rejects larger frames before any pixel work.
    Raises ImageConversionError naming the problem.
    """
    if is_compressed(msg):
        return _compressed_to_bgr(msg, max_pixels)
    return _raw_to_bgr(msg, max_pixels)


def _check_pixels(width: int, height: int, max_pixels: int | None) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise ImageConversionError(
            f"image {width}x{height} has {width * height} pixels, above the limit of {max_pixels}",
            "too_large")


def _raw_layout(encoding: str) -> tuple[int, int, int | None]:
    """(channels, bytes per channel, OpenCV code to BGR) of a raw encoding, or a named refusal."""
    key = encoding.strip().lower()
    if key in _ENCODINGS:
        bpp, to_bgr, _ = _ENCODINGS[key]
        return (2, 1, to_bgr) if bpp == 2 else (bpp, 1, to_bgr)  # YUV 4:2:2: two bytes per pixel, one plane
    if key in _INPUT_ONLY:
        return _INPUT_ONLY[key]
    if _DEPTH_OR_FLOAT.match(key):
        raise ImageConversionError(
            f"unsupported encoding {encoding!r}: a depth or float image (16UC1/32FC1 are depth maps), "
            f"not a camera frame", "unsupported_encoding")
    raise ImageConversionError(
        f"unsupported encoding {encoding!r} (supported: {', '.join(SUPPORTED_ENCODINGS)})",
        "unsupported_encoding")


def _scale_16_to_8(pixels: np.ndarray) -> np.ndarray:
    """uint16 -> uint8 as cv_bridge does (convertTo with scale 255/65535: rounded, saturated)."""
    return cv2.convertScaleAbs(pixels, alpha=255.0 / 65535.0)


def _raw_to_bgr(msg: Any, max_pixels: int | None) -> np.ndarray:
    encoding = str(msg.encoding)
    channels, depth, to_bgr = _raw_layout(encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0:
        raise ImageConversionError(f"zero-size image ({width}x{height}, encoding {encoding!r})", "zero_size")
    _check_pixels(width, height, max_pixels)
    bpp = channels * depth
    row_bytes = width * bpp
    if step < row_bytes:
        raise ImageConversionError(
            f"step {step} is smaller than width*bytes per pixel ({width}*{bpp} = {row_bytes}) for {encoding!r}",
            "bad_layout")
    if to_bgr in (cv2.COLOR_YUV2BGR_UYVY, cv2.COLOR_YUV2BGR_YUY2) and width % 2:
        raise ImageConversionError(f"{encoding!r} needs an even width, got {width}", "bad_layout")
    data = _as_bytes_array(msg.data)
    need = height * step
    if data.size < need:
        raise ImageConversionError(
            f"data shorter than height*step (got {data.size} bytes, need {need} = {height}*{step})",
            "bad_layout")
    rows = data[:need].reshape(height, step)[:, :row_bytes]
    if depth == 2:
        dtype = ">u2" if int(getattr(msg, "is_bigendian", 0)) else "<u2"
        rows = np.ascontiguousarray(rows).view(dtype).astype(np.uint16, copy=False)
    pixels = rows if channels == 1 else rows.reshape(height, width, channels)
    bgr = np.ascontiguousarray(pixels) if to_bgr is None else cv2.cvtColor(np.ascontiguousarray(pixels), to_bgr)
    return _scale_16_to_8(bgr) if depth == 2 else bgr


def _compression(fmt: str) -> str | None:
    """'jpeg' / 'png' from an image_transport format ('jpeg', 'rgb8; jpeg compressed bgr8'); None if empty."""
    text = fmt.strip().lower()
    if not text:
        return None
    if "compresseddepth" in text:
        raise ImageConversionError(f"unsupported compressed format {fmt!r} (depth images are not camera frames)",
                                   "unsupported_encoding")
    if "jpeg" in text or "jpg" in text:
        return "jpeg"
    if "png" in text:
        return "png"
    raise ImageConversionError(f"unsupported compressed format {fmt!r} (supported: jpeg, png)", "unsupported_encoding")


def _jpeg_segments(data: np.ndarray):
    """(offset, marker) of each JPEG header segment up to and including the first start of scan (SOS)."""
    i, n = 2, data.size
    while i + 3 < n and data[i] == 0xFF:
        marker = int(data[i + 1])
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        yield i, marker
        if marker == 0xDA:
            return
        i += 2 + (int(data[i + 2]) << 8 | int(data[i + 3]))


def _encoded_size(data: np.ndarray, kind: str) -> tuple[int, int] | None:
    """(width, height) from a PNG IHDR or a JPEG SOF header, read before decoding anything."""
    if kind == "png":
        head = data[:24].tobytes()
        if len(head) < 24 or head[12:16] != b"IHDR":
            return None
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    for i, marker in _jpeg_segments(data):
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and i + 9 < data.size:  # start of frame
            return int(data[i + 7]) << 8 | int(data[i + 8]), int(data[i + 5]) << 8 | int(data[i + 6])
    return None


def _jpeg_end(data: np.ndarray) -> int | None:
    """Length of the JPEG up to its end-of-image marker, or None when it has none (cut short).

    The EOI is searched after the first start of scan: inside entropy-coded data a 0xFF byte
    is always followed by 0x00 or a restart marker, so the first FF D9 there is the real end
    (an EXIF thumbnail's EOI sits in an APP segment before the scan and is skipped). Bytes
    after it (MJPEG cameras pad frames, e.g. with zeros) are not part of the image.
    """
    scan = None
    for i, marker in _jpeg_segments(data):
        if marker == 0xDA:
            scan = i
    if scan is None:
        return None
    end = data.tobytes().find(_JPEG_EOI, scan)
    return None if end < 0 else end + 2


def _decoded_to_bgr8(image: np.ndarray) -> np.ndarray:
    """An IMREAD_UNCHANGED PNG (gray/BGR/BGRA, 8 or 16 bit) -> BGR uint8, 16-bit scaled as cv_bridge does."""
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    elif image.shape[2] == 2:  # gray + alpha
        image = cv2.cvtColor(np.ascontiguousarray(image[:, :, 0]), cv2.COLOR_GRAY2BGR)
    return _scale_16_to_8(image) if image.dtype == np.uint16 else image


def _compressed_to_bgr(msg: Any, max_pixels: int | None) -> np.ndarray:
    declared = _compression(str(msg.format))
    data = _as_bytes_array(msg.data)
    if data.size == 0:
        raise ImageConversionError(f"zero-size image (CompressedImage with format {msg.format!r} has no data)",
                                   "zero_size")
    head = data[:8].tobytes()
    actual = "jpeg" if head.startswith(_JPEG_SOI) else "png" if head == _PNG_MAGIC else None
    kind = declared or actual
    if kind is None:
        raise ImageConversionError("CompressedImage with empty format and data that is neither JPEG nor PNG",
                                   "unsupported_encoding")
    name = kind.upper()
    if actual != kind:
        raise ImageConversionError(f"corrupt {name}: data ({data.size} bytes) does not start with a {name} signature",
                                   "corrupt_image")
    size = _encoded_size(data, kind)
    if size is None:
        raise ImageConversionError(f"corrupt {name}: no image size in the {name} header", "corrupt_image")
    _check_pixels(*size, max_pixels)
    if kind == "jpeg":
        end = _jpeg_end(data)
        if end is None:  # libjpeg would "decode" the missing part as grey without an error
            raise ImageConversionError(f"corrupt JPEG: truncated, no end-of-image marker after the scan data "
                                       f"in {data.size} bytes", "corrupt_image")
        bgr = cv2.imdecode(data[:end], cv2.IMREAD_COLOR)
    else:  # 16-bit PNGs keep their depth here and are scaled to 8 bits as cv_bridge does
        bgr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
        bgr = None if bgr is None or bgr.size == 0 else _decoded_to_bgr8(bgr)
    if bgr is None or bgr.size == 0:
        raise ImageConversionError(f"corrupt {name}: OpenCV could not decode {data.size} bytes", "corrupt_image")
    return bgr


def _is_dataclass_type(msg_type: Any) -> bool:
    """rosbags message types are dataclasses that want numpy arrays; rclpy types want bytes."""
    return hasattr(msg_type, "__dataclass_fields__")


def bgr_to_image_msg(bgr: np.ndarray, header: Any, encoding: str = "bgr8", msg_type: Any = None) -> Any:
    """HxWx3 uint8 BGR array -> sensor_msgs Image in ``encoding`` (rclpy type unless ``msg_type`` given)."""
    try:
        bpp, _, from_bgr = _ENCODINGS[encoding.strip().lower()]
    except KeyError:
        raise ImageConversionError(f"unsupported encoding {encoding!r}") from None
    if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.uint8:
        raise ImageConversionError(f"expected an HxWx3 uint8 BGR image, got {bgr.dtype} {bgr.shape}")
    if bpp == 2 and bgr.shape[1] % 2:
        raise ImageConversionError(f"{encoding!r} needs an even width, got {bgr.shape[1]}")
    pixels = bgr if from_bgr is None else cv2.cvtColor(bgr, from_bgr)
    pixels = np.ascontiguousarray(pixels)
    if msg_type is None:
        from sensor_msgs.msg import Image as msg_type
    height, width = bgr.shape[:2]
    data = pixels.reshape(-1) if _is_dataclass_type(msg_type) else pixels.tobytes()
    return msg_type(header=header, height=height, width=width, encoding=encoding,
                    is_bigendian=0, step=width * bpp, data=data)


def bgr_to_compressed_msg(bgr: np.ndarray, header: Any, fmt: str = "jpeg", quality: int = 90,
                          msg_type: Any = None) -> Any:
    """HxWx3 uint8 BGR array -> sensor_msgs CompressedImage (format as image_transport writes it)."""
    if fmt not in ("jpeg", "png"):
        raise ImageConversionError(f"unsupported compressed format {fmt!r} (supported: jpeg, png)")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == "jpeg" else []
    ok, encoded = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", bgr, params)
    if not ok:
        raise ImageConversionError(f"OpenCV could not encode a {bgr.dtype} {bgr.shape} image as {fmt}")
    if msg_type is None:
        from sensor_msgs.msg import CompressedImage as msg_type
    data = encoded.reshape(-1) if _is_dataclass_type(msg_type) else encoded.tobytes()
    return msg_type(header=header, format=f"bgr8; {fmt} compressed bgr8", data=data)


def detections_to_lane_array(det: LaneDetections, header: Any, ground_frame_id: str = "") -> Any:
    """LaneDetections -> lanesad_ros/LaneArray. ``ground_frame_id``: the frame of the lanes' ground points,
    "" when there is no camera model (LaneArray.msg); set also on a frame without lanes."""
    # Imported here: the generated lanesad_ros.msg types exist only after the message build, and
    # the image conversions above serve the bag tools without them.
    from geometry_msgs.msg import Point, Point32

    from lanesad_ros.msg import Lane as LaneMsg
    from lanesad_ros.msg import LaneArray

    lanes = []
    for lane in det.lanes:
        msg = LaneMsg()
        msg.slot = int(lane.slot)
        msg.confidence = float(lane.confidence)
        msg.image_points = [Point32(x=float(x), y=float(y), z=0.0) for x, y in lane.image_points.tolist()]
        if lane.ground_points is not None and len(lane.ground_points):
            msg.ground_points = [Point(x=x, y=y, z=z) for x, y, z in lane.ground_points.astype(np.float64).tolist()]
        lanes.append(msg)
    out = LaneArray()
    out.header = header
    out.image_width = int(det.image_width)
    out.image_height = int(det.image_height)
    out.ground_frame_id = ground_frame_id
    out.model_name = det.model_name
    out.weights_name = det.weights_name
    out.inference_latency_ms = float(det.latency_ms)
    out.lanes = lanes
    return out


def lane_array_to_detections(msg: Any) -> LaneDetections:
    """LaneArray (rclpy or rosbags-deserialised) -> LaneDetections; lanes without ground points get None."""
    lanes = []
    for lane in msg.lanes:
        image_points = np.array([(p.x, p.y) for p in lane.image_points], dtype=np.float32).reshape(-1, 2)
        ground = None
        if len(lane.ground_points):
            ground = np.array([(p.x, p.y, p.z) for p in lane.ground_points], dtype=np.float32)
        slot = int(lane.slot)
        lanes.append(Lane(
            slot=LaneSlot(slot) if slot in LaneSlot._value2member_map_ else LaneSlot.UNKNOWN,
            confidence=float(lane.confidence),
            image_points=image_points,
            ground_points=ground,
        ))
    return LaneDetections(
        lanes=lanes,
        image_width=int(msg.image_width),
        image_height=int(msg.image_height),
        model_name=str(msg.model_name),
        weights_name=str(msg.weights_name),
        latency_ms=float(msg.inference_latency_ms),
    )


def lanes_to_marker_array(det: LaneDetections, header: Any, ground_frame_id: str,
                          line_width: float = 0.15, namespace: str = "lanes") -> Any:
    """RViz MarkerArray: a DELETEALL, then one LINE_STRIP per lane with ground points (slot colours).

    The DELETEALL first clears lanes of the previous frame that are gone now; lanes
    without ground points (no camera model) get no marker.
    """
    from geometry_msgs.msg import Point
    from std_msgs.msg import ColorRGBA
    from visualization_msgs.msg import Marker, MarkerArray

    clear = Marker()
    clear.header.stamp = header.stamp
    clear.header.frame_id = ground_frame_id
    clear.ns = namespace
    clear.action = Marker.DELETEALL
    markers = [clear]
    for i, lane in enumerate(det.lanes):
        if lane.ground_points is None or len(lane.ground_points) < 2:
            continue
        marker = Marker()
        marker.header.stamp = header.stamp
        marker.header.frame_id = ground_frame_id
        marker.ns = namespace
        marker.id = i
        marker.type = Marker.LINE_STRIP
        marker.action = Marker.ADD
        marker.pose.orientation.w = 1.0
        marker.scale.x = float(line_width)
        r, g, b, a = _slot_rgba(lane.slot)
        marker.color = ColorRGBA(r=r, g=g, b=b, a=a * float(np.clip(0.4 + 0.6 * lane.confidence, 0.0, 1.0)))
        marker.points = [Point(x=x, y=y, z=z) for x, y, z in lane.ground_points.astype(np.float64).tolist()]
        markers.append(marker)
    return MarkerArray(markers=markers)


def stamp_to_ns(stamp: Any) -> int:
    """builtin_interfaces/Time (rclpy or rosbags) -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def lanes_to_point_cloud(det: LaneDetections, header: Any, ground_frame_id: str) -> Any:
    """PointCloud2 (x, y, z float32) of every lane's ground points, in ``ground_frame_id``.

    Uses sensor_msgs_py where a ROS distribution has it; otherwise packs the same wire
    layout (three FLOAT32 fields at offsets 0, 4, 8; point_step 12; little endian).
    """
    from std_msgs.msg import Header

    parts = [lane.ground_points for lane in det.lanes if lane.ground_points is not None and len(lane.ground_points)]
    points = np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, 3), np.float32)
    cloud_header = Header(stamp=header.stamp, frame_id=ground_frame_id)
    return _cloud_builder()(cloud_header, points)


@functools.lru_cache(maxsize=1)
def _cloud_builder():
    """sensor_msgs_py's builder where the distribution has it, else our packer; looked up once
    (a failed import is not cached by Python and would be retried every frame)."""
    try:
        from sensor_msgs_py.point_cloud2 import create_cloud_xyz32
    except ImportError:
        return _pack_xyz32
    return create_cloud_xyz32


def _pack_xyz32(header: Any, points: np.ndarray) -> Any:
    from sensor_msgs.msg import PointCloud2, PointField

    fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1) for i, n in enumerate("xyz")]
    data = np.ascontiguousarray(points, dtype="<f4")
    return PointCloud2(header=header, height=1, width=len(points), fields=fields, is_bigendian=False,
                       point_step=12, row_step=12 * len(points), data=data.tobytes(), is_dense=False)


def point_cloud_to_xyz(msg: Any) -> np.ndarray:
    """(N, 3) float32 of a PointCloud2 with float32 x, y, z fields (any point_step), e.g. /lanes/points."""
    offsets = {f.name: int(f.offset) for f in msg.fields}
    if not {"x", "y", "z"} <= offsets.keys():
        raise ValueError(f"PointCloud2 has fields {sorted(offsets)}, need x, y, z")
    n = int(msg.width) * int(msg.height)
    dtype = np.dtype({"names": ["x", "y", "z"], "formats": ["<f4"] * 3,
                      "offsets": [offsets["x"], offsets["y"], offsets["z"]], "itemsize": int(msg.point_step)})
    records = np.frombuffer(_as_bytes_array(msg.data)[: n * int(msg.point_step)].tobytes(), dtype=dtype, count=n)
    return np.stack([records["x"], records["y"], records["z"]], axis=1)
