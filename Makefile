# Two commands: `make run` and `make test`. Everything else is a detail.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
HOST ?= 127.0.0.1
PORT ?= 8000
MEDIA_PORT ?= 8790
MEDIA_NODES ?= 1

.PHONY: run test lint check migrate venv clean bench firefox-driver
FIREFOX_DRIVER := tests/e2e/firefox

$(VENV)/.installed: requirements.txt requirements-dev.txt native/sfu_native/sfu_native.c native/sfu_native/setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --disable-pip-version-check -q --upgrade pip
	$(PIP) install --disable-pip-version-check -q -r requirements-dev.txt
	$(PIP) install --disable-pip-version-check -q ./native/sfu_native || \
	  echo "note: the media server's C fast path was not built (needs gcc and the Python headers); it runs on its pure-Python path"
	touch $@

venv: $(VENV)/.installed

# The Firefox tests' Node driver (puppeteer-core, pinned by package-lock.json; never downloads a browser:
# the tests use Debian's firefox-esr). Without npm the Firefox tests are deselected (CI installs it).
$(FIREFOX_DRIVER)/node_modules/.package-lock.json: $(FIREFOX_DRIVER)/package.json $(FIREFOX_DRIVER)/package-lock.json
	@if command -v npm >/dev/null; then \
	  cd $(FIREFOX_DRIVER) && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error; \
	else echo "note: npm not found; the Firefox end-to-end tests need it (apt-get install nodejs npm)"; fi

firefox-driver: $(FIREFOX_DRIVER)/node_modules/.package-lock.json

migrate: venv
	$(PY) manage.py migrate --noinput

## Start web (daphne) + media server + Celery worker on embedded defaults
## (REDIS_URL=redis://… make run MEDIA_NODES=2: two media servers, rooms placed through Redis).
run: migrate
	$(PY) -m conference.devserver --host $(HOST) --port $(PORT) --media-port $(MEDIA_PORT) --media-nodes $(MEDIA_NODES)

## The whole test suite (services and browsers are used when available; CI sets CI=true and requires them).
test: venv firefox-driver
	$(PY) -m pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .
	$(PY) manage.py makemigrations --check --dry-run

bench: venv
	@echo "see bench/README.md; e.g. $(PY) bench/sfu_forward.py"

clean:
	rm -rf $(VENV) var/db.sqlite3 var/celery $(FIREFOX_DRIVER)/node_modules
