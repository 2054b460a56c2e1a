"""lanesad_ros.ros.convert without DDS: every encoding, every error, rclpy and rosbags messages."""
from __future__ import annotations

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
sensor_msgs = pytest.importorskip("sensor_msgs.msg")

from builtin_interfaces.msg import Time  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image, PointField  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from conftest import shared_path  # noqa: E402
from lanesad_ros.lanes import Lane, LaneDetections, LaneSlot  # noqa: E402
from lanesad_ros.ros.convert import (  # noqa: E402
    ImageConversionError,
    bgr_to_compressed_msg,
    bgr_to_image_msg,
    image_msg_to_bgr,
    lane_array_to_detections,
    lanes_to_marker_array,
    lanes_to_point_cloud,
    point_cloud_to_xyz,
)

HEADER = Header(stamp=Time(sec=12, nanosec=345), frame_id="camera")


def smooth_bgr(height=24, width=32) -> np.ndarray:
    """A gentle colour gradient: lossy encodings (YUV 4:2:2, JPEG) stay close on it."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    return np.stack([40 + 4 * x, 60 + 6 * y, 200 - 3 * x], axis=2).clip(0, 255).astype(np.uint8)


def noisy_bgr(height=24, width=32, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def raw_msg(encoding: str, data: bytes, height: int, width: int, step: int) -> Image:
    return Image(header=HEADER, height=height, width=width, encoding=encoding, step=step, data=data)


@pytest.fixture(scope="module")
def rosbags_types():
    pytest.importorskip("rosbags.typesys")
    from lanesad_ros.ros.bag.typestore import typestore

    return typestore()


@pytest.mark.parametrize("encoding", ["bgr8", "8UC3", "rgb8", "bgra8", "8UC4", "rgba8"])
def test_lossless_encodings_round_trip(encoding):
    bgr = noisy_bgr()
    msg = bgr_to_image_msg(bgr, HEADER, encoding)
    assert (msg.height, msg.width, msg.encoding) == (24, 32, encoding)
    assert msg.step == 32 * {"bgr8": 3, "8UC3": 3, "rgb8": 3}.get(encoding, 4)
    assert msg.header.stamp.sec == 12
    np.testing.assert_array_equal(image_msg_to_bgr(msg), bgr)


@pytest.mark.parametrize("encoding", ["mono8", "8UC1"])
def test_mono_becomes_grey_bgr(encoding):
    bgr = noisy_bgr()
    out = image_msg_to_bgr(bgr_to_image_msg(bgr, HEADER, encoding))
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    assert out.shape == bgr.shape
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], grey)


@pytest.mark.parametrize("encoding", ["yuv422", "uyvy", "yuv422_yuy2", "yuyv"])
def test_yuv422_round_trip_close(encoding):
    bgr = smooth_bgr()
    msg = bgr_to_image_msg(bgr, HEADER, encoding)
    assert msg.step == 32 * 2
    out = image_msg_to_bgr(msg)
    assert out.shape == bgr.shape
    assert np.abs(out.astype(int) - bgr.astype(int)).mean() < 4


def test_known_pixel_values_per_encoding():
    """Channel order checked against hand-written bytes, not only against our own encoder."""
    red_rgb = raw_msg("rgb8", bytes([255, 0, 0, 0, 0, 255]), 1, 2, 6)
    np.testing.assert_array_equal(image_msg_to_bgr(red_rgb), [[[0, 0, 255], [255, 0, 0]]])
    rgba = raw_msg("rgba8", bytes([255, 0, 0, 7, 0, 255, 0, 9]), 1, 2, 8)
    np.testing.assert_array_equal(image_msg_to_bgr(rgba), [[[0, 0, 255], [0, 255, 0]]])
    bgra = raw_msg("bgra8", bytes([255, 0, 0, 7, 0, 255, 0, 9]), 1, 2, 8)
    np.testing.assert_array_equal(image_msg_to_bgr(bgra), [[[255, 0, 0], [0, 255, 0]]])
    # UYVY (ROS yuv422): U Y0 V Y1; neutral chroma, white then black pixel.
    uyvy = raw_msg("yuv422", bytes([128, 255, 128, 0]), 1, 2, 4)
    out = image_msg_to_bgr(uyvy).astype(int)
    assert (out[0, 0] > 245).all() and (out[0, 1] < 10).all()
    # YUYV (yuv422_yuy2): Y0 U Y1 V.
    yuyv = raw_msg("yuv422_yuy2", bytes([255, 128, 0, 128]), 1, 2, 4)
    out = image_msg_to_bgr(yuyv).astype(int)
    assert (out[0, 0] > 245).all() and (out[0, 1] < 10).all()


@pytest.mark.parametrize("encoding,bpp", [("bgr8", 3), ("rgb8", 3), ("mono8", 1), ("yuv422", 2)])
def test_padded_rows_use_step(encoding, bpp):
    bgr = smooth_bgr(6, 8)
    tight = bgr_to_image_msg(bgr, HEADER, encoding)
    rows = np.frombuffer(bytes(tight.data), np.uint8).reshape(6, 8 * bpp)
    padded = np.concatenate([rows, np.full((6, 5), 255, np.uint8)], axis=1)
    msg = raw_msg(encoding, padded.tobytes(), 6, 8, 8 * bpp + 5)
    np.testing.assert_array_equal(image_msg_to_bgr(msg), image_msg_to_bgr(tight))


def test_rosbags_dataclass_messages(rosbags_types):
    """Messages deserialised from a bag (numpy data, dataclass fields) convert the same way."""
    ImageT = rosbags_types.types["sensor_msgs/msg/Image"]
    CompressedT = rosbags_types.types["sensor_msgs/msg/CompressedImage"]
    HeaderT = rosbags_types.types["std_msgs/msg/Header"]
    TimeT = rosbags_types.types["builtin_interfaces/msg/Time"]
    header = HeaderT(stamp=TimeT(sec=1, nanosec=2), frame_id="cam")
    bgr = noisy_bgr()
    for encoding in ("bgr8", "rgb8", "rgba8"):
        msg = bgr_to_image_msg(bgr, header, encoding, msg_type=ImageT)
        wire = rosbags_types.serialize_cdr(msg, "sensor_msgs/msg/Image")
        back = rosbags_types.deserialize_cdr(wire, "sensor_msgs/msg/Image")
        np.testing.assert_array_equal(image_msg_to_bgr(back), bgr)
    png = bgr_to_compressed_msg(bgr, header, "png", msg_type=CompressedT)
    np.testing.assert_array_equal(image_msg_to_bgr(png), bgr)


@pytest.mark.parametrize("fmt", ["jpeg", "JPEG", "rgb8; jpeg compressed bgr8", "bgr8; jpg compressed bgr8", ""])
def test_compressed_jpeg_formats(fmt):
    bgr = smooth_bgr(48, 64)
    msg = bgr_to_compressed_msg(bgr, HEADER, "jpeg", quality=95)
    assert msg.format == "bgr8; jpeg compressed bgr8"
    msg.format = fmt
    out = image_msg_to_bgr(msg)
    assert out.shape == bgr.shape
    assert np.abs(out.astype(int) - bgr.astype(int)).mean() < 3


@pytest.mark.parametrize("fmt", ["png", "bgr8; png compressed bgr8", ""])
def test_compressed_png_is_exact(fmt):
    bgr = noisy_bgr()
    msg = bgr_to_compressed_msg(bgr, HEADER, "png")
    msg.format = fmt
    np.testing.assert_array_equal(image_msg_to_bgr(msg), bgr)


def test_real_jpeg_frames_decode_like_opencv():
    paths = sorted(shared_path("udacity", "test_images").glob("*.jpg"))[:2]
    paths += sorted(shared_path("tusimple", "clips").glob("*/*/*.jpg"))[:2]
    for path in paths:
        msg = CompressedImage(header=HEADER, format="jpeg", data=path.read_bytes())
        expected = cv2.imread(str(path))
        pixels = expected.shape[0] * expected.shape[1]
        np.testing.assert_array_equal(image_msg_to_bgr(msg, max_pixels=pixels), expected)
        with pytest.raises(ImageConversionError, match="above the limit"):  # size read from the real header
            image_msg_to_bgr(msg, max_pixels=pixels - 1)


@pytest.mark.parametrize("msg,problem,kind", [
    (raw_msg("xyz", bytes(12), 2, 2, 6), "unsupported encoding 'xyz'", "unsupported_encoding"),
    (raw_msg("16UC1", bytes(8), 2, 2, 4), "unsupported encoding '16UC1': a depth or float image",
     "unsupported_encoding"),
    (raw_msg("32FC1", bytes(16), 2, 2, 8), "unsupported encoding '32FC1': a depth or float image",
     "unsupported_encoding"),
    (raw_msg("bgr8", b"", 0, 0, 0), "zero-size image", "zero_size"),
    (raw_msg("rgb8", bytes(0), 4, 0, 0), "zero-size image", "zero_size"),
    (raw_msg("bgr8", bytes(100), 10, 10, 30), "data shorter than height*step (got 100 bytes, need 300", "bad_layout"),
    (raw_msg("bgr8", bytes(40), 2, 10, 20), "step 20 is smaller than width*bytes per pixel", "bad_layout"),
    (raw_msg("yuv422", bytes(6), 1, 3, 6), "needs an even width", "bad_layout"),
])
def test_raw_errors_name_the_problem(msg, problem, kind):
    with pytest.raises(ImageConversionError) as info:
        image_msg_to_bgr(msg)
    assert problem in str(info.value)
    assert info.value.kind == kind
    assert isinstance(info.value, ValueError)


def test_max_pixels_rejects_huge_frames_before_decoding():
    huge = raw_msg("bgr8", b"", 6000, 8000, 24000)  # no data needed: rejected on the size alone
    with pytest.raises(ImageConversionError, match="8000x6000 has 48000000 pixels, above the limit") as info:
        image_msg_to_bgr(huge, max_pixels=40_000_000)
    assert info.value.kind == "too_large"
    for fmt in ("jpeg", "png"):  # read from the header: nothing is decoded
        small = bgr_to_compressed_msg(np.zeros((20, 30, 3), np.uint8), HEADER, fmt)
        with pytest.raises(ImageConversionError, match="30x20 has 600 pixels"):
            image_msg_to_bgr(small, max_pixels=500)
        assert image_msg_to_bgr(small, max_pixels=600).shape == (20, 30, 3)


def _jpeg_bytes() -> bytes:
    return bytes(bgr_to_compressed_msg(smooth_bgr(48, 64), HEADER).data)


@pytest.mark.parametrize("fmt,data,problem,kind", [
    ("jpeg", _jpeg_bytes()[: len(_jpeg_bytes()) // 2], "corrupt JPEG: truncated", "corrupt_image"),
    ("jpeg", b"not a jpeg at all, just text" * 10, "corrupt JPEG: data (280 bytes) does not start with a JPEG",
     "corrupt_image"),
    ("jpeg", b"\xff\xd8" + bytes(200) + b"\xff\xd9", "corrupt JPEG: no image size in the JPEG header", "corrupt_image"),
    ("jpeg", _jpeg_bytes()[:200] + bytes(300) + b"\xff\xd9", "corrupt JPEG: truncated, no end-of-image marker "
     "after the scan data in 502 bytes", "corrupt_image"),  # cut inside the header tables: no scan at all
    ("png", b"\x89PNG\r\n\x1a\n" + bytes(50), "corrupt PNG: no image size in the PNG header", "corrupt_image"),
    ("png", bytes(bgr_to_compressed_msg(smooth_bgr(), HEADER, "png").data)[:40] + bytes(30),
     "corrupt PNG: OpenCV could not decode 70 bytes", "corrupt_image"),
    ("png", _jpeg_bytes(), "corrupt PNG: data", "corrupt_image"),
    ("jpeg", b"", "zero-size image", "zero_size"),
    ("tiff", b"II*\x00" + bytes(20), "unsupported compressed format 'tiff'", "unsupported_encoding"),
    ("16UC1; compressedDepth png", b"\x89PNG\r\n\x1a\n", "unsupported compressed format", "unsupported_encoding"),
    ("", b"GIF89a" + bytes(20), "neither JPEG nor PNG", "unsupported_encoding"),
])
def test_compressed_errors_name_the_problem(fmt, data, problem, kind):
    with pytest.raises(ImageConversionError) as info:
        image_msg_to_bgr(CompressedImage(header=HEADER, format=fmt, data=data))
    assert problem in str(info.value)
    assert info.value.kind == kind


# The 2x2 colour filter pattern each ROS Bayer encoding names, top-left pixel first (row-major).
BAYER_PATTERNS = {"bayer_rggb": "RGGB", "bayer_bggr": "BGGR", "bayer_gbrg": "GBRG", "bayer_grbg": "GRBG"}


@pytest.mark.parametrize("name", sorted(BAYER_PATTERNS))
@pytest.mark.parametrize("bits", [8, 16])
def test_bayer_frames_are_demosaiced_to_their_colour(name, bits):
    """A flat colour seen through the named filter pattern comes back as that colour (cv_bridge's mapping)."""
    bgr = np.array([30, 120, 220], np.float64)  # blue, green, red
    channel = {"B": 0, "G": 1, "R": 2}
    pattern = BAYER_PATTERNS[name]
    height, width = 8, 12
    mosaic = np.empty((height, width), np.float64)
    for dy in (0, 1):
        for dx in (0, 1):
            mosaic[dy::2, dx::2] = bgr[channel[pattern[2 * dy + dx]]]
    scale, dtype = (1, "<u1") if bits == 8 else (65535 / 255, "<u2")
    data = np.round(mosaic * scale).astype(dtype).tobytes()
    msg = raw_msg(f"{name}{bits}", data, height, width, width * bits // 8)
    out = image_msg_to_bgr(msg)
    assert out.shape == (height, width, 3) and out.dtype == np.uint8
    np.testing.assert_allclose(out[2:-2, 2:-2].reshape(-1, 3).mean(axis=0), bgr, atol=1.0)


def test_16_bit_frames_are_scaled_to_8_bit_as_cv_bridge_does():
    rng = np.random.default_rng(3)
    values = rng.integers(0, 65536, (6, 10, 3)).astype(np.uint16)
    values[0, :4, 0] = (0, 128, 32767, 65535)
    expected = np.clip(np.round(values.astype(np.float64) * 255 / 65535), 0, 255).astype(np.uint8)
    for encoding, pixels, to_bgr in (("bgr16", values, expected), ("rgb16", values, expected[:, :, ::-1]),
                                     ("mono16", values[:, :, 0], np.repeat(expected[:, :, :1], 3, axis=2))):
        for bigendian in (0, 1):
            raw = pixels.astype(">u2" if bigendian else "<u2").tobytes()
            row = pixels[0].size * 2
            msg = raw_msg(encoding, raw, 6, 10, row)
            msg.is_bigendian = bigendian
            np.testing.assert_array_equal(image_msg_to_bgr(msg), to_bgr, err_msg=f"{encoding} bigendian={bigendian}")
    assert image_msg_to_bgr(raw_msg("mono16", bytes([0x80, 0x00]) * 4, 2, 2, 4))[0, 0, 0] == 0  # 128 -> 0.5 -> 0


@pytest.mark.parametrize("gray", [True, False])
def test_16_bit_png_is_scaled_to_8_bit_as_cv_bridge_does(gray):
    values = np.random.default_rng(5).integers(0, 65536, (9, 7) if gray else (9, 7, 3)).astype(np.uint16)
    ok, png = cv2.imencode(".png", values)
    assert ok
    scaled = np.clip(np.round(values.astype(np.float64) * 255 / 65535), 0, 255).astype(np.uint8)
    expected = np.repeat(scaled[:, :, None], 3, axis=2) if gray else scaled
    msg = CompressedImage(header=HEADER, format="mono16; png compressed mono16" if gray else "png", data=png.tobytes())
    np.testing.assert_array_equal(image_msg_to_bgr(msg), expected)


def test_jpeg_with_bytes_after_its_end_marker_decodes_completely():
    jpeg = _jpeg_bytes()
    expected = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    for tail in (bytes(512), b"\xff" * 100, b"garbage after the image"):  # MJPEG camera padding and worse
        msg = CompressedImage(header=HEADER, format="jpeg", data=jpeg + tail)
        np.testing.assert_array_equal(image_msg_to_bgr(msg), expected)
    cut = jpeg[: len(jpeg) - 300] + bytes(512)  # cut inside the scan data, then padded: still cut
    with pytest.raises(ImageConversionError, match="corrupt JPEG: truncated") as info:
        image_msg_to_bgr(CompressedImage(header=HEADER, format="jpeg", data=cut))
    assert info.value.kind == "corrupt_image"


def test_output_encoder_rejects_bad_input():
    with pytest.raises(ImageConversionError, match="unsupported encoding 'bgr16'"):
        bgr_to_image_msg(noisy_bgr(), HEADER, "bgr16")
    with pytest.raises(ImageConversionError, match="HxWx3 uint8"):
        bgr_to_image_msg(np.zeros((4, 4), np.uint8), HEADER)
    with pytest.raises(ImageConversionError, match="unsupported compressed format 'webp'"):
        bgr_to_compressed_msg(noisy_bgr(), HEADER, "webp")


def sample_detections(with_ground: bool) -> LaneDetections:
    lanes = []
    for slot, x0 in ((LaneSlot.LEFT, 500.0), (LaneSlot.RIGHT, 780.0)):
        pts = np.stack([np.linspace(x0, 620 + (x0 - 640) * 0.1, 12), np.linspace(710, 300, 12)], axis=1)
        ground = None
        if with_ground:
            ground = np.stack([np.linspace(5, 40, 12), np.full(12, 1.8 if slot == LaneSlot.LEFT else -1.8),
                               np.zeros(12)], axis=1)
        lanes.append(Lane(slot=slot, confidence=0.5 + 0.1 * int(slot), image_points=pts, ground_points=ground))
    return LaneDetections(lanes=lanes, image_width=1280, image_height=720, model_name="enet_sad",
                          weights_name="w.safetensors", latency_ms=12.5)


def test_lane_array_from_rosbags_dataclass(rosbags_types):
    """A LaneArray deserialised from a bag (no generated lanesad_ros.msg needed) reads back."""
    T = rosbags_types.types
    det = sample_detections(with_ground=True)
    lanes = [T["lanesad_ros/msg/Lane"](
        slot=int(lane.slot), confidence=lane.confidence,
        image_points=[T["geometry_msgs/msg/Point32"](x=float(x), y=float(y), z=0.0) for x, y in lane.image_points],
        ground_points=[T["geometry_msgs/msg/Point"](x=float(x), y=float(y), z=float(z))
                       for x, y, z in lane.ground_points],
    ) for lane in det.lanes]
    lanes.append(T["lanesad_ros/msg/Lane"](slot=77, confidence=0.3, image_points=[], ground_points=[]))
    header = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=3, nanosec=4), frame_id="cam")
    msg = T["lanesad_ros/msg/LaneArray"](header=header, image_width=1280, image_height=720, ground_frame_id="base_link",
                                         model_name="enet_sad", weights_name="w.safetensors",
                                         inference_latency_ms=12.5, lanes=lanes)
    wire = rosbags_types.serialize_cdr(msg, "lanesad_ros/msg/LaneArray")
    back = lane_array_to_detections(rosbags_types.deserialize_cdr(wire, "lanesad_ros/msg/LaneArray"))
    assert (back.image_width, back.image_height, back.model_name, back.weights_name) == (
        1280, 720, "enet_sad", "w.safetensors")
    assert back.latency_ms == pytest.approx(12.5)
    assert [lane.slot for lane in back.lanes] == [LaneSlot.LEFT, LaneSlot.RIGHT, LaneSlot.UNKNOWN]
    for got, want in zip(back.lanes, det.lanes, strict=False):
        np.testing.assert_allclose(got.image_points, want.image_points, atol=1e-3)
        np.testing.assert_allclose(got.ground_points, want.ground_points, atol=1e-5)
        assert got.confidence == pytest.approx(want.confidence)
    assert back.lanes[2].ground_points is None and back.lanes[2].image_points.shape == (0, 2)


