"""The project's own road-scene renderer: labelled highway frames from numpy + OpenCV.

Its job is training data that transfers to real forward-camera frames (TuSimple, Udacity),
so it renders the things a lane detector must learn to see through: asphalt and concrete
with texture, seams and patches, white/yellow solid/dashed/worn markings and Botts' dots,
barriers, guardrails, trees, vehicles with shadows, bridge and tree shadows, night, glare,
blur, noise and JPEG artefacts, different horizons and a car hood.

Lane geometry comes either from real TuSimple label sets (``geometry``), jittered a little,
or from a parametric perspective road model. Labels are TuSimple style (h_samples 160..710
step 10 at 720 rows, x = -2 where absent, lanes left to right) and give the centre of each
marking exactly as drawn; the marking is drawn between the first and last labelled rows
(continuing to the image bottom when the label reaches the last sample row). Dashed lanes
are labelled through their gaps, and lanes are labelled behind vehicles, as in TuSimple.
A frame is a pure function of (seed, index).

``profile`` (``profile`` module) makes the cameras and streets vary the way real robots' do:
``highway`` (the default) renders the scenes above; ``varied`` and ``city`` add a field of
view of 50-120 degrees, camera height, pitch and roll, barrel distortion (``lens``: image and
labels warped by one model), a CULane-like hood with lanes labelled across it, and city
streets (``city``): kerbs, stop lines, zebra crossings, arrows, parked and crossing cars,
intersections and negatives without markings (no lanes), at dusk or in rain (``weather``).
Kerbs, stop lines, crossings, arrows and cars are painted and never labelled.

Modules: ``generator`` (SceneGenerator, the public entry), ``sampling`` (scene parameters and
labels), ``geometry`` (road model, real-label lane shapes), ``render`` (background, texture,
lighting, camera), ``scenery`` (markings, vehicles, shadows), ``city``, ``weather``, ``lens``
and ``profile``.
"""
from lanesad_ros.data.synthetic.generator import SceneGenerator

__all__ = ["SceneGenerator"]
