# Two commands: `make demo` runs the main job, `make test` runs the tests.
# Each sets up what it needs in .venv/ (idempotent: re-running only redoes what changed).
#
# torch comes first and alone: moshi 0.2.13 pins torch<2.10, so moshi is installed with
# --no-deps followed by the runtime dependencies it really uses (not bitsandbytes, which
# only its 8-bit quantisation imports). Override TORCH_SPEC / TORCH_PIP_ARGS to pick a
# torch build, e.g. TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu".

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

RUNTIME_STAMP := $(VENV)/.runtime-installed
TEST_STAMP := $(VENV)/.test-installed

.PHONY: demo test install bench clean

install: $(RUNTIME_STAMP)

$(RUNTIME_STAMP): setup.py requirements/runtime.txt Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(PIP) install $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(PIP) install --no-deps "$(MOSHI_SPEC)" "$(MEDIAPIPE_SPEC)"
	$(PIP) install -r requirements/runtime.txt
	$(PIP) install --no-deps --no-build-isolation -e .
	touch $@

$(TEST_STAMP): $(RUNTIME_STAMP) requirements/test.txt scripts/fetch_rosidl.sh scripts/install_system_packages.sh
	bash scripts/install_system_packages.sh
	$(PIP) install -r requirements/test.txt
	bash scripts/fetch_rosidl.sh $(VENV)
	touch $@

demo: $(RUNTIME_STAMP)
	$(BIN)/moshiface demo --out $(DEMO_OUT)

test: $(TEST_STAMP)
	$(BIN)/python -m pytest test

bench: $(RUNTIME_STAMP)
	$(BIN)/python benchmarks/step_latency.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) build *.egg-info
