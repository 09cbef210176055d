# advlab: the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.advlab-installed
PYTEST_ARGS ?=

.PHONY: venv onnx-deps demo test lint bench compare-deps compare clean

venv: $(STAMP)

# torch is installed first, from TORCH_SPEC, and then pinned through a constraints file so
# that no other package can upgrade it (an unpinned torch pulls a multi-GB CUDA build).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -c "import importlib.metadata as m; print('torch==' + m.version('torch'))" > $(VENV)/torch-constraint.txt
	$(BIN)/python -m pip install -q -c $(VENV)/torch-constraint.txt -e ".[dev]"
	$(MAKE) onnx-deps
	touch $(STAMP)

# The `onnx` extra for the tests of ONNX models: onnx itself with torch pinned, and onnx2torch
# without its torchvision requirement (the torchvision wheel for this torch is a CUDA build that
# does not import beside the CPU torch; advlab.models.onnx_import loads onnx2torch without it).
onnx-deps:
	$(BIN)/python -m pip install -q -c $(VENV)/torch-constraint.txt "onnx>=1.14"
	$(BIN)/python -m pip install -q --no-deps "onnx2torch>=1.5"

demo: $(STAMP)
	$(BIN)/advlab demo --out runs/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy src
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python benchmarks/attacks.py

# The peer libraries of benchmarks/compare.py (optional, never a runtime dependency), with torch
# pinned.  torchattacks pulls torchvision, which does not import beside the pinned CPU torch, so it
# is removed again; adv-lib declares torchvision and visdom, so it is installed without them.
compare-deps: $(STAMP)
	$(BIN)/python -m pip install -q -c $(VENV)/torch-constraint.txt -e ".[dev,compare]"
	$(BIN)/python -m pip uninstall -q -y torchvision || true
	$(BIN)/python -m pip install -q -c $(VENV)/torch-constraint.txt --no-deps "adv-lib>=0.2.8"

compare: compare-deps
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/compare.py

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
