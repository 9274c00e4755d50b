# The two commands of the contract: `make demo` and `make test`. Both build the project virtualenv
# (.venv) from nothing on a fresh machine; a stamp file makes later runs skip the install.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup demo test lint clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)
	@bash scripts/install-promtool.sh

demo: setup
	$(VENV)/bin/ekya demo

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check controller trainer camera protocol sources common tests bench

clean:
	rm -rf $(VENV) .ekya build *.egg-info
