"""The road model stage after the Detector: lanes in the image -> what a planner steers by.

Per frame: each detected boundary's ground cubic with its covariance (:mod:`.boundary`), its
marking type and colour (:mod:`.marking`, voted over recent frames per slot), and the ego lane
filtered over time (:mod:`.ego`). The stage keeps state across frames (the filter, the votes):
frames must come in time order from one camera; a frame of another size (a camera that
switched resolution) or an earlier stamp restarts it.

Marking votes: a slot's per-frame judgement adds its confidence to that class; older votes
decay by ``vote_decay`` per frame. The reported class is the strongest; its confidence is its
share of the votes times the evidence (the votes' sum, saturating at ``vote_saturation``), so
one frame's guess is not reported as a certainty. On a lane change the votes move with the
boundaries (the old right boundary is the new left one); a slot unseen for more than
``max_vote_misses`` frames forgets its votes.

Measuring a marking is the stage's dearest step (about 1.5 ms a boundary on a 2-core CPU,
more than the ground fit), and paint does not change from one frame to the next, so each
frame measures at most ``markings_per_frame`` boundaries: the one measured longest ago first
(never measured before all others; ties: LEFT, RIGHT, LEFT_LEFT, RIGHT_RIGHT). The others
report their slot's votes so far and the evidence of their last measurement. With four
boundaries and one marking a frame each is measured every fourth frame (0.2 s at 20 fps).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lanesad_ros.camera import GroundProjector
from lanesad_ros.lanes import LaneDetections, LaneSlot
from lanesad_ros.road.boundary import BoundaryFit, BoundaryFitConfig, fit_boundary
from lanesad_ros.road.ego import INVALID, EgoLaneConfig, EgoLaneEstimate, EgoLaneFilter
from lanesad_ros.road.marking import UNMEASURED, Marking, MarkingColor, MarkingConfig, MarkingType, measure_marking
from lanesad_ros.road.motion import Motion

_SLOTS = (LaneSlot.LEFT_LEFT, LaneSlot.LEFT, LaneSlot.RIGHT, LaneSlot.RIGHT_RIGHT)
_MEASURE_FIRST = {LaneSlot.LEFT: 0, LaneSlot.RIGHT: 1, LaneSlot.LEFT_LEFT: 2, LaneSlot.RIGHT_RIGHT: 3}


@dataclass(frozen=True)
class BoundaryEstimate:
    """One boundary of one frame: ``slot``, ``existence`` probability, ground ``fit`` and the voted ``marking``."""

    slot: LaneSlot
    existence: float
    fit: BoundaryFit
    marking: Marking


@dataclass(frozen=True)
class RoadModel:
    """Everything the stage says about one frame (LaneModel.msg)."""

    boundaries: list[BoundaryEstimate] = field(default_factory=list)
    ego: EgoLaneEstimate = INVALID


class _Votes:
    """Decaying class votes of one slot for marking type and colour."""

    def __init__(self) -> None:
        self.type = np.zeros(len(MarkingType))
        self.color = np.zeros(len(MarkingColor))
        self.misses = 0  # frames in a row without this slot
        self.measured_at = -1  # the stage's frame count at the last measurement
        self.evidence = UNMEASURED  # the last measurement

    def add(self, marking: Marking, decay: float, frame: int) -> None:
        self.type *= decay
        self.color *= decay
        self.measured_at, self.evidence = frame, marking
        if marking.length_m > 0:  # measured at all (UNMEASURED has no length): a vote
            self.type[marking.type] += marking.type_confidence
            self.color[marking.color] += marking.color_confidence

    def voted(self, saturation: float) -> Marking:
        """The winning type and colour with their confidences, on the last measurement's evidence."""
        kind, kind_confidence = _winner(self.type, saturation)
        color, color_confidence = _winner(self.color, saturation)
        e = self.evidence
        return Marking(MarkingType(kind), kind_confidence, MarkingColor(color), color_confidence,
                       painted_fraction=e.painted_fraction, longest_gap_m=e.longest_gap_m, length_m=e.length_m,
                       yellowness=e.yellowness)


def _winner(votes: np.ndarray, saturation: float) -> tuple[int, float]:
    total = float(votes.sum())
    if total <= 0:
        return 0, 0.0
    best = int(np.argmax(votes))
    return best, float(votes[best] / total * min(1.0, total / saturation))


