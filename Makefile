# ztgw — the two commands: `make run` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
ZTGW   := $(VENV)/bin/ztgw
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench clean venv

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON)"; exit 2; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(ZTGW) demo run

test: $(STAMP)
	bash scripts/test.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	@echo "see bench/README.md"

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
