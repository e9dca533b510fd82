# Two commands on a fresh Debian/Ubuntu machine:
#   make demo   - the main job: a node, a broker, the edge agent and an upstream, end to end
#   make test   - lint, type-check the firmware against the ESP32 API, run every test
# Each installs what it needs (mosquitto via apt when missing, a venv with pip).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
STUBS  := .stubs/esp32
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=
# The HIL suite (hil_tests/) runs against virtual boards unless QA names real ports,
# e.g. `make test HIL_BOARD_PORT=/dev/ttyUSB0`.
export HIL_BOARD_PORT ?= virtual

.PHONY: test demo lint typecheck pytest system-deps venv stubs clean bench

test: lint typecheck pytest

system-deps:
	@command -v mosquitto >/dev/null 2>&1 || { \
	  echo "installing mosquitto (apt)"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto mosquitto-clients; }

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "need CPython 3.11: the MicroPython VM wheel is cp311 only")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

venv: $(STAMP)

# The ESP32 stubs shadow the standard library, so they live in a folder of their own.
$(STUBS)/.installed: $(STAMP)
	$(PY) -m pip install -q --no-deps --target $(STUBS) 'micropython-esp32-stubs>=1.24'
	@touch $@

stubs: $(STUBS)/.installed

lint: $(STAMP)
	$(VENV)/bin/ruff check .

typecheck: stubs
	$(PY) firmware/typecheck.py

pytest: system-deps $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

demo: system-deps $(STAMP)
	$(PY) demo/run.py

bench: system-deps $(STAMP)
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) .stubs .pytest_cache .ruff_cache .mypy_cache
