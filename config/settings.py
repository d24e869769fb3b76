"""Settings, read from the environment.

Every embedded default is visible here: with no environment variable set the platform runs in one
process on SQLite, embedded ClickHouse (chDB, data under ``var/``), a local-memory cache and eager
Celery tasks. Each real service is switched on by one variable (see README, "Configuration").
"""

import re
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
# A local ``.env`` (copy ``.env.example``) fills in variables the environment does not set; the real
# environment always wins. Production sets real environment variables and has no file.
ENV_FILE = Path(environ.Env().str("PLATFORM_ENV_FILE", default=str(BASE_DIR / ".env")))
if ENV_FILE.is_file():
    environ.Env.read_env(ENV_FILE, overwrite=False)
VAR_DIR = Path(environ.Env().str("PLATFORM_VAR_DIR", default=str(BASE_DIR / "var")))

env = environ.Env()

DEV_SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production"  # noqa: S105 - embedded default, refused below
DEBUG = env.bool("DJANGO_DEBUG", default=True)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off.")
    SECRET_KEY = DEV_SECRET_KEY
elif not DEBUG and SECRET_KEY == DEV_SECRET_KEY:
    raise ImproperlyConfigured("DJANGO_SECRET_KEY is the public development key; set a secret one.")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["*"] if DEBUG else [])
if not DEBUG and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("DJANGO_ALLOWED_HOSTS must be set when DJANGO_DEBUG is off.")
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "config.apps.PlatformAdminConfig",  # django.contrib.admin with the platform's site (config/admin.py)
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    # Swagger UI and ReDoc as static files of our own (no CDN): /api/docs works offline.
    "drf_spectacular_sidecar",
    "simple_history",
    "taggit",
    "django_celery_beat",
    "metrics",
    "experiments",
    "features",
    "analytics",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # POST /api/v1/experiments/x/start works as .../start/ does (no redirect that would drop the body).
    "config.trailing_slash.ApiTrailingSlashMiddleware",
    # SDK endpoints: CORS, body limits and per-key rate limits, before anything reads a session.
    "features.sdk.middleware.SdkEdgeMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "config" / "templates"],
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

# --- PostgreSQL (configuration plane) -------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # Concurrent writers (gunicorn's threads, the embedded scheduler's thread) queue instead of failing
    # with "database is locked": SQLite has one writer at a time, and a transaction that starts as a
    # reader (BEGIN, deferred) fails at once when it wants to write after another connection did,
    # whatever the timeout. BEGIN IMMEDIATE takes the write lock first, where waiting (up to the
    # timeout, in seconds) is safe; the WAL journal lets readers go on while one connection writes, and
    # with it synchronous=NORMAL still survives a process crash (not a power cut, fine for the embedded
    # default; production uses PostgreSQL).
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": env.int("SQLITE_BUSY_TIMEOUT", default=30),
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
        }
    )
elif DATABASES["default"]["ENGINE"].endswith("postgresql"):
    # A database that does not answer fails a request (and /api/health) in seconds, not minutes.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "connect_timeout", env.int("DATABASE_CONNECT_TIMEOUT", default=5)
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis (cache and Celery broker) --------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="xp"),
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                "SOCKET_CONNECT_TIMEOUT": 1,
                "SOCKET_TIMEOUT": 1,
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "platform"}}

# --- ClickHouse (raw events and analytics) --------------------------------------------------------
# Unset: embedded chDB in this process, data under var/chdb. Set: a ClickHouse server over HTTP.
CLICKHOUSE_URL = env.str("CLICKHOUSE_URL", default="")
CLICKHOUSE_DATA_DIR = env.str("CLICKHOUSE_DATA_DIR", default=str(VAR_DIR / "chdb"))
CLICKHOUSE_DATABASE = env.str("CLICKHOUSE_DATABASE", default="experiments")
CLICKHOUSE_QUERY_TIMEOUT = env.float("CLICKHOUSE_QUERY_TIMEOUT", default=60.0)
CLICKHOUSE_CONNECT_TIMEOUT = env.float("CLICKHOUSE_CONNECT_TIMEOUT", default=3.0)
# A ClickHouse cluster (docs/operations.md, "Run on a ClickHouse cluster"): its name in the servers'
# remote_servers. Set, the migrations create replicated `<table>_local` tables ON CLUSTER and
# `Distributed` tables sharded by unit under the usual names, and the roll-up runs per shard.
CLICKHOUSE_CLUSTER = env.str("CLICKHOUSE_CLUSTER", default="")
# Off: the shard-local tables are plain MergeTree, created on the connected server only, without ON
# CLUSTER (a cluster of one server's shards, as the test suite runs inside chDB, where no Keeper runs).
CLICKHOUSE_CLUSTER_REPLICATED = env.bool("CLICKHOUSE_CLUSTER_REPLICATED", default=True)
# Replicas that must acknowledge every insert (ClickHouse's insert_quorum): 0 = the default (one),
# a number, or "auto" (a majority). Only meaningful on replicated tables, so it needs the cluster.
CLICKHOUSE_INSERT_QUORUM = env.str("CLICKHOUSE_INSERT_QUORUM", default="0")
# A ClickHouse server configuration file for embedded chDB (remote_servers, macros, tcp_port): how the
# test suite gives the embedded engine a cluster. Ignored with CLICKHOUSE_URL.
CLICKHOUSE_EMBEDDED_CONFIG = env.str("CLICKHOUSE_EMBEDDED_CONFIG", default="")
if CLICKHOUSE_CLUSTER and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", CLICKHOUSE_CLUSTER):
    raise ImproperlyConfigured(
        f"CLICKHOUSE_CLUSTER must be a plain identifier (letters, digits, _), got {CLICKHOUSE_CLUSTER!r}."
    )
