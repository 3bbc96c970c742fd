PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast lint bench sim clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/dynvm serve $(if $(DYNVM_CONFIG),--config $(DYNVM_CONFIG),)

# Test runs keep Python's bytecode cache (an environment that turns it off makes every
# worker and every `dynvm serve` compile dynvm, and pytest rewrite every test module,
# again), and put their temporary files on tmpfs when it has room: the SQLite stores'
# fsyncs then cost nothing, and the tests test dynvm, not the disk.
TEST_TMPDIR ?= $(shell df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 && $$4 > 2097152 {print "/dev/shm"}')
TEST_ENV = PYTHONDONTWRITEBYTECODE= $(if $(TEST_TMPDIR),TMPDIR=$(TEST_TMPDIR))

# Six workers on two cores: a test spends much of its time waiting on another process
# (a served instance, the simulator over XML-RPC, a browser); with two workers the cores
# were idle a third of the time, with four a sixth. The fast set waits on little: four.
TEST_WORKERS ?= 6
FAST_WORKERS ?= 4

test: $(STAMP)
	$(TEST_ENV) $(BIN)/pytest -n $(TEST_WORKERS) -q

# Unit tests and the in-process simulator tests: no gunicorn, no outside program, no
# service end to end.
test-fast: $(STAMP)
	$(TEST_ENV) $(BIN)/pytest -n $(FAST_WORKERS) -q -m "not served and not external" --ignore=tests/service

lint: $(STAMP)
	$(BIN)/ruff check dynvm tests bench testbed tools
	$(BIN)/mypy
	$(BIN)/vulture dynvm tools/vulture_allow.py --min-confidence 80

bench: $(STAMP)
	$(BIN)/python -m bench.run

sim: $(STAMP)
	$(BIN)/dynvm sim

clean:
	rm -rf $(VENV) .dynvm build *.egg-info
