# Two commands: `make demo` runs the main job, `make test` runs the tests.
# Each sets up what it needs in .venv/ (idempotent: re-running only redoes what changed).
#
# `make test` runs the nodes under real ROS 2 Jazzy: the ros-jazzy-* wheels of
# requirements/ros.txt go into the venv (unless a ROS 2 installation is already sourced), the
# package is built with its own CMakeLists.txt into $(ROS_PREFIX), and pytest runs in that
# environment, inside a private network namespace when run as root (scripts/with_ros.sh).
# The install is re-run (incrementally, ~1 s) on every `make test`, so the tests import the
# current source. ROS_TOOLS=<dir> (one with install-launch-tools.sh) adds `ros2 launch` and the
# other ros2 tools, which the launch tests need; PYTEST_ARGS picks the tests
# (default: all of test/), e.g. make test PYTEST_ARGS="-x test/test_ros_launch.py".
#
# torch comes first and alone: moshi 0.2.13 pins torch<2.10, so moshi is installed with
# --no-deps after the runtime dependencies it really uses (not bitsandbytes, which only its
# 8-bit quantisation imports). In that order pip never sees moshi's and mediapipe's declared
# requirements, so it prints no conflict report about them; requirements/test.txt, installed
# later, is installed with --no-warn-conflicts for the same reason. Override TORCH_SPEC /
# TORCH_PIP_ARGS to pick a torch build, e.g.
# TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu".
#
# `make test` (not `make demo`) installs Debian/Ubuntu packages with apt-get as root
# (scripts/install_system_packages.sh); without root or password-less sudo it stops with the
# one `sudo apt-get install ...` line to run.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
MOSHI_SPEC ?= moshi==0.2.13
# mediapipe 0.10.21 is the newest wheel that carries its face models; its declared deps
# pull jax and opencv-contrib, which the legacy FaceMesh never imports, so it too goes in
# with --no-deps and requirements/runtime.txt lists what it does import.
MEDIAPIPE_SPEC ?= mediapipe==0.10.21
PIP := $(BIN)/python -m pip --disable-pip-version-check
DEMO_OUT ?= demo-output
RESEARCH_OUT ?= research-output
ROS_DIR ?= build/ros
ROS_PREFIX ?= $(ROS_DIR)/install
ROS_TOOLS ?=
PYTEST_ARGS ?= test

RUNTIME_STAMP := $(VENV)/.runtime-installed
TEST_STAMP := $(VENV)/.test-installed
WEB_STAMP := web/node_modules/.package-lock.json

.PHONY: demo research-demo test install ros bench clean

install: $(RUNTIME_STAMP) $(WEB_STAMP)

# three.js for the browser page (`moshiface serve`), pinned by web/package-lock.json; without
# npm this prints one line saying so and installs nothing (the stamp stays missing, so the
# next make tries again).
$(WEB_STAMP): web/package.json web/package-lock.json scripts/install_web.sh
	bash scripts/install_web.sh

$(RUNTIME_STAMP): setup.py requirements/runtime.txt Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(PIP) install $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(PIP) install -r requirements/runtime.txt
	$(PIP) install --no-deps "$(MOSHI_SPEC)" "$(MEDIAPIPE_SPEC)"
	$(PIP) install --no-deps --no-build-isolation -e .
	touch $@

# ROS before fetch_rosidl.sh: the ROS wheels (or a sourced ROS 2) already provide rosidl_adapter.
$(TEST_STAMP): $(RUNTIME_STAMP) $(WEB_STAMP) requirements/test.txt requirements/ros.txt scripts/fetch_rosidl.sh \
		scripts/install_system_packages.sh scripts/install_ros.sh
	bash scripts/install_system_packages.sh $(VENV)
	$(PIP) install --no-warn-conflicts -r requirements/test.txt
	bash scripts/install_ros.sh $(VENV)
	bash scripts/fetch_rosidl.sh $(VENV)
	touch $@

# Always run: the CMake export fix (no-op unless pip reinstalled something), an incremental
# build, and the install of the current source into $(ROS_PREFIX).
ros: $(TEST_STAMP)
	bash scripts/build_ros.sh $(VENV) $(ROS_PREFIX) $(ROS_DIR)/build "$(ROS_TOOLS)"

demo: $(RUNTIME_STAMP) $(WEB_STAMP)
	$(BIN)/moshiface demo --out $(DEMO_OUT)

# The research path offline on the CPU: a synthetic corpus, codec, prepare, both training
# stages, eval and a run (docs/moshi-face.md, "Quick start"); espeak-ng speaks the corpus.
research-demo: $(RUNTIME_STAMP)
	MOSHIFACE_SYSTEM_PACKAGES=espeak-ng bash scripts/install_system_packages.sh
	$(BIN)/moshiface quickstart --out $(RESEARCH_OUT)

# `pytest`, not `python -m pytest`: -m would put the source moshiface_ros/ (which has no
# generated msg/) ahead of the installed one. MOSHIFACE_REQUIRE_ROS=1: a test run that cannot
# import rclpy and the generated messages fails at once instead of skipping the ROS tests.
test: ros
	MOSHIFACE_REQUIRE_ROS=1 bash scripts/with_ros.sh $(ROS_PREFIX) pytest $(PYTEST_ARGS)

# Every CPU figure (the GPU ones: benchmarks/gpu_suite.py on a CUDA machine); a benchmark
# that needs a test-only dependency says so in one line and skips.
bench: $(RUNTIME_STAMP)
	$(BIN)/python benchmarks/step_latency.py --no-gpu
	$(BIN)/python benchmarks/codec.py --no-gpu
	$(BIN)/python benchmarks/tracking.py
	$(BIN)/python benchmarks/retarget.py
	$(BIN)/python benchmarks/audio_latency.py
	$(BIN)/python benchmarks/batching.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) $(RESEARCH_OUT) build *.egg-info
