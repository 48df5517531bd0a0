# The two commands a new user needs: `make demo` and `make test`.
UV ?= uv
export PATH := $(PATH):/usr/sbin

.PHONY: setup demo test unit up down status lint

setup:  ## system packages (MariaDB, Java, Maven), Python env, Kafka + Connect + Debezium from Maven
	.ci/install-system-deps
	$(UV) sync --frozen --extra dev
	$(UV) run binlake setup

demo: setup  ## start the local stack, run the shop workload, print the summary
	$(UV) run binlake demo --duration $${DURATION:-30} --summary-json .binlake/demo-summary.json

test: setup  ## the whole suite, unit and integration (real MariaDB, Kafka, Debezium, Dagster)
	$(UV) run pytest -v -rs

unit: setup
	$(UV) run pytest -v -m "not integration"

up:
	$(UV) run binlake up
down:
	$(UV) run binlake down
status:
	$(UV) run binlake status

lint:
	$(UV) run ruff check .
