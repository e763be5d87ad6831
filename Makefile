# Every target bootstraps .venv by itself: a fresh clone needs only `make demo` or `make test`.
#
# torch: a fresh .venv gets the CPU pair below (no multi-GB CUDA download). To bring your own build
# (e.g. a CUDA wheel on a GPU box), install it into .venv first or pass TORCH_SPEC, e.g.
#   make test TORCH_SPEC="torch==2.5.1 torchvision==0.20.1"
# If .venv already imports torch and torchvision, nothing is reinstalled.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0 torchvision==0.28.0
STAMP := $(VENV)/.agvp-installed
DEMO_DIR ?= .demo

.PHONY: venv demo test lint bench bench-peers clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	@if ! $(PY) -c "import torch, importlib.util as u; assert u.find_spec('torchvision')" 2>/dev/null; then \
		echo "installing $(TORCH_SPEC)"; $(PY) -m pip install --quiet $(TORCH_SPEC); fi
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	@test -d $(DEMO_DIR)/data || $(VENV)/bin/agvp-hpo data synth $(DEMO_DIR)/data
	rm -rf results/demo
	$(VENV)/bin/agvp-hpo run search_spaces/demo.yaml

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

bench: $(STAMP)
	$(PY) -m pip install --quiet -e ".[dev,bench]"
	# mf-prior-bench pins numpy<2 in its metadata but works with numpy 2: installed without its pins
	$(PY) -m pip install --quiet --no-deps "mf-prior-bench>=1.10"
	$(PY) benchmarks/eval_speed.py
	$(PY) benchmarks/train_throughput.py
	$(PY) benchmarks/tiny_learning.py
	$(PY) benchmarks/search_quality.py
	$(PY) benchmarks/store_speed.py
	$(PY) benchmarks/engine_overhead.py
	# service_latency uses Debian's wrk when installed (apt-get install wrk), else a Python client
	$(PY) benchmarks/service_latency.py
	$(PY) benchmarks/fault_injection.py

# The peers of benchmarks/search_quality.py (DEHB, Syne Tune, Optuna) in a virtualenv of their own: DEHB pins
# numpy<2 and Syne Tune pulls packages agvp-hpo must not depend on. Then:
#   .venv/bin/python benchmarks/search_quality.py --timing
PEERS_VENV ?= .venv-peers
bench-peers:
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PEERS_VENV)/bin/python -m pip install --quiet "dehb==0.1.2" "syne-tune==0.16.0" "optuna==5.0.0" configspace more-itertools
	$(PEERS_VENV)/bin/python -m pip install --quiet --no-deps "mf-prior-bench>=1.10"

clean:
	rm -rf $(VENV) $(PEERS_VENV) $(DEMO_DIR) .pytest_cache .ruff_cache *.egg-info
