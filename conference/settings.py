"""Settings for Conference, driven entirely by the environment.

Embedded defaults need nothing installed: SQLite, the in-memory channel layer,
local file storage and a filesystem Celery transport. Set ``DATABASE_URL`` to
use PostgreSQL and ``REDIS_URL`` to use Redis for the channel layer, the cache
and the Celery broker. ``CONFERENCE_ENV=production`` refuses to start without
a secret key, allowed hosts and a media secret.
"""

from __future__ import annotations

import ipaddress
import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from conference.redis_retry import redis_retry

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


ENVIRONMENT = env("CONFERENCE_ENV", "local")
if ENVIRONMENT not in {"local", "test", "production"}:
    raise ImproperlyConfigured(f"CONFERENCE_ENV must be local, test or production, not {ENVIRONMENT!r}")
PRODUCTION = ENVIRONMENT == "production"

DEV_SECRET_KEY = "django-insecure-conference-local-development-only"  # noqa: S105
DEV_MEDIA_SECRET = "dev-media-secret"  # noqa: S105

SECRET_KEY = env("DJANGO_SECRET_KEY", "" if PRODUCTION else DEV_SECRET_KEY)
DEBUG = env_bool("DJANGO_DEBUG", ENVIRONMENT == "local")
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "" if PRODUCTION else "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")
MEDIA_SECRET = env("MEDIA_SECRET", "" if PRODUCTION else DEV_MEDIA_SECRET)

# Production refuses weak configuration (docs/security.md): secrets at least this long, none of these values.
MIN_SECRET_LENGTH = 32
DEVELOPMENT_SECRETS = frozenset({DEV_SECRET_KEY, DEV_MEDIA_SECRET})
_HOW_TO_GENERATE = "python -c 'import secrets; print(secrets.token_urlsafe(48))'"


def production_refusals(*, secret_key: str, media_secret: str, debug: bool, allowed_hosts: list[str]) -> list[str]:
    """Why these settings must not run in production: one sentence per problem, naming the variable."""
    problems = []
    for name, value in (("DJANGO_SECRET_KEY", secret_key), ("MEDIA_SECRET", media_secret)):
        if not value:
            problems.append(f"{name} is not set: generate one with {_HOW_TO_GENERATE}")
        elif value in DEVELOPMENT_SECRETS:
            problems.append(f"{name} is a development value: generate a new one with {_HOW_TO_GENERATE}")
        elif len(value) < MIN_SECRET_LENGTH:
            problems.append(
                f"{name} is shorter than {MIN_SECRET_LENGTH} characters: generate one with {_HOW_TO_GENERATE}"
            )
    if not allowed_hosts:
        problems.append("DJANGO_ALLOWED_HOSTS is not set: list the site's host names, e.g. meet.example.org")
    elif any(host.strip() in {"*", ".*"} or "*" in host for host in allowed_hosts):
        problems.append("DJANGO_ALLOWED_HOSTS contains a wildcard: list the site's host names instead")
    if debug:
        problems.append("DJANGO_DEBUG is on (tracebacks and settings in error pages): unset it or set it to 0")
    return problems


if PRODUCTION:
    _refusals = production_refusals(
        secret_key=SECRET_KEY, media_secret=MEDIA_SECRET, debug=DEBUG, allowed_hosts=ALLOWED_HOSTS
    )
    if _refusals:
        raise ImproperlyConfigured("production settings refused: " + "; ".join(_refusals))
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # HTTPS only (docs/security.md "Headers"): nginx redirects too; our own processes reach /internal/ (media
    # events), /healthz and /metrics over plain HTTP on private addresses, so those are not redirected.
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^internal/", r"^healthz$", r"^metrics$"]
    SECURE_HSTS_SECONDS = int(env("DJANGO_HSTS_SECONDS", str(365 * 24 * 3600)))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
    # Preloading is opt-in: browsers' preload lists take months to leave. Without it, check --deploy's W021
    # (a reminder, not a weakness) is silenced below.
    SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", False)
    if not SECURE_HSTS_PRELOAD:
        SILENCED_SYSTEM_CHECKS = ["security.W021"]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and ReDoc from our own static files: offline and under the CSP
    "channels",
    "rooms",
    "chat",
    "recordings",
    "meetings",
    "breakouts",
]

