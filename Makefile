# Two commands: `make run` and `make test`. Everything else is a detail.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
HOST ?= 127.0.0.1
PORT ?= 8000
MEDIA_PORT ?= 8790
MEDIA_NODES ?= 1
# make test: parallel workers for the non-browser layer (tests/layers.py)
TEST_WORKERS ?= 2
export TEST_WORKERS

.PHONY: run test lint check migrate venv clean bench firefox-driver vendor
FIREFOX_DRIVER := tests/e2e/firefox
# The call page's browser libraries (background effects, noise suppression): pinned in vendor/package.json +
# package-lock.json; only the files the page loads are copied to static/vendor/ (not committed, served by Django).
VENDOR := vendor
VENDOR_OUT := static/vendor

# What running needs (make run, make migrate): requirements.txt and the media server's C fast path.
# In a new venv pip shows its progress; updating an existing one (a requirement changed) is quiet.
FIRST = $(if $(wildcard $(PY)),,yes)
$(VENV)/.runtime: requirements.txt native/sfu_native/sfu_native.c native/sfu_native/setup.py
	@test -x $(PY) || { echo "==> Creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	@echo "==> Installing what running needs (requirements.txt) into $(VENV)$(if $(FIRST), (the first time: a few minutes, ~370 MB))"
	@$(PIP) install --disable-pip-version-check -q --upgrade pip
	$(PIP) install --disable-pip-version-check $(if $(FIRST),,-q) -r requirements.txt
	@echo "==> Building the media server's C fast path (native/sfu_native)"
	@$(PIP) install --disable-pip-version-check -q ./native/sfu_native || \
	  echo "note: the media server's C fast path was not built (needs gcc and the Python headers); it runs on its pure-Python path"
	@touch $@

# make test, make lint, make bench: the development and test tools (requirements-dev.txt) on top.
$(VENV)/.installed: $(VENV)/.runtime requirements-dev.txt
	@echo "==> Installing the development and test tools (requirements-dev.txt) into $(VENV)"
	$(PIP) install --disable-pip-version-check $(if $(wildcard $@),-q) -r requirements-dev.txt
	@touch $@

venv: $(VENV)/.installed

# The Firefox tests' Node driver (puppeteer-core, pinned by package-lock.json; never downloads a browser:
# the tests use Debian's firefox-esr). Without npm the Firefox tests are deselected (CI installs it).
$(FIREFOX_DRIVER)/node_modules/.package-lock.json: $(FIREFOX_DRIVER)/package.json $(FIREFOX_DRIVER)/package-lock.json
	@if command -v npm >/dev/null; then \
	  cd $(FIREFOX_DRIVER) && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error; \
	else echo "note: npm not found; the Firefox end-to-end tests need it (apt-get install nodejs npm)"; fi

firefox-driver: $(FIREFOX_DRIVER)/node_modules/.package-lock.json

# npm ci, then copy only what is served: the segmentation solution's loader, wasm, graph and landscape model,
# and the noise suppressor's module, worklet and wasm (docs/architecture.md "Background effects and noise
# suppression"). Without npm the page still works; its effect pickers offer only what the browser has.
$(VENDOR_OUT)/.copied: $(VENDOR)/package.json $(VENDOR)/package-lock.json
	@if command -v npm >/dev/null; then \
	  cd $(VENDOR) && npm ci --no-audit --no-fund --loglevel=error && cd .. && \
	  rm -rf $(VENDOR_OUT) && mkdir -p $(VENDOR_OUT)/selfie_segmentation $(VENDOR_OUT)/noise && \
	  S=$(VENDOR)/node_modules/@mediapipe/selfie_segmentation && \
	  cp $$S/selfie_segmentation.js $$S/selfie_segmentation.binarypb $$S/selfie_segmentation_landscape.tflite \
	     $$S/selfie_segmentation_solution_simd_wasm_bin.js $$S/selfie_segmentation_solution_simd_wasm_bin.wasm \
	     $$S/selfie_segmentation_solution_simd_wasm_bin.data \
	     $$S/selfie_segmentation_solution_wasm_bin.js $$S/selfie_segmentation_solution_wasm_bin.wasm \
	     $$S/package.json $(VENDOR_OUT)/selfie_segmentation/ && \
	  N=$(VENDOR)/node_modules/@sapphi-red/web-noise-suppressor && \
	  cp $$N/dist/index.js $$N/dist/rnnoise/workletProcessor.js $$N/dist/rnnoise.wasm $$N/dist/rnnoise_simd.wasm \
	     $$N/LICENSE $$N/package.json $(VENDOR_OUT)/noise/ && \
	  mv $(VENDOR_OUT)/noise/workletProcessor.js $(VENDOR_OUT)/noise/rnnoiseWorklet.js && \
	  touch $@; \
	else echo "note: npm not found; background effects and RNNoise need it (apt-get install nodejs npm)"; fi

vendor: $(VENDOR_OUT)/.copied

migrate: $(VENV)/.runtime $(VENDOR_OUT)/.copied
	$(PY) manage.py migrate --noinput

## Start web (daphne) + media server + Celery worker on embedded defaults
## (REDIS_URL=redis://… make run MEDIA_NODES=2: two media servers, rooms placed through Redis).
run: migrate
	$(PY) -m conference.devserver --host $(HOST) --port $(PORT) --media-port $(MEDIA_PORT) --media-nodes $(MEDIA_NODES)

## The whole test suite: the call page's JavaScript logic (node --test, tests/js/), then pytest in two layers
## (tests/layers.py): everything but the browsers on TEST_WORKERS parallel workers, then the browser tests alone.
## Services and browsers are used when available; CI sets CI=true and requires them.
test: venv firefox-driver vendor
	node --test tests/js/
	$(PY) tests/layers.py $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .
	$(PY) manage.py makemigrations --check --dry-run

bench: venv
	@echo "see bench/README.md; e.g. $(PY) bench/sfu_forward.py"

clean:
	rm -rf $(VENV) var/db.sqlite3 var/celery $(FIREFOX_DRIVER)/node_modules $(VENDOR)/node_modules $(VENDOR_OUT)