if not re.fullmatch(r"\d+|auto", CLICKHOUSE_INSERT_QUORUM):
    raise ImproperlyConfigured(
        f"CLICKHOUSE_INSERT_QUORUM must be a number of replicas or 'auto', got {CLICKHOUSE_INSERT_QUORUM!r}."
    )
if CLICKHOUSE_INSERT_QUORUM != "0" and not (CLICKHOUSE_CLUSTER and CLICKHOUSE_CLUSTER_REPLICATED):
    raise ImproperlyConfigured(
        "CLICKHOUSE_INSERT_QUORUM needs replicated tables: set CLICKHOUSE_CLUSTER (with "
        "CLICKHOUSE_CLUSTER_REPLICATED on), or leave the quorum at 0."
    )

# --- Celery ---------------------------------------------------------------------------------------
# Eager (tasks run in the calling process) without a broker, and whenever ClickHouse is embedded: only
# the process that owns the chDB directory can run tasks that read or write it, so a separate worker
# could not.
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not REDIS_URL or not CLICKHOUSE_URL)
# Eager tasks send nothing to a broker: an in-memory one, so nothing waits on Redis for it.
CELERY_BROKER_URL = env.str(
    "CELERY_BROKER_URL", default="memory://" if CELERY_TASK_ALWAYS_EAGER else REDIS_URL or "memory://"
)
CELERY_RESULT_BACKEND = None
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_TIME_LIMIT = 30 * 60
CELERY_TASK_SOFT_TIME_LIMIT = 25 * 60
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# With eager tasks there is no worker and no beat process: the web server runs the periodic schedules
# (the admin's "Periodic tasks": scheduled starts and stops, roll-ups, the spool drain) in a thread of
# its own (config.scheduler). Off by default otherwise: a beat process does it (docker-compose).
EMBEDDED_SCHEDULER = env.bool("EMBEDDED_SCHEDULER", default=CELERY_TASK_ALWAYS_EAGER)
CELERY_TIMEZONE = "UTC"

# --- Auth and API ---------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

REST_FRAMEWORK = {
    # Token first, so that a request without credentials gets 401 with WWW-Authenticate.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
        # A valid SDK key is recognised only to be refused with 403 (not 401 "not provided").
        "features.sdk.auth.SdkKeyRefusal",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["config.permissions.ReadAuthenticatedWriteModelPermission"],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.SearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # The API speaks JSON (the configuration file endpoint adds YAML): a form or multipart body is
    # refused with 415, and the OpenAPI document lists JSON bodies only. Django's form parsing
    # answered some malformed bodies with its own HTML 400 page.
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "config.exceptions.api_exception_handler",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Experimentation Platform API",
    "DESCRIPTION": (
        "Manage metrics, experiments and feature flags; ask for assignments and flag values; send "
        "events and exposures; read results. Management endpoints take a Django session or "
        "`Authorization: Token <token>`; SDK endpoints take an environment's SDK key as "
        "`Authorization: Bearer <key>` or `X-API-Key: <key>`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1|/ofrep/v1",
    "ENUM_NAME_OVERRIDES": {},
    # Swagger UI and ReDoc from drf-spectacular-sidecar's static files, served by WhiteNoise like the
    # admin's: nothing on /api/docs or /api/redoc comes from another host (see also the ReDoc template
    # in config/templates/drf_spectacular/redoc.html, which drops the web-font stylesheet).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # No "valid" badge fetched from the public validator service.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    # Document the error answers of the management API too (config.exceptions).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "config.exceptions.document_error_responses",
    ],
}

