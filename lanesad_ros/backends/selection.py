"""``backend="auto"``: one repeatable choice per machine, weights and input size, with its reason.

The first start-up on a machine measures every candidate (median of a few forwards on a fixed
probe) and keeps the **first candidate in preference order unless another is clearly faster**
(at least :data:`CLEARLY_FASTER` times); the choice is written to the cache
(:class:`~lanesad_ros.backends.cache.ChoiceStore`) under a key made of the machine, the weights
and metadata file hashes, the input size, device, threads, the candidate list and the package
versions. Later start-ups with the same key build only the remembered backend, so a busy
machine cannot flip the choice between runs and start-up skips the timing (and the imports of
the backends it does not run). Re-measured only when asked (``remeasure=True``, or the
environment variable ``LANESAD_REMEASURE_BACKEND=1``), when anything in the key changed, or
while the choice is not settled (below).

Contention: timings taken while other processes load the CPU can rank the backends wrongly
(ONNX Runtime was remembered though OpenVINO is 3.2x faster on a quiet machine). Measurements
are serialised across processes by a lock in the cache (two nodes starting together measure
once, the second takes the first's choice), and each records the share of the machine's CPU
time that other processes used meanwhile (:class:`CpuShare`, from /proc/stat). A choice
measured while others used more than :data:`BUSY_SHARE` of the CPUs is not settled: the next
start-ups run it but measure again, keeping the least contended measurement, until one is
quiet or :data:`MAX_MEASUREMENTS` were made; then it is remembered for good.

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
# A measurement during which other processes used more than this share of all CPUs' time is
# contended (one busy process on this project's 2-core machine is 0.5).
BUSY_SHARE = 0.25
# Contended measurements after which the least contended one is kept for good.
MAX_MEASUREMENTS = 3
# How long a start-up waits for another process's measurement before measuring anyway.
LOCK_TIMEOUT_S = 300.0


class CpuShare:
    """Share of all CPUs' time that *other* processes used between construction and
    :meth:`others`: (busy time of the machine - this process's CPU time) / (wall time x CPUs),
    from /proc/stat (Linux; steal time of a VM counts as busy). None where /proc/stat is absent."""

    def __init__(self):
        self.start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float] | None:
        try:
            with open("/proc/stat", encoding="ascii") as f:
                ticks = [int(v) for v in f.readline().split()[1:9]]  # user .. steal
        except (OSError, ValueError):
            return None
        busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # less idle and iowait
        own = os.times()
        return time.monotonic(), busy, own.user + own.system

    def others(self) -> float | None:
        end = self._sample()
        if self.start is None or end is None or end[0] <= self.start[0]:
            return None
        wall = (end[0] - self.start[0]) * (os.cpu_count() or 1)
        return min(1.0, max(0.0, ((end[1] - self.start[1]) - (end[2] - self.start[2])) / wall))


@dataclass(frozen=True)
class Candidate:
    """One backend that ``auto`` may run: ``kind`` names it in the cache ("openvino",
    "openvino-int8", "torch", "onnxruntime"); ``make()`` builds it (may raise)."""

    kind: str
    make: Callable[[], Any]


@dataclass
class Choice:
    """``settled``: False for a remembered choice that was measured under contention and is to be
    measured again (see the module docstring); ``record``: what the cache holds for it."""

    backend: Any
    reason: str
    timings_ms: dict[str, float]
    remembered: bool
    settled: bool = True
    record: dict | None = None


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
    settled = record.get("settled") is True
    reason = (f"remembered choice from {record.get('measured_at', '?')} ({_summary(timings)}; "
              f"{record.get('rule', '')}); "
              + (f"set {REMEASURE_ENV}=1 to measure again" if settled else f"not settled: {unsettled_reason(record)}"))
    return Choice(backend, reason, timings, remembered=True, settled=settled, record=record), ""


def unsettled_reason(record: dict) -> str:
    """Why a remembered record is measured again."""
    share = record.get("others_cpu_share")
    if share is None:
        return "measured without a record of the machine's load, measuring again"
    return (f"measured while other processes used {share:.0%} of the CPUs (measurement "
            f"{record.get('measurements', 1)} of up to {MAX_MEASUREMENTS}), measuring again")


def measure_and_remember(candidates: list[Candidate], probe: np.ndarray, fields: dict, store: ChoiceStore | None,
                         why: str, previous: dict | None = None, remeasure: bool = False) -> Choice:
    """Measure ``candidates`` (in preference order), remember the choice in ``store``; ``why``
    (the reason a measurement was needed) goes into the returned reason. ``previous``: the
    unsettled record this measurement confirms or replaces (the less contended one is kept).

    Holds the store's measurement lock meanwhile; a settled choice that another process
    remembered while this one waited for the lock is taken instead (unless ``remeasure``).
    Raises ValueError naming every candidate's failure when none can be built.
    """
    if store is None:  # nothing to remember, nobody to wait for
        return _measure(candidates, probe, fields, None, why, previous, locked=True)
    with store.measuring(LOCK_TIMEOUT_S) as locked:
        if not remeasure:
            record = store.load(fields)
            if record is not None and record != previous and record.get("settled") is True:
                choice, _ = remembered(candidates, fields, store)
                if choice is not None:
                    choice.reason += " (measured by another process while this one waited)"
                    return choice
        return _measure(candidates, probe, fields, store, why, previous, locked)


def _measure(candidates: list[Candidate], probe: np.ndarray, fields: dict, store: ChoiceStore | None, why: str,
             previous: dict | None, locked: bool) -> Choice:
    share = CpuShare()
    backend, kind, first, timings, errors = measure(candidates, probe)
    others = share.others()
    if backend is None:
        raise ValueError("no inference backend could be loaded: " + "; ".join(errors))
    rule = (f"kept {backend.name}: first in preference order ({', '.join(c.kind for c in candidates)}), none other "
            f">= {CLEARLY_FASTER}x faster" if first
            else f"chose {backend.name}: >= {CLEARLY_FASTER}x faster than the ones preferred to it")
    if errors:
        rule += f"; unavailable: {'; '.join(errors)}"
    load = "unknown load" if others is None else f"other processes used {others:.0%} of the CPUs"
    if not locked and store is not None:
        load += " (another process's measurement did not finish in time: not serialised)"
    count = 1 + (int(previous.get("measurements", 1)) if previous else 0)
    quiet = others is not None and others <= BUSY_SHARE and locked
    record = {"backend": kind, "backend_name": backend.name, "timings_ms": timings, "measured_at": now_iso(),
              "rule": rule, "others_cpu_share": others, "measurements": count,
              "settled": quiet or count >= MAX_MEASUREMENTS}
    kept = record
    if previous is not None and not quiet and _less_contended(previous, record):
        earlier = previous.get("backend")
        maker = {c.kind: c.make for c in candidates}.get(earlier)
        try:  # run what is remembered, so that this start and the next ones agree
            backend = backend if earlier == kind else maker()
        except Exception:  # noqa: BLE001 - it loaded before; if it no longer does, the fresh measurement stands
            pass
        else:
            kept = dict(previous, measurements=count, settled=record["settled"])  # the quieter one stands
            rule += f"; kept the less contended earlier choice {previous.get('backend_name')}"
    state = ("settled" if kept["settled"] else
             f"not settled, measured again at the next start (up to {MAX_MEASUREMENTS} measurements)")
    if store is None:
        state = "not remembered (no weights file)"
    else:
        try:
            store.save(fields, kept)
        except OSError as exc:  # the cache turned read-only: the next start-up measures again
            state = f"not remembered ({exc})"
    return Choice(backend, f"measured ({why}): {_summary(timings)}; {rule}; {load}; {state}", timings,
                  remembered=False, settled=kept["settled"], record=kept)


def _less_contended(a: dict, b: dict) -> bool:
    """Whether record ``a`` was measured on a quieter machine than ``b`` (unknown counts as busy)."""
    share_a, share_b = a.get("others_cpu_share"), b.get("others_cpu_share")
    return share_a is not None and (share_b is None or share_a < share_b)


def choose(candidates: list[Candidate], probe: np.ndarray, fields: dict, store: ChoiceStore | None,
           remeasure: bool = False) -> Choice:
    """The remembered, settled choice for ``fields`` when there is one (and no re-measure is
    asked), else a measurement of ``candidates`` (in preference order), remembered in ``store``."""
    choice, why = remembered(candidates, fields, store, remeasure)
    if choice is not None and choice.settled:
        return choice
    if choice is not None:
        why = unsettled_reason(choice.record)
    return measure_and_remember(candidates, probe, fields, store, why,
                                previous=choice.record if choice is not None else None, remeasure=remeasure)