MIDDLEWARE = [
    "conference.metrics.MetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "conference.security_headers.PermissionsPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "conference.sync_chain.SyncChainMiddleware",  # last: the chain above runs on one thread (no hop per hook)
]

ROOT_URLCONF = "conference.urls"
ASGI_APPLICATION = "conference.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Content-Security-Policy (django-csp) and Permissions-Policy (docs/security.md "Headers") ----------------
# No inline script anywhere: pages load module scripts from /static/ (the call page's call.js, its e2ee
# worker); the room config is a JSON data block (json_script), not script. The room socket is same-origin.
# Recording thumbnails and downloads may come from S3 (presigned URLs): its endpoint is allowed for images
# and media.
_storage_origins = [env("S3_ENDPOINT_URL").rstrip("/")] if env("S3_ENDPOINT_URL") else []
if env("S3_BUCKET") and not env("S3_ENDPOINT_URL"):
    _storage_origins = ["https://*.amazonaws.com"]
_ws_origins = []
if env("PUBLIC_BASE_URL"):
    _ws_origins = [env("PUBLIC_BASE_URL").rstrip("/").replace("https://", "wss://").replace("http://", "ws://")]
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "worker-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:", "blob:", *_storage_origins],
        "media-src": ["'self'", "blob:", *_storage_origins],
        "connect-src": ["'self'", *_ws_origins],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
# Camera, microphone and screen capture for this site only; nothing else a call page never needs.
PERMISSIONS_POLICY = env(
    "PERMISSIONS_POLICY",
    "camera=(self), microphone=(self), display-capture=(self), fullscreen=(self), geolocation=(), "
    "payment=(), usb=(), serial=(), hid=(), midi=(), magnetometer=(), gyroscope=(), "
    "accelerometer=(), interest-cohort=()",
)

# --- Database -------------------------------------------------------------
DATABASE_URL = env("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env("SQLITE_PATH", str(BASE_DIR / "var" / "db.sqlite3")),
            # IMMEDIATE takes the write lock at BEGIN, so read-then-write
            # transactions (capacity checks, chat sequence) serialize.
            "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
            # A file, not shared-cache memory: concurrent tests need real locking.
            "TEST": {"NAME": env("SQLITE_TEST_PATH", str(BASE_DIR / "var" / f"test-db-{os.getpid()}.sqlite3"))},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Threads for the web process's synchronous code (HTTP views, room socket database hops), each keeping its
# database connection (conference/sync_threads.py): at most this many + 1 connections per daphne process.
WEB_SYNC_THREADS = int(env("WEB_SYNC_THREADS", "4"))

# --- Redis: channel layer, cache, Celery ------------------------------------
REDIS_URL = env("REDIS_URL")
# Every Redis client retries on a replaced connection (conference/redis_retry.py).
if REDIS_URL:
    CHANNEL_LAYERS: dict[str, Any] = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # redis-py 8 reads with a 5 s socket timeout by default, exactly channels_redis' 5 s BZPOPMIN:
            # an idle consumer's receive then raised TimeoutError and closed its socket. Read for longer.
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": 15, "retry": redis_retry(asynchronous=True)}],
                "prefix": env("CHANNEL_PREFIX", "conference"),
            },
        }
    }
    CACHES: dict[str, Any] = {
        "default": {
            "BACKEND": "conference.cache.RedisCache",  # one connection pool per process, not per request
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env("CACHE_PREFIX", "conference"),
            "OPTIONS": {"retry": redis_retry(asynchronous=False)},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

CELERY_BROKER_URL = env("CELERY_BROKER_URL", REDIS_URL or "filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {}
if CELERY_BROKER_URL == "filesystem://":
    # The filesystem queue (no server needed) lives in CELERY_FILESYSTEM_DIR (default var/celery);
    # the e2e harness gives daphne and its worker a private one.
    _queue_dir = Path(env("CELERY_FILESYSTEM_DIR", str(BASE_DIR / "var" / "celery")))
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir / "queue"),
        "data_folder_out": str(_queue_dir / "queue"),
        "processed_folder": str(_queue_dir / "processed"),
        "control_folder": str(_queue_dir / "control"),
        "store_processed": False,
    }
elif env("CELERY_KEY_PREFIX"):
    # Every key Celery writes in Redis starts with this (kombu's global_keyprefix): tests and several
    # deployments can share one Redis database without touching each other's queues.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"global_keyprefix": env("CELERY_KEY_PREFIX")}
CELERY_RESULT_BACKEND = None
# The queue's name (CELERY_QUEUE): the e2e harness gives daphne and its worker a private queue,
# so no other worker on the same broker takes their tasks.
CELERY_TASK_DEFAULT_QUEUE = env("CELERY_QUEUE", "celery")
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True

# --- Auth -----------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework_simplejwt.authentication.JWTAuthentication",
        "rooms.authentication.GrantTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["conference.parsers.SafeJSONParser"],
    "EXCEPTION_HANDLER": "conference.exception_handler.api_exception_handler",
}
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=int(env("JWT_ACCESS_MINUTES", "15"))),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=int(env("JWT_REFRESH_DAYS", "7"))),
    "AUTH_HEADER_TYPES": ("Bearer",),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Conference API",
    "DESCRIPTION": "Rooms, join grants, chat history and recordings. Errors are "
    '`{"error": {"code", "message", "details"}}`.',
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "conference.schema.add_links"],
}