@pytest.mark.parametrize("with_ground", [True, False])
def test_lane_array_round_trip_rclpy(with_ground):
    pytest.importorskip("lanesad_ros.msg", reason="generated lanesad_ros.msg types not on the path (run the msg build)")
    from lanesad_ros.ros.convert import detections_to_lane_array

    det = sample_detections(with_ground)
    msg = detections_to_lane_array(det, HEADER, "base_link" if with_ground else "")  # "": no camera model
    assert msg.header.stamp.sec == 12 and msg.header.frame_id == "camera"
    assert msg.ground_frame_id == ("base_link" if with_ground else "")
    no_lanes = LaneDetections(lanes=[], image_width=1280, image_height=720, model_name="enet_sad",
                              weights_name="w.safetensors", latency_ms=1.0)
    assert detections_to_lane_array(no_lanes, HEADER, "base_link").ground_frame_id == "base_link", \
        "a camera model and no lane: the frame stays, so 'no lane now' differs from 'no camera model'"
    assert [lane.slot for lane in msg.lanes] == [1, 2]
    back = lane_array_to_detections(msg)
    assert (back.image_width, back.image_height) == (1280, 720)
    for got, want in zip(back.lanes, det.lanes, strict=True):
        np.testing.assert_allclose(got.image_points, want.image_points, atol=1e-3)
        if with_ground:
            np.testing.assert_allclose(got.ground_points, want.ground_points, atol=1e-5)
        else:
            assert got.ground_points is None


