# One entry point for people and CI. Every target installs what it needs first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# The committed demo model (models/demo, docs/model.md): what package, demo, local-up, test and
# bench use. No rule makes it, so none of them ever trains. `make model` retrains the same
# recipe into build/model; use that one with MODEL_DIR=build/model.
MODEL_DIR ?= models/demo
MODEL  := $(MODEL_DIR)/model.pth
TRAINED_DIR := build/model
PTBXL ?= ../shared/data/ptbxl
export AWS_DEFAULT_REGION ?= us-east-1
export AWS_EC2_METADATA_DISABLED := true

.PHONY: test lint model model-card package sam-build demo local-up local-down bench clean chromium

$(STAMP): requirements-dev.txt functions/requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

# Retrains the demo model's recipe on PTB-XL (several minutes on 2 cores) into build/model.
# Order-only on the venv: reinstalling packages does not retrain the model.
$(TRAINED_DIR)/model.pth: model_code/model.py model_code/train.py model_code/train_data.py \
		model_code/synthetic.py \
		model_code/inference.py | $(STAMP)
	$(PY) model_code/train.py --data $(PTBXL) --out $(TRAINED_DIR)

model: $(TRAINED_DIR)/model.pth

# docs/model.md's figures, generated from models/demo/metrics.json and study.json.
model-card: | $(STAMP)
	$(PY) model_code/model_card.py --write

package: $(MODEL)
	$(PY) deploy_model.py package --model-dir $(MODEL_DIR)

# The local stack (docs/local.md) runs what deploys: the packaged model under the SageMaker
# PyTorch inference toolkit and TorchServe (.venv-serving, needs Java), the `sam build`
# artifact of the function on the template's Python 3.12 (.venv-lambda; sam in .venv-sam).
# The archive gets a name free of model versions; its bytes are `make package`'s.
LOCAL_ARCHIVE := build/local/model.tar.gz
SERVING_VENV  := .venv-serving
LAMBDA_VENV   := .venv-lambda
SAM_VENV      := .venv-sam
SAM_ARTIFACT  := .aws-sam/build/template.yaml
# The template's runtime: python3.12 on PATH, or pyenv's (whose shim needs PYENV_VERSION).
ifndef PYTHON312
PYTHON312 := $(firstword $(foreach p,python3.12 $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12),\
	$(shell $(p) -c 'import sys; assert sys.version_info[:2] == (3, 12); print(sys.executable)' 2>/dev/null)))
endif
LOCAL_STACK := $(LOCAL_ARCHIVE) $(SERVING_VENV)/.installed $(if $(PYTHON312),$(SAM_ARTIFACT))

$(LOCAL_ARCHIVE): $(MODEL) model_code/inference.py model_code/model.py deploy_model.py \
		$(wildcard ecg_scorer/deploy/*.py)
	$(PY) deploy_model.py package --model-dir $(MODEL_DIR) --out $@

$(SERVING_VENV)/.installed: ecg_scorer/local/requirements-serving.txt
	test -x $(SERVING_VENV)/bin/python || $(PYTHON) -m venv $(SERVING_VENV)
	$(SERVING_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r $<
	touch $@

$(LAMBDA_VENV)/.installed: ecg_scorer/local/requirements-lambda-runtime.txt
	@test -n "$(PYTHON312)" || { echo "Python 3.12 (the template's runtime) not found: pyenv install 3.12"; exit 1; }
	test -x $(LAMBDA_VENV)/bin/python || $(PYTHON312) -m venv $(LAMBDA_VENV)
	$(LAMBDA_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r $<
	touch $@

$(SAM_VENV)/.installed: ecg_scorer/local/requirements-sam.txt
	test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r $<
	touch $@

# Always from scratch: with samconfig.toml's `cached = true`, a build after a failed one
# reported success with numpy missing. python3.12 on PATH is the runtime venv's.
$(SAM_ARTIFACT): template.yaml functions/requirements.txt $(shell find functions -name '*.py') \
		| $(SAM_VENV)/.installed $(LAMBDA_VENV)/.installed
	rm -rf .aws-sam/build
	PATH="$(CURDIR)/$(LAMBDA_VENV)/bin:$$PATH" SAM_CLI_TELEMETRY=0 \
		$(SAM_VENV)/bin/sam build --no-cached --build-dir .aws-sam/build

sam-build: $(SAM_ARTIFACT)

demo: $(LOCAL_STACK) | $(STAMP)
	$(PY) -m ecg_scorer.local.demo run

local-up: $(LOCAL_STACK) | $(STAMP)
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

test: lint $(MODEL) $(LOCAL_STACK) chromium
	$(VENV)/bin/pytest

bench: $(MODEL)
	$(PY) benchmarks/bench_model.py --model-dir $(MODEL_DIR)
	$(PY) benchmarks/bench_handler.py
	$(PY) benchmarks/bench_cli.py

clean:
	rm -rf build sagemaker_models .aws-sam .pytest_cache .mypy_cache .ruff_cache
