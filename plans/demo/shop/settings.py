"""Settings of the shop project.

Everything that differs between machines or holds a secret comes from the
environment, as in production; nothing here is a real credential.

Database: ``DATABASE_URL`` when set (parsed by dj-database-url; its query
parameters become libpq keywords, and ``sslmode`` defaults to ``require``
when it names none), otherwise ``DB_NAME``, ``DB_USER``, ``DB_PASSWORD``,
``DB_HOST``, ``DB_PORT``, ``DB_SSLMODE`` (default ``require``) and
``DB_SSLROOTCERT``. The two forms never mix: with ``DATABASE_URL`` set, no
``DB_*`` variable is read.
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name, default=False):
    """Read a boolean environment variable (1/true/yes/on, any case)."""
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def env_conn_max_age():
    """CONN_MAX_AGE: seconds to keep a connection open (0 closes it after
    each request; "none" keeps it forever)."""
    value = os.environ.get("CONN_MAX_AGE", "0").strip()
    if value.lower() in ("none", "forever"):
        return None
    try:
        age = int(value)
    except ValueError:
        raise ImproperlyConfigured("CONN_MAX_AGE must be a number of seconds or 'none', not %r" % value)
    if age < 0:
        raise ImproperlyConfigured("CONN_MAX_AGE must not be negative")
    return age


def database_from_env():
    """Build DATABASES['default'] from the environment."""
    url = os.environ.get("DATABASE_URL", "").strip()
    if url:
        db = dj_database_url.parse(url)
        # dj-database-url 0.5 (Debian bookworm) still names the backend
        # module that Django 3.0 removed.
        if db.get("ENGINE") == "django.db.backends.postgresql_psycopg2":
            db["ENGINE"] = "django.db.backends.postgresql"
        if db.get("ENGINE") != "django.db.backends.postgresql":
            raise ImproperlyConfigured("DATABASE_URL must be a postgres:// URL")
        db.setdefault("OPTIONS", {}).setdefault("sslmode", "require")
    else:
        db = {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("DB_NAME", "shop"),
            "USER": os.environ.get("DB_USER", "shop"),
            "PASSWORD": os.environ.get("DB_PASSWORD", ""),
            "HOST": os.environ.get("DB_HOST", "localhost"),
            "PORT": os.environ.get("DB_PORT", "5432"),
            "OPTIONS": {"sslmode": os.environ.get("DB_SSLMODE", "require")},
        }
        if os.environ.get("DB_SSLROOTCERT"):
            db["OPTIONS"]["sslrootcert"] = os.environ["DB_SSLROOTCERT"]
    # Every OPTIONS key becomes a libpq connection keyword.
    options = db["OPTIONS"]
    options.setdefault("connect_timeout", int(os.environ.get("DB_CONNECT_TIMEOUT", "10")))
    options.setdefault("application_name", os.environ.get("DB_APPLICATION_NAME", "shop"))
    db["CONN_MAX_AGE"] = env_conn_max_age()
    # Required behind a transaction-mode pooler (PgBouncer and most
    # providers' poolers).
    db["DISABLE_SERVER_SIDE_CURSORS"] = env_bool("DISABLE_SERVER_SIDE_CURSORS")
    return db


# Development only: any real deployment sets SECRET_KEY.
SECRET_KEY = os.environ.get("SECRET_KEY", "dev-only-insecure-key-never-use-in-production")

DEBUG = env_bool("DEBUG")

ALLOWED_HOSTS = [h.strip() for h in os.environ.get("ALLOWED_HOSTS", "localhost,127.0.0.1").split(",") if h.strip()]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "catalog.apps.CatalogConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "shop.urls"

TEMPLATES = []

WSGI_APPLICATION = "shop.wsgi.application"

DATABASES = {"default": database_from_env()}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_L10N = False
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}
