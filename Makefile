# Two commands do everything on a fresh machine (no ROS distribution needed):
#   make demo   set-up, then the detector node on the bundled real clip (demo/udacity), through DDS
#   make test   set-up, then every test
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
DEMO_OUT ?= demo_output
# Camera-sized images over Fast DDS need the large-data transports (docs/node.md).
export FASTDDS_BUILTIN_TRANSPORTS ?= LARGE_DATA

DEMO_CLIP ?= demo/udacity/project_video_clip.mp4
DEMO_PARAMS ?= demo/udacity/lane_detector.yaml

.PHONY: setup demo demo-synthetic demo-closed-loop test bench clean

setup: $(VENV)/.msgs-built

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.deps-installed: requirements.txt requirements-workspace.txt requirements-msgbuild.txt constraints.txt setup.py | $(VENV)/bin/python
	$(PY) -m pip install -q -r requirements.txt -r requirements-msgbuild.txt -c constraints.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e . --config-settings editable_mode=compat
	$(PY) tools/fix_ros_wheel_cmake.py
	touch $@

$(VENV)/.msgs-built: $(VENV)/.deps-installed $(wildcard msg/*.msg) CMakeLists.txt package.xml tools/build_msgs.sh
	tools/build_msgs.sh $(VENV)
	touch $@

# The real clip -> rosbag2; the node (own process, the clip's camera model and mounting from
# DEMO_PARAMS) gets it over DDS at the clip's 25 fps; /lanes is recorded and reported.
demo: setup
	$(VENV)/bin/lanesad-bag from-video $(DEMO_CLIP) $(DEMO_OUT)/udacity_clip --storage mcap --overwrite
	$(VENV)/bin/lanesad-eval live $(DEMO_OUT)/udacity_clip --spawn --node-params-file $(DEMO_PARAMS) --startup-timeout 300 \
		--out $(DEMO_OUT)/report --video all
	@echo "Demo written to $(DEMO_OUT)/report: report.md (frames answered, latency), overlay_all.mp4, ground_lanes.png"

# A 60-frame synthetic drive with ground truth, scored (TuSimple accuracy) as well.
demo-synthetic: setup
	$(VENV)/bin/lanesad-bag synthetic $(DEMO_OUT)/sample_drive --frames 60 --seed 7 --storage mcap --overwrite
	$(VENV)/bin/lanesad-eval live $(DEMO_OUT)/sample_drive --spawn --out $(DEMO_OUT)/report_synthetic --video all
	@echo "Demo written to $(DEMO_OUT)/report_synthetic (overlay video, lanes summary, metrics)"

# Closed-loop lane keeping: a simulated car at 20 m/s on curves down to R 250 m for 60 s, its
# camera rendered and sent over DDS to the lane_detector node, steered by the example planner
# (examples/lane_keeping). CLOSED_LOOP_ARGS=--ground-truth-lanes isolates the planner.
CLOSED_LOOP_ARGS ?=
demo-closed-loop: setup
	$(PY) benchmarks/closed_loop.py --out $(DEMO_OUT)/closed_loop $(CLOSED_LOOP_ARGS)
	@echo "Closed loop written to $(DEMO_OUT)/closed_loop: summary.json, trajectory.png, lateral_error.png"

test: setup
	$(VENV)/bin/ruff check .
	$(PY) -m pytest test -q -ra

bench: setup
	$(PY) benchmarks/run_all.py

clean:
	rm -rf build $(DEMO_OUT) .pytest_cache
