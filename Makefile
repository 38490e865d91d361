# Two entry points, as in the README: `make demo` (install + extract the bundled sample) and `make test`.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint data clean

install: $(STAMP)

# torch/torchvision are pinned first so that pip takes the local 2.14.1 wheels, not a newer CUDA build;
# the TorchGeo wheel (hash-pinned, not installed) holds the DOFA reference the tests check against
$(STAMP): pyproject.toml tests/reference/torchgeo.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e ".[test]"
	$(PY) -m pip download --quiet --no-deps --require-hashes -r tests/reference/torchgeo.txt -d .cache/reference
	touch $(STAMP)

demo: install
	$(VENV)/bin/ofa-embed extract --sample --out out/sample-store --overwrite
	$(VENV)/bin/ofa-embed index out/sample-store
	$(VENV)/bin/ofa-embed search out/sample-store --like-point=-75.612,37.679 --k 5

# pytest exits 5 when it collects no test: that must fail, never pass silently
test: install
	@$(PY) -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi; exit $$rc

# lint, types and layer rules; mypy and import-linter read an installed copy, where cli/ and indexes/ sit inside
# ofa_embed/ as they do for users (the repository keeps them as top-level folders)
lint: install
	$(VENV)/bin/ruff check .
	rm -rf build/lint && $(PY) -m pip install --quiet --no-deps --no-build-isolation --target build/lint . 2>/dev/null
	cd build/lint && ../../$(VENV)/bin/mypy --config-file ../../pyproject.toml
	cd build/lint && ../../$(VENV)/bin/lint-imports --config ../../pyproject.toml

# real scenes from the package registry into .cache/data (benchmarks, band statistics, sample)
data: install
	$(PY) benchmarks/data/fetch.py

clean:
	rm -rf $(VENV) out .pytest_cache
