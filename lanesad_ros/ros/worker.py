"""The lane_detector node's threads: the inference worker that owns the Detector and the debug-image
worker, each with a one-slot, newest-wins frame mailbox.

Threading model (the one the node follows):

- The executor thread runs subscription, timer, parameter and lifecycle callbacks. It never
  touches the Detector: it puts frames into the worker's one-slot frame mailbox and queues
  changes (``InferenceWorker.change``) for it.
- The inference worker thread owns the Detector (and its tracker and camera): between two
  frames it applies every queued change in order, then runs the newest frame. A change
  therefore never lands in the middle of a frame, and a frame never sees half a change.
- The debug-image worker draws and publishes overlays from its own one-slot mailbox, so
  drawing never delays /lanes; it reads only the frame and detections it was handed.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from lanesad_ros.detector import Detector, DetectorError
from lanesad_ros.ros.convert import ImageConversionError


def error_kind(exc: BaseException) -> str:
    """Diagnostics bucket of a per-frame failure."""
    if isinstance(exc, ImageConversionError):
        return exc.kind
    if isinstance(exc, DetectorError):
        return "detector"
    return "internal"


Change = Callable[[Detector], None]


class InferenceWorker:
    """A thread that owns ``detector``: frames newest-wins, changes queued and applied between frames.

    ``handle(detector, item)`` runs each frame taken from the mailbox; an exception it raises
    goes to ``on_error(item, exc)`` and the worker carries on (a bad frame never stops it).
    A change that raises is reported to ``on_error(None, exc)`` and skipped.
    """

    def __init__(self, detector: Detector, handle: Callable[[Detector, Any], None],
                 on_error: Callable[[Any, BaseException], None], name: str = "lane_inference") -> None:
        self.detector = detector
        self._handle = handle
        self._on_error = on_error
        self._cond = threading.Condition()
        self._frame: Any = None
        self._changes: list[Change] = []
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: Any) -> bool:
        """Hand over a frame; True when it replaced one the worker never took (a dropped frame)."""
        with self._cond:
            replaced = self._frame is not None
            self._frame = item
            self._cond.notify()
        return replaced

    def change(self, change: Change) -> None:
        """Queue ``change(detector)``; it runs on the worker before the next frame (or at once when idle)."""
        with self._cond:
            if self._closed:
                raise RuntimeError("inference worker is closed")
            self._changes.append(change)
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._frame is None and not self._changes and not self._closed:
                    self._cond.wait()
                changes, self._changes = self._changes, []
                frame, self._frame = self._frame, None
                closed = self._closed
            for change in changes:  # also when closing: queued changes are never lost
                try:
                    change(self.detector)
                except Exception as exc:
                    self._on_error(None, exc)
            if closed:
                return
            if frame is not None:
                try:
                    self._handle(self.detector, frame)
                except Exception as exc:  # a bad frame must never stop the node
                    self._on_error(frame, exc)

    def close(self, timeout: float = 5.0) -> None:
        """Apply the queued changes, drop a waiting frame, and stop the thread (waits for a running frame)."""
        with self._cond:
            self._closed = True
            self._frame = None
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
