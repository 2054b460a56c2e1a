# Two commands do everything on a fresh machine (no ROS distribution needed):
#   make demo   set-up, then the detector node on the bundled synthetic sample drive
#   make test   set-up, then every test
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
DEMO_OUT ?= demo_output
# Camera-sized images over Fast DDS need the large-data transports (ros-on-pip.md).
export FASTDDS_BUILTIN_TRANSPORTS ?= LARGE_DATA

.PHONY: setup demo test bench clean

setup: $(VENV)/.msgs-built

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.deps-installed: requirements.txt requirements-msgbuild.txt constraints.txt setup.py | $(VENV)/bin/python
	$(PY) -m pip install -q -r requirements.txt -r requirements-msgbuild.txt -c constraints.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e . --config-settings editable_mode=compat
	$(PY) tools/fix_ros_wheel_cmake.py
	touch $@

$(VENV)/.msgs-built: $(VENV)/.deps-installed msg/Lane.msg msg/LaneArray.msg CMakeLists.txt package.xml tools/build_msgs.sh
	tools/build_msgs.sh $(VENV)
	touch $@

demo: setup
	$(VENV)/bin/lanesad-bag synthetic $(DEMO_OUT)/sample_drive --frames 60 --seed 7 --storage mcap --overwrite
	$(VENV)/bin/lanesad-eval live $(DEMO_OUT)/sample_drive --spawn --out $(DEMO_OUT)/report --video all
	@echo "Demo written to $(DEMO_OUT)/report (overlay video, lanes summary, metrics)"

test: setup
	$(VENV)/bin/ruff check .
	$(PY) -m pytest test -q -ra

bench: setup
	$(PY) benchmarks/run_all.py

clean:
	rm -rf build $(DEMO_OUT) .pytest_cache
