"""Scene profiles: how much the camera and the scene vary from frame to frame.

``highway`` is what the generator always rendered (TuSimple-like US highways seen by one kind
of camera) and stays the default. ``varied`` adds the cameras and cities real robots see:
field of view 50-120 degrees, mounting height 1.2-2.5 m, pitch and roll, barrel lens
distortion, a CULane-like hood across the bottom 10-15 % (lanes labelled across it, as CULane
labels them), and city streets with kerbs, stop lines, zebra crossings, painted arrows,
parked and crossing cars, intersections and streets with no lane markings (negatives), at
day, dusk and night, with rain glare. ``city`` is ``varied`` with every frame a city street.

Each ingredient is one probability (or range) in ``SceneProfile``, so a config can switch it
off for an ablation: ``profile: varied`` plus ``profile_options: {distortion: 0.0}``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class SceneProfile:
    """Per-ingredient probabilities (per frame) and ranges of the synthetic scenes.

    Probabilities are in [0, 1]; ranges are (low, high). ``camera`` 0 keeps the highway
    camera model (focal 0.7-1.0 x width, horizon at 33-64 % of the height, height ~1.25-2 m).
    """

    name: str = "highway"
    camera: float = 0.0                     # draw FOV / height / pitch from the ranges below
    fov_deg: tuple[float, float] = (50.0, 120.0)   # horizontal field of view
    height_m: tuple[float, float] = (1.2, 2.5)     # camera above the road
    pitch_deg: tuple[float, float] = (-2.0, 6.0)   # down-tilt of the optical axis
    roll: float = 0.0                       # share of frames with a rolled camera
    roll_deg: float = 3.0                   # |roll| up to this
    distortion: float = 0.0                 # share of frames with barrel distortion
    hood: float = 0.15                      # share of frames with a hood in view
    hood_culane: float = 0.0                # of those: CULane-like (10-15 %, lanes labelled across)
    city: float = 0.0                       # share of city streets (kerbs, buildings, parked cars)
    negative: float = 0.0                   # of city streets: no lane markings at all (no lanes)
    intersection: float = 0.0               # of city streets: a crossing road with stop line
    zebra: float = 0.0                      # of city streets: a zebra crossing
    arrows: float = 0.0                     # of city streets with lanes: painted arrows
    parked_cars: float = 0.0                # of city streets: cars parked along the kerbs
    crossing_cars: float = 0.0              # of intersections: cars crossing side-on
    night: float = 0.12
    dusk: float = 0.0
    rain: float = 0.0                       # wet road: light streaks reflected, rain glare

    def replace(self, **options) -> SceneProfile:
        """A copy with some fields changed; ValueError naming an unknown or bad option."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        for key, value in options.items():
            if key not in fields or key == "name":
                raise ValueError(f"unknown synthetic profile option {key!r}; known: "
                                 f"{', '.join(k for k in fields if k != 'name')}")
            if isinstance(getattr(self, key), tuple):
                if len(value) != 2 or not value[0] <= value[1]:
                    raise ValueError(f"synthetic profile option {key!r} must be [low, high], got {value!r}")
                options[key] = (float(value[0]), float(value[1]))
            elif key != "roll_deg" and not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"synthetic profile option {key!r} is a probability in [0, 1], got {value!r}")
        return dataclasses.replace(self, **options)


PROFILES: dict[str, SceneProfile] = {
    "highway": SceneProfile(),
    "varied": SceneProfile(name="varied", camera=0.7, roll=0.5, distortion=0.4, hood=0.35, hood_culane=0.7,
                           city=0.5, negative=0.2, intersection=0.4, zebra=0.4, arrows=0.4,
                           parked_cars=0.5, crossing_cars=0.5, night=0.15, dusk=0.15, rain=0.15),
    "city": SceneProfile(name="city", camera=0.7, roll=0.5, distortion=0.4, hood=0.35, hood_culane=0.7,
                         city=1.0, negative=0.2, intersection=0.45, zebra=0.45, arrows=0.4,
                         parked_cars=0.5, crossing_cars=0.5, night=0.15, dusk=0.15, rain=0.15),
}


def scene_profile(name: str | SceneProfile = "highway", options: dict | None = None) -> SceneProfile:
    """The named profile (``highway`` | ``varied`` | ``city``) with ``options`` overriding fields."""
    if isinstance(name, SceneProfile):
        profile = name
    elif name in PROFILES:
        profile = PROFILES[name]
    else:
        raise ValueError(f"unknown synthetic scene profile {name!r}; known: {', '.join(PROFILES)}")
    return profile.replace(**(options or {}))
