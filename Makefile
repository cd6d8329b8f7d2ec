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

.PHONY: run test lint check migrate venv clean bench firefox-driver
FIREFOX_DRIVER := tests/e2e/firefox

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

migrate: $(VENV)/.runtime
	$(PY) manage.py migrate --noinput

## Start web (daphne) + media server + Celery worker on embedded defaults
## (REDIS_URL=redis://… make run MEDIA_NODES=2: two media servers, rooms placed through Redis).
run: migrate
	$(PY) -m conference.devserver --host $(HOST) --port $(PORT) --media-port $(MEDIA_PORT) --media-nodes $(MEDIA_NODES)

## The whole test suite: the call page's JavaScript logic (node --test, tests/js/), then pytest in two layers
## (tests/layers.py): everything but the browsers on TEST_WORKERS parallel workers, then the browser tests alone.
## Services and browsers are used when available; CI sets CI=true and requires them.
test: venv firefox-driver
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
	rm -rf $(VENV) var/db.sqlite3 var/celery $(FIREFOX_DRIVER)/node_modules
