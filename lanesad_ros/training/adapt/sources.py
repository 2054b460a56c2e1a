"""Camera frames for ``lanesad-train adapt``: a rosbag2, a video file or a folder of images.

A user adapting the detector to their camera has recordings, not datasets, so each SOURCE
is read as it comes:

- a **rosbag2** (a folder with ``metadata.yaml`` or a ``.mcap`` / ``.db3`` file) through the
  project's bag reader (``lanesad_ros.ros.bag.BagReader``, built on ``rosbags`` only, no
  rclpy): the one ``sensor_msgs/Image`` or ``CompressedImage`` topic, or ``topic`` when there
  are several; ground truth from ``/lanes_gt`` when the bag has it;
- a **video** file, decoded with OpenCV;
- a **folder of images** (searched recursively, in path order); a TuSimple label file
  (``*.json`` lines whose ``raw_file`` names the images) or CULane ``<image>.lines.txt``
  files beside the images give ground truth.

Bags and videos are sequences in time; a folder is taken as one too (frames named in
recording order, as camera dumps and ``culane-night-clip`` are). Long recordings are
subsampled evenly to at most ``max_frames`` frames per source. Frames from bags and videos
are kept JPEG-encoded (quality 95) in memory, folder frames are re-read from disk, so a few
hundred full-size frames cost tens of MB, not GB.

Every problem raises :class:`SourceError` whose message starts with the source path:
missing path, no images, an unreadable video, a bag without an image topic (or several and
no ``topic``), a folder of non-images, frames of mixed sizes (within a source always; across
sources unless ``several_cameras``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from lanesad_ros.data.culane import read_lines_file
from lanesad_ros.data.frames import DataError, LabelledFrame, assign_slots
from lanesad_ros.data.tusimple import label_to_frame
from lanesad_ros.ros.bag.reader import BagReader, bag_info
from lanesad_ros.ros.bag.typestore import IMAGE_TYPES, BagError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
BAG_SUFFIXES = (".mcap", ".db3")
DEFAULT_MAX_FRAMES = 300
_JPEG_QUALITY = 95


class SourceError(ValueError):
    """A SOURCE that cannot be used for adaptation; the message starts with the source."""


@dataclass
class Frame:
    """One camera frame: ``image()`` gives BGR uint8; ``ground_truth`` a LabelledFrame or None."""

    source: str
    index: int
    name: str
    path: Path | None = None
    data: bytes | None = None
    ground_truth: LabelledFrame | None = None

    def image(self) -> np.ndarray:
        if self.data is not None:
            image = cv2.imdecode(np.frombuffer(self.data, np.uint8), cv2.IMREAD_COLOR)
        else:
            image = cv2.imread(str(self.path), cv2.IMREAD_COLOR)
        if image is None:
            raise SourceError(f"{self.source}: cannot decode frame {self.name}")
        return image


@dataclass
class Source:
    """The frames of one SOURCE. ``kind``: bag / video / folder; ``size``: (width, height);
    ``sequence``: frames are in time order (temporal checks apply); ``total``: frames in
    the recording before subsampling; ``topic``: the bag's image topic."""

    path: str
    kind: str
    frames: list[Frame]
    size: tuple[int, int]
    total: int
    sequence: bool = True
    topic: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def has_ground_truth(self) -> bool:
        return any(f.ground_truth is not None for f in self.frames)

    def describe(self) -> dict:
        """JSON-able summary for weights metadata and reports."""
        out = {"path": self.path, "kind": self.kind, "frames": len(self.frames), "frames_in_source": self.total,
               "size": list(self.size), "ground_truth": self.has_ground_truth}
        if self.topic:
            out["topic"] = self.topic
        return out


def _even_subsample(count: int, limit: int) -> np.ndarray:
    """Indices of ``min(count, limit)`` frames spread evenly over ``count``."""
    if count <= limit:
        return np.arange(count)
    return np.unique(np.round(np.linspace(0, count - 1, limit)).astype(int))


def _encode(image: np.ndarray, source: str, name: str) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
    if not ok:
        raise SourceError(f"{source}: cannot encode frame {name}")
    return buf.tobytes()


