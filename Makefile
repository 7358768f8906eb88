# One-command setup: every target creates .venv/ in the checkout if needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo bench venv clean

venv: $(STAMP)

$(STAMP): setup.py setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	$(VENV)/bin/clusterkit demo

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,bench]'   # PySyncObj, for bench/net_raft.py's comparison
	$(PY) bench/raft_core.py
	$(PY) bench/lincheck.py
	$(PY) bench/assigner.py
	$(PY) bench/sim_speed.py
	$(PY) bench/disk_storage.py
	$(PY) bench/net_raft.py
	$(PY) bench/kv.py
	$(PY) bench/kv_client.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
