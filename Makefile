# Every target creates .venv when it is missing and installs what it needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install -c constraints.txt

.PHONY: venv test lint demo app clean

INPUT ?=

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) -q torch==2.14.1 torchvision==0.29.1
	$(PIP) -q -e ".[dev]"
# Reference metrics for tests/test_eval.py. --no-deps: it requires opencv-python, whose cv2 would
# overwrite opencv-python-headless; its real needs (numpy, opencv, scikit-image) come from [dev].
	$(PIP) -q --no-deps vos-benchmark==0.1.0
	touch $@

venv: $(VENV)/.installed

test: venv
	$(BIN)/python -m pytest -q --durations=15

# Track objects automatically in a short clip with the default models (weights download on first use).
# `make demo INPUT=path/to/video.mp4` uses your own clip instead of the generated one.
demo: venv
	$(BIN)/python -m samtrack.demo $(INPUT)

# The web app on http://127.0.0.1:7860 (the page names any missing weights and the command that fetches them).
app: venv
	$(BIN)/samtrack app

lint: venv
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info
