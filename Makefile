# The two commands a fresh machine needs (Python 3.11, no GPU):
#   make run    create .venv, install ray_rec, run the whole pipeline on the embedded synthetic default
#   make test   create .venv, install ray_rec with test extras, run the test suite
PYTHON ?= python3.11
VENV   ?= .venv
RUN_DIR ?= runs/default

.PHONY: venv run test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e ".[dev]"
	touch $@

venv: $(VENV)/.installed

run: venv
	$(VENV)/bin/ray-rec pipeline run --config jobs/configs/pipeline.yaml --run $(RUN_DIR)

test: venv
	$(VENV)/bin/python -m pytest -q tests

lint: venv
	$(VENV)/bin/ruff check ray_rec tests bench

clean:
	rm -rf $(VENV) runs .pytest_cache
