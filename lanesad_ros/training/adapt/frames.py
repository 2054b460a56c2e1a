"""What a drive's frames say without a model: the car's hood, and whether they are in time order.

Both run on small grey copies of one camera's frames (:func:`small_grey`) in the order the source
gives them; ``checks.estimate_camera`` takes the hood from here, ``run`` the time order.

**Static bottom region** (:func:`static_bottom`): the car's hood and burnt-in overlays do not
change from frame to frame. Per pixel, the median absolute deviation over time of a small grey
copy of the frames is below ``STATIC_MAD`` grey levels; the part of that region connected to the
image bottom is the hood. Only frames that differ from the last one kept count
(:func:`moving_frames`): a car waiting at a light repeats one view, and a city drive sampled every
3 s (CULane) stood still for 20 of its 60 frames, which made the whole scene "static". A static
region reaching above ``MAX_HOOD`` of the height is a standing scene, not a hood; nor is one that
rises more than ``MAX_HOOD_RISE`` above the hood's crest in the middle half of the image: a hood is
highest near the middle, while plain asphalt or a verge beside the car can stay nearly unchanged
over a drive (on the first 30 frames of CULane clip 06030822_0756 the right verge made a "hood" up
to row 417 of 590, the real one starts near row 560). At night the hood mirrors the headlit road
and is found higher (culane-night-clip: median row 468 of 590, which its frames show).

**Time order** (:func:`looks_like_sequence`): the temporal check of the pseudo-labels (a lane must
be seen again in a neighbouring frame) means something only on a sequence; a folder of unrelated
stills is not one, whatever their names.
"""
from __future__ import annotations

import cv2
import numpy as np
from scipy.ndimage import median_filter

STATIC_MAD = 4.0  # grey levels: median absolute deviation over time below which a pixel is static
MOVING_DIFF = 3.0  # grey levels: mean |difference| from the last frame kept for a frame to count as moved
MAX_HOOD = 1.0 / 3.0  # of the height: highest a hood reaches (CULane's camera about 0.1, ours 0.15-0.3)
MAX_HOOD_RISE = 0.05  # of the height: how far a hood column may reach above the crest of the middle half
_HOOD_SEARCH = 0.15  # of the height: how far above the static region the hood contour is looked for
SEQUENCE_MARGIN = 0.15  # correlation margin of consecutive pairs over all pairs (looks_like_sequence)
SEQUENCE_P = 0.01  # permutation p-value under which consecutive frames are alike not by chance
_PERMUTATIONS = 200  # random frame orders of that test
_SEQUENCE_FRAMES = 600  # the first frames judged (time order shows in any stretch; cost grows as n^2)
_SMALL_WIDTH = 160  # width of the grey copies (static region, time order)


def small_grey(image: np.ndarray) -> np.ndarray:
    """A small grey copy (width ``_SMALL_WIDTH``) for the static region and the time order."""
    h, w = image.shape[:2]
    size = (_SMALL_WIDTH, max(8, int(round(h * _SMALL_WIDTH / w))))
    return cv2.resize(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), size, interpolation=cv2.INTER_AREA)


def moving_frames(greys: list[np.ndarray], min_diff: float = MOVING_DIFF) -> list[np.ndarray]:
    """The frames (small grey copies, in time order) that differ from the last one kept by a mean
    absolute difference of ``min_diff`` grey levels or more: a standing car's repeats dropped.
    Two views of a drive 3 s apart differ by 11-65 levels, repeats at a red light by 0.8-1.5
    (CULane driver_161_90frame); video frames are kept as the view drifts."""
    kept: list[np.ndarray] = []
    for grey in greys:
        if not kept or float(np.mean(np.abs(grey.astype(np.float32) - kept[-1]))) >= min_diff:
            kept.append(grey.astype(np.float32))
    return kept