# --- Results --------------------------------------------------------------------------------------
# A results refresh asked through the API or the admin runs at most this often per experiment.
RESULTS_REFRESH_MIN_INTERVAL_SECONDS = env.int("RESULTS_REFRESH_MIN_INTERVAL_SECONDS", default=30)
# Running experiments' results are refreshed this often (the schedule's interval when
# `manage.py migrate` installs it; the admin's "Periodic tasks" edits it afterwards).
RESULTS_REFRESH_INTERVAL_MINUTES = env.int("RESULTS_REFRESH_INTERVAL_MINUTES", default=5)
# Dimension breakdowns (GET .../results/?dimension=) each read every event of the experiment: at most
# this many compute at once (across processes through the cache; past it 503 with Retry-After), and
# a request for a breakdown another request is computing waits this long for it, then answers 503.
RESULTS_BREAKDOWN_MAX_CONCURRENT = env.int("RESULTS_BREAKDOWN_MAX_CONCURRENT", default=2)
RESULTS_BREAKDOWN_WAIT_SECONDS = env.float("RESULTS_BREAKDOWN_WAIT_SECONDS", default=5.0)
if RESULTS_BREAKDOWN_MAX_CONCURRENT < 1:
    raise ImproperlyConfigured("RESULTS_BREAKDOWN_MAX_CONCURRENT must be at least 1.")
if RESULTS_BREAKDOWN_WAIT_SECONDS < 0:
    raise ImproperlyConfigured("RESULTS_BREAKDOWN_WAIT_SECONDS must be 0 or more.")
# Incremental refresh: rows stamped this long before a refresh started are still read again by the
# next one (inserts in flight, clock skew between processes); keep it above CLICKHOUSE_QUERY_TIMEOUT.
ROLLUP_ARRIVAL_MARGIN_SECONDS = env.int("ROLLUP_ARRIVAL_MARGIN_SECONDS", default=300)
# Incremental refresh from per-unit state (docs/analysis.md), per shard on a cluster: "on" for every
# experiment, "off" for none, "auto" (the default) for an experiment once a cold refresh of it took
# ROLLUP_INCREMENTAL_AUTO_MS or more. It is exact everywhere but pays only on large experiments:
# measured at 1.8-2.0x the cold refresh's time at 1M events, 0.95-1.1x at 10M, 0.77-0.86x at 30M with
# 1% new events a refresh, and 0.54x at 10M, 0.35x at 30M with 0.1% (2026-12-07), where a cold refresh
# took 0.25-0.4 s at 1M, 1.6-2.4 s at 10M and 5-7 s at 30M. "true"/"false" are read as "on"/"off".
_rollup_incremental = env.str("ROLLUP_INCREMENTAL", default="auto").strip().lower()
_boolean_modes = {"true": "on", "yes": "on", "1": "on", "false": "off", "no": "off", "0": "off"}
ROLLUP_INCREMENTAL = _boolean_modes.get(_rollup_incremental, _rollup_incremental)
if ROLLUP_INCREMENTAL not in ("auto", "on", "off"):
    raise ImproperlyConfigured("ROLLUP_INCREMENTAL must be auto, on or off (or true/false).")
ROLLUP_INCREMENTAL_AUTO_MS = env.int("ROLLUP_INCREMENTAL_AUTO_MS", default=2000)
if ROLLUP_INCREMENTAL_AUTO_MS < 0:
    raise ImproperlyConfigured("ROLLUP_INCREMENTAL_AUTO_MS must be 0 or more.")

# --- SDK endpoints --------------------------------------------------------------------------------
# Flag configuration: a change made in another process is served here within this many seconds
# (each process reads the shared generation token at most this often)...
FLAGS_GENERATION_CHECK_SECONDS = env.float("FLAGS_GENERATION_CHECK_SECONDS", default=1.0)
# ...and a write that bypassed the model layer (raw SQL, QuerySet.update) within this many.
FLAGS_CONFIG_MAX_AGE = env.float("FLAGS_CONFIG_MAX_AGE", default=60.0)
EVENT_MAX_PAST_DAYS = env.int("EVENT_MAX_PAST_DAYS", default=30)
EVENT_MAX_FUTURE_HOURS = env.int("EVENT_MAX_FUTURE_HOURS", default=1)
# Largest absolute event value accepted. Metrics sum values and their squares over units; a value near
# 1.7e308 would overflow those sums and leave the results without numbers. 1e12 leaves room for
# any price or duration, and for squares summed over billions of units.
EVENT_MAX_ABS_VALUE = env.float("EVENT_MAX_ABS_VALUE", default=1e12)
if not 0 < EVENT_MAX_ABS_VALUE <= 1e100:
    raise ImproperlyConfigured("EVENT_MAX_ABS_VALUE must be greater than 0 and at most 1e100.")