# --- Static and uploaded files ------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(env("MEDIA_ROOT", str(BASE_DIR / "var" / "media")))
AWS_STORAGE_BUCKET_NAME = env("S3_BUCKET")
if AWS_STORAGE_BUCKET_NAME:
    _default_storage: dict[str, Any] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": AWS_STORAGE_BUCKET_NAME,
            "endpoint_url": env("S3_ENDPOINT_URL") or None,
            "region_name": env("S3_REGION") or None,
            "access_key": env("S3_ACCESS_KEY_ID") or None,
            "secret_key": env("S3_SECRET_ACCESS_KEY") or None,
            "querystring_auth": True,
            "querystring_expire": int(env("S3_URL_EXPIRE_SECONDS", "300")),
            "file_overwrite": False,
            "signature_version": "s3v4",
        },
    }
else:
    _default_storage = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
STORAGES = {
    "default": _default_storage,
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG or ENVIRONMENT == "test"
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Conference ---------------------------------------------------------------
# Public base URL used in join links; empty = derived from the request.
PUBLIC_BASE_URL = env("PUBLIC_BASE_URL").rstrip("/")
# Seconds a join grant token stays valid for opening the room socket.
JOIN_GRANT_TTL_SECONDS = int(env("JOIN_GRANT_TTL_SECONDS", "120"))
# Seconds a rejoin token (a reload keeps the seat, docs/protocol.md §1) stays valid after the join that issued it;
# every join issues a fresh one. It must outlast the longest call; removal, denial or the room's end void it sooner.
REJOIN_TOKEN_TTL_SECONDS = int(env("REJOIN_TOKEN_TTL_SECONDS", str(12 * 3600)))
# A participant whose socket has not been seen for this long loses its seat.
PRESENCE_TIMEOUT_SECONDS = int(env("PRESENCE_TIMEOUT_SECONDS", "45"))
# ICE servers handed to browsers in the join grant (RTCIceServer dicts).
ICE_SERVERS: list[dict[str, Any]] = json.loads(env("ICE_SERVERS", "[]"))
MEDIA_CONTROL_URL = env("MEDIA_CONTROL_URL", "http://127.0.0.1:8790").rstrip("/")
# Room socket (rooms.consumers): the first frame must be `join` within this time.
SOCKET_JOIN_TIMEOUT_SECONDS = float(env("SOCKET_JOIN_TIMEOUT_SECONDS", "10"))
# The server pings a socket it has not heard from for this long...
SOCKET_PING_INTERVAL_SECONDS = float(env("SOCKET_PING_INTERVAL_SECONDS", "20"))
# ...and closes it (4000) after this much silence.
SOCKET_IDLE_TIMEOUT_SECONDS = float(env("SOCKET_IDLE_TIMEOUT_SECONDS", "45"))
# Each live socket bumps its participant's last_seen_at (and sweeps stale
# participants of its room) this often; keep well below PRESENCE_TIMEOUT_SECONDS.
PRESENCE_TOUCH_INTERVAL_SECONDS = float(env("PRESENCE_TOUCH_INTERVAL_SECONDS", "15"))
# Per-socket token buckets: chat messages and reactions, and all frames.
SOCKET_CHAT_RATE_PER_SECOND = float(env("SOCKET_CHAT_RATE_PER_SECOND", "5"))
SOCKET_CHAT_BURST = int(env("SOCKET_CHAT_BURST", "10"))
SOCKET_FRAME_RATE_PER_SECOND = float(env("SOCKET_FRAME_RATE_PER_SECOND", "50"))
SOCKET_FRAME_BURST = int(env("SOCKET_FRAME_BURST", "200"))
# Django -> media server control requests give up after this long (media_unavailable).
MEDIA_CONTROL_TIMEOUT_SECONDS = float(env("MEDIA_CONTROL_TIMEOUT_SECONDS", "10"))
# Several media nodes (rooms/media_nodes.py, docs/protocol.md §2 "Node registry"): with MEDIA_REDIS_URL, media
# nodes register in that Redis and each room is placed on one of them (MEDIA_CONTROL_URL is then unused);
# the same URL and MEDIA_REDIS_PREFIX go to every media node. Empty: one node at MEDIA_CONTROL_URL.
MEDIA_REDIS_URL = env("MEDIA_REDIS_URL")
MEDIA_REDIS_PREFIX = env("MEDIA_REDIS_PREFIX", "conference")
# A room's placement is forgotten after this long without media requests (and when the room ends).
MEDIA_ROOM_PLACEMENT_TTL_SECONDS = float(env("MEDIA_ROOM_PLACEMENT_TTL_SECONDS", str(12 * 3600)))
# Cascading (docs/scaling.md "Cascading"): with MEDIA_SPAN_ROOMS a room's participants are placed per participant,
# on the room's home node until it is over its packet budget (or holds MEDIA_SPAN_PARTICIPANTS_PER_NODE, 0 = no
# cap), then on other nodes, which relay their publications to each other. Needs MEDIA_REDIS_URL.
MEDIA_SPAN_ROOMS = env_bool("MEDIA_SPAN_ROOMS", False)
MEDIA_SPAN_PARTICIPANTS_PER_NODE = int(env("MEDIA_SPAN_PARTICIPANTS_PER_NODE", "0"))
# How often each web process tries to take the failover monitor lock; its holder fails over dead nodes
# (and probes each node's control port: a refused connection fails it over at once).
MEDIA_FAILOVER_INTERVAL_SECONDS = float(env("MEDIA_FAILOVER_INTERVAL_SECONDS", "0.5"))
# retry_after (seconds; REST: Retry-After) of media_unavailable (no media server live or reachable) and of
# media_full (every live media server is full).
MEDIA_RETRY_AFTER_SECONDS = float(env("MEDIA_RETRY_AFTER_SECONDS", "1"))
MEDIA_FULL_RETRY_AFTER_SECONDS = float(env("MEDIA_FULL_RETRY_AFTER_SECONDS", "10"))
# TURN with time-limited credentials (conference/turn.py, deploy/coturn/turnserver.conf): with both set, join
# grants and room snapshots add {"urls": TURN_URLS, "username": "<expiry>:<participantId>", "credential": HMAC}.
# TURN_SECRET is coturn's static-auth-secret; TURN_URLS a comma list (turn:host:3478?transport=udp,...,turns:host:5349).
TURN_SECRET = env("TURN_SECRET")
TURN_URLS = env_list("TURN_URLS")
# Credential lifetime: it must outlast the longest call (coturn refuses allocation refreshes once it has expired);
# a leaked credential works until then. 12 h.
TURN_TTL_SECONDS = int(env("TURN_TTL_SECONDS", str(12 * 3600)))
if TURN_URLS and not TURN_SECRET and PRODUCTION:
    raise ImproperlyConfigured("TURN_URLS needs TURN_SECRET (coturn's static-auth-secret)")
# GET /metrics (conference/metrics.py): open in local/test; in production only with
# "Authorization: Bearer <METRICS_TOKEN>" or from METRICS_ALLOWED_IPS (addresses/CIDRs; never nginx's own address).
METRICS_TOKEN = env("METRICS_TOKEN")
METRICS_ALLOWED_IPS = env_list("METRICS_ALLOWED_IPS")
# Reverse proxies / load balancers in front of the web processes (CIDRs, comma-separated): X-Forwarded-For is
# read only when the peer is one of them, right-most untrusted hop (conference/client_address.py).
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES")
for _cidr in TRUSTED_PROXIES:
    try:
        ipaddress.ip_network(_cidr, strict=False)
    except ValueError as _exc:
        raise ImproperlyConfigured(f"TRUSTED_PROXIES: {_exc}; give CIDRs such as 10.0.0.0/8,127.0.0.1") from _exc
# Rate limits (conference/throttles.py, docs/security.md "Rate limits"), counted in the default cache (Redis
# with REDIS_URL). "N/s|m|h|d"; THROTTLE_RATES (JSON) overrides single entries, "" turns one off.
THROTTLE_RATES: dict[str, str] = {
    "room_password_address": "10/m",  # wrong room passwords per client address
    "room_password_room": "10/m",  # wrong passwords per room, from anywhere (a botnet has many addresses)
    "login_address": "20/m",  # failed sign-ins (web form and REST token) per client address
    "login_account": "10/m",  # failed sign-ins per account name
    "auth_address": env("AUTH_THROTTLE_RATE", "30/m"),  # every REST token/registration request per address
    "guest_join_address": "20/m",  # guest REST joins per client address
    "guest_join_room": "120/m",  # guest REST joins per room
    "lobby_room": "30/m",  # new waiting-room requests per room
    **json.loads(env("THROTTLE_RATES", "{}")),
}
RATELIMIT_ENABLE = env_bool("THROTTLES_ENABLED", True)
RATELIMIT_USE_CACHE = "default"
RATELIMIT_CACHE_PREFIX = "throttle:"

# /healthz gives up on the database or the channel layer after this long (503).
HEALTH_CHECK_TIMEOUT_SECONDS = float(env("HEALTH_CHECK_TIMEOUT_SECONDS", "2"))

LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    "loggers": {"django.channels.server": {"level": "WARNING"}},
}
if CELERY_BROKER_URL == "filesystem://":
    # kombu warns "No hostname was supplied" on every connection to the filesystem queue, which has no host.
    LOGGING["loggers"]["kombu.connection"] = {"level": "ERROR"}

