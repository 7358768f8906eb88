# One-command setup: every target creates .venv/ in the checkout if needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo bench soak sweep venv clean

venv: $(STAMP)

$(STAMP): setup.py setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# One worker per core, a test file per worker at a time (module fixtures start real clusters once).
test: $(STAMP)
	$(PY) -m pytest -q -n auto --dist loadfile

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

# Not in `make test` or CI: every scenario over 1,000 seeds on every core (an hour or more on 2 cores).
# One scenario, or fewer seeds: `make sweep SCENARIOS=random-mix SEEDS=200`.
SCENARIOS ?= $(basename $(notdir $(wildcard scenarios/*.toml)))
SEEDS ?= 1000
sweep: $(STAMP)
	@for s in $(SCENARIOS); do $(VENV)/bin/clusterkit sim sweep $$s --seeds $(SEEDS) --jobs auto || exit 1; done

# Not in `make test` or CI: ~15 minutes of real node processes under faults and fuzz (issue 20).
# Scale it down with e.g. `$(PY) bench/soak.py --kills 10 --pauses 4 --frames 2000 --http 200`.
soak: $(STAMP)
	$(PY) bench/soak.py --kills 100 --pauses 30 --frames 20000 --http 2000

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
