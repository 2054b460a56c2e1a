"""The on-disk cache of derived inference artefacts and of the remembered backend choice.

Everything here is derived, never authoritative: deleting the directory only costs the next
start-up its exports and measurements. Names carry what the content depends on (a hash of the
weights and metadata files, input size, exporter/runtime versions), so a stale entry is never
served; every write is atomic (:mod:`lanesad_ros.fileio`), so concurrent start-ups on the same
machine at worst both write the same file, and a start-up killed while writing leaves only
temporaries, which the next start-up removes (:func:`sweep`). The backend measurement is
serialised across processes by a lock file (:meth:`ChoiceStore.measuring`).

A cache folder that cannot be written (read-only home in a container, HOME unset with no
passwd entry) is replaced, for this process, by a temporary folder removed at exit: the
exported graphs and compiled models are made again at each start, and :func:`cache_note` says
why (the node reports it in /diagnostics).

Layout under :func:`cache_dir`::

    onnx/<stem>-<source>-<H>x<W>-opset<N>-torch<V>-e<E>[-poolarith].onnx   exported graphs
    openvino/                                                             OpenVINO CACHE_DIR (compiled blobs)
    choice/<key>.json                                                     remembered backend choices
    int8/<stem>-<source>-<H>x<W>/                                         quantised model + its guard record

This module imports neither torch nor a runtime: a start-up that finds what it needs here
can skip them.
"""
from __future__ import annotations

import atexit
import contextlib
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock, Timeout

from lanesad_ros.fileio import is_stale, write_text_atomic

ONNX_OPSET = 17
# Bumped whenever the exported or rewritten graph changes for the same weights, so that no
# cache entry made by older code is served.
EXPORT_VERSION = 2
# The INT8 accuracy guard a guard.json must come from to be offered: 2 = every camera of a
# config's validation frames (records without it came from the TuSimple-only guard, issue 18).
GUARD_VERSION = 2
# Packages whose versions change what an artefact or a timing means.
VERSIONED_PACKAGES = ("torch", "onnx", "onnxruntime", "openvino", "nncf")


class BackendUnavailable(ValueError):
    """A backend cannot run here (missing package, provider or device); the message says why."""


# Configured folder -> (folder in use, note); a temporary stand-in is made once per process.
_resolved: dict[str, tuple[Path, str]] = {}


def configured_cache_dir() -> tuple[Path | None, str]:
    """($LANESAD_CACHE_DIR, else $XDG_CACHE_HOME/lanesad_ros, else ~/.cache/lanesad_ros; "") or,
    when none of them can be named (HOME unset and no passwd entry), (None, why)."""
    if os.environ.get("LANESAD_CACHE_DIR"):
        return Path(os.environ["LANESAD_CACHE_DIR"]), ""
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "lanesad_ros", ""
    try:
        return Path.home() / ".cache" / "lanesad_ros", ""
    except RuntimeError as exc:  # "Could not determine home directory"
        return None, f"no cache folder ({exc}: HOME is unset and user {os.getuid()} has no passwd entry)"


def _writable(folder: Path) -> str:
    """"" when files can be created in ``folder`` (made if missing), else why not."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        return f"cache folder {folder} is not writable ({exc.strerror or exc})"
    return ""


def cache_dir() -> Path:
    """The cache folder of this process: the configured one (:func:`configured_cache_dir`) when
    files can be written there, else a temporary folder of this process, removed at exit
    (:func:`cache_note` says why, also when no temporary folder can be made either)."""
    configured, why = configured_cache_dir()
    key = str(configured)
    if key in _resolved:
        return _resolved[key][0]
    if configured is not None:
        why = _writable(configured)
        if not why:
            return configured  # checked again next time: a folder that turns read-only is noticed
    try:
        folder = Path(tempfile.mkdtemp(prefix="lanesad_ros-cache-"))
    except OSError as exc:  # writes into the configured folder will fail: only torch can run
        folder = configured or Path(tempfile.gettempdir()) / "lanesad_ros-cache"
        _resolved[key] = (folder, f"{why}; no temporary folder can be made either ({exc.strerror or exc}): "
                                  f"the ONNX Runtime and OpenVINO backends cannot run (set LANESAD_CACHE_DIR to a "
                                  f"writable folder)")
        return folder
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    _resolved[key] = (folder, f"{why}; using {folder} for this process only: exports, compiled models and the "
                              f"backend choice are made again at every start (set LANESAD_CACHE_DIR to a writable "
                              f"folder to keep them)")
    return folder


def cache_note() -> str:
    """Why this process does not use a persistent cache ("" when it does); see :func:`cache_dir`."""
    configured, _ = configured_cache_dir()
    cache_dir()
    return _resolved.get(str(configured), (None, ""))[1]


def sweep(root: Path | None = None) -> list[Path]:
    """Remove what start-ups killed while writing left in the cache: temporaries (``.*.tmp*``
    files and folders) whose writer is gone (:func:`lanesad_ros.fileio.is_stale`). Returns what
    was removed; what cannot be removed is left."""
    root = root or cache_dir()
    removed = []
    for pattern in ("onnx/.*.tmp*", "choice/.*.tmp*", "openvino/.*.tmp*", "int8/.*.tmp*", "int8/*/.*.tmp*"):
        for path in root.glob(pattern):
            if not is_stale(path):
                continue
            try:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
            except OSError:
                continue
            removed.append(path)
    return removed


def package_version(name: str) -> str:
    """Installed version of a distribution without importing it ('' when absent)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return ""


