# Two entry points: `make demo` and `make test`. Both create .venv on first use.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# CPU build of torch first: a looser pin would pull a multi-GB CUDA wheel.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	@# RTL tools for tests/test_rtl_sim.py, tests/test_rtl_net.py and rtl-export synth (skipped with a message while missing)
	@missing=""; for tool in iverilog verilator yosys nextpnr-ice40; do \
	  command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing RTL tools:$$missing"; \
	    (apt-get update -qq && apt-get install -y -qq iverilog verilator yosys nextpnr-ice40 fpga-icestorm >/dev/null) || \
	      { echo "apt-get failed: the RTL simulation tests will be skipped"; [ -z "$$CI" ] || exit 1; }; \
	  else \
	    echo "RTL tools missing:$$missing; install with: sudo apt-get update && sudo apt-get install -y iverilog verilator yosys nextpnr-ice40 fpga-icestorm"; \
	  fi; \
	fi
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m apps.demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
