"""Counters and latency windows of the lane_detector node, and the /diagnostics status built from them.

The status (1 Hz, name "<node name>: lane detection", WARN while bad frames arrive or CUDA
was requested but is missing) reports: input/output rate (Hz, last second),
frames_received / _processed, frames_dropped (replaced in the node's one-slot mailbox),
frames_missed (gaps in the publishers' sequence numbers: replaced in the depth-1 DDS queue
or lost in transport), errors and errors.<kind> (unsupported_encoding, zero_size,
bad_layout, corrupt_image, too_large, detector, internal, camera_info, debug_image, and
camera_size: a frame whose size the camera model does not describe, published without
ground points; odometry_none / _stale / _not_finite / _implausible: a frame whose ego lane went
without vehicle motion because the odom_topic's newest sample was missing, too far from the
frame's stamp, NaN/infinite or beyond a car's speed or yaw rate), median
and max over the last second of inference_latency_ms, e2e_receive_to_publish_ms (callback
-> /lanes published) and e2e_stamp_to_publish_ms (image header stamp -> /lanes published;
"nan" in a second without frames).

A stamp-derived latency is only as good as the stamp: a zero stamp (a driver that leaves the
header empty), one ahead of the node's clock or more than ``STAMP_LATENCY_MAX_S`` behind it
(another clock: bag replay without use_sim_time, an unsynchronised camera) is no time on
this clock and gives no e2e_stamp_to_publish_ms figure. Those frames are counted in
frames_without_stamp_latency and stamp_note says why the figure is missing.
"""
from __future__ import annotations

import math
import statistics
import threading
import time
from collections import Counter, deque
from typing import Any

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

STAMP_LATENCY_MAX_S = 60.0  # an older stamp is no time on this clock (a frame is never that late here)


def stamp_problem(stamp_ns: int, now_ns: int) -> str | None:
    """Why a header stamp is no time on the node's clock: "zero", "future", "old"; None when it is one."""
    if stamp_ns <= 0:
        return "zero"
    if stamp_ns > now_ns:
        return "future"
    if now_ns - stamp_ns > STAMP_LATENCY_MAX_S * 1e9:
        return "old"
    return None


def stamp_latency_ms(stamp_ns: int, now_ns: int) -> float | None:
    """Header stamp -> now in ms, or None where the stamp is no time on this clock (``stamp_problem``)."""
    return None if stamp_problem(stamp_ns, now_ns) else (now_ns - stamp_ns) / 1e6


