# kefu: the two commands. Both are idempotent and install what they need.
.PHONY: up test setup models protos check-protos

setup:
	@bash scripts/setup.sh

models: setup
	@.venv/bin/kefu models fetch

# Set up and start the whole system on embedded defaults; Ctrl-C stops it.
# `make up TRACES=1` also starts Phoenix, a local trace UI (kefu up --traces).
up: setup
	@PYTHONUNBUFFERED=1 exec .venv/bin/kefu up $(if $(TRACES),--traces)

# Set up what the tests need and run the whole suite.
test: models
	@.venv/bin/ruff check .
	@PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -v -rs --timeout=900

protos: setup
	@.venv/bin/python scripts/gen_protos.py

check-protos: setup
	@.venv/bin/python scripts/gen_protos.py --check