def _check_size(source: str, size: tuple[int, int] | None, image: np.ndarray, name: str) -> tuple[int, int]:
    here = (int(image.shape[1]), int(image.shape[0]))
    if size is not None and here != size:
        raise SourceError(f"{source}: frames of mixed sizes ({size[0]}x{size[1]} and {here[0]}x{here[1]} at {name}); "
                          f"adapt one camera (one frame size) at a time")
    return here


def is_bag(path: Path) -> bool:
    return (path.is_dir() and (path / "metadata.yaml").is_file()) or (path.is_file() and path.suffix in BAG_SUFFIXES) \
        or (path.is_dir() and any(p.suffix in BAG_SUFFIXES for p in path.iterdir()))


def read_bag(path: Path, topic: str | None, max_frames: int) -> Source:
    """Frames of a rosbag2's image topic (subsampled evenly), with /lanes_gt ground truth."""
    name = str(path)
    try:
        info = bag_info(path)
    except BagError as exc:
        raise SourceError(f"{name}: {_strip(exc, name)}") from None
    topics = info["topics"]
    images = sorted(t for t, v in topics.items() if v["type"] in IMAGE_TYPES)
    if topic is None:
        if not images:
            listed = ", ".join(f"{t} [{v['type']}]" for t, v in sorted(topics.items())) or "none"
            raise SourceError(f"{name}: bag has no sensor_msgs Image or CompressedImage topic (topics: {listed})")
        if len(images) > 1:
            raise SourceError(f"{name}: bag has several image topics ({', '.join(images)}); pick one with --topic")
        topic = images[0]
    elif topic not in topics:
        raise SourceError(f"{name}: topic {topic!r} is not in the bag (image topics: {', '.join(images) or 'none'})")
    elif topics[topic]["type"] not in IMAGE_TYPES:
        raise SourceError(f"{name}: topic {topic!r} has type {topics[topic]['type']}, not an Image or CompressedImage")
    count = int(topics[topic]["count"])
    keep = set(_even_subsample(count, max_frames).tolist()) if count else None
    frames, size, total = [], None, 0
    try:
        with BagReader(path, image_topic=topic) as reader:
            for i, bag_frame in enumerate(reader.frames()):
                total += 1
                if keep is not None and i not in keep:
                    continue
                label = f"{topic}#{i}"
                size = _check_size(name, size, bag_frame.image, label)
                frames.append(Frame(name, len(frames), label, data=_encode(bag_frame.image, name, label),
                                    ground_truth=bag_frame.ground_truth))
            notes = list(reader.problems)
    except BagError as exc:
        raise SourceError(f"{name}: {_strip(exc, name)}") from None
    if not frames:
        raise SourceError(f"{name}: no readable image on {topic}" + (f" ({'; '.join(notes)})" if notes else ""))
    if keep is None and len(frames) > max_frames:  # message count unknown (recovered bag)
        frames = [frames[i] for i in _even_subsample(len(frames), max_frames)]
    return Source(name, "bag", frames, size, total, sequence=True, topic=topic, notes=notes)


def _strip(exc: Exception, name: str) -> str:
    """A BagError message without its own leading '<path>: ' (the caller adds the source)."""
    text = str(exc)
    return text[len(name) + 2:] if text.startswith(name + ": ") else text


def read_video(path: Path, max_frames: int) -> Source:
    """Frames of a video file (subsampled evenly), decoded with OpenCV."""
    name = str(path)
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise SourceError(f"{name}: cannot read video (not a video file OpenCV can decode)")
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        keep = set(_even_subsample(count, max_frames).tolist()) if count > 0 else None
        frames, size, i = [], None, 0
        while True:
            ok, image = cap.read()
            if not ok or image is None:
                break
            if keep is None or i in keep:
                label = f"frame {i}"
                size = _check_size(name, size, image, label)
                frames.append(Frame(name, len(frames), label, data=_encode(image, name, label)))
            i += 1
    finally:
        cap.release()
    if not frames:
        raise SourceError(f"{name}: cannot read video (no frame could be decoded)")
    if keep is None and len(frames) > max_frames:
        frames = [frames[j] for j in _even_subsample(len(frames), max_frames)]
    return Source(name, "video", frames, size, i, sequence=True)