class RoadModelStage:
    """``update(detections, bgr, projector, stamp_s, motion) -> RoadModel`` once per frame, in time order.

    ``markings_per_frame``: boundaries whose marking is measured per frame (0: every boundary,
    every frame)."""

    def __init__(self, fit: BoundaryFitConfig | None = None, marking: MarkingConfig | None = None,
                 ego: EgoLaneConfig | None = None, vote_decay: float = 0.8, vote_saturation: float = 2.0,
                 max_vote_misses: int = 5, markings_per_frame: int = 1) -> None:
        if not 0.0 <= vote_decay < 1.0 or not vote_saturation > 0 or markings_per_frame < 0:
            raise ValueError(f"RoadModelStage needs 0 <= vote_decay < 1, vote_saturation > 0 and "
                             f"markings_per_frame >= 0, got {vote_decay}, {vote_saturation}, {markings_per_frame}")
        self.fit_config, self.marking_config = fit or BoundaryFitConfig(), marking or MarkingConfig()
        self.vote_decay, self.vote_saturation, self.max_vote_misses = vote_decay, vote_saturation, max_vote_misses
        self.markings_per_frame = markings_per_frame
        self.frames = 0  # frames updated since the start (the marking schedule's clock)
        self.ego = EgoLaneFilter(ego or EgoLaneConfig())
        self.image_size: tuple[int, int] | None = None
        self._votes: dict[LaneSlot, _Votes] = {}

    def reset(self) -> None:
        """Forget the ego lane and the marking votes."""
        self.ego.reset()
        self._votes.clear()
        self.frames = 0

    def _shift_votes(self, lane_change: int) -> None:
        """After a lane change to the right (-1) the old RIGHT is the new LEFT, and so on."""
        moved = {}
        for slot, votes in self._votes.items():
            if slot in _SLOTS:
                index = _SLOTS.index(slot) + lane_change
                if 0 <= index < len(_SLOTS):
                    moved[_SLOTS[index]] = votes
        self._votes = moved

    def update(self, detections: LaneDetections, bgr: np.ndarray, projector: GroundProjector | None,
               stamp_s: float, motion: Motion | None = None) -> RoadModel:
        """The road model of one frame. ``bgr``: the source image (H, W, 3 uint8) the detections came
        from; ``projector``: its camera model (None: no ground model, an invalid ego lane);
        ``stamp_s``: its time (s, header stamp); ``motion``: the vehicle's, from odometry, or None."""
        size = (int(detections.image_width), int(detections.image_height))
        if self.image_size is not None and size != self.image_size:
            self.reset()  # another camera geometry: nothing measured in the old one carries over
        self.image_size = size
        if projector is None:
            return RoadModel()
        measured: list[tuple[LaneSlot, float, BoundaryFit]] = []
        for lane in detections.lanes:
            fit = fit_boundary(lane.image_points, projector, self.fit_config)
            if fit is not None:
                measured.append((lane.slot, float(lane.confidence), fit))
        measured.sort(key=lambda item: int(item[0]))  # LaneModel.boundaries: by slot, left to right
        ego_fits = {slot: fit for slot, _, fit in measured if slot in (LaneSlot.LEFT, LaneSlot.RIGHT)}
        ego = self.ego.update(stamp_s, ego_fits.get(LaneSlot.LEFT), ego_fits.get(LaneSlot.RIGHT), motion)
        if ego.lane_change:
            self._shift_votes(ego.lane_change)
        seen = {slot for slot, _, _ in measured}
        for slot in list(self._votes):
            if slot not in seen:
                self._votes[slot].misses += 1
                if self._votes[slot].misses > self.max_vote_misses:
                    del self._votes[slot]  # the boundary is gone: the slot's next one may be painted otherwise
            else:
                self._votes[slot].misses = 0
        due = self._due(measured)
        boundaries = []
        for index, (slot, existence, fit) in enumerate(measured):
            marking = measure_marking(bgr, fit, projector, self.marking_config) if index in due else UNMEASURED
            if slot in _SLOTS:  # UNKNOWN slots (models of more lanes) are no identity to vote on
                votes = self._votes.setdefault(slot, _Votes())
                if index in due:
                    votes.add(marking, self.vote_decay, self.frames)
                marking = votes.voted(self.vote_saturation)
            boundaries.append(BoundaryEstimate(slot=slot, existence=existence, fit=fit, marking=marking))
        self.frames += 1
        return RoadModel(boundaries=boundaries, ego=ego)

    def _due(self, measured: list[tuple[LaneSlot, float, BoundaryFit]]) -> set[int]:
        """Indices into ``measured`` of the boundaries whose marking this frame measures."""
        if self.markings_per_frame == 0:
            return set(range(len(measured)))

        def staleness(index: int) -> tuple[int, int, int]:
            slot = measured[index][0]
            if slot not in _SLOTS:
                return (1, 0, 0)  # no votes to keep fresh: measured only when the budget is left over
            votes = self._votes.get(slot)
            return (0, votes.measured_at if votes is not None else -1, _MEASURE_FIRST[slot])

        return set(sorted(range(len(measured)), key=staleness)[:self.markings_per_frame])

