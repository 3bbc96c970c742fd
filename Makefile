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

test: $(STAMP)
	$(BIN)/pytest -n 2 -q

# Unit tests and the in-process simulator tests: no gunicorn, no service end to end.
test-fast: $(STAMP)
	$(BIN)/pytest -n 2 -q -m "not served" --ignore=tests/service

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
