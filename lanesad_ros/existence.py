"""Lane-existence probabilities that mean what they say: calibration and its measurement.

The network's existence head gives, per lane slot, a probability that the slot holds a lane
boundary. Trained on few frames it is over- or under-confident. Platt scaling (Platt 1999,
"Probabilistic outputs for support vector machines") refits the logit as
``logit(p') = scale * logit(p) + bias`` on held-out (validation) frames; temperature scaling
(Guo et al., ICML 2017, "On Calibration of Modern Neural Networks", sec. 4.2) is the special
case ``bias = 0``, ``scale = 1 / T``. Both are monotonic, so they change which threshold
means what, never the ranking of slots.

The reliability diagram and the expected calibration error (ECE) follow Guo et al. sec. 2:
predictions are put into equal-width confidence bins; ECE is the count-weighted mean of
|fraction of slots that hold a lane - mean predicted probability| over the bins.

Pure numpy / scipy; no ROS, no torch.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

METHODS = ("platt", "temperature")
_EPS = 1e-6


def as_calibration(value: Mapping | Sequence[float] | None) -> tuple[float, float]:
    """``(scale, bias)`` of the logit map from a mapping ``{"scale", "bias"[, "method"]}``, a
    pair, or None (identity). Raises ValueError on anything else or a scale <= 0 (which
    would reverse or erase the ranking)."""
    if value is None:
        return 1.0, 0.0
    if isinstance(value, Mapping):
        unknown = set(value) - {"scale", "bias", "method"}
        if unknown:
            raise ValueError(f"exist_calibration has unknown key(s) {sorted(unknown)}; "
                             "expected scale, bias, method")
        if value.get("method", "platt") not in METHODS:
            raise ValueError(f"exist_calibration method must be one of {METHODS}, got {value.get('method')!r}")
        pair = (value.get("scale", 1.0), value.get("bias", 0.0))
    else:
        pair = tuple(value)
        if len(pair) != 2:
            raise ValueError(f"exist_calibration needs (scale, bias), got {value!r}")
    scale, bias = float(pair[0]), float(pair[1])
    if not (np.isfinite(scale) and np.isfinite(bias)) or scale <= 0:
        raise ValueError(f"exist_calibration needs a finite scale > 0 and a finite bias, "
                         f"got scale={scale}, bias={bias}")
    return scale, bias


def logit(prob: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)) with p clipped to [1e-6, 1 - 1e-6] (the head's outputs saturate)."""
    p = np.clip(np.asarray(prob, dtype=np.float64), _EPS, 1.0 - _EPS)
    return np.log(p) - np.log1p(-p)


def apply_calibration(prob: np.ndarray, calibration: tuple[float, float]) -> np.ndarray:
    """Existence probabilities (any shape, 0..1) -> calibrated probabilities, same shape, float32."""
    scale, bias = calibration
    prob = np.asarray(prob, dtype=np.float32)
    if scale == 1.0 and bias == 0.0:
        return prob
    z = scale * logit(prob) + bias
    return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)


def _check(prob: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    prob = np.asarray(prob, dtype=np.float64).reshape(-1)
    present = np.asarray(present).reshape(-1)
    if prob.shape != present.shape:
        raise ValueError(f"{prob.size} probabilities but {present.size} presence labels")
    if prob.size == 0:
        raise ValueError("no existence predictions to measure")
    if np.any(~np.isfinite(prob)) or prob.min() < 0 or prob.max() > 1:
        raise ValueError("existence probabilities must be finite and within [0, 1]")
    return prob, present.astype(bool)


def fit_calibration(prob: np.ndarray, present: np.ndarray, method: str = "platt") -> dict:
    """Fit the logit map on validation predictions by minimum log loss.

    ``prob``: (N,) uncalibrated existence probabilities of N (frame, slot) pairs; ``present``:
    (N,) whether that slot holds a ground-truth lane. Returns ``{"method", "scale", "bias"}``
    (a valid ``PostprocessConfig.exist_calibration``). Needs both outcomes among the samples.
    """
    # scipy is needed only to fit (evaluation), not by the detector that applies the result.
    from scipy.optimize import minimize

    if method not in METHODS:
        raise ValueError(f"calibration method must be one of {METHODS}, got {method!r}")
    prob, present = _check(prob, present)
    if present.all() or not present.any():
        which = "present" if present.all() else "absent"
        raise ValueError(f"cannot fit a calibration: all {present.size} slots are {which}")
    z, y = logit(prob), present.astype(np.float64)

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        log_scale, bias = params[0], (params[1] if method == "platt" else 0.0)
        scale = np.exp(log_scale)  # keeps the scale positive (a monotonic map)
        s = scale * z + bias
        nll = np.mean(np.logaddexp(0.0, s) - y * s)
        r = 1.0 / (1.0 + np.exp(-s)) - y
        grad = [np.mean(r * z) * scale] + ([np.mean(r)] if method == "platt" else [])
        return float(nll), np.asarray(grad)

    start = np.zeros(2 if method == "platt" else 1)
    bounds = [(-6.0, 6.0)] + [(-30.0, 30.0)] * (len(start) - 1)
    result = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=bounds)
    scale = float(np.exp(result.x[0]))
    bias = float(result.x[1]) if method == "platt" else 0.0
    return {"method": method, "scale": scale, "bias": bias}


def reliability(prob: np.ndarray, present: np.ndarray, bins: int = 10) -> dict:
    """Reliability diagram data and calibration figures of existence predictions.

    ``prob`` (N,) in [0, 1], ``present`` (N,) bool. Returns ``samples``, ``positives``,
    ``ece`` and ``mce`` (expected / maximum calibration error over non-empty bins, Guo et al.
    2017 sec. 2), ``brier`` (mean squared error), ``nll`` (mean log loss, p clipped to 1e-6)
    and ``bins``: a list of ``{lower, upper, count, mean_prob, frac_present}`` for each of the
    ``bins`` equal-width bins (``mean_prob`` / ``frac_present`` None when empty). The last bin
    includes 1.0.
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    prob, present = _check(prob, present)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(prob, edges[1:-1], right=False), 0, bins - 1)
    table, gaps, weights = [], [], []
    for b in range(bins):
        mask = index == b
        count = int(mask.sum())
        entry = {"lower": float(edges[b]), "upper": float(edges[b + 1]), "count": count,
                 "mean_prob": None, "frac_present": None}
        if count:
            entry["mean_prob"] = float(prob[mask].mean())
            entry["frac_present"] = float(present[mask].mean())
            gaps.append(abs(entry["frac_present"] - entry["mean_prob"]))
            weights.append(count)
        table.append(entry)
    gaps_arr, weights_arr = np.asarray(gaps), np.asarray(weights, dtype=np.float64)
    p = np.clip(prob, _EPS, 1.0 - _EPS)
    return {
        "samples": int(prob.size), "positives": int(present.sum()),
        "ece": float((gaps_arr * weights_arr).sum() / weights_arr.sum()),
        "mce": float(gaps_arr.max()),
        "brier": float(np.mean((prob - present) ** 2)),
        "nll": float(-np.mean(np.where(present, np.log(p), np.log1p(-p)))),
        "bins": table,
    }


def slot_presence(gt_slots: Sequence[int], num_slots: int) -> np.ndarray:
    """(num_slots,) bool: which ego-relative slots 0..num_slots-1 a ground-truth frame's lanes fill."""
    filled = np.zeros(num_slots, dtype=bool)
    for s in gt_slots:
        if 0 <= int(s) < num_slots:
            filled[int(s)] = True
    return filled
