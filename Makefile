# Two entry points that work on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test light-install install browser bench bundled-model bundled-model-validate clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/petseg demo --out demo-output --force

# The browser test needs Debian's Chromium; install it when we can (root), else the
# test skips with its reason.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "chromium not installed: the browser test will be skipped"; }

# Every extra is installed, so a test skipped for a missing package fails the run
# (tests/conftest.py); only the shared sample and Chromium may be absent.
test: $(STAMP) browser
	PETSEG_STRICT_SKIPS=1 $(BIN)/python -m pytest -q

# `pip install .` without extras in a fresh venv: size, a cutout, no PyTorch (CI runs it).
light-install:
	bash .ci/light_install

SAMPLE := ../shared/data/oxford-pets-sample

bench: $(STAMP)
	$(BIN)/python benchmarks/data_throughput.py
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/cutout_speed.py
	$(BIN)/python benchmarks/serve_load.py
	$(BIN)/python benchmarks/quality.py $(SAMPLE) --split test

# The model shipped in the package, from its recipe (needs ../shared/data).
# bundled-model-validate: the recipe trained on the sample's trainval list and scored on
# its test list at original resolution: how the settings were chosen.
# bundled-model: the same recipe on all 450 photos (about an hour on 2 CPU cores), its
# final weights stored in float16 under src/petseg/weights/, then exported to ONNX beside
# them with the decoder in int8, calibrated on sample photos (what cutouts run by default).
bundled-model-validate: $(STAMP)
	$(BIN)/petseg train --config recipes/bundled-pets.json --train-split trainval --out runs/bundled-pets-validate --force
	$(BIN)/python benchmarks/quality.py $(SAMPLE) --model runs/bundled-pets-validate --split test --last

bundled-model: $(STAMP)
	$(BIN)/petseg train --config recipes/bundled-pets.json --out runs/bundled-pets --force
	$(BIN)/python scripts/bundle_model.py runs/bundled-pets --last --force
	$(BIN)/python scripts/export_bundled_onnx.py --int8 --calibration $(SAMPLE)/images --float16-weights

clean:
	rm -rf $(VENV) demo-output .pytest_cache