class FrameStats:
    """Counters and latency windows behind /diagnostics; windows reset at each report. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.received = self.processed = self.dropped = self.missed = 0
        self.stamp_latency_unavailable = 0  # frames whose header stamp is no time on this clock
        self.errors: Counter[str] = Counter()
        self.bad_stamps: Counter[str] = Counter()
        self._window_start = time.monotonic()
        self._window_received = self._window_processed = 0
        self._window_errors = 0
        self._window_bad_stamps = 0
        self._inference: deque[float] = deque(maxlen=10_000)
        self._receive_to_publish: deque[float] = deque(maxlen=10_000)
        self._stamp_to_publish: deque[float] = deque(maxlen=10_000)

    def on_receive(self, dropped: bool, missed: int) -> None:
        with self._lock:
            self.received += 1
            self._window_received += 1
            self.dropped += int(dropped)
            self.missed += missed

    def on_error(self, kind: str) -> None:
        with self._lock:
            self.errors[kind] += 1
            self._window_errors += 1

    def on_published(self, inference_ms: float, receive_to_publish_ms: float, stamp_to_publish_ms: float | None,
                     stamp_problem: str | None = None) -> None:
        """One frame's /lanes went out. ``stamp_to_publish_ms`` None: its stamp gives no latency
        (``stamp_latency_ms``); ``stamp_problem`` then says why (``stamp_problem()``)."""
        with self._lock:
            self.processed += 1
            self._window_processed += 1
            self._inference.append(inference_ms)
            self._receive_to_publish.append(receive_to_publish_ms)
            if stamp_to_publish_ms is not None:
                self._stamp_to_publish.append(stamp_to_publish_ms)
            else:
                self.stamp_latency_unavailable += 1
                self.bad_stamps[stamp_problem or "unknown"] += 1
                self._window_bad_stamps += 1

    def report(self) -> dict[str, Any]:
        """Totals plus rates and latency statistics since the previous report."""
        with self._lock:
            now = time.monotonic()
            span = max(now - self._window_start, 1e-6)
            out = {
                "input_rate_hz": self._window_received / span,
                "output_rate_hz": self._window_processed / span,
                "frames_received": self.received,
                "frames_processed": self.processed,
                "frames_dropped": self.dropped,
                "frames_missed": self.missed,
                "stamp_latency_unavailable": self.stamp_latency_unavailable,
                "window_bad_stamps": self._window_bad_stamps,
                "bad_stamps_by_kind": dict(self.bad_stamps),
                "errors": sum(self.errors.values()),
                "window_errors": self._window_errors,
                "errors_by_kind": dict(self.errors),
            }
            for key, values in (("inference_latency_ms", self._inference),
                                ("e2e_receive_to_publish_ms", self._receive_to_publish),
                                ("e2e_stamp_to_publish_ms", self._stamp_to_publish)):
                out[key] = statistics.median(values) if values else math.nan
                out[key + "_max"] = max(values) if values else math.nan
                values.clear()
            self._window_start = now
            self._window_received = self._window_processed = self._window_errors = self._window_bad_stamps = 0
            return out


def stamp_note(report: dict[str, Any]) -> str:
    """Why e2e_stamp_to_publish_ms is missing for some frames of the last window ("" when it is not)."""
    if not report["window_bad_stamps"]:
        return ""
    reasons = {"zero": "a zero header stamp", "future": "a header stamp ahead of the node clock",
               "old": f"a header stamp over {STAMP_LATENCY_MAX_S:.0f} s behind the node clock",
               "unknown": "an unusable header stamp"}
    kinds = ", ".join(f"{n} with {reasons[k]}" for k, n in sorted(report["bad_stamps_by_kind"].items()))
    return (f"e2e_stamp_to_publish_ms leaves out {report['window_bad_stamps']} frames of the last window "
            f"(since start: {kinds}); stamps must come from the node's clock (use_sim_time for bag replay)")


def build_status(name: str, report: dict[str, Any], info: dict[str, str], device_note: str) -> DiagnosticStatus:
    """DiagnosticStatus of one report; ``info`` (device, backend, model, ...) is appended as it is."""
    status = DiagnosticStatus()
    status.name = f"{name}: lane detection"
    status.hardware_id = info.get("device", "")
    warnings = []
    if device_note:
        warnings.append("cuda unavailable, on cpu")
    if report["window_errors"]:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(report["errors_by_kind"].items()))
        warnings.append(f"{report['window_errors']} bad frames (total by kind: {kinds})")
    if info.get("cache_note"):  # exports, compiles and the backend choice are redone at every start
        warnings.append("backend cache not writable")
    note = stamp_note(report)
    if note:
        warnings.append(f"{report['window_bad_stamps']} frames without a usable header stamp")
    status.level = DiagnosticStatus.WARN if warnings else DiagnosticStatus.OK
    status.message = "; ".join(warnings) or (
        f"{report['input_rate_hz']:.1f} Hz in, {report['output_rate_hz']:.1f} Hz out")
    values = {
        "input_rate_hz": f"{report['input_rate_hz']:.2f}",
        "output_rate_hz": f"{report['output_rate_hz']:.2f}",
        "frames_received": str(report["frames_received"]),
        "frames_processed": str(report["frames_processed"]),
        "frames_dropped": str(report["frames_dropped"]),
        "frames_missed": str(report["frames_missed"]),
        "frames_without_stamp_latency": str(report["stamp_latency_unavailable"]),
        "errors": str(report["errors"]),
    }
    for kind, count in sorted(report["errors_by_kind"].items()):
        values[f"errors.{kind}"] = str(count)
    for key in ("inference_latency_ms", "e2e_receive_to_publish_ms", "e2e_stamp_to_publish_ms"):
        values[key] = f"{report[key]:.2f}"
        values[key + "_max"] = f"{report[key + '_max']:.2f}"
    values["stamp_note"] = note
    values["device_note"] = device_note
    values.update(info)
    status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
    return status