def _folder_labels(folder: Path, images: list[Path], size: tuple[int, int]) -> dict[Path, LabelledFrame]:
    """Ground truth found in a folder: TuSimple label json lines, or CULane ``.lines.txt`` beside images."""
    labels: dict[Path, LabelledFrame] = {}
    wanted = {p.resolve() for p in images}
    for json_path in sorted(folder.rglob("*.json")):
        try:
            lines = [json.loads(line) for line in json_path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue  # not a TuSimple label file
        for k, obj in enumerate(lines):
            if not (isinstance(obj, dict) and "raw_file" in obj and "lanes" in obj):
                break
            try:
                frame = label_to_frame(obj, json_path.parent, f"{json_path}:{k + 1}", image_size=size)
            except DataError:
                continue
            if frame.image_path is not None and frame.image_path.resolve() in wanted:
                labels[frame.image_path.resolve()] = frame
    for image in images:
        lines_txt = image.with_suffix(".lines.txt")
        if image.resolve() not in labels and lines_txt.is_file():
            try:
                lanes = read_lines_file(lines_txt)
            except DataError:
                continue
            labels[image.resolve()] = LabelledFrame(image_path=image, image=None, lanes=lanes,
                                                    slots=assign_slots(lanes, size[0]), width=size[0],
                                                    height=size[1], meta={"source": str(lines_txt)})
    return labels


def read_folder(path: Path, max_frames: int) -> Source:
    """The images under a folder (recursively, sorted by path), with any ground truth found there."""
    name = str(path)
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        raise SourceError(f"{name}: no images in the folder ({len(files)} files, none with an image suffix "
                          f"{'/'.join(IMAGE_SUFFIXES)})")
    total = len(images)
    images = [images[i] for i in _even_subsample(total, max_frames)]
    size, bad = None, []
    for image_path in images:
        # Header-only checks would miss truncated files: decode each once (a few ms per frame).
        image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        if image is None:
            bad.append(image_path.name)
            continue
        size = _check_size(name, size, image, image_path.name)
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise SourceError(f"{name}: {len(bad)} of {len(images)} files are not readable images ({shown})")
    labels = _folder_labels(path, images, size)
    frames = [Frame(name, i, str(p.relative_to(path)), path=p, ground_truth=labels.get(p.resolve()))
              for i, p in enumerate(images)]
    return Source(name, "folder", frames, size, total, sequence=True)


def open_source(text: str, topic: str | None = None, max_frames: int = DEFAULT_MAX_FRAMES) -> Source:
    """Read one SOURCE (bag, video file or image folder); raises SourceError naming it."""
    path = Path(text)
    if not path.exists():
        raise SourceError(f"{text}: no such file or folder")
    if is_bag(path):
        return read_bag(path, topic, max_frames)
    if path.is_dir():
        return read_folder(path, max_frames)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        raise SourceError(f"{text}: a single image is not a drive; give the folder that holds the frames")
    return read_video(path, max_frames)


def open_sources(texts: list[str], topic: str | None = None, max_frames: int = DEFAULT_MAX_FRAMES,
                 several_cameras: bool = False) -> list[Source]:
    """Read every SOURCE; all must show the same camera (frame size), else SourceError, unless
    ``several_cameras`` (frame sizes may then differ between sources)."""
    if not texts:
        raise SourceError("no SOURCE given")
    sources = [open_source(t, topic, max_frames) for t in texts]
    first = sources[0]
    for other in sources[1:]:
        if other.size != first.size and not several_cameras:
            raise SourceError(f"{other.path}: frames of mixed sizes ({other.size[0]}x{other.size[1]} here, "
                              f"{first.size[0]}x{first.size[1]} in {first.path}); adapt one camera at a time, "
                              "or give --several-cameras for weights meant for all of them")
    return sources
