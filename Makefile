PYTHON ?= python3

.PHONY: install test

install:  ## install qbench with everything the tests need (CPU)
	$(PYTHON) -m pip install -e ".[dev]"

test:  ## run the test suite (CPU, offline)
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest -q