def static_bottom(greys: list[np.ndarray], size: tuple[int, int], min_frames: int = 8) -> np.ndarray:
    """First static row per source column (hood, overlays touching the bottom); H where none.

    ``greys``: small grey copies (:func:`small_grey`) of frames of one camera in time order;
    needs ``min_frames`` of them that moved (:func:`moving_frames`; else no hood is assumed).
    A column whose static region reaches above ``MAX_HOOD`` of the height has none; a column
    reaching more than ``MAX_HOOD_RISE`` above the median top of the middle half of the
    columns (the hood's crest) gets the crest. Two cues:

    1. the bottom-connected region whose median absolute deviation over time is below
       ``STATIC_MAD`` grey levels (closed vertically over reflections); a run under 2 % of the
       height is no hood (JPEG blocks at a dark bottom edge);
    2. a glossy hood mirrors the moving scene near its edge, so cue 1 stops short of it; the
       hood's contour is then found as the strongest *persistent* horizontal edge (median over
       time of the vertical gradient) up to ``_HOOD_SEARCH`` of the height above cue 1, taken
       when it is clearly stronger (x3) than the column's typical persistent edge.
    """
    w, h = size
    greys = moving_frames(greys)
    if len(greys) < min_frames:
        return np.full(w, float(h))
    stack = np.stack(greys)
    mad = np.median(np.abs(stack - np.median(stack, axis=0)), axis=0)
    static = cv2.morphologyEx((mad < STATIC_MAD).astype(np.uint8), cv2.MORPH_CLOSE, np.ones((7, 1), np.uint8)) > 0
    edges = np.median(np.stack([np.abs(cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)) for g in stack]), axis=0)
    edges[-1] = 0.0  # the Sobel border row is not an edge
    sh, sw = static.shape
    top = np.full(sw, float(sh))
    search = max(2, int(round(_HOOD_SEARCH * sh)))
    for col in range(sw):
        column = static[:, col]
        if not column[-1]:
            continue
        moving = np.flatnonzero(~column)
        start = (moving[-1] + 1) if moving.size else 0
        if sh - start < 0.02 * sh:
            continue
        lo = max(0, start - search)
        window = edges[lo:start + 1, col]
        best = int(np.argmax(window))
        top[col] = lo + best if window[best] > 3.0 * max(float(np.median(edges[:, col])), 1.0) else start
    top[top < (1.0 - MAX_HOOD) * sh] = sh  # static that high up is a standing scene, not a hood
    top = median_filter(top, size=9, mode="nearest")
    crest = float(np.median(top[sw // 4: sw - sw // 4]))
    top[top < crest - MAX_HOOD_RISE * sh] = crest  # static verge or asphalt beside the car, not hood
    rows = top * (h / sh)
    return np.interp((np.arange(w) + 0.5) * (sw / w) - 0.5, np.arange(sw), rows)


def looks_like_sequence(greys: list[np.ndarray], margin: float = SEQUENCE_MARGIN,
                        p_max: float = SEQUENCE_P) -> bool:
    """True when consecutive frames are clearly, and not by chance, more alike than frames in general.

    Each frame becomes its departure from the median frame over the pixels that change, normalised: a
    static hood or overlay, and the layout every frame of one camera shares (bright sky over dark
    road), would make any two frames alike. The median correlation of consecutive pairs must exceed
    the median over all pairs two or more frames apart by ``margin``, and fewer than ``p_max`` of
    ``_PERMUTATIONS`` random orders of the same frames (fixed seed) may reach it. Measured on
    ../shared/data (consecutive vs all pairs, p): culane-night-clip (41 frames, about 1 Hz) 0.42 vs
    -0.01, p 0.005 (the least 200 orders can show); tusimple-clip (20 frames) 0.87 vs -0.06, p 0.005;
    CULane clip 06030819_0755 (60 frames, 3 s apart) 0.64 vs 0.04, p 0.005, and each half of it; the
    nine unrelated stills of culane-urban 0.04 vs 0.07, p 0.64 (judged a sequence before, on whole
    frames against pairs n/2 apart: 0.56 vs 0.25); the 170 frames of tusimple-frames (clips of one
    drive, sorted by name) 0.10 vs 0.11. Of 200 sets of nine random synthetic stills one passes
    (seven at margin 0.1, p 0.05). A drive of fewer than about 7 frames cannot show it (of 4 frames,
    2 of the 24 orders are the drive's own and its reverse): no temporal check there. Only the
    first ``_SEQUENCE_FRAMES`` frames are judged (0.1-0.3 s for 300 frames on one core).
    """
    greys = greys[:_SEQUENCE_FRAMES]
    n = len(greys)
    if n < 4:
        return False
    stack = np.stack(greys).astype(np.float32)
    departures = stack - np.median(stack, axis=0)
    moving = np.median(np.abs(departures), axis=0) >= STATIC_MAD
    if moving.sum() < 16:
        return False
    vectors = departures[:, moving]
    vectors -= vectors.mean(axis=1, keepdims=True)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-6
    corr = vectors @ vectors.T
    near = float(np.median(corr[np.arange(n - 1), np.arange(1, n)]))
    if near <= float(np.median(corr[np.triu_indices(n, k=2)])) + margin:
        return False
    rng = np.random.default_rng(0)
    shuffled = [float(np.median(corr[order[:-1], order[1:]])) for order in
                (rng.permutation(n) for _ in range(_PERMUTATIONS))]
    return (1 + sum(value >= near for value in shuffled)) / (1 + _PERMUTATIONS) < p_max
