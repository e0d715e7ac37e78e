# The two commands of the README, and the pieces CI runs.
#   make run    run the gateway with config/gateway.yaml (sets up .venv first)
#   make test   lint, type-check and run the whole test suite (sets up .venv first)

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run consume status test lint typecheck pytest clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/mqtt-gateway run --config config/gateway.yaml

consume: $(STAMP)
	$(BIN)/mqtt-gateway consume --config config/consumer.yaml

status: $(STAMP)
	$(BIN)/mqtt-gateway status --config config/gateway.yaml

lint: $(STAMP)
	$(BIN)/ruff check gateway devices tests bench

typecheck: $(STAMP)
	$(BIN)/mypy gateway devices bench

pytest: $(STAMP)
	$(BIN)/pytest -q

test: lint typecheck pytest

clean:
	rm -rf $(VENV) state consumer.sqlite consumer.sqlite-wal consumer.sqlite-shm