# --- Recordings (issue 6; recordings/, docs/protocol.md §3) -------------------
# Directory shared by the media server (writes track files + manifest.json) and workers.
RECORDINGS_SPOOL_DIR = Path(env("RECORDINGS_SPOOL_DIR", str(BASE_DIR / "var" / "recordings-spool")))
# Composed MP4: canvas, frame rate and x264 preset (25 fps veryfast: about 2.5x real time for 2 people on 2 cores).
RECORDINGS_WIDTH = int(env("RECORDINGS_WIDTH", "1280"))
RECORDINGS_HEIGHT = int(env("RECORDINGS_HEIGHT", "720"))
RECORDINGS_FPS = int(env("RECORDINGS_FPS", "25"))
RECORDINGS_X264_PRESET = env("RECORDINGS_X264_PRESET", "veryfast")
RECORDINGS_FFMPEG = env("RECORDINGS_FFMPEG", "ffmpeg")
RECORDINGS_FFPROBE = env("RECORDINGS_FFPROBE", "ffprobe")
# A transcoding worker bumps its heartbeat this often; a processing recording whose
# heartbeat is older than RECORDINGS_STALE_SECONDS belongs to a dead worker.
RECORDINGS_HEARTBEAT_SECONDS = float(env("RECORDINGS_HEARTBEAT_SECONDS", "15"))
RECORDINGS_STALE_SECONDS = float(env("RECORDINGS_STALE_SECONDS", "120"))
# Processing attempts (crashes, transient upload errors) before a recording fails for good.
RECORDINGS_MAX_ATTEMPTS = int(env("RECORDINGS_MAX_ATTEMPTS", "3"))
# After a stop was asked for, how long to wait for the media server's manifest before failing.
RECORDINGS_STOP_GRACE_SECONDS = float(env("RECORDINGS_STOP_GRACE_SECONDS", "120"))
# A pending recording older than this (the web process died mid-start) fails as media_unavailable.
RECORDINGS_PENDING_TIMEOUT_SECONDS = float(env("RECORDINGS_PENDING_TIMEOUT_SECONDS", "60"))
# Lifetime of download links (signed local URLs; S3 presigned URLs use S3_URL_EXPIRE_SECONDS).
RECORDINGS_URL_EXPIRE_SECONDS = int(env("RECORDINGS_URL_EXPIRE_SECONDS", "300"))
# `celery -A conference beat` runs the cleanup job (also: manage.py recordings_cleanup).
CELERY_BEAT_SCHEDULE = {
    "recordings-cleanup": {
        "task": "recordings.tasks.recordings_cleanup",
        "schedule": float(env("RECORDINGS_CLEANUP_INTERVAL_SECONDS", "60")),
    },
    # Breakout timers whose Celery task was lost still fire (breakouts/services.py breakouts_due).
    "breakouts-due": {"task": "breakouts.tasks.breakouts_due_task", "schedule": 15.0},
}

