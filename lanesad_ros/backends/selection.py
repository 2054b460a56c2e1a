"""``backend="auto"``: one repeatable choice per machine, weights and input size, with its reason.

The first start-up on a machine measures every candidate (median of a few forwards on a fixed
probe) and keeps the **first candidate in preference order unless another is clearly faster**
(at least :data:`CLEARLY_FASTER` times); the choice is written to the cache
(:class:`~lanesad_ros.backends.cache.ChoiceStore`) under a key made of the machine, the weights
and metadata file hashes, the input size, device, threads, the candidate list and the package
versions. Later start-ups with the same key build only the remembered backend, so a busy
machine cannot flip the choice between runs and start-up skips the timing (and the imports of
the backends it does not run). Re-measured only when asked (``remeasure=True``, or the
environment variable ``LANESAD_REMEASURE_BACKEND=1``), or when anything in the key changed.

Every outcome carries a one-line ``reason`` (for logs and /diagnostics).
"""
from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from lanesad_ros.backends.cache import ChoiceStore, now_iso

# A later candidate replaces an earlier (preferred) one only when its median is at least this
# many times faster: timing noise on a shared machine is well under 1.25x for the same backend,
# real differences between these backends are 1.5x-3x.
CLEARLY_FASTER = 1.25
REMEASURE_ENV = "LANESAD_REMEASURE_BACKEND"


@dataclass(frozen=True)
class Candidate:
    """One backend that ``auto`` may run: ``kind`` names it in the cache ("openvino",
    "openvino-int8", "torch", "onnxruntime"); ``make()`` builds it (may raise)."""

    kind: str
    make: Callable[[], Any]


@dataclass
class Choice:
    backend: Any
    reason: str
    timings_ms: dict[str, float]
    remembered: bool


def time_backend(backend, probe: np.ndarray, warmup: int = 2, runs: int = 5) -> float:
    """Median wall time in ms of a forward on ``probe`` (outputs read back, so device work is included)."""
    times = []
    for i in range(warmup + runs):
        start = time.perf_counter()
        seg, _ = backend(probe)
        float(seg[0, 0, 0, 0])  # waits for the result (a CUDA tensor syncs here)
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def remeasure_requested() -> bool:
    return os.environ.get(REMEASURE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _summary(timings: dict[str, float]) -> str:
    return ", ".join(f"{name} {ms:.1f} ms" for name, ms in sorted(timings.items(), key=lambda kv: kv[1]))


def measure(candidates: list[Candidate], probe: np.ndarray) -> tuple[Any, str, bool, dict[str, float], list[str]]:
    """Build and time every candidate; return (chosen backend, its kind, whether it is the first
    that could be built, timings by backend name, errors of those that could not)."""
    best, best_kind, best_ms, timings, errors, built = None, "", float("inf"), {}, [], []
    for candidate in candidates:
        try:
            backend = candidate.make()
        except Exception as exc:  # a candidate that cannot load (package, export, provider) is skipped
            errors.append(f"{candidate.kind}: {type(exc).__name__}: {exc}")
            continue
        if hasattr(backend, "prepare"):
            backend.prepare(probe.shape)
        ms = time_backend(backend, probe)
        timings[backend.name] = ms
        built.append(candidate.kind)
        if best is None or ms * CLEARLY_FASTER <= best_ms:
            best, best_kind, best_ms = backend, candidate.kind, ms
    return best, best_kind, bool(built) and built[0] == best_kind, timings, errors


def remembered(candidates: list[Candidate], fields: dict, store: ChoiceStore | None,
               remeasure: bool = False) -> tuple[Choice | None, str]:
    """The remembered choice for ``fields``, built, or (None, why a measurement is needed)."""
    by_kind = {c.kind: c for c in candidates}
    if remeasure or remeasure_requested():
        return None, "re-measure requested"
    record = store.load(fields) if store is not None else None
    if record is None:
        return None, "no remembered choice for this machine, weights, input size and versions"
    if record["backend"] not in by_kind:
        return None, f"remembered {record['backend']} is no longer a candidate"
    try:
        backend = by_kind[record["backend"]].make()
    except Exception as exc:  # e.g. a package removed since: measure again
        return None, f"remembered {record['backend']} failed to load ({type(exc).__name__}: {exc})"
    timings = {str(k): float(v) for k, v in record.get("timings_ms", {}).items()}
    reason = (f"remembered choice from {record.get('measured_at', '?')} ({_summary(timings)}; "
              f"{record.get('rule', '')}); set {REMEASURE_ENV}=1 to measure again")
    return Choice(backend, reason, timings, remembered=True), ""


def measure_and_remember(candidates: list[Candidate], probe: np.ndarray, fields: dict, store: ChoiceStore | None,
                         why: str) -> Choice:
    """Measure ``candidates`` (in preference order), remember the choice in ``store``; ``why``
    (the reason a measurement was needed) goes into the returned reason.

    Raises ValueError naming every candidate's failure when none can be built.
    """
    backend, kind, first, timings, errors = measure(candidates, probe)
    if backend is None:
        raise ValueError("no inference backend could be loaded: " + "; ".join(errors))
    rule = (f"kept {backend.name}: first in preference order ({', '.join(c.kind for c in candidates)}), none other "
            f">= {CLEARLY_FASTER}x faster" if first
            else f"chose {backend.name}: >= {CLEARLY_FASTER}x faster than the ones preferred to it")
    if errors:
        rule += f"; unavailable: {'; '.join(errors)}"
    if store is not None:
        try:
            store.save(fields, {"backend": kind, "backend_name": backend.name, "timings_ms": timings,
                                "measured_at": now_iso(), "rule": rule})
        except OSError as exc:  # a read-only cache costs the next start-up a measurement, nothing more
            rule += f"; not remembered ({exc})"
    return Choice(backend, f"measured ({why}): {_summary(timings)}; {rule}", timings, remembered=False)


def choose(candidates: list[Candidate], probe: np.ndarray, fields: dict, store: ChoiceStore | None,
           remeasure: bool = False) -> Choice:
    """The remembered choice for ``fields`` when there is one (and no re-measure is asked), else a
    measurement of ``candidates`` (in preference order), remembered in ``store``."""
    choice, why = remembered(candidates, fields, store, remeasure)
    return choice if choice is not None else measure_and_remember(candidates, probe, fields, store, why)
