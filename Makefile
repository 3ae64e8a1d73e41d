# One entry point for people and CI. Every target installs what it needs first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
MODEL_DIR := build/model
MODEL  := $(MODEL_DIR)/model.pth
export AWS_DEFAULT_REGION ?= us-east-1
export AWS_EC2_METADATA_DISABLED := true

.PHONY: test lint model package demo local-up local-down bench clean chromium

$(STAMP): requirements-dev.txt functions/requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

# The demo model is trained here (a few minutes on 2 cores) and cached in build/model/.
# Order-only on the venv: reinstalling packages does not retrain the model.
$(MODEL): model_code/model.py model_code/train.py model_code/synthetic.py model_code/inference.py | $(STAMP)
	$(PY) model_code/train.py --out $(MODEL_DIR)

model: $(MODEL)

package: $(MODEL)
	$(PY) deploy_model.py package --model-dir $(MODEL_DIR)

# The local stack (docs/local.md) serves the packaged archive, so the demo runs what deploys.
ARCHIVE := sagemaker_models/cnn1d_lstm_ecg_v1_sagemaker.tar.gz
$(ARCHIVE): $(MODEL) model_code/inference.py model_code/model.py deploy_model.py
	$(PY) deploy_model.py package --model-dir $(MODEL_DIR) --out $@

demo: $(ARCHIVE)
	$(PY) -m ecg_scorer.local.demo run

local-up: $(ARCHIVE)
	$(PY) -m ecg_scorer.local.demo up

local-down:
	$(PY) -m ecg_scorer.local.demo down

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
# The container runs Python 3.10, pyproject's mypy checks 3.11: check the two files it loads
# again as 3.10, without the config (its ignore_missing_imports would hide e.g. tomllib).
	$(VENV)/bin/mypy --config-file= --python-version 3.10 --check-untyped-defs \
		--warn-unused-ignores model_code/model.py model_code/inference.py

# Headless Chromium (Debian's package) opens the report pages in the tests. Installed when
# absent and we are root (CI machines are); elsewhere those tests skip, and fail under CI=true.
chromium:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] \
		&& apt-get update -qq \
		&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } \
		|| echo "chromium not installed: the browser tests will skip (apt-get install chromium)"

test: lint $(MODEL) chromium
	$(VENV)/bin/pytest

bench: $(MODEL)
	$(PY) benchmarks/bench_model.py --model-dir $(MODEL_DIR)
	$(PY) benchmarks/bench_handler.py
	$(PY) benchmarks/bench_cli.py

clean:
	rm -rf build sagemaker_models .pytest_cache .mypy_cache .ruff_cache