def test_markers_one_line_strip_per_ground_lane():
    from visualization_msgs.msg import Marker

    markers = lanes_to_marker_array(sample_detections(True), HEADER, "base_link").markers
    assert markers[0].action == Marker.DELETEALL
    strips = markers[1:]
    assert [m.type for m in strips] == [Marker.LINE_STRIP] * 2
    assert {m.header.frame_id for m in markers} == {"base_link"}
    assert strips[0].header.stamp.sec == 12
    assert len(strips[0].points) == 12 and strips[0].points[0].y == pytest.approx(1.8)
    from lanesad_ros.overlay import SLOT_COLORS  # same colours as the debug overlay (BGR there)

    for strip, slot in zip(strips, (LaneSlot.LEFT, LaneSlot.RIGHT), strict=True):
        b, g, r = SLOT_COLORS[slot]
        assert (strip.color.r, strip.color.g, strip.color.b) == pytest.approx((r / 255, g / 255, b / 255))
    assert len({m.id for m in strips}) == 2
    only_clear = lanes_to_marker_array(sample_detections(False), HEADER, "base_link").markers
    assert [m.action for m in only_clear] == [Marker.DELETEALL]


def test_point_cloud_wire_layout():
    det = sample_detections(True)
    cloud = lanes_to_point_cloud(det, HEADER, "base_link")
    assert cloud.header.frame_id == "base_link" and cloud.header.stamp.sec == 12
    assert [(f.name, f.offset, f.datatype, f.count) for f in cloud.fields] == [
        ("x", 0, PointField.FLOAT32, 1), ("y", 4, PointField.FLOAT32, 1), ("z", 8, PointField.FLOAT32, 1)]
    assert (cloud.point_step, cloud.width, cloud.height, cloud.row_step) == (12, 24, 1, 288)
    expected = np.concatenate([lane.ground_points for lane in det.lanes])
    np.testing.assert_array_equal(point_cloud_to_xyz(cloud), expected)
    empty = lanes_to_point_cloud(sample_detections(False), HEADER, "base_link")
    assert empty.width == 0 and point_cloud_to_xyz(empty).shape == (0, 3)