# --- Scheduled meetings (issue 21; meetings/, README "Scheduled meetings") -----
# A scheduled meeting's room opens for joining this long before each occurrence (its host may join any time).
SCHEDULED_ROOM_OPENS_MINUTES_BEFORE = int(env("SCHEDULED_ROOM_OPENS_MINUTES_BEFORE", "10"))
# Invitations (.ics) go through Django's e-mail backend: EMAIL_BACKEND is console (default: printed by the
# worker), file (EMAIL_FILE_PATH), smtp (EMAIL_HOST, EMAIL_PORT, EMAIL_HOST_USER, EMAIL_HOST_PASSWORD,
# EMAIL_USE_TLS / EMAIL_USE_SSL) or a dotted backend path.
_EMAIL_BACKENDS = {name: f"django.core.mail.backends.{name}.EmailBackend" for name in ("console", "filebased", "smtp")}
_EMAIL_BACKENDS["file"] = _EMAIL_BACKENDS["filebased"]
EMAIL_BACKEND = _EMAIL_BACKENDS.get(env("EMAIL_BACKEND", "console"), env("EMAIL_BACKEND"))
EMAIL_FILE_PATH = env("EMAIL_FILE_PATH", str(BASE_DIR / "var" / "mail"))
EMAIL_HOST = env("EMAIL_HOST", "localhost")
EMAIL_PORT = int(env("EMAIL_PORT", "25"))
EMAIL_HOST_USER = env("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = int(env("EMAIL_TIMEOUT", "30"))
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "Conference <meetings@localhost>")