# Exposures may be as late as they like, but not older than their experiment (less this much clock
# skew): nobody saw a variant before it existed, and a bogus year would make a partition of its own.
EXPOSURE_MAX_HOURS_BEFORE_CREATION = env.int("EXPOSURE_MAX_HOURS_BEFORE_CREATION", default=24)
# Requests per minute per SDK key, counted in the cache and shared by every process; past it 429 with
# Retry-After. Off by default (0): one backend service on one key easily sends 100 requests a second,
# so a default limit would cut off a normal production load. An opt-in protection against runaways.
SDK_RATE_LIMIT_PER_MINUTE = env.int("SDK_RATE_LIMIT_PER_MINUTE", default=0)
# The largest body an SDK endpoint reads (assign, evaluate, OFREP, events, exposures): 413 past it.
SDK_MAX_BODY_BYTES = env.int("SDK_MAX_BODY_BYTES", default=1024 * 1024)
# The largest body any other endpoint reads (Django's forms, and the management API's JSON through
# features.sdk.middleware): 413 past it. A feature with hundreds of rules is a few hundred KiB.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DJANGO_DATA_UPLOAD_MAX_MEMORY_SIZE", default=2 * 1024 * 1024)
# Browser origins allowed to call the SDK endpoints are set per environment (Environment.cors_allowed_origins).
# GrowthBook's streaming (GET /sub/{key}, features.sdk.streaming): served by an ASGI process (config.asgi).
# "auto": /api/features advertises it (x-sse-support) only from a process that serves /sub itself;
# "on": always (a proxy routes /sub/* to a stream process, as in docker-compose.yml); "off": never,
# and /sub answers 404.
SDK_STREAMING = env.str("SDK_STREAMING", default="auto")
if SDK_STREAMING not in ("auto", "on", "off"):
    raise ImproperlyConfigured("SDK_STREAMING must be auto, on or off.")
# Open streams one process holds, in all and per key (past either: 503 / 429 with Retry-After), so
# that a client cannot take every connection; each idle stream costs a socket and a few KiB.
SDK_STREAM_MAX_CONNECTIONS = env.int("SDK_STREAM_MAX_CONNECTIONS", default=10_000)
SDK_STREAM_MAX_PER_KEY = env.int("SDK_STREAM_MAX_PER_KEY", default=5_000)
# A comment line this often on an idle stream, so that proxies and load balancers keep it open
# (nginx's and most balancers' idle timeout is 60 s).
SDK_STREAM_KEEPALIVE_SECONDS = env.float("SDK_STREAM_KEEPALIVE_SECONDS", default=15.0)
if SDK_STREAM_KEEPALIVE_SECONDS <= 0:
    raise ImproperlyConfigured("SDK_STREAM_KEEPALIVE_SECONDS must be greater than 0.")
# Threads serving the requests other than streams when Django runs under uvicorn (config.asgi), as
# gunicorn's --threads does.
ASGI_THREADS = env.int("ASGI_THREADS", default=8)

# --- Webhooks -------------------------------------------------------------------------------------
# Receivers on private, loopback and link-local addresses are allowed by default: a self-hosted
# platform talks to internal services. false: only public addresses, checked when a webhook is saved
# and again at each delivery after the name is resolved (features/webhooks/addresses.py).
WEBHOOK_ALLOW_PRIVATE = env.bool("WEBHOOK_ALLOW_PRIVATE", default=True)
# Each delivery attempt waits at most this long for the receiver (connect and answer together).
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=5.0)
# Attempts per delivery, the first included; retries wait 10 s, 20 s, 40 s, ... (exponential backoff).
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=5)
if not 0 < WEBHOOK_TIMEOUT_SECONDS <= 60:
    raise ImproperlyConfigured("WEBHOOK_TIMEOUT_SECONDS must be greater than 0 and at most 60.")
if not 1 <= WEBHOOK_MAX_ATTEMPTS <= 20:
    raise ImproperlyConfigured("WEBHOOK_MAX_ATTEMPTS must be from 1 to 20.")

# --- Internationalisation, static files -----------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = env.str("DJANGO_STATIC_ROOT", default=str(VAR_DIR / "static"))
# In debug, WhiteNoise serves straight from the apps' static folders, so no collectstatic is needed.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

if not DEBUG:
    # Behind a proxy that terminates TLS (docker-compose's Caddy), a request came over HTTPS when the
    # proxy says so in X-Forwarded-Proto; that proxy must overwrite the header clients send (Caddy
    # does). Off: only a direct HTTPS connection to gunicorn counts as secure.
    if env.bool("DJANGO_SECURE_PROXY_SSL_HEADER", default=True):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True

VAR_DIR.mkdir(parents=True, exist_ok=True)