def file_hash(*paths: Path) -> str:
    """sha256 over the bytes of the files, in order (hex)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def state_hash(model) -> str:
    """sha256 over an in-memory model's state_dict (names and fp32 values), for models without a file."""
    digest = hashlib.sha256()
    for key, value in model.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().float().contiguous().numpy().tobytes())
    return digest.hexdigest()


def artefact_stem(stem: str, source: str, input_size: tuple[int, int]) -> str:
    """Common part of the artefact names of one weights source at one input size."""
    return f"{stem}-{source[:16]}-{input_size[0]}x{input_size[1]}"


def onnx_path(base: str, rewritten: bool, root: Path | None = None) -> Path:
    """Exported graph for ``artefact_stem(...)``; ``rewritten``: the poolarith rewrite."""
    torch_version = package_version("torch").replace("+", "_")
    name = f"{base}-opset{ONNX_OPSET}-torch{torch_version}-e{EXPORT_VERSION}{'-poolarith' if rewritten else ''}.onnx"
    return (root or cache_dir()) / "onnx" / name


def int8_dir(base: str, root: Path | None = None) -> Path:
    """Folder of the INT8 model of ``artefact_stem(...)``: model.xml/.bin and guard.json."""
    return (root or cache_dir()) / "int8" / base


def read_guard(folder: Path) -> dict | None:
    """The accuracy-guard record next to an INT8 model (``guard.json``), or None when there is
    no readable one or the model files are missing. ``passed`` says whether it may be offered: it is
    false (and ``verdict`` says why) for a record of another :data:`GUARD_VERSION`."""
    try:
        record = json.loads((folder / "guard.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not (folder / "model.xml").is_file() or not (folder / "model.bin").is_file():
        return None
    if record.get("guard_version") != GUARD_VERSION:
        return {**record, "passed": False,
                "verdict": f"made by accuracy guard version {record.get('guard_version', 1)}, not "
                           f"{GUARD_VERSION} (every camera's validation frames): quantise again"}
    return record


def cpu_name() -> str:
    """The CPU model as /proc/cpuinfo names it (platform.processor() elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_id() -> dict:
    """What makes timings on one machine comparable: host, CPU model and count, NVIDIA devices."""
    return {"host": socket.gethostname(), "cpu": cpu_name(), "cpus": os.cpu_count(),
            "nvidia": sorted(p.name for p in Path("/dev").glob("nvidia[0-9]*"))}


def cuda_impossible() -> bool:
    """True when this Linux machine has no NVIDIA (or WSL GPU) device node, so CUDA cannot be
    available whatever torch says; lets a CPU start-up skip importing torch to ask."""
    return sys.platform.startswith("linux") and not (Path("/dev/nvidiactl").exists() or Path("/dev/dxg").exists())


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class ChoiceStore:
    """Remembered backend choices, one JSON file per key (machine, weights, input size, device,
    threads, candidates, versions). See :mod:`lanesad_ros.backends.selection`."""

    def __init__(self, root: Path | None = None):
        self.root = (root or cache_dir()) / "choice"

    @contextlib.contextmanager
    def measuring(self, timeout_s: float) -> Iterator[bool]:
        """Hold the machine-wide measurement lock (``choice/.measuring.lock``, an flock: released
        by the kernel when its holder dies) while the block measures. Yields True when held, False
        when another process kept it longer than ``timeout_s`` or no lock file can be made."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            lock = FileLock(self.root / ".measuring.lock", timeout=timeout_s)
            lock.acquire()
        except (Timeout, OSError):
            yield False
            return
        try:
            yield True
        finally:
            lock.release()

    @staticmethod
    def key(fields: dict) -> str:
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:24]

    def load(self, fields: dict) -> dict | None:
        """The remembered record for these fields, or None (absent, unreadable, or for other fields)."""
        path = self.root / f"{self.key(fields)}.json"
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or record.get("fields") != fields or not isinstance(record.get("backend"), str):
            return None
        return record

    def save(self, fields: dict, record: dict) -> Path:
        path = self.root / f"{self.key(fields)}.json"
        write_text_atomic(path, json.dumps(dict(record, fields=fields), indent=1, sort_keys=True) + "\n")
        return path
