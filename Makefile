# The two commands a user needs: `make demo` and `make test`. Both set everything up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint typecheck importlint unit clean help stack

help:
	@echo "make demo   set up .venv and run the main job on the embedded default (SQLite + local MLflow)"
	@echo "make test   set up .venv and run lint, type checks, import contracts and the whole test suite"
	@echo "make bench  run the benchmark suite (not part of the tests); writes dur/reports/bench.json and bench.md"
	@echo "make stack  run the MLflow stack on loopback without Docker (PostgreSQL, S3, mlflow server) until Ctrl-C"

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed: set PYTHON=python3.11")'
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,iris]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mlpipeline init
	$(BIN)/mlpipeline demo
	$(BIN)/mlpipeline status

bench: $(STAMP)
	$(BIN)/python -m benchmarks.suite

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

importlint: $(STAMP)
	$(BIN)/lint-imports

test: lint typecheck importlint
	$(BIN)/pytest

# The MLflow stack without Docker: MLflow's database in PostgreSQL (Debian's cluster, started and
# given a fresh role by .ci/postgres.sh as root, or any role with CREATEDB in
# MLPIPELINE_STACK_POSTGRES_URL), moto as the S3 endpoint (or MLPIPELINE_STACK_S3_ENDPOINT, e.g.
# MinIO, with AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) and `mlflow server` proxying the artifacts.
# Prints the tracking URI; Ctrl-C stops everything. More options: STACK_ARGS="--help".
STACK_PORT ?= 5000
STACK_ARGS ?=
stack: $(STAMP)
	@url="$${MLPIPELINE_STACK_POSTGRES_URL:-}"; \
	if [ -z "$$url" ]; then url="$$(bash .ci/postgres.sh mlpipeline_stack)" || exit 1; fi; \
	MLPIPELINE_STACK_POSTGRES_URL="$$url" exec $(BIN)/python -m mlpipeline.stack --port $(STACK_PORT) $(STACK_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
